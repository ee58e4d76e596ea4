"""The sections every question page shares, each one call from its notebook: a :class:`Section` is
Markdown (computed sentences and the section's standing explanation) followed by charts and tables.

- :func:`noise_and_baselines` - is the class difference beyond test-set noise, and beyond what the
  accuracy loss alone implies (the null-baseline chart);
- :func:`excess` - alpha_hat against its null baselines, with the excess and its interval;
- :func:`usable_cells` - per cell alpha_hat - 1 against zero, and which cells the claims leave out;
- :func:`control` - the pruned runs against the t = 1 control;
- :func:`failed` - the runs that failed, with their reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from ..experiment.config import CONTROL
from ..stats import mark, mean_ci
from . import authors, charts, claims, noise, paper, tables, variants
from .context import PageContext
from .evidence import Evidence
from .pages import PAGES


@dataclass
class Section:
    """Markdown, then the display objects, in that order."""

    markdown: str = ""
    objects: list[object] = field(default_factory=list)

    def _ipython_display_(self) -> None:
        from IPython.display import Markdown, display

        if self.markdown:
            display(Markdown(self.markdown))
        for item in self.objects:
            display(item)


# The standing explanations the sections print (scripts/page_values.py leaves their digits out).
BASELINES = (
    "If every class lost the same recall, $\\hat\\alpha_t$ would be $A_1/A_t$ (additive baseline, "
    "dashed); if every class's error rate grew by the same factor, it would be the ratio of error odds "
    "$\\frac{(1-A_t)/A_t}{(1-A_1)/A_1}$ (proportional baseline, dotted). Both exceed 1 by accuracy loss "
    "alone. Points above both curves intensify beyond what the accuracy loss implies; along the x-axis, "
    "$A_t/A_1$, groups are compared at matched accuracy."
)
EXCESS = (
    "Mean $\\hat\\alpha_t$, retained accuracy, the two null baselines, and the excess "
    "$\\hat\\alpha_t / \\alpha_\\text{odds}$ and $\\hat\\alpha_t / \\alpha_\\text{additive}$ with 99% "
    "intervals; marks compare them with 1 (`>`: intensifies beyond what the accuracy loss implies)."
)
BY_STAGE = "RP's mean accuracy by stage (dense model, right after pruning, after fine-tuning):"
BY_WIDTH = (
    "RP's accuracy on the width ladder: mean accuracy and retained accuracy $A_t / A_1$ with its 99% "
    "interval, per width and ratio:"
)
CELLS = (
    "Each row is one cell: mean $\\hat\\alpha_t - 1$ over models (point) with its confidence interval "
    "(bar); colour tells whether the cell's accuracy is usable for the intensification claims (rule and "
    "pooled tests on [Conclusions](conclusions))."
)


def noise_and_baselines(
    evidence: Evidence, runs: pd.DataFrame, group: str, facet: str | None = None, draws: int = 200
) -> Section:
    """Whether class differences exceed test-set noise (:func:`.noise.noise_check`), the band of
    alpha_hat under noise alone (:func:`.noise.noise_spread`), then alpha_hat against retained accuracy
    with the two null curves (:func:`.charts.baselines`)."""
    spread = noise.noise_spread(evidence.frame, runs, draws=draws)
    sentences = (noise.flag_sentence(noise.noise_check(evidence.frame)), noise.spread_sentence(spread))
    return Section(f"{' '.join(sentences)}\n\n{BASELINES}", [charts.baselines(runs, group, facet=facet)])


def excess(page: PageContext, runs: pd.DataFrame, by: Sequence[str]) -> Section:
    """alpha_hat against its null baselines per group and t (:func:`.tables.excess`)."""
    return Section(EXCESS, [page.show(tables.excess(runs, list(by)))])


def usable_cells(
    page: PageContext,
    evidence: Evidence,
    by: Sequence[str],
    strategies: Sequence[str] | None = None,
    relabel=None,
) -> Section:
    """Per cell (``by`` and t): mean alpha_hat - 1 with its interval, coloured by usability
    (:class:`.claims.Usable`), and the sentence naming the cells the claims leave out; ``relabel``
    maps the table (e.g. dataset or size labels) before the cells are named."""
    runs = claims.per_run(evidence.frame, page.stage)
    if strategies is not None:
        runs = runs[runs.strategy.isin(strategies)]
    cells = claims.cells(runs, level=tables.LEVEL)
    cells = claims.labelled(relabel(cells) if relabel else cells, list(by))
    text = f"{CELLS} {claims.unusable_sentence(cells)}"
    return Section(text, [charts.forest(cells, "cell", color="usable", x_title="alpha_hat - 1")])


def control(
    page: PageContext, evidence: Evidence, summary: pd.DataFrame, strategies: Sequence[str]
) -> Section:
    """The control against its dense model, and how many (strategy, t) cells of ``summary`` change
    their mark when alpha_hat is measured against the control instead."""
    if not evidence.has_control:
        return Section("This profile ran no control (grid key `control: true`).")
    table = evidence.with_control
    ctl = paper.control_vs_dense(table)
    c_mean, c_low, c_high = mean_ci(ctl.alpha_hat, tables.LEVEL)
    vs_control = tables.summary(
        paper.against_control(table[table.strategy.isin([*strategies, CONTROL])]), ["strategy"]
    )
    both = summary.merge(vs_control, on=["strategy", "compression"], suffixes=("", "_vs_control"))
    changed = int((both["mark"] != both["mark_vs_control"]).sum())
    text = (
        f"Control against dense: mean alpha_hat = {c_mean:.3f}, 99% CI [{c_low:.3f}, {c_high:.3f}] "
        f"(`{mark(c_low, c_high)}`, {len(ctl)} models). Against the control instead of the dense model, "
        f"{changed} of {len(both)} cells change their mark."
    )
    columns = ["strategy", "compression", "alpha_hat", "mark", "alpha_hat_vs_control", "mark_vs_control"]
    return Section(text, [page.show(both[columns])])


def failed(page: PageContext, evidence: Evidence) -> Section:
    """The failed runs of ``evidence`` with their status and reason, or "None."."""
    if not len(evidence.failed):
        return Section("None.")
    return Section("", [page.show(evidence.failed)])


def authors_variants(
    page: PageContext, evidence: Evidence, strategies: Sequence[str], authors: Sequence[str]
):
    """The authors' variants (``authors``, run in the grid ``variants``) against ours, paired by dense
    model (:func:`.variants.differences`), glued as ``q4_variants``, with the table."""
    pool = evidence.runs
    if "variants" in page.profile.grids:
        pool = pd.concat([pool, page.evidence("variants").runs]).drop_duplicates("run_id")
    diffs = variants.differences(pool[pool.strategy.isin([*strategies, *authors])])
    if not len(diffs):
        return Section("This profile ran neither variant beside ours."), diffs
    first = ["comparison", "dataset", "compression", "alpha_hat_diff", "alpha_hat_mark"]
    first += ["accuracy_diff", "accuracy_mark", "models"]
    table = page.show(diffs[[*first, *diffs.columns.drop(first)]], name="variants")
    return Section(variants.differences_sentence(diffs), [table]), diffs


def random_accuracy(page: PageContext, evidence: Evidence, diffs: pd.DataFrame) -> Section:
    """What our runs say about RP's accuracy against the paper's (:func:`.variants.rp_sentences`):
    RP's accuracy by stage, and on the width ladder (grid ``random_width``) if the profile has one;
    glues the setups' numbers the prose compares (pruned layers, fine-tuning schedules)."""
    by_stage = variants.accuracy_by_stage(evidence.frame, "RP")
    widths = pd.DataFrame()
    if "random_width" in page.profile.grids:
        ladder = page.evidence("random_width").runs
        widths = variants.retained_by_width(ladder[ladder.strategy == "RP"])
    ours = page.profile.grids[page.own_grid()[0]][0]
    for key, text in variants.setup_contrast(ours).items():
        page.glue(key, text)
    return Section(
        variants.rp_sentences(by_stage, diffs, widths, paper.published()),
        [
            _markdown(BY_STAGE),
            page.show(by_stage, name="random-by-stage"),
            _markdown(BY_WIDTH),
            page.show(widths, name="random-by-width")
            if len(widths)
            else _markdown("This profile ran RP on no width ladder."),
        ],
    )


def _markdown(text: str):
    from IPython.display import Markdown

    return Markdown(text)


def glue_answers(
    page: PageContext, table: pd.DataFrame, seeds: int, margin: float, accuracy_margin: float, usable
) -> None:
    """Glue the conclusions page's sentences: one answer per claim (``c_{claim}``) and the settings
    its method section names."""
    level = tables.LEVEL
    for row in table.itertuples(index=False):
        page.glue(f"c_{row.claim}", claims.paragraph(pd.Series(row._asdict()), level, seeds))
    page.glue("c_level", f"{level:.0%}")
    page.glue("c_margin", f"{margin:g}")
    page.glue("c_accuracy_margin", f"{accuracy_margin:g}")
    page.glue("c_usable", usable.describe())
    page.glue("c_claims", f"{len(table)}")
    page.glue("c_alpha", f"{1 - level:.2g}")
    page.glue("c_equivalence_level", f"{1 - 2 * (1 - level):.0%}")


def claims_against_control(page: PageContext, table: pd.DataFrame, metric: str, options: dict) -> Section:
    """The control's alpha_hat per dataset (``c_control_alpha``) and the claims with a reference
    (:data:`.claims.RELATIVE`) evaluated against the control (``c_control_change``), side by side."""
    strategy = page.evidence("strategy")
    control_runs = paper.control_runs(strategy.with_control)
    if not len(control_runs):
        page.glue("c_control_alpha", "This profile ran no control (grid key `control: true`).")
        page.glue("c_control_change", "")
        return Section()
    level = tables.LEVEL
    by_dataset = paper.control_by_dataset(strategy.with_control)
    page.glue(
        "c_control_alpha",
        "Against its dense model, the control's mean alpha_hat (a value above 1 means the extra "
        "training alone widens the recall differences, below 1 that it narrows them) is "
        + "; ".join(
            f"{r.dataset} {r.alpha_hat:.3f} ({level:.0%} CI {r.ci_low:.3f} to {r.ci_high:.3f}, `{r.mark}`)"
            for r in by_dataset.itertuples()
        )
        + f", over {by_dataset.models.min()} models each.",
    )
    vs_control = claims.evaluate(control_runs, metric=metric, claims=claims.RELATIVE, **options)
    both = table.merge(vs_control, on="claim", suffixes=("", "_vs_control"))
    changed = both[both.verdict != both.verdict_vs_control]
    page.glue(
        "c_control_change",
        "Against the control, "
        + (
            "every one of these verdicts stays as it is against the dense model."
            if changed.empty
            else "; ".join(
                f"the claim *{r.statement}* turns from **{r.verdict}** to **{r.verdict_vs_control}** "
                f"({r.estimate_vs_control:+.3f}, {level:.0%} CI {r.ci_low_vs_control:+.3f} to "
                f"{r.ci_high_vs_control:+.3f})"
                for r in changed.itertuples()
            )
            + f", the other {len(both) - len(changed)} verdicts stay as they are."
        ),
    )
    columns = ["verdict", "estimate", "ci_low", "ci_high"]
    side = pd.concat(
        {
            "": both[["claim"]],
            "against the dense model": both[columns],
            "against the control": both[[f"{c}_vs_control" for c in columns]].set_axis(columns, axis=1),
        },
        axis=1,
    )
    return Section("", [page.show(side, digits=4)])


def beyond_baselines(
    page: PageContext, evidence: Evidence, runs: pd.DataFrame, excess_all: pd.DataFrame, options: dict
) -> Section:
    """The claims on the excess over the error-odds baseline (``excess_all``: on every dataset), and on
    the datasets whose class differences pass the noise test (glued ``c_noise``)."""
    checked = noise.noise_check(evidence.frame)
    flagged = sorted(checked.dataset[checked.flagged])
    page.glue(
        "c_noise",
        f"Left out of the second set: {', '.join(flagged)} ({noise.flag_sentence(checked)})"
        if flagged
        else "Every dataset passes the noise test: both sets are the same.",
    )
    kept = runs[~runs.dataset.isin(flagged)]
    parts = [excess_all.assign(datasets="all")]
    if flagged and len(kept):
        parts.append(
            claims.evaluate(kept, metric="excess_odds", **options).assign(datasets="noise test passed")
        )
    table = pd.concat(parts, ignore_index=True)
    columns = [
        "datasets",
        "claim",
        "verdict",
        "estimate",
        "ci_low",
        "ci_high",
        "p_adjusted",
        "cells",
        "models",
    ]
    shown = table[table.claim.isin([*claims.RELATIVE, "harder"])][columns]
    return Section("", [page.show(shown, digits=4)])


def architectures(page: PageContext) -> list[str]:
    """The grids asking Q1 of other architectures (``also`` of its declaration) the profile has."""
    return [g for g in PAGES["q1_strategy"].also if g in page.profile.grids]


def ladders(page: PageContext) -> str:
    """Which architecture families Q3's width ladder (grid ``model_size``) covers, and for each family
    of the architecture grids without one, how many dense models and pruned runs the same ladder
    would add to the profile (computed from its grids)."""
    ladder = page.profile.grids["model_size"]
    widths = sorted({r.dense.width for r in ladder})
    per_dense = len(ladder) // len({r.dense for r in ladder})
    covered = sorted({tables.family(r.dense.model) for r in ladder})
    text = f"The width ladder ({', '.join(f'{w:g}' for w in widths)}) covers {', '.join(covered)}."
    missing = []
    for grid in architectures(page):
        runs = page.profile.grids[grid]
        names = sorted({tables.family(r.dense.model) for r in runs} - set(covered))
        seeds = len({r.dense.seed for r in runs})
        if names:
            missing.append(
                f"{', '.join(names)}: the same ladder over the {seeds} seeds of grid `{grid}` would add "
                f"{len(widths) * seeds} dense models and {len(widths) * seeds * per_dense} pruned runs "
                f"(the grid has {len({r.dense for r in runs})} and {len(runs)})"
            )
    if missing:
        text += (
            f" Profile {page.profile.name} runs no ladder for {'; '.join(missing)}; so the model-size "
            f"question is answered for {', '.join(covered)} only."
        )
    return text


def claim_evidence(page: PageContext, *grids: str) -> Evidence:
    """The rows the claims are tested on: ``grids``, and the architecture grids (:func:`architectures`)
    with the strategies of the ``strategy`` grid only (its control included), so that every family is
    tested on the same comparison (the authors' UP is compared on Q4)."""
    base = page.evidence(*grids)
    extra = architectures(page)
    if not extra:
        return base
    labels = list(dict.fromkeys(r.label for r in page.profile.grids["strategy"]))
    more = page.evidence(*extra, strategy=labels)
    both = pd.concat([base.frame, more.frame]).drop_duplicates(["run_id", "stage", "class"])
    return Evidence(both.reset_index(drop=True), page.stage)


def authors_up(page: PageContext) -> Section:
    """The authors' UP as their code ran it (grid ``authors``): the compression it really reached, its
    paired differences from MP at the same asked t and from MP and UP at the compression it reached
    (:mod:`.authors`), and the claims ``up_alpha`` and ``up_accuracy`` evaluated both ways (glued
    ``q4_authors``)."""
    if "authors" not in page.profile.grids:
        page.glue("q4_authors", "This profile ran no UP-authors (grid `authors`).")
        return Section()
    both = page.evidence("strategy", "authors")
    reached = authors.realised(both.frame)
    diffs = authors.differences(both.runs, both.frame)
    verdicts = authors_claims(page)
    page.glue("q4_authors", authors.both_ways_sentence(verdicts))
    columns = ["dataset", "strategy", "compression", "models", "t_prunable_mean", "t_all_mean"]
    return Section(
        authors.advantage_sentence(diffs),
        [
            charts.realised(reached),
            page.show(reached[columns], name="authors-realised"),
            page.show(diffs, name="authors-differences"),
            page.show(
                verdicts[["compared_at", "claim", "verdict", "estimate", "ci_low", "ci_high"]], digits=4
            ),
        ],
    )


def authors_claims(page: PageContext) -> pd.DataFrame:
    """:func:`.authors.claims_both_ways` on the page's strategy and authors grids (empty without them)."""
    if not {"strategy", "authors"} <= set(page.profile.grids):
        return pd.DataFrame()
    return authors.claims_both_ways(claims.per_run(page.evidence("strategy", "authors").frame, page.stage))
