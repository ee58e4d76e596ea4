"""Altair charts of the question pages (statistics live in :mod:`.tables`)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from .tables import order_of

COLUMN = 680  # px: the book's content column; every chart fits in it, axes and legends included
# One colour per strategy and per ratio across the whole book.
STRATEGY_COLORS = {"MP": "#1f77b4", "GP": "#ff7f0e", "UP": "#2ca02c", "RP": "#8c8c8c"}
OTHER_COLORS = ["#9467bd", "#d62728", "#17becf", "#8c564b", "#e377c2", "#bcbd22"]
# Viridis stops up to its green (0.8): its pale yellow end is unreadable on white.
_VIRIDIS = ["#440154", "#414487", "#2a788e", "#22a884", "#7ad151"]


def ratio_color(t: float) -> str:
    """The colour of compression ratio ``t`` on every page: viridis by log2 t over 2..64."""
    position = min(max(np.log2(float(t)) - 1, 0.0) / 5, 1.0) * (len(_VIRIDIS) - 1)
    low = int(np.floor(position))
    high, frac = min(low + 1, len(_VIRIDIS) - 1), position - low
    a, b = (np.array([int(c[i : i + 2], 16) for i in (1, 3, 5)]) for c in (_VIRIDIS[low], _VIRIDIS[high]))
    return "#" + "".join(f"{round(v):02x}" for v in a + (b - a) * frac)


def display_order(values: pd.Series) -> list[str]:
    """Display order of a grouping column: strategies as in the paper (MP, GP, UP, RP), else
    :func:`tables.order_of`."""
    levels = order_of(values)
    if values.name == "strategy":
        known = [s for s in STRATEGY_COLORS if s in levels]
        return known + [s for s in levels if s not in known]
    return levels


def color_scale(field: str, values: list[str]) -> alt.Scale:
    """The book's colours for ``values`` of ``field`` (strategies and ratios fixed, others in turn)."""
    if field == "strategy":
        colors = [STRATEGY_COLORS.get(v, OTHER_COLORS[i % len(OTHER_COLORS)]) for i, v in enumerate(values)]
    elif field == "compression":
        colors = [ratio_color(float(v)) for v in values]
    else:
        colors = [OTHER_COLORS[i % len(OTHER_COLORS)] for i in range(len(values))]
    return alt.Scale(domain=list(values), range=colors)


def _clip_domain(values: pd.Series) -> list[float]:
    """A y-range holding the central 90% of finite values and 1 (I explodes where Bbar_1 ~ 0)."""
    finite = values[np.isfinite(values)]
    low, high = finite.quantile([0.05, 0.95]) if len(finite) else (0.0, 2.0)
    return [float(min(low, 0.0)), float(max(high, 2.0))]


def boxplot(table: pd.DataFrame, group: str, facet: str | None = None, title: str = ""):
    """Boxplots of I_t per ratio t, one box per level of ``group``, dashed line at I = 1
    (one panel per level of ``facet`` if given). The y-range holds the central 90% of I; values
    beyond it sit on its edge. Where RP's range dwarfs the others', RP gets its own panel beside."""
    keep = ["compression", group, "intensification", *([facet] if facet else [])]
    data = table[np.isfinite(table.intensification)][keep].astype({group: str})
    order = display_order(table[group])
    rows = alt.Row(f"{facet}:N", sort=display_order(table[facet])) if facet else None

    def part(rows_of: pd.DataFrame, levels: list[str], width: int, name: str = ""):
        chart = _boxes(rows_of, group, levels, order, width, title=name)
        return chart.facet(row=rows) if facet else chart

    if group == "strategy" and "RP" in order and len(order) > 1:
        rest, rp = data[data.strategy != "RP"], data[data.strategy == "RP"]
        if _span(rp.intensification) > 2 * _span(rest.intensification):
            others = [o for o in order if o != "RP"]
            width = (COLUMN - 260) * len(others) // len(order)
            return alt.hconcat(
                part(rest, others, width, ", ".join(others)),
                part(rp, ["RP"], COLUMN - 260 - width, "RP (own scale)"),
                title=title,
            ).resolve_scale(y="independent", color="shared")
    return part(data, order, COLUMN - 160 - (40 if facet else 0)).properties(title=title)


def _span(values: pd.Series) -> float:
    low, high = _clip_domain(values)
    return high - low


def _boxes(
    data: pd.DataFrame, group: str, order: list[str], palette: list[str], width: int, title: str = ""
) -> alt.LayerChart:
    """Boxes of ``data`` for the levels ``order``, coloured as ``palette`` (every level of the chart)."""
    y = alt.Y(
        "intensification:Q",
        title="intensification ratio I",
        scale=alt.Scale(domain=_clip_domain(data.intensification), clamp=True),
    )
    boxes = (
        alt.Chart()
        .mark_boxplot(extent=1.5, outliers={"size": 4, "opacity": 0.4})
        .encode(
            x=alt.X("compression:O", title="compression ratio t", axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset(f"{group}:N", sort=order),
            y=y,
            color=alt.Color(
                f"{group}:N",
                sort=palette,
                scale=color_scale(group, palette),
                legend=alt.Legend(orient="bottom", columns=2, labelLimit=300),
            ),
        )
    )
    one = alt.Chart().mark_rule(strokeDash=[6, 4], color="black").encode(y=alt.datum(1.0))
    return alt.layer(boxes, one, data=data).properties(width=width, height=260, title=title)


def scatter(table: pd.DataFrame, runs_summary: pd.DataFrame, facet: str, title: str = "") -> alt.FacetChart:
    """Bbar_t against Bbar_1 (one point per class and model), coloured by t, with the fitted
    slope lines y = alpha_hat_t x (mean over models), one panel per level of ``facet``."""
    order = display_order(table[facet])
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
    ratios = [f"{t:g}" for t in sorted(table.compression.unique())]
    points["compression"] = points.compression.map("{:g}".format)
    lines["compression"] = lines.compression.map("{:g}".format)
    color = alt.Color("compression:N", title="t", sort=ratios, scale=color_scale("compression", ratios))
    dots = (
        alt.Chart()
        .mark_circle(size=18, opacity=0.45)
        .encode(
            x=x, y=y, color=color, tooltip=["compression:N", "seed:Q", "class:Q", "bbar_dense:Q", "bbar:Q"]
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
            detail="compression:N",
            tooltip=["compression:N", alt.Tooltip("alpha_hat:Q", format=".3f")],
        )
        .transform_filter(alt.datum.kind == "fit")
    )
    data = pd.concat([points, lines], ignore_index=True)
    return (
        alt.layer(dots, fits, data=data)
        .properties(width=(COLUMN - 180) // 2, height=200)
        .facet(facet=alt.Facet(f"{facet}:N", title=facet, sort=order), columns=2, title=title)
        .resolve_scale(x="independent", y="independent")  # RP's spread must not flatten the others
    )


def class_heatmap(table: pd.DataFrame, facet: str = "strategy", title: str = "") -> alt.FacetChart:
    """Per class c and ratio t: mean over models of B_t^c = R_t^c - A_t (red: the class lost recall
    relative to accuracy, blue: gained), one panel per level of ``facet``; tooltips give the values."""
    order = display_order(table[facet])
    data = (
        table.assign(
            balance=table.recall - table.accuracy, balance_dense=table.bbar_dense * table.dense_accuracy
        )
        .groupby([facet, "compression", "class"], observed=True)
        .agg(balance=("balance", "mean"), balance_dense=("balance_dense", "mean"), recall=("recall", "mean"))
        .reset_index()
        .astype({facet: str, "class": str})
    )
    data["change"] = data.balance - data.balance_dense
    data["compression"] = data.compression.map("{:g}".format)
    ratios = [f"{t:g}" for t in sorted(table.compression.unique())]
    bound = float(np.nanmax(np.abs(data.balance))) if len(data) else 1.0
    classes = sorted(data["class"].unique(), key=int)
    return (
        alt.Chart(data)
        .mark_rect()
        .encode(
            x=alt.X("compression:O", title="compression ratio t", sort=ratios, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("class:O", title="class", sort=classes),
            color=alt.Color(
                "balance:Q",
                title="B_t (recall - accuracy)",
                scale=alt.Scale(scheme="redblue", domain=[-bound, bound]),
                legend=alt.Legend(orient="bottom", gradientLength=260),
            ),
            tooltip=[
                f"{facet}:N",
                alt.Tooltip("compression:O", title="t"),
                "class:O",
                alt.Tooltip("recall:Q", format=".3f", title="recall"),
                alt.Tooltip("balance:Q", format="+.3f", title="B_t"),
                alt.Tooltip("balance_dense:Q", format="+.3f", title="B_1 (dense)"),
                alt.Tooltip("change:Q", format="+.3f", title="B_t - B_1"),
            ],
        )
        .properties(width=(COLUMN - 140) // 2, height=14 * len(classes))
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
    legend = alt.Legend(orient="bottom")
    encode_color = alt.Color(f"{color}:N", legend=legend) if color else alt.value("black")
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
    return alt.layer(*layers, data=data).properties(width=COLUMN - 260, height=height, title=title)


def baselines(runs: pd.DataFrame, group: str, facet: str | None = None, title: str = "") -> alt.Chart:
    """alpha_hat against retained accuracy A_t/A_1, one point per pruned run coloured by ``group`` (mean per
    group and t as large points), with the null curves alpha = A_1/A_t (additive, dashed) and alpha = error
    odds ratio (proportional, dotted) at the mean dense accuracy A_1 of each panel (``facet``, if given)."""
    order = display_order(runs[group])
    if facet is None:
        return _baseline_panel(runs, group, order, COLUMN - 140).properties(title=title)
    panels = [
        _baseline_panel(runs[runs[facet].astype(str) == level], group, order, (COLUMN - 220) // 2).properties(
            title=level
        )
        for level in order_of(runs[facet])
    ]
    return alt.concat(*panels, columns=2, title=title)


def _baseline_panel(runs: pd.DataFrame, group: str, order: list[str], width: int) -> alt.LayerChart:
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
    color = alt.Color(
        f"{group}:N", sort=order, scale=color_scale(group, order), legend=alt.Legend(orient="bottom")
    )
    dots = alt.Chart(points).mark_circle(size=18, opacity=0.35).encode(x=x, y=y, color=color)
    big = (
        alt.Chart(means)
        .mark_point(size=90, filled=True)
        .encode(x=x, y=y, color=color, tooltip=list(means.columns))
    )
    dash = alt.StrokeDash("baseline:N", scale=alt.Scale(range=[[6, 4], [2, 2]]), title="null baseline")
    curve = alt.Chart(lines).mark_line(color="black").encode(x=x, y=y, strokeDash=dash)
    return alt.layer(curve, dots, big).properties(width=width, height=240)


def paper_lines(fig5: pd.DataFrame, ours: pd.DataFrame) -> alt.Chart:
    """Pooled alpha_hat against t (log scale), the paper's Figure 5 (``fig5``) and ours (``ours``, per
    dataset), one colour per strategy and one dash per source."""
    long = pd.concat(
        [
            fig5.assign(source="paper (CIFAR-10/ResNet-56)"),
            ours.assign(source=lambda d: "ours: " + d.dataset),
        ]
    )
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("compression:Q", scale=alt.Scale(type="log"), title="compression ratio t"),
            y=alt.Y("pooled_alpha_hat:Q", title="pooled alpha_hat"),
            color="strategy:N",
            strokeDash="source:N",
            tooltip=["source", "strategy", "compression", "pooled_alpha_hat", "r2", "accuracy"],
        )
        .properties(width=420, height=260)
    )


def realised(table: pd.DataFrame) -> alt.Chart:
    """Realised against asked compression (both log scales) per strategy and dataset, from
    :func:`.authors.realised`, with the diagonal realised = asked dashed."""
    data = table.assign(series=table.strategy + ", " + table.dataset)
    x = alt.X("compression:Q", scale=alt.Scale(type="log"), title="asked t")
    y = alt.Y("t_prunable_mean:Q", scale=alt.Scale(type="log"), title="realised t (prunable basis)")
    order = display_order(data.strategy)
    lines = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "strategy:N",
                sort=order,
                scale=color_scale("strategy", order),
                legend=alt.Legend(orient="bottom"),
            ),
            strokeDash=alt.StrokeDash("dataset:N", legend=alt.Legend(orient="bottom")),
            detail="series:N",
            tooltip=["strategy", "dataset", "compression", alt.Tooltip("t_prunable_mean:Q", format=".2f")],
        )
    )
    ends = [float(table.compression.min()), float(table.compression.max())]
    diagonal = (
        alt.Chart(pd.DataFrame({"compression": ends, "t_prunable_mean": ends}))
        .mark_line(strokeDash=[6, 4], color="black")
        .encode(x=x, y=y)
    )
    return alt.layer(diagonal, lines).properties(width=COLUMN - 200, height=260)


def paper_panels(fig5: pd.DataFrame, ours: pd.DataFrame, source: str = "paper (CIFAR-10/ResNet-56)"):
    """Pooled alpha_hat against t (log scale), one panel per strategy, one line per source: the paper's
    Figure 5 and each dataset of ours, coloured and named in the legend."""
    long = pd.concat(
        [fig5.assign(source=source), ours.assign(source=lambda d: "ours: " + d.dataset)], ignore_index=True
    )
    long = long[long.strategy.isin(fig5.strategy.unique())]
    sources = [source, *sorted(s for s in long.source.unique() if s != source)]
    colors = ["black", *OTHER_COLORS][: len(sources)]
    line = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=alt.X("compression:Q", scale=alt.Scale(type="log"), title="compression ratio t"),
            y=alt.Y("pooled_alpha_hat:Q", title="pooled alpha_hat"),
            color=alt.Color(
                "source:N",
                sort=sources,
                scale=alt.Scale(domain=sources, range=colors),
                legend=alt.Legend(orient="bottom", columns=2, labelLimit=300, title="source"),
            ),
            tooltip=["source", "strategy", "compression", alt.Tooltip("pooled_alpha_hat:Q", format=".3f")],
        )
    )
    one = alt.Chart().mark_rule(strokeDash=[6, 4], color="gray").encode(y=alt.datum(1.0))
    order = display_order(long.strategy.rename("strategy"))
    return (
        alt.layer(line, one, data=long)
        .properties(width=(COLUMN - 200) // 2, height=170)
        .facet(facet=alt.Facet("strategy:N", sort=order, title=None), columns=2)
    )


def training_curves(history: pd.DataFrame, seeds: int = 3, title: str = "") -> alt.FacetChart:
    """Mean training and validation loss per epoch of the first ``seeds`` dense models of each dataset
    (its widest model; ``history``: :attr:`pruneflow.experiment.results.Collected.history`), one panel
    per dataset, one line per (seed, curve), the epoch of lowest validation loss of each model marked."""
    widest = history.width == history.groupby("dataset").width.transform("max")
    shown = history[widest & history.seed.isin(sorted(history.seed.unique())[:seeds])]
    best = shown.dropna(subset=["validation_loss"]).groupby("dense_id").validation_loss.idxmin()
    shown = shown.assign(kept=shown.index.isin(best))
    long = shown.melt(
        id_vars=["dataset", "seed", "epoch", "kept"],
        value_vars=["train_loss", "validation_loss"],
        var_name="curve",
        value_name="loss",
    ).dropna(subset=["loss"])
    long = long.assign(
        curve=long.curve.str.removesuffix("_loss"),
        seed=long.seed.astype(str),
        kept=long.kept & (long.curve == "validation_loss"),
    )
    color = alt.Color("seed:N", title="seed")
    x, y = (
        alt.X("epoch:Q", title="epoch"),
        alt.Y("loss:Q", title="mean cross-entropy", scale=alt.Scale(zero=False)),
    )
    lines = (
        alt.Chart()
        .mark_line()
        .encode(
            x=x,
            y=y,
            color=color,
            strokeDash=alt.StrokeDash("curve:N", title="loss", sort=["train", "validation"]),
            detail="seed:N",
            tooltip=["dataset:N", "seed:N", "curve:N", "epoch:Q", alt.Tooltip("loss:Q", format=".4f")],
        )
    )
    kept = (
        alt.Chart()
        .transform_filter(alt.datum.kept)
        .mark_point(filled=True, size=50, shape="diamond")
        .encode(x=x, y=y, color=color, tooltip=["dataset:N", "seed:N", "epoch:Q"])
    )
    return (
        alt.layer(lines, kept, data=long)
        .properties(width=(COLUMN - 220) // 2, height=160)
        .facet(facet=alt.Facet("dataset:N", title=None), columns=2, title=title)
        .resolve_scale(y="independent")
    )


def retraining_lines(summary: pd.DataFrame, title: str = "") -> alt.FacetChart:
    """Mean alpha_hat per t (log scale) with its 99% CI per strategy (:func:`.retraining.summary`),
    one panel per (reference, fine-tuning), one row of panels per dataset; the dashed line is 1."""
    data = summary.assign(label=summary.reference.map(lambda r: f"against {r}") + ", " + summary.fine_tuning)
    color = alt.Color("strategy:N", scale=color_scale("strategy", display_order(data.strategy)))
    ticks = sorted(data.compression.unique())
    base = alt.Chart().encode(
        x=alt.X(
            "compression:Q",
            title="compression ratio t",
            scale=alt.Scale(type="log"),
            axis=alt.Axis(values=ticks),
        ),
        color=color,
    )
    points = base.mark_line(point=True).encode(
        y=alt.Y("alpha_hat:Q", title="mean alpha_hat", scale=alt.Scale(zero=False)),
        tooltip=["strategy:N", "compression:Q", alt.Tooltip("alpha_hat:Q", format=".3f"), "mark:N"],
    )
    bars = base.mark_rule().encode(y="ci_low:Q", y2="ci_high:Q")
    one = alt.Chart().mark_rule(strokeDash=[4, 4], color="gray").encode(y=alt.datum(1.0))
    return (
        alt.layer(bars, points, one, data=data)
        .properties(width=(COLUMN - 260) // 4, height=160)
        .facet(column=alt.Column("label:N", title=None), row=alt.Row("dataset:N", title=None), title=title)
    )
