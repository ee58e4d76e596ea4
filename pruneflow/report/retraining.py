"""Is it pruning, or retraining? (issue 19) The same dense models pruned and fine-tuned two ways (the
paper's long fine-tuning, grid ``retraining``, and the profile's short one, grid ``retraining_short``),
each beside its unpruned t = 1 control fine-tuned the same way.

alpha_hat has two references here: the dense model (Bbar_1 of the dense model, as on every other
page) and the control (Bbar of the unpruned model fine-tuned like the pruned one,
:func:`.paper.against_control`). If retraining alone moved every class's Bbar by a factor k and
pruning changed nothing, alpha_hat against the dense model would be k and against the control 1.

- :func:`per_run` - per run of one fine-tuning: alpha_hat and accuracy against each reference;
- :func:`summary` - per (dataset, fine-tuning, reference, strategy, t): mean alpha_hat, 99% CI, mark;
- :func:`control_change` - the control against its dense model: alpha_hat and accuracy change;
- :func:`pruned_minus_control` - paired by dense model: pruned minus control, alpha_hat and accuracy;
- :func:`claims_table` - the claims ``low`` and ``high`` per fine-tuning and reference;
- :func:`meaning` - the sentence of what the verdicts mean for the paper's claim.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..experiment.config import CONTROL
from ..stats import diff_ci, mark, mean_ci
from . import claims, tables
from .context import PageContext
from .methods import schedule_text
from .paper import against_control

LONG, SHORT = "paper's", "short"  # the two fine-tunings, as the tables name them
GRIDS = {"retraining": LONG, "retraining_short": SHORT}  # grid -> its fine-tuning
REFERENCES = ("dense", "control")
REFERENCE_WORDS = {"dense": "the dense model", "control": "the control"}
KEYS = ["dataset", "fine_tuning", "reference", "strategy"]


def per_run(with_control: pd.DataFrame, fine_tuning: str) -> pd.DataFrame:
    """Per run of ``with_control`` (:func:`.tables.intensification` of one fine-tuning's runs and
    controls): alpha_hat and accuracy against the dense model (``reference`` 'dense', the controls
    included) and, for pruned runs, against the control of their dense model ('control'), with the
    columns of :func:`.tables.alphas`, ``classes`` and ``fine_tuning``."""
    parts = []
    for _, table in with_control.groupby("dataset", sort=True):
        classes = table["class"].nunique()
        parts.append(tables.alphas(table).assign(reference="dense", classes=classes))
        if (table.strategy == CONTROL).any():
            parts.append(against_control(table).assign(classes=classes))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True).assign(fine_tuning=fine_tuning)


def read(page: PageContext) -> pd.DataFrame:
    """:func:`per_run` of each fine-tuning's grid (:data:`GRIDS`) the profile has, stacked."""
    parts = [
        per_run(page.evidence(g).with_control, tuning)
        for g, tuning in GRIDS.items()
        if g in page.profile.grids
    ]
    return pd.concat(parts, ignore_index=True)


def schedules(page: PageContext) -> str:
    """The two fine-tunings in words, e.g. ``paper's: 25 epochs, lr 0.1 x (...); short: 3 epochs ...``."""
    return "; ".join(
        f"{tuning}: {', '.join(dict.fromkeys(schedule_text(r.finetune) for r in page.profile.grids[g]))}"
        for g, tuning in GRIDS.items()
        if g in page.profile.grids
    )


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, fine-tuning, reference, strategy, t): :func:`.tables.summary` (mean alpha_hat,
    its 99% CI and mark, mean accuracy)."""
    return tables.summary(runs, KEYS)


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary` as shown: per (dataset, strategy, t), mean alpha_hat and its mark against each
    reference under each fine-tuning, and the mean accuracy under each fine-tuning."""
    table = table.assign(value=table.alpha_hat.map("{:.3f}".format) + " " + table["mark"])
    keys = ["dataset", "strategy", "compression"]
    alpha = table.pivot_table(
        index=keys, columns=["fine_tuning", "reference"], values="value", aggfunc="first"
    )
    alpha.columns = [f"alpha_hat {tuning} vs {reference}" for tuning, reference in alpha.columns]
    dense = table[table.reference == "dense"]
    accuracy = dense.pivot_table(index=keys, columns="fine_tuning", values="accuracy")
    accuracy.columns = [f"accuracy {tuning}" for tuning in accuracy.columns]
    return alpha.join(accuracy).reset_index()


def _controls(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[(runs.reference == "dense") & (runs.strategy == CONTROL)]


def control_change(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, fine-tuning): the control against its dense model: mean alpha_hat with its 99% CI
    and mark (against 1), mean dense and control accuracy, and the accuracy change A_ctl - A_1 with
    its 99% paired CI and mark (against 0)."""
    rows = []
    for (dataset, tuning), group in _controls(runs).groupby(["dataset", "fine_tuning"], sort=True):
        mean, low, high = mean_ci(group.alpha_hat, tables.LEVEL)
        change, c_low, c_high = diff_ci(group.accuracy, group.dense_accuracy, paired=True, level=tables.LEVEL)
        rows.append(
            dict(
                dataset=dataset,
                fine_tuning=tuning,
                models=len(group),
                alpha_hat=mean,
                ci_low=low,
                ci_high=high,
                mark=mark(low, high),
                dense_accuracy=group.dense_accuracy.mean(),
                accuracy=group.accuracy.mean(),
                accuracy_change=change,
                change_low=c_low,
                change_high=c_high,
                change_mark=mark(c_low, c_high, reference=0.0),
            )
        )
    return pd.DataFrame(rows)


def control_sentence(change: pd.DataFrame) -> str:
    """The control against its dense model under each fine-tuning (:func:`control_change`), in words."""
    if change.empty:
        return "This profile ran no control (grid key `control: true`)."
    level = f"{tables.LEVEL:.0%}"
    return (
        "Fine-tuned with nothing pruned, the control moves "
        + "; ".join(
            f"{r.dataset} under the {r.fine_tuning} fine-tuning to alpha_hat {r.alpha_hat:.3f} ({level} CI "
            f"{r.ci_low:.3f} to {r.ci_high:.3f}, `{r.mark}`) and its accuracy from {r.dense_accuracy:.3f} "
            f"to {r.accuracy:.3f} ({r.accuracy_change:+.3f}, {level} CI {r.change_low:+.3f} to "
            f"{r.change_high:+.3f})"
            for r in change.itertuples()
        )
        + f", over {change.models.min()} models each."
    )


def pruned_minus_control(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, fine-tuning, strategy, t): pruned minus control of the same dense model, both
    against the dense model, for alpha_hat and accuracy: mean paired difference with its 99% CI and
    mark (against 0)."""
    dense = runs[runs.reference == "dense"]
    control = _controls(runs)[["dataset", "fine_tuning", "dense_id", "alpha_hat", "accuracy"]]
    pruned = dense[dense.strategy != CONTROL].merge(
        control, on=["dataset", "fine_tuning", "dense_id"], suffixes=("", "_control"), validate="many_to_one"
    )
    rows = []
    for key, group in pruned.groupby(["dataset", "fine_tuning", "strategy", "compression"], sort=True):
        row = dict(zip(["dataset", "fine_tuning", "strategy", "compression"], key, strict=True))
        rows.append(row | tables.differences(group, group, True, suffix="_control") | {"models": len(group)})
    return pd.DataFrame(rows)


def claims_table(
    runs: pd.DataFrame, keys: Sequence[str] = ("low", "high"), per_dataset: bool = False, **options
) -> pd.DataFrame:
    """The claims ``keys`` (:func:`.claims.evaluate`, Holm-adjusted together within each table) per
    fine-tuning and reference (and per dataset if ``per_dataset``), on the pruned runs (the controls
    are no claim's cells); ``options`` go to :func:`.claims.evaluate`."""
    pruned = runs[runs.strategy != CONTROL]
    by = ["fine_tuning", "reference", *(["dataset"] if per_dataset else [])]
    parts = [
        claims.evaluate(group, claims=list(keys), **options).assign(**dict(zip(by, key, strict=True)))
        for key, group in pruned.groupby(by, sort=True)
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def headline(page: PageContext) -> pd.DataFrame | None:
    """The claim ``low`` under the paper's fine-tuning against each reference (:func:`claims_table`),
    for the findings; None when the profile lacks the ``retraining`` grid."""
    if "retraining" not in page.profile.grids:
        return None
    runs = per_run(page.evidence("retraining").with_control, LONG)
    return claims_table(runs, ["low"])


def _verdict(table: pd.DataFrame, claim: str, tuning: str, reference: str) -> pd.Series | None:
    hit = table[(table.claim == claim) & (table.fine_tuning == tuning) & (table.reference == reference)]
    return hit.iloc[0] if len(hit) else None


def verdict_text(row: pd.Series | None) -> str:
    """``**supported** (alpha_hat - 1 = -0.123, 99% CI -0.2 to -0.05)``, or why there is none."""
    if row is None:
        return "not tested (no runs)"
    if not (pd.notna(row.estimate) and pd.notna(row.ci_low)):
        return f"**{row.verdict}** (not estimable: too few models in usable cells)"
    return (
        f"**{row.verdict}** ({row.scale} = {row.estimate:+.3f}, {tables.LEVEL:.0%} CI {row.ci_low:+.3f} to "
        f"{row.ci_high:+.3f})"
    )


def verdicts(table: pd.DataFrame, claim: str) -> str:
    """The claim's statement and its verdict under each fine-tuning against each reference, in words."""
    rows = table[table.claim == claim]
    if rows.empty:
        return f"The claim `{claim}` was not tested on this profile."
    parts = [
        f"with the {tuning} fine-tuning against {REFERENCE_WORDS[reference]} "
        f"{verdict_text(_verdict(table, claim, tuning, reference))}"
        for tuning in (LONG, SHORT)
        for reference in REFERENCES
        if _verdict(table, claim, tuning, reference) is not None
    ]
    return f"*{rows.statement.iloc[0][0].upper()}{rows.statement.iloc[0][1:]}*: " + "; ".join(parts) + "."


def meaning(table: pd.DataFrame, change: pd.DataFrame, per_dataset: pd.DataFrame | None = None) -> str:
    """What the ``low`` verdicts under the paper's fine-tuning (``table``: :func:`claims_table`) and the
    control's own alpha_hat (``change``: :func:`control_change`) mean for the paper's claim that pruning
    de-intensifies at low ratios; with ``per_dataset`` (:func:`claims_table` per dataset), datasets whose
    verdict against the control differs from the pooled one are named."""
    dense, control = (_verdict(table, "low", LONG, r) for r in REFERENCES)
    if dense is None or control is None:
        return "This profile has no run of the paper's fine-tuning with a control to judge the claim by."
    return _meaning(dense, control, change) + _heterogeneity(control, per_dataset)


def _heterogeneity(pooled: pd.Series, per_dataset: pd.DataFrame | None) -> str:
    if per_dataset is None or per_dataset.empty:
        return ""
    rows = per_dataset[
        (per_dataset.claim == "low")
        & (per_dataset.fine_tuning == LONG)
        & (per_dataset.reference == "control")
    ]
    if (rows.verdict == pooled.verdict).all():
        return ""
    each = "; ".join(f"{r.dataset} {verdict_text(pd.Series(r._asdict()))}" for r in rows.itertuples())
    return f" Against the control the datasets disagree, so the pooled verdict hides them: {each}."


def _meaning(dense: pd.Series, control: pd.Series, change: pd.DataFrame) -> str:
    long = change[change.fine_tuning == LONG]
    own = "; ".join(
        f"{r.dataset} {r.alpha_hat:.3f} ({tables.LEVEL:.0%} CI {r.ci_low:.3f} to {r.ci_high:.3f})"
        for r in long.itertuples()
    )
    head = (
        f"With the paper's fine-tuning, the unpruned control alone moves alpha_hat against its dense model "
        f"to {own}. "
    )
    if dense.verdict == "supported" and control.verdict != "supported":
        return head + (
            "Pruned models de-intensify against the dense model, but not against the control retrained the "
            "same way: the de-intensification the paper reports at low ratios is the retraining's, not "
            "pruning's."
        )
    if dense.verdict == "supported":
        return head + (
            "Pruned models de-intensify against the dense model and also against the control retrained the "
            "same way: pruning itself narrows the recall gaps at low ratios, beyond what the retraining does."
        )
    if control.verdict == "supported":
        return head + (
            "Against the dense model the pruned models do not de-intensify, yet against the control they do: "
            "pruning narrows the gaps only relative to a model retrained without pruning."
        )
    return head + (
        f"The pruned models de-intensify neither against the dense model ({dense.verdict}) nor against the "
        f"control ({control.verdict}): on these converged models the paper's de-intensification at low "
        "ratios does not appear."
    )
