"""The authors' variants of UP and RP beside ours, and checks of what lets random pruning keep its
accuracy on our data while the paper's collapses (issue 12, Q4 page).

- variants: UP-signed ranks by ``eps w^2 - w g`` without the absolute value (the authors' script),
  RP-bernoulli keeps each weight of layer l with probability ``keep_l`` (their mask draw); each is
  compared with ours on the same dense models, a - b paired (:func:`pruneflow.report.tables.compare`);
- RP's accuracy before and after fine-tuning (``A_pruned``, ``A_finetuned`` beside the dense ``A_1``),
  and its retained accuracy ``A_t / A_1`` across model widths.
"""

from __future__ import annotations

import pandas as pd

from .. import data, models
from ..experiment.config import PruneConfig
from ..experiment.profiles import load_profile
from ..masks import prunable_weights
from ..stats import mean_ci
from .methods import schedule_text
from .tables import LEVEL, compare

PAIRS = (("UP-signed", "UP"), ("RP-bernoulli", "RP"))  # (the authors' variant, ours)


def differences(runs: pd.DataFrame, pairs: tuple[tuple[str, str], ...] = PAIRS) -> pd.DataFrame:
    """Per pair present in ``runs`` (:func:`.tables.alphas` rows), dataset and t: the paired
    difference variant - ours of alpha_hat and of accuracy with 99% CIs and marks against 0."""
    parts = [
        compare(runs, "strategy", a, b).assign(comparison=f"{a} - {b}")
        for a, b in pairs
        if {a, b} <= set(runs.strategy)
    ]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    return table[["comparison", *table.columns.drop("comparison")]]


def differences_sentence(diffs: pd.DataFrame) -> str:
    """Per comparison of ``diffs`` (:func:`differences`): in how many cells the 99% interval puts the
    variant's accuracy and alpha_hat below or above ours, and the range of the accuracy differences."""
    parts = []
    for comparison, d in diffs.groupby("comparison", sort=False):
        n = {(m, s): int((d[f"{m}_mark"] == s).sum()) for m in ("accuracy", "alpha_hat") for s in "<>"}
        parts.append(
            f"{comparison}: accuracy lower in {n['accuracy', '<']} and higher in {n['accuracy', '>']} "
            f"of {len(d)} cells (differences {d.accuracy_diff.min():+.3f} to {d.accuracy_diff.max():+.3f}), "
            f"alpha_hat higher in {n['alpha_hat', '>']} and lower in {n['alpha_hat', '<']}"
        )
    return f"Where the {LEVEL:.0%} interval excludes 0, " + "; ".join(parts) + "."


def accuracy_by_stage(frame: pd.DataFrame, strategy: str = "RP") -> pd.DataFrame:
    """Per dataset and t: models and the mean accuracy of ``strategy``'s runs of ``frame`` (result
    rows) as dense models (``dense``), right after pruning (``pruned``) and after fine-tuning
    (``finetuned``)."""
    rows = frame[frame.status == "ok"].drop_duplicates(["run_id", "stage"])
    dense = rows[rows.stage == "dense"].set_index("dense_id").accuracy
    runs = rows[(rows.strategy == strategy) & rows.stage.isin(["pruned", "finetuned"])]
    wide = runs.pivot_table(
        index=["dataset", "compression", "run_id", "dense_id"], columns="stage", values="accuracy"
    ).reset_index()
    wide = wide.assign(dense=wide.dense_id.map(dense))
    table = wide.groupby(["dataset", "compression"], sort=True).agg(
        models=("run_id", "size"),
        dense=("dense", "mean"),
        pruned=("pruned", "mean"),
        finetuned=("finetuned", "mean"),
    )
    return table.reset_index()


def retained_by_width(runs: pd.DataFrame) -> pd.DataFrame:
    """Per width and t (:func:`.tables.alphas` rows of one strategy): models, mean accuracy, and the
    mean retained accuracy ``A_t / A_1`` with its 99% t interval."""
    rows = []
    for (width, t), group in runs.groupby(["width", "compression"], sort=True):
        mean, low, high = mean_ci(group.retained, LEVEL)
        rows.append(
            dict(
                width=width,
                compression=t,
                models=len(group),
                accuracy=group.accuracy.mean(),
                retained=mean,
                retained_low=low,
                retained_high=high,
            )
        )
    return pd.DataFrame(rows)


def rp_sentences(
    by_stage: pd.DataFrame,
    diffs: pd.DataFrame,
    widths: pd.DataFrame,
    published: pd.DataFrame,
    margin: float = 0.02,
) -> str:
    """What our runs say about RP's accuracy at the lowest ratio, against the paper's (markdown for
    glue): ``by_stage`` of :func:`accuracy_by_stage`, ``diffs`` of :func:`differences` (the mask
    draw matters when a CI of its accuracy difference leaves +-``margin``), ``widths`` of
    :func:`retained_by_width` (may be empty), ``published`` of :func:`.paper.published`."""
    t = by_stage.compression.min()
    ours = by_stage[by_stage.compression == t]
    figure = published[(published.figure == "figure5") & (published.quantity == "accuracy")]
    theirs = figure[figure.compression == t].set_index("strategy").value.astype(float)
    parts = []
    if {"RP", "MP"} <= set(theirs.index):
        parts.append(
            f"At t = {t:g} the paper's RP on CIFAR-10/ResNet-56 ends at mean accuracy {theirs['RP']:.3f}, "
            f"its MP at {theirs['MP']:.3f}."
        )
    gain = ours.finetuned - ours.pruned
    above = "RP" in theirs.index and (ours.pruned > theirs["RP"]).all()
    parts.append(
        "Ours ends at "
        + ", ".join(f"{r.finetuned:.3f} on {r.dataset} (dense {r.dense:.3f})" for r in ours.itertuples())
        + "; right after pruning, before fine-tuning, it has "
        + ", ".join(f"{r.pruned:.3f}" for r in ours.itertuples())
        + f": fine-tuning adds {gain.min():+.3f} to {gain.max():+.3f}"
        + (", and even without it ours stays above the paper's fine-tuned RP." if above else ".")
    )
    draw = (
        diffs[(diffs.comparison == "RP-bernoulli - RP") & (diffs.compression == t)] if len(diffs) else diffs
    )
    if draw is not None and len(draw):
        within = ((draw.accuracy_low > -margin) & (draw.accuracy_high < margin)).all()
        parts.append(
            "Drawing the mask as the authors did (a Bernoulli keep-mask per layer) changes the fine-tuned "
            f"accuracy at t = {t:g} by {draw.accuracy_diff.min():+.3f} to {draw.accuracy_diff.max():+.3f} "
            "across datasets, "
            + (
                f"every {LEVEL:.0%} CI within +-{margin:g}: the mask draw does not explain the gap."
                if within
                else f"with a {LEVEL:.0%} CI beyond +-{margin:g} on "
                + ", ".join(draw.dataset[(draw.accuracy_low <= -margin) | (draw.accuracy_high >= margin)])
                + ": the mask draw matters."
            )
        )
    if len(widths) and widths.width.nunique() > 1:
        top = widths[widths.compression == widths.compression.max()].sort_values("width")
        narrow, wide = top.iloc[0], top.iloc[-1]
        apart = narrow.retained_high < wide.retained_low or wide.retained_high < narrow.retained_low
        trend = (
            ("narrower models lose more" if narrow.retained < wide.retained else "wider models lose more")
            if apart
            else "the intervals overlap"
        )
        parts.append(
            f"Across model widths, RP at t = {narrow.compression:g} keeps {narrow.retained:.3f} of the dense "
            f"accuracy at width {narrow.width:g} ({LEVEL:.0%} CI {narrow.retained_low:.3f} to "
            f"{narrow.retained_high:.3f}) and {wide.retained:.3f} at width {wide.width:g} "
            f"({wide.retained_low:.3f} to {wide.retained_high:.3f}): {trend}."
        )
    return " ".join(parts)


def setup_contrast(ours: PruneConfig) -> dict[str, str]:
    """What the Q4 page's prose compares between the paper's setup and a run of ours: pruned layers
    of ResNet-56 (``q4_deep``) and of our model (``q4_shallow``), and the two fine-tuning schedules."""
    shape = data.load(ours.dense.dataset)
    ours_model = models.build(ours.dense.model, shape.input_shape, shape.num_classes)
    return {
        "q4_deep": f"{len(prunable_weights(models.build('resnet56', (3, 32, 32), 10)))}",
        "q4_shallow": f"{len(prunable_weights(ours_model))}",
        "q4_paper_finetune": schedule_text(load_profile("paper").grids["strategy"][0].finetune),
        "q4_our_finetune": schedule_text(ours.finetune),
    }
