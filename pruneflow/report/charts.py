"""Altair charts of the question pages (statistics live in :mod:`.tables`)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from .tables import order_of


def _clip_domain(values: pd.Series) -> list[float]:
    """A y-range holding the central 90% of finite values and 1 (I explodes where Bbar_1 ~ 0)."""
    finite = values[np.isfinite(values)]
    low, high = finite.quantile([0.05, 0.95]) if len(finite) else (0.0, 2.0)
    return [float(min(low, 0.0)), float(max(high, 2.0))]


def boxplot(table: pd.DataFrame, group: str, facet: str | None = None, title: str = "") -> alt.Chart:
    """Boxplots of I_t per ratio t, one box per level of ``group``, dashed line at I = 1
    (one panel per level of ``facet`` if given)."""
    keep = ["compression", group, "intensification", *([facet] if facet else [])]
    data = table[np.isfinite(table.intensification)][keep].astype({group: str})
    order = order_of(table[group])
    y = alt.Y(
        "intensification:Q",
        title="intensification ratio I",
        scale=alt.Scale(domain=_clip_domain(data.intensification), clamp=True),
    )
    boxes = (
        alt.Chart()
        .mark_boxplot(extent=1.5, outliers={"size": 4, "opacity": 0.4})
        .encode(
            x=alt.X("compression:O", title="compression ratio t"),
            xOffset=alt.XOffset(f"{group}:N", sort=order),
            y=y,
            color=alt.Color(f"{group}:N", sort=order),
        )
    )
    one = alt.Chart().mark_rule(strokeDash=[6, 4], color="black").encode(y=alt.datum(1.0))
    chart = alt.layer(boxes, one, data=data).properties(width=520, height=260)
    if facet:
        return chart.facet(row=alt.Row(f"{facet}:N", sort=order_of(table[facet])), title=title)
    return chart.properties(title=title)


def scatter(table: pd.DataFrame, runs_summary: pd.DataFrame, facet: str, title: str = "") -> alt.FacetChart:
    """Bbar_t against Bbar_1 (one point per class and model), coloured by t, with the fitted
    slope lines y = alpha_hat_t x (mean over models), one panel per level of ``facet``."""
    order = order_of(table[facet])
    points = table[[facet, "compression", "seed", "class", "bbar_dense", "bbar"]].assign(kind="class")
    points[facet] = points[facet].astype(str)
    x_max = float(np.nanmax(np.abs(points.bbar_dense))) if len(points) else 1.0
    lines = (
        runs_summary[[facet, "compression", "alpha_hat"]]
        .astype({facet: str})
        .merge(pd.DataFrame({"bbar_dense": [-x_max, x_max]}), how="cross")
        .assign(bbar=lambda d: d.alpha_hat * d.bbar_dense, kind="fit")
    )
    x = alt.X("bbar_dense:Q", title="Bbar_1 (dense)")
    y = alt.Y("bbar:Q", title="Bbar_t (pruned)")
    color = alt.Color("compression:O", title="t", scale=alt.Scale(scheme="viridis"))
    dots = (
        alt.Chart()
        .mark_circle(size=18, opacity=0.45)
        .encode(
            x=x, y=y, color=color, tooltip=["compression:O", "seed:Q", "class:Q", "bbar_dense:Q", "bbar:Q"]
        )
        .transform_filter(alt.datum.kind == "class")
    )
    fits = (
        alt.Chart()
        .mark_line(strokeWidth=2)
        .encode(
            x=x,
            y=y,
            color=color,
            detail="compression:O",
            tooltip=["compression:O", alt.Tooltip("alpha_hat:Q", format=".3f")],
        )
        .transform_filter(alt.datum.kind == "fit")
    )
    data = pd.concat([points, lines], ignore_index=True)
    return (
        alt.layer(dots, fits, data=data)
        .properties(width=250, height=220)
        .facet(facet=alt.Facet(f"{facet}:N", title=facet, sort=order), columns=2, title=title)
    )


def setup_altair() -> None:
    """Render charts as interactive HTML with every row inlined. The book's pages load vega,
    vega-lite and vega-embed from its own ``_static/vendor`` (``html_js_files`` in _config.yml);
    ``base_url`` keeps CDN addresses out of the pages, so they render with no network."""
    alt.data_transformers.disable_max_rows()
    alt.renderers.enable(
        "html",
        base_url="_static/vendor/vega",
        embed_options={"actions": {"export": True, "source": False, "compiled": False, "editor": False}},
    )


def forest(
    table: pd.DataFrame,
    label: str,
    color: str | None = None,
    margin: str | float | None = None,
    x_title: str = "estimate",
    title: str = "",
) -> alt.Chart:
    """Forest plot: one row per row of ``table`` (named by ``label``), its ``estimate`` as a point
    and its [``ci_low``, ``ci_high``] interval as a bar, a solid line at the null 0 and, if given, the
    equivalence band +-``margin`` (a column of per-row margins or one number) shaded on each row."""
    keep = [label, "estimate", "ci_low", "ci_high", *([color] if color else [])]
    data = table[keep].astype({label: str})
    if margin is not None:
        data = data.assign(margin=table[margin] if isinstance(margin, str) else float(margin))
        data = data.assign(band_low=-data.margin, band_high=data.margin)
    order = list(data[label])
    y = alt.Y(f"{label}:N", sort=order, title=None)
    encode_color = alt.Color(f"{color}:N") if color else alt.value("black")
    tooltip = [
        f"{label}:N",
        *(alt.Tooltip(f"{c}:Q", format=".3f") for c in ("estimate", "ci_low", "ci_high")),
    ]
    bars = (
        alt.Chart()
        .mark_rule(strokeWidth=2)
        .encode(x=alt.X("ci_low:Q", title=x_title), x2="ci_high:Q", y=y, color=encode_color, tooltip=tooltip)
    )
    points = (
        alt.Chart()
        .mark_point(filled=True, size=60)
        .encode(x="estimate:Q", y=y, color=encode_color, tooltip=tooltip)
    )
    null = alt.Chart().mark_rule(color="black").encode(x=alt.datum(0.0))
    layers = [bars, points, null]
    if margin is not None:
        band = alt.Chart().mark_bar(opacity=0.15, color="gray").encode(x="band_low:Q", x2="band_high:Q", y=y)
        layers.insert(0, band)
    height = max(60, 22 * len(data))
    return alt.layer(*layers, data=data).properties(width=460, height=height, title=title)


def baselines(runs: pd.DataFrame, group: str, facet: str | None = None, title: str = "") -> alt.Chart:
    """alpha_hat against retained accuracy A_t/A_1, one point per pruned run coloured by ``group`` (mean per
    group and t as large points), with the null curves alpha = A_1/A_t (additive, dashed) and alpha = error
    odds ratio (proportional, dotted) at the mean dense accuracy A_1 of each panel (``facet``, if given)."""
    order = order_of(runs[group])
    if facet is None:
        return _baseline_panel(runs, group, order).properties(title=title)
    panels = [
        _baseline_panel(runs[runs[facet].astype(str) == level], group, order).properties(title=level)
        for level in order_of(runs[facet])
    ]
    return alt.concat(*panels, columns=2, title=title)


def _baseline_panel(runs: pd.DataFrame, group: str, order: list[str]) -> alt.LayerChart:
    """One panel of :func:`baselines`."""
    points = runs[[group, "compression", "retained", "alpha_hat"]].astype({group: str})
    points = points[np.isfinite(points.alpha_hat) & np.isfinite(points.retained)]
    means = points.groupby([group, "compression"], as_index=False)[["retained", "alpha_hat"]].mean()
    a1 = float(runs.drop_duplicates("dense_id").dense_accuracy.mean())
    r = np.linspace(min(max(float(points.retained.min()), 1e-3), 0.999) if len(points) else 0.5, 1.0, 60)
    at = r * a1
    lines = pd.DataFrame(
        {
            "retained": np.concatenate([r, r]),
            "alpha_hat": np.concatenate([1 / r, ((1 - at) / at) / ((1 - a1) / a1)]),
            "baseline": ["additive A_1/A_t"] * len(r) + ["error odds ratio"] * len(r),
        }
    )
    x = alt.X("retained:Q", title="retained accuracy A_t / A_1", scale=alt.Scale(zero=False))
    y = alt.Y(
        "alpha_hat:Q", title="alpha_hat", scale=alt.Scale(domain=_clip_domain(points.alpha_hat), clamp=True)
    )
    color = alt.Color(f"{group}:N", sort=order)
    dots = alt.Chart(points).mark_circle(size=18, opacity=0.35).encode(x=x, y=y, color=color)
    big = (
        alt.Chart(means)
        .mark_point(size=90, filled=True)
        .encode(x=x, y=y, color=color, tooltip=list(means.columns))
    )
    dash = alt.StrokeDash("baseline:N", scale=alt.Scale(range=[[6, 4], [2, 2]]), title="null baseline")
    curve = alt.Chart(lines).mark_line(color="black").encode(x=x, y=y, strokeDash=dash)
    return alt.layer(curve, dots, big).properties(width=420, height=280)
