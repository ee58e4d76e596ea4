"""What we found, in order, each a plain sentence built from the tables the conclusions page tests:
its numbers, its verdict, the page that shows it and whether it agrees with the paper.

:func:`findings` turns an :class:`Answers` (the claims on alpha_hat, the same claims on the excess
over the error-odds baseline, the authors' UP both ways) into :class:`Finding` rows; a finding whose
table lacks its claim (a profile without that grid) is left out. The index and the conclusions page
open with them (:func:`markdown`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from .tables import LEVEL


@dataclass(frozen=True)
class Answers:
    """The tables the findings read (one row per claim, as :func:`.claims.evaluate` returns them)."""

    claims: pd.DataFrame  # on alpha_hat
    excess: pd.DataFrame  # on alpha_hat / alpha_odds, every dataset
    authors: pd.DataFrame  # up_alpha and up_accuracy with UP-authors as UP, column compared_at
    high: float = 20
    low: float = 4
    retraining: pd.DataFrame | None = None  # low under the paper's fine-tuning, column reference
    families: pd.DataFrame | None = None  # the claims per architecture family (column family)

    def row(
        self, table: str, claim: str, compared_at: str | None = None, reference: str | None = None
    ) -> pd.Series | None:
        frame = getattr(self, table)
        if frame is None or frame.empty:
            return None
        hit = frame[frame.claim == claim]
        if compared_at is not None:
            hit = hit[hit.compared_at == compared_at]
        if reference is not None:
            hit = hit[hit.reference == reference]
        return hit.iloc[0] if len(hit) else None


@dataclass(frozen=True)
class Finding:
    """One finding: ``sentence`` (Markdown), its ``verdict``, the ``page`` that shows it, ``agrees``
    with the paper (True, False, or None while our verdict is inconclusive)."""

    key: str
    sentence: str
    verdict: str
    page: str
    agrees: bool | None


Make = Callable[[Answers], "Finding | None"]


def _ci(row: pd.Series) -> str:
    """``+0.123 (99% CI +0.045 to +0.201)``, or a note when the claim has too few usable models."""
    if not pd.notna(row.estimate) or not pd.notna(row.ci_low):
        return "not estimable (too few models in usable cells)"
    return f"{row.estimate:+.3f} ({LEVEL:.0%} CI {row.ci_low:+.3f} to {row.ci_high:+.3f})"


def _says(row: pd.Series, claimed: str, opposite: str, neither: str, unsettled: str) -> str:
    """The words of a verdict: the claim's, the opposite's, no effect's, or the unsettled ones."""
    return {"supported": claimed, "contradicted": opposite, "equivalent": neither}.get(row.verdict, unsettled)


def _agrees(row: pd.Series) -> bool | None:
    """Whether our verdict agrees with the paper's claim: supported yes, contradicted or equivalent no,
    inconclusive not settled (None)."""
    return {"supported": True, "contradicted": False, "equivalent": False}.get(row.verdict)


GAPS = (
    "widens the gaps",
    "narrows the gaps",
    "leaves the gaps as they were",
    "may or may not change the gaps",
)


def _single(key: str, table: str, claim: str, page: str, words: tuple[str, ...], text: str) -> Make:
    """The finding of one claim of ``table``: ``text`` with ``{does}`` (the verdict's ``words``: claimed,
    opposite, no effect, unsettled), ``{ci}``, ``{verdict}``, ``{high}`` and ``{low}`` filled in."""

    def make(a: Answers) -> Finding | None:
        row = a.row(table, claim)
        if row is None:
            return None
        values = dict(does=_says(row, *words), ci=_ci(row), verdict=row.verdict, high=f"{a.high:g}")
        sentence = text.format(**values, low=f"{a.low:g}") + _by_family(a, table, row)
        return Finding(key, sentence, row.verdict, page, _agrees(row))

    return make


def _by_family(a: Answers, table: str, pooled: pd.Series) -> str:
    """`` By architecture family: MLP **supported** (...); ...`` where two or more families test the
    claim and one of them reaches another verdict than the pooled test; else nothing."""
    if table != "claims" or a.families is None or a.families.empty:
        return ""
    rows = a.families[a.families.claim == pooled.claim]
    if len(rows) < 2 or set(rows.verdict) == {pooled.verdict}:
        return ""
    each = "; ".join(f"{r.family} **{r.verdict}**, {_ci(r)}" for _, r in rows.iterrows())
    return f" By architecture family: {each}."


_high = _single(
    "high",
    "claims",
    "high",
    "conclusions",
    GAPS,
    "At high compression (t >= {high}) pruning {does} between per-class recalls: mean alpha_hat - 1 is "
    "{ci}, **{verdict}**.",
)
_excess = _single(
    "excess",
    "excess",
    "high",
    "conclusions",
    ("goes beyond", "stays below", "matches", "is not told apart from"),
    "The intensification at t >= {high} {does} what the accuracy loss alone implies: alpha_hat over its "
    "error-odds baseline (every class's error rate grown by the same factor), minus 1, is {ci}, "
    "**{verdict}**.",
)
LOW_GAPS = (GAPS[1], GAPS[0], *GAPS[2:])  # the words of the claim low: it claims narrowing
_low = _single(
    "low",
    "claims",
    "low",
    "conclusions",
    LOW_GAPS,
    "At low compression (t <= {low}) pruning {does} (the paper reports de-intensification): mean "
    "alpha_hat - 1 is {ci}, **{verdict}**.",
)
_harder = _single(
    "harder",
    "claims",
    "harder",
    "q2_task_complexity",
    ("intensify more", "intensify less", "intensify alike", "may or may not intensify more"),
    "Harder tasks {does}: alpha_hat of the hardest minus the easiest usable task at t >= {high} is {ci}, "
    "**{verdict}**.",
)


def _retraining(a: Answers) -> Finding | None:
    dense, control = (a.row("retraining", "low", reference=r) for r in ("dense", "control"))
    if dense is None or control is None:
        return None
    text = (
        f"With the paper's fine-tuning on converged dense models, pruning at t <= {a.low:g} "
        f"{_says(dense, *LOW_GAPS)} against the dense model (mean alpha_hat - 1 is {_ci(dense)}, "
        f"**{dense.verdict}**) {'and' if dense.verdict == control.verdict else 'but'} "
        f"{_says(control, *LOW_GAPS)} against the unpruned control fine-tuned the same way "
        f"({_ci(control)}, **{control.verdict}**), which removes what the retraining alone does."
    )
    return Finding("retraining", text, control.verdict, "retraining", _agrees(control))


def _up(a: Answers) -> Finding | None:
    accuracy, alpha = a.row("claims", "up_accuracy"), a.row("claims", "up_alpha")
    if accuracy is None or alpha is None:
        return None
    text = (
        f"Our UP's accuracy minus MP's at t >= {a.high:g} is {_ci(accuracy)}, **{accuracy.verdict}** (the "
        f"paper: UP is more accurate); its alpha_hat minus MP's is {_ci(alpha)}, **{alpha.verdict}** (the "
        f"paper: UP intensifies less)."
    )
    asked, reached = a.row("authors", "up_accuracy", "asked t"), a.row("authors", "up_accuracy", "realised t")
    if asked is not None and reached is not None:
        text += (
            f" The authors' UP keeps more weights than asked: its accuracy minus MP's is {_ci(asked)} "
            f"(**{asked.verdict}**) at the same asked t, and {_ci(reached)} (**{reached.verdict}**) at the "
            f"compression it really reached."
        )
    return Finding("up", text, accuracy.verdict, "q4_undecayed", _agrees(accuracy))


def _rp(a: Answers) -> Finding | None:
    accuracy, alpha = a.row("claims", "rp_accuracy"), a.row("claims", "rp_alpha")
    if accuracy is None or alpha is None:
        return None
    least = _says(
        alpha,
        "intensifies least",
        "intensifies more than the others",
        "intensifies like the others",
        "may or may not intensify least",
    )
    text = (
        f"Random pruning's accuracy minus MP's at t >= {a.high:g} is {_ci(accuracy)}, "
        f"**{accuracy.verdict}**; where its accuracy is usable it {least}: alpha_hat of RP minus the "
        f"others is {_ci(alpha)}, **{alpha.verdict}**."
    )
    return Finding("rp", text, alpha.verdict, "q4_undecayed", _agrees(alpha))


def _smaller(a: Answers) -> Finding | None:
    prunable, every = a.row("claims", "smaller_prunable"), a.row("claims", "smaller_all")
    if prunable is None or every is None:
        return None
    basis = ": the way t is counted carries the difference" if every.verdict != prunable.verdict else ""
    text = (
        f"Smallest minus largest model's alpha_hat at t >= {a.high:g} is {_ci(every)} (**{every.verdict}**) "
        f"when t counts all parameters, as the paper counted, and {_ci(prunable)} "
        f"(**{prunable.verdict}**) at the same sparsity of the prunable weights{basis}."
    )
    return Finding("smaller", text, prunable.verdict, "q3_model_size", _agrees(prunable))


FINDINGS: tuple[Make, ...] = (
    _high,
    _excess,
    _low,
    _retraining,
    _up,
    _rp,
    _harder,
    _smaller,
)  # in reading order


def findings(answers: Answers) -> list[Finding]:
    """The findings in order, those whose claims the tables hold."""
    return [f for f in (make(answers) for make in FINDINGS) if f is not None]


def markdown(found: list[Finding], link: Callable[[str], str] = lambda page: f"{page}.md") -> str:
    """The findings as a numbered Markdown list, each marked as agreeing with the paper or not, with a
    link to the page that shows it (``link``: page name -> relative path)."""
    mark = {True: "agrees with the paper", False: "differs from the paper", None: "not settled here"}
    return "\n".join(
        f"{i}. {f.sentence} *({mark[f.agrees]}; [details]({link(f.page)}))*" for i, f in enumerate(found, 1)
    )
