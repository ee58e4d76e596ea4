"""The paper's UP as the authors' code ran it (issue 18): the compression it really reached, and
UP-authors against MP at the same asked t (the paper's comparison) and against MP and UP at the
compression it reached (matched runs ``MP@UP-authors``, ``UP@UP-authors``), as paired differences.

- :func:`realised` - per dataset, strategy, basis and asked t: the realised t on both bases;
- :func:`differences` - paired differences UP-authors - other of alpha_hat and accuracy with 99% CIs,
  at the same asked t and at the matched realised compression;
- :func:`advantage_sentence` - whether UP-authors' advantage (higher accuracy, lower alpha_hat) holds.

:data:`METHODS` is the methods page's paragraph on the authors' rule and our reproductions.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..experiment.config import CONTROL
from . import claims
from .tables import LEVEL, compare

AUTHORS = "UP-authors"
# (a, b, at): a - b, at the same asked t, or at the realised compression of a (b matched to a's count)
COMPARISONS = (
    (AUTHORS, "MP", "asked t"),
    (AUTHORS, f"MP@{AUTHORS}", "realised t"),
    (AUTHORS, f"UP@{AUTHORS}", "realised t"),
)

METHODS = (
    "The authors' UP is the class `MixedMagGrad` of their ShrinkBench fork "
    "(yuxwind/shrinkbench_generate_model, `strategies/magnitude.py`): it scores each prunable weight "
    "by the signed s = -w g + 5e-4 w^2, g the loss gradient of one training batch in train mode, "
    "and prunes with ShrinkBench's `strategies/utils.py`: `fraction_threshold` sets "
    "thr = np.quantile(s, 1 - keep fraction) over the flattened scores of all prunable weights, and "
    "`threshold_mask` prunes a weight iff -thr < s < thr. With non-negative scores (MP's |w|, GP's "
    "|w g|) this is an exact top-k; with signed scores it also keeps the weights below -thr, so it "
    "prunes fewer weights than asked, and none once thr <= 0. Since -thr < s < thr is |s| < thr, the "
    "weights it keeps are those of highest |s|, our UP's ranking: their UP is our UP at the lower "
    "compression their threshold reaches. Our `UP-authors` runs this rule "
    "exactly (eps = our training weight decay, 5e-4 in every profile, the constant their score "
    "hard-codes; the keep fraction is our rounded kept count over the prunable weights, theirs was "
    "unrounded) and records the compression it reached. MP and GP are "
    "unaffected by the rule; their RP, a Bernoulli keep-mask per layer, is our `RP-bernoulli`; their "
    "UP is our `UP-authors`. Our `UP` (|eps w^2 - w g| ranked to the exact count) and `UP-signed` "
    "(the signed score ranked to the exact count) are our own variants, which the authors did not run. "
    "`MP@UP-authors` and `UP@UP-authors` rank by MP's and our UP's scores but keep exactly as many "
    "weights as UP-authors kept on the same dense model at the same asked t, so that they compare with "
    "it at the compression it really reached (`UP@UP-authors` keeps UP-authors' very mask, up to ties "
    "in |s|, so its difference from UP-authors is the fine-tuning noise alone)."
)


def realised(frame: pd.DataFrame, by: Sequence[str] = ("dataset", "strategy", "basis")) -> pd.DataFrame:
    """Per group of ``by`` and asked t (``compression``), from result rows (``results.load``): models,
    and the mean, min and max realised t on the prunable basis (``t_prunable_*``) and on the
    all-parameter basis (``t_all_*``) of the successful pruned runs."""
    runs = _runs(frame)
    table = runs.groupby([*by, "compression"], sort=True).agg(
        models=("run_id", "size"),
        **{
            f"t_{basis}_{stat}": (f"compression_{basis}", stat)
            for basis in ("prunable", "all")
            for stat in ("mean", "min", "max")
        },
    )
    return table.reset_index()


def differences(
    runs: pd.DataFrame, frame: pd.DataFrame, comparisons: Sequence[tuple[str, str, str]] = COMPARISONS
) -> pd.DataFrame:
    """Paired by dense model, per comparison (a, b, at) of ``comparisons`` present in ``runs``
    (:func:`.tables.alphas` rows), dataset, basis and asked t: the difference a - b of alpha_hat and
    of accuracy with 99% CIs and marks against 0 (:func:`.tables.compare`), and the mean realised t
    on the asked basis of a's and b's runs (``t_a``, ``t_b``, from the result rows ``frame``).
    Columns: comparison ('a - b'), compared_at ('asked t' or 'realised t'), dataset, basis, compression,
    t_a, t_b, alpha_hat_diff/_low/_high/_mark, accuracy_diff/_low/_high/_mark, models."""
    reached = _runs(frame).set_index("run_id").realised
    runs = runs.assign(realised=runs.run_id.map(reached))
    mean_t = runs.groupby(["strategy", "dataset", "basis", "compression"]).realised.mean()
    parts = []
    for a, b, at in comparisons:
        if not {a, b} <= set(runs.strategy):
            continue
        cells = compare(runs, "strategy", a, b, by=("dataset", "basis"))
        if cells.empty:
            continue
        keys = list(zip(cells.dataset, cells.basis, cells.compression, strict=True))
        parts.append(
            cells.assign(
                comparison=f"{a} - {b}",
                compared_at=at,
                t_a=[mean_t.get((a, *k)) for k in keys],
                t_b=[mean_t.get((b, *k)) for k in keys],
            )
        )
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    first = ["comparison", "compared_at", "dataset", "basis", "compression", "t_a", "t_b"]
    return table[[*first, *table.columns.drop(first)]]


def advantage_sentence(diffs: pd.DataFrame) -> str:
    """One sentence per comparison of ``diffs`` (:func:`differences`): in how many cells the 99%
    interval puts a's accuracy above b's and a's alpha_hat below b's (the paper's UP advantage), and
    in how many the reverse."""
    parts = []
    for (comparison, at), d in diffs.groupby(["comparison", "compared_at"], sort=False):
        n = {(m, s): int((d[f"{m}_mark"] == s).sum()) for m in ("accuracy", "alpha_hat") for s in "<>"}
        parts.append(
            f"{comparison} at the {'same asked t' if at == 'asked t' else 'compression it reached'}: "
            f"accuracy higher in {n['accuracy', '>']} and lower in {n['accuracy', '<']} of {len(d)} cells, "
            f"alpha_hat lower in {n['alpha_hat', '<']} and higher in {n['alpha_hat', '>']}"
        )
    return "Where the 99% interval excludes 0: " + "; ".join(parts) + "." if parts else ""


def _runs(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per successful pruned run of result rows, with ``realised``: its t on the asked basis."""
    rows = frame[(frame.status == "ok") & frame.stage.isin(["pruned", "finetuned"])]
    runs = rows.drop_duplicates("run_id")
    runs = runs[runs.strategy.notna() & (runs.strategy != CONTROL)]
    return runs.assign(
        realised=runs.compression_prunable.where(runs.basis == "prunable", runs.compression_all)
    )


def claims_both_ways(runs: pd.DataFrame, **options: object) -> pd.DataFrame:
    """The claims ``up_alpha`` and ``up_accuracy`` (:mod:`.claims`) with the authors' UP as UP: against
    MP at the same asked t, and against ``MP@UP-authors`` at the compression it reached (per-run rows
    of :func:`.claims.per_run`); one row per claim and way (``compared_at``)."""
    ways = {"asked t": "MP", "realised t": f"MP@{AUTHORS}"}
    parts = []
    for at, other in ways.items():
        pair = runs[runs.strategy.isin([AUTHORS, other])].replace({"strategy": {AUTHORS: "UP", other: "MP"}})
        if pair.strategy.nunique() == 2:
            table = claims.evaluate(pair, claims=["up_alpha", "up_accuracy"], resamples=0, **options)
            parts.append(table.assign(compared_at=at))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def both_ways_sentence(table: pd.DataFrame) -> str:
    """The claims of :func:`claims_both_ways` in words: at the same asked t, then at the compression the
    authors' UP really reached."""
    if table.empty:
        return "This profile ran UP-authors beside neither MP nor MP matched to its count."
    claimed = {"up_alpha": "intensifies less (alpha_hat of", "up_accuracy": "is more accurate (accuracy of"}
    parts = []
    for at, part in table.groupby("compared_at", sort=False):
        other = "MP" if at == "asked t" else f"MP@{AUTHORS}"
        where = "At the same asked t" if at == "asked t" else "At the compression it really reached"
        said = [
            f"that {AUTHORS} {claimed[r.claim]} {AUTHORS} - {other}, t >= 20) is **{r.verdict}**, "
            f"{r.estimate:+.3f} ({LEVEL:.0%} CI {r.ci_low:+.3f} to {r.ci_high:+.3f})"
            for r in part.itertuples()
        ]
        parts.append(f"{where}, the claim " + "; the claim ".join(said) + ".")
    return " ".join(parts)
