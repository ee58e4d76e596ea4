"""Tables and charts for the question notebooks: the thin layer between results and the paper.

From the tidy result rows (:func:`pruneflow.results.load`):

- :func:`intensification` - one row per (pruned run, class): Bbar_1, Bbar_t and I_t;
- :func:`alphas` - one row per pruned run: alpha_hat_t and accuracy;
- :func:`summary` - per group and ratio: mean alpha_hat with its 99% CI and mark, mean accuracy;
- :func:`compare` - paired or independent differences of alpha_hat / accuracy between groups;
- :func:`boxplot`, :func:`scatter` - altair charts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd

from . import grid
from .metrics import alpha_hat, intensification_ratio, normalized_recall_balance
from .profiles import load_profile
from .stats import diff_ci, mark, mean_ci

RUN_KEYS = ["dataset", "model", "width", "n_params", "seed", "strategy", "compression", "basis", "dense_id"]
LEVEL = 0.99


@dataclass(frozen=True)
class Evidence:
    """What a question notebook analyses: rows, per-class intensification, per-run alpha_hat."""

    frame: pd.DataFrame  # tidy rows of the grid (results.SCHEMA)
    table: pd.DataFrame  # per (pruned run, class): Bbar_1, Bbar_t, I_t
    runs: pd.DataFrame  # per pruned run: alpha_hat, accuracy
    failed: pd.DataFrame  # per failed run: status and reason


def gather(
    profile: str, results: str, grid_name: str, only: dict[str, str] | None = None, stage: str = "finetuned"
) -> Evidence:
    """Run (or read back) the grid ``grid_name`` of ``profile`` and derive the question's tables."""
    frame = grid.run(load_profile(profile).subset(grid_name), results, only=only, progress=False)
    good, failed = ok_rows(frame)
    table = intensification(good, stage)
    runs = pd.concat([alphas(t) for _, t in table.groupby("dataset")], ignore_index=True)
    return Evidence(frame, table, runs, failed)


def ok_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of successful runs, one row per failed run with its status and reason)."""
    failed = frame[frame.status != "ok"].drop_duplicates("run_id")[
        [
            "run_id",
            "dataset",
            "model",
            "width",
            "seed",
            "strategy",
            "compression",
            "basis",
            "status",
            "reason",
        ]
    ]
    good = frame[frame.status == "ok"].astype({"class": "int64", "support": "int64"})
    return good, failed


def intensification(frame: pd.DataFrame, stage: str = "finetuned") -> pd.DataFrame:
    """Per (pruned run, class): Bbar_1 (dense), Bbar_t (``stage``) and I_t = Bbar_t / Bbar_1."""
    frame = frame[frame.status == "ok"]
    dense = (
        frame[frame.stage == "dense"]
        .assign(
            bbar_dense=lambda d: normalized_recall_balance(
                d.recall.to_numpy()[:, None], d.accuracy.to_numpy()
            )[:, 0]
        )[["dense_id", "class", "bbar_dense", "accuracy"]]
        .rename(columns={"accuracy": "dense_accuracy"})
    )
    pruned = frame[frame.stage == stage]
    pruned = pruned.assign(
        bbar=normalized_recall_balance(pruned.recall.to_numpy()[:, None], pruned.accuracy.to_numpy())[:, 0]
    )
    table = pruned.merge(dense, on=["dense_id", "class"], how="inner", validate="many_to_one")
    table["intensification"] = intensification_ratio(table.bbar.to_numpy(), table.bbar_dense.to_numpy())
    return table[
        [
            *RUN_KEYS,
            "run_id",
            "stage",
            "class",
            "recall",
            "accuracy",
            "dense_accuracy",
            "bbar_dense",
            "bbar",
            "intensification",
        ]
    ]


def alphas(table: pd.DataFrame) -> pd.DataFrame:
    """Per pruned run: alpha_hat_t (slope through the origin of Bbar_t on Bbar_1 across classes),
    accuracy, dense accuracy and the number of classes whose I_t is undefined (Bbar_1 = 0)."""
    runs = table.sort_values(["run_id", "class"])
    n_classes = runs.groupby("run_id")["class"].transform("size")
    if n_classes.nunique() > 1:
        raise ValueError("runs with different numbers of classes: compute alphas per dataset")
    k = int(n_classes.iloc[0]) if len(runs) else 0
    dense = runs.bbar_dense.to_numpy().reshape(-1, k)
    pruned = runs.bbar.to_numpy().reshape(-1, k)
    first = runs.groupby("run_id", sort=True).first().reset_index()
    return first[[*RUN_KEYS, "run_id", "accuracy", "dense_accuracy"]].assign(
        alpha_hat=alpha_hat(dense, pruned),
        undefined=(dense == 0).sum(axis=1),
    )


def summary(runs: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by`` and ratio t: models, mean alpha_hat with its 99% CI and mark, accuracy."""
    rows = []
    for key, group in runs.groupby([*by, "compression"], sort=True):
        mean, low, high = mean_ci(group.alpha_hat, LEVEL)
        rows.append(
            {
                **dict(zip([*by, "compression"], key, strict=True)),
                "models": len(group),
                "alpha_hat": mean,
                "ci_low": low,
                "ci_high": high,
                "mark": mark(low, high),
                "accuracy": group.accuracy.mean(),
                "dense_accuracy": group.dense_accuracy.mean(),
                "undefined_I": int(group.undefined.sum()),
            }
        )
    return pd.DataFrame(rows)


def compare(
    runs: pd.DataFrame,
    factor: str,
    a: object,
    b: object,
    by: Sequence[str] = ("dataset",),
    paired: bool = True,
) -> pd.DataFrame:
    """Per group of ``by`` and t: difference ``a - b`` of alpha_hat and of accuracy between two levels
    of ``factor``, with 99% CIs; paired by dense model when both come from the same ones."""
    rows = []
    for key, group in runs.groupby([*by, "compression"], sort=True):
        left = group[group[factor] == a].set_index("dense_id" if paired else "run_id")
        right = group[group[factor] == b].set_index("dense_id" if paired else "run_id")
        if paired:
            common = left.index.intersection(right.index)
            left, right = left.loc[common], right.loc[common]
        if len(left) < 2 or len(right) < 2:
            continue
        row = dict(zip([*by, "compression"], key, strict=True))
        for metric in ("alpha_hat", "accuracy"):
            diff, low, high = diff_ci(left[metric], right[metric], paired=paired, level=LEVEL)
            row |= {
                f"{metric}_diff": diff,
                f"{metric}_low": low,
                f"{metric}_high": high,
                f"{metric}_mark": mark(low, high, reference=0.0),
            }
        rows.append(row | {"models": len(left)})
    return pd.DataFrame(rows)


def verdict(marks: Sequence[str], expected: str) -> str:
    """'supported' if some cells show the ``expected`` mark and none the opposite, 'contradicted' in
    the mirror case, else 'inconclusive' (at the 99% level of the marks)."""
    opposite = {">": "<", "<": ">"}[expected]
    pro, con = sum(m == expected for m in marks), sum(m == opposite for m in marks)
    if pro and not con:
        return "supported"
    if con and not pro:
        return "contradicted"
    return "inconclusive"


def _clip_domain(values: pd.Series) -> list[float]:
    """A y-range holding the central 90% of finite values and 1 (I explodes where Bbar_1 ~ 0)."""
    finite = values[np.isfinite(values)]
    low, high = finite.quantile([0.05, 0.95]) if len(finite) else (0.0, 2.0)
    return [float(min(low, 0.0)), float(max(high, 2.0))]


def _order(values: pd.Series) -> list[str]:
    """Display order of a grouping column: its categories if ordered, else sorted values."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [str(c) for c in values.cat.categories if c in set(values)]
    return sorted(map(str, values.unique()))


def boxplot(table: pd.DataFrame, group: str, facet: str | None = None, title: str = "") -> alt.Chart:
    """Boxplots of I_t per ratio t, one box per level of ``group``, dashed line at I = 1
    (one panel per level of ``facet`` if given)."""
    keep = ["compression", group, "intensification", *([facet] if facet else [])]
    data = table[np.isfinite(table.intensification)][keep].astype({group: str})
    order = _order(table[group])
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
        return chart.facet(row=alt.Row(f"{facet}:N", sort=_order(table[facet])), title=title)
    return chart.properties(title=title)


def scatter(table: pd.DataFrame, runs_summary: pd.DataFrame, facet: str, title: str = "") -> alt.FacetChart:
    """Bbar_t against Bbar_1 (one point per class and model), coloured by t, with the fitted
    slope lines y = alpha_hat_t x (mean over models), one panel per level of ``facet``."""
    order = _order(table[facet])
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


def tally(summary_table: pd.DataFrame, cell: str) -> str:
    """A sentence counting the marks of a summary table: how many cells intensify, de-intensify."""
    counts = summary_table["mark"].value_counts()
    n = len(summary_table)
    return (
        f"Of the {n} {cell} cells, {counts.get('>', 0)} intensify (99% CI of alpha_hat above 1), "
        f"{counts.get('<', 0)} de-intensify (CI below 1) and {counts.get('?', 0)} are inconclusive "
        f"(CI overlaps 1)."
    )


def show(table: pd.DataFrame, digits: int = 3):
    """A table formatted for the page: fixed decimals, no index."""
    return table.style.format(precision=digits, na_rep="-").hide(axis="index")


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


def difficulty_order(runs: pd.DataFrame) -> pd.DataFrame:
    """Datasets from easiest to hardest by the mean test error of their dense models, with a label."""
    error = 1 - runs.drop_duplicates("dense_id").groupby("dataset").dense_accuracy.mean()
    order = error.sort_values().to_frame("error")
    order["label"] = [f"{d} ({e:.1%} error)" for d, e in order.error.items()]
    order["label"] = pd.Categorical(order.label, categories=list(order.label), ordered=True)
    return order


def with_size_label(frame: pd.DataFrame) -> pd.DataFrame:
    """Add an ordered ``model_size`` column naming each model by width and parameter count."""
    sizes = frame.drop_duplicates("n_params").sort_values("n_params")
    labels = {
        n: f"{m} x{w:g} ({n:,} params)"
        for m, w, n in zip(sizes.model, sizes.width, sizes.n_params, strict=True)
    }
    size = frame.n_params.map(labels)
    return frame.assign(model_size=pd.Categorical(size, categories=list(labels.values()), ordered=True))


def size_effect(runs: pd.DataFrame) -> pd.DataFrame:
    """Per basis and t: alpha_hat and accuracy of the smallest minus the largest model (Welch)."""
    sizes = _order(runs["model_size"])
    parts = [
        compare(group, "model_size", sizes[0], sizes[-1], by=("basis",), paired=False)
        for _, group in runs.groupby("basis")
    ]
    return pd.concat(parts, ignore_index=True)


def side_by_side(runs: pd.DataFrame, strategies: Sequence[str]) -> pd.DataFrame:
    """Per dataset and t: mean alpha_hat, its mark and mean accuracy of each strategy, side by side."""
    table = summary(runs, ["dataset", "strategy"])
    wide = table.pivot(
        index=["dataset", "compression"], columns="strategy", values=["alpha_hat", "mark", "accuracy"]
    )
    wide = wide.reorder_levels([1, 0], axis=1)[
        [(s, m) for s in strategies for m in ("alpha_hat", "mark", "accuracy")]
    ]
    return wide.reset_index()


CLAIMS = {
    "high": "Pruning intensifies recall differences at high ratios, t >= {high:g} (alpha_hat > 1)",
    "low": "Pruning de-intensifies them at low ratios, t <= {low:g} (alpha_hat < 1)",
    "up_alpha": "UP intensifies less than MP (alpha_hat of UP minus MP < 0)",
    "up_accuracy": "UP reaches better accuracy than MP (accuracy of UP minus MP > 0)",
    "rp_alpha": "RP intensifies least (alpha_hat of RP minus each other strategy < 0)",
    "rp_accuracy": "RP's accuracy is far worse (accuracy of RP minus MP < 0)",
    "harder": "Harder tasks intensify more (alpha_hat of the hardest minus the easiest dataset > 0)",
    "smaller_prunable": "Smaller models intensify more, prunable basis (smallest minus largest > 0)",
    "smaller_all": (
        "Smaller models intensify more, the authors' all-parameter basis (smallest minus largest > 0)"
    ),
}


def _claim(
    key: str, marks: Sequence[str], values: Sequence[float], expected: str, what: str, **thresholds: float
) -> dict:
    marks, values = list(marks), np.asarray(values, dtype=float)
    counts = {m: marks.count(m) for m in (">", "<", "?")}
    span = f"{np.nanmin(values):.3g} to {np.nanmax(values):.3g}" if len(values) else "-"
    return {
        "key": key,
        "claim": CLAIMS[key].format(**thresholds),
        "cells": len(marks),
        "evidence": f"{counts['>']} >, {counts['<']} <, {counts['?']} ?",
        "range": f"{what} {span}",
        "verdict": verdict(marks, expected) if marks else "inconclusive",
    }


def claims(
    strategy_runs: pd.DataFrame, size_runs: pd.DataFrame, high: float = 20, low: float = 4
) -> pd.DataFrame:
    """One row per claim of the seed paper: the 99% marks of the cells that test it, the range of
    our numbers, and the verdict (:func:`verdict`). ``strategy_runs`` and ``size_runs`` are the
    per-run tables (:func:`alphas`) of the strategy grid and of the model-size grid."""
    deterministic = strategy_runs[strategy_runs.strategy != "RP"]
    cells = summary(deterministic, ["dataset", "strategy"])
    hi, lo = cells[cells.compression >= high], cells[cells.compression <= low]
    up = compare(strategy_runs, "strategy", "UP", "MP")
    rp = pd.concat([compare(strategy_runs, "strategy", "RP", other) for other in ("MP", "GP", "UP")])
    rp_mp = compare(strategy_runs, "strategy", "RP", "MP")
    mp = strategy_runs[strategy_runs.strategy == "MP"]
    order = difficulty_order(mp)
    harder = compare(mp, "dataset", order.index[-1], order.index[0], by=(), paired=False)
    sizes = size_effect(with_size_label(size_runs[size_runs.strategy == "MP"]))
    rows = [
        _claim("high", hi["mark"], hi.alpha_hat, ">", "mean alpha_hat", high=high),
        _claim("low", lo["mark"], lo.alpha_hat, "<", "mean alpha_hat", low=low),
        _claim("up_alpha", up.alpha_hat_mark, up.alpha_hat_diff, "<", "difference"),
        _claim("up_accuracy", up.accuracy_mark, up.accuracy_diff, ">", "difference"),
        _claim("rp_alpha", rp.alpha_hat_mark, rp.alpha_hat_diff, "<", "difference"),
        _claim("rp_accuracy", rp_mp.accuracy_mark, rp_mp.accuracy_diff, "<", "difference"),
        _claim("harder", harder.alpha_hat_mark, harder.alpha_hat_diff, ">", "difference"),
    ]
    for basis in ("prunable", "all"):
        part = sizes[sizes.basis == basis] if len(sizes) else sizes
        rows.append(
            _claim(
                f"smaller_{basis}",
                part.get("alpha_hat_mark", []),
                part.get("alpha_hat_diff", []),
                ">",
                "difference",
            )
        )
    return pd.DataFrame(rows)
