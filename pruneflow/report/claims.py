"""The seed paper's claims, each tested once on the paired design (:mod:`.inference`).

:func:`evaluate` takes the tidy rows of :func:`pruneflow.experiment.results.load` (both grids of a
profile) or a per-run table like :func:`.tables.alphas` (plus a ``classes`` column), and returns one
row per claim: the pooled estimate over the claim's cells with its interval, p-value, Holm-adjusted
p, TOST against a margin, the verdict, a bootstrap check and the models a target precision needs.
Datasets to leave out (e.g. flagged as noise-dominated) are removed from ``frame`` by the caller.

Which runs a claim uses: the strategy claims take the (dataset, model, width, basis) groups pruned by
more than one strategy; the size claims take, per basis, MP on the dataset pruned at several model
sizes. Intensification claims use usable cells only (:class:`Usable`); accuracy claims use all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..experiment.config import CONTROL
from ..registry import Registry, check_choice
from ..strategies import STRATEGIES
from . import inference, tables

VERDICTS = ("supported", "contradicted", "equivalent", "inconclusive")
GROUP = ["dataset", "model", "width", "n_params", "basis"]
CELL = [*GROUP, "strategy", "compression"]


@dataclass(frozen=True)
class Usable:
    """A cell is usable when its mean pruned accuracy keeps at least ``retain`` of the dense models'
    margin over chance, (A_t - 1/K) / (A_1 - 1/K) >= retain, and the lower bound of the one-sided
    ``level`` t interval of A_t lies above chance 1/K."""

    retain: float = 0.5
    level: float = 0.99

    def __call__(self, cells: pd.DataFrame) -> pd.Series:
        n = cells.models.to_numpy(float)
        low = cells.accuracy - stats.t.ppf(self.level, n - 1) * cells.accuracy_sd / np.sqrt(n)
        return (cells.kept >= self.retain) & (low > cells.chance)

    def describe(self) -> str:
        return (
            f"a cell enters the intensification claims when its mean pruned accuracy keeps at least "
            f"{self.retain:.0%} of the dense models' margin over chance and its one-sided {self.level:.0%} "
            f"lower bound lies above chance"
        )


def per_run(frame: pd.DataFrame, stage: str = "finetuned") -> pd.DataFrame:
    """Per pruned run: :func:`.tables.alphas` of each dataset plus its number of ``classes``;
    a frame that already has ``alpha_hat`` is returned as is. The unpruned t = 1 control runs
    (strategy ``control``) are no claim's cells: they are left out."""
    if "alpha_hat" in frame.columns:
        return frame[frame.strategy != CONTROL]
    good, _ = tables.ok_rows(frame[frame.strategy != CONTROL])
    table = tables.intensification(good, stage)
    parts = [
        tables.alphas(t).assign(classes=t["class"].nunique()) for _, t in table.groupby("dataset", sort=True)
    ]
    return pd.concat(parts, ignore_index=True)


def cells(
    runs: pd.DataFrame,
    usable: Callable[[pd.DataFrame], pd.Series] = Usable(),
    *,
    level: float = 0.99,
    metric: str = "alpha_hat",
) -> pd.DataFrame:
    """Per cell (dataset, model, basis, strategy, t): models, mean ``metric`` - 1 (``estimate``) with its
    ``level`` interval, accuracy, its share of the dense margin over chance, and whether it is usable."""
    data = runs.assign(estimate=runs[metric] - 1)
    g = data.groupby(CELL, sort=True)
    table = g.agg(
        models=("estimate", "count"),
        estimate=("estimate", "mean"),
        sd=("estimate", "std"),
        accuracy=("accuracy", "mean"),
        accuracy_sd=("accuracy", "std"),
        dense_accuracy=("dense_accuracy", "mean"),
        classes=("classes", "first"),
    ).reset_index()
    n = table.models.to_numpy(float)
    half = stats.t.ppf((1 + level) / 2, n - 1) * table.sd / np.sqrt(n)
    chance = 1 / table.classes
    table = table.assign(
        ci_low=table.estimate - half,
        ci_high=table.estimate + half,
        chance=chance,
        kept=(table.accuracy - chance) / (table.dense_accuracy - chance),
    ).drop(columns=["sd", "classes"])
    return table.assign(usable=usable(table).astype(bool)) if len(table) else table


def _strategy_runs(runs: pd.DataFrame) -> pd.DataFrame:
    n = runs.groupby(GROUP).strategy.transform("nunique")
    return runs[n > 1]


UNIT = ["dataset", "model", "dense_id"]  # a dense model, with the stratum (dataset, model) it belongs to


def _unit_means(runs: pd.DataFrame, value: pd.Series) -> pd.DataFrame:
    """Per dense model: the mean of ``value`` over its runs, with its dataset and model."""
    return runs.assign(value=value).groupby(UNIT, sort=True).value.mean().reset_index()


def _paired(runs: pd.DataFrame, a: str, others: list[str], column: str) -> pd.DataFrame:
    """Per dense model: the mean over cells and ``others`` of (``a`` - other) of ``column``."""
    keys = [*GROUP, "compression", "dense_id"]
    left = runs[runs.strategy == a].set_index(keys)[column]
    diffs = [
        (left - runs[runs.strategy == b].set_index(keys)[column]).dropna().rename("value") for b in others
    ]
    both = pd.concat(diffs).reset_index() if diffs else pd.DataFrame(columns=[*keys, "value"])
    return both.groupby(UNIT, sort=True).value.mean().reset_index()


def _strata(units: pd.DataFrame) -> list[np.ndarray]:
    """The per-model values of each stratum: a dataset and the model trained on it."""
    return [g.value.to_numpy(float) for _, g in units.groupby(["dataset", "model"], sort=True)]


def _select(runs: pd.DataFrame, table: pd.DataFrame, keep: pd.Series) -> tuple[pd.DataFrame, int, int]:
    """(runs of the kept cells, cells kept, cells left out as unusable) among ``keep``'s cells."""
    chosen = table[keep]
    good = chosen[chosen.usable]
    index = pd.MultiIndex.from_frame(good[CELL])
    inside = pd.MultiIndex.from_frame(runs[CELL]).isin(index)
    return runs[inside], len(good), len(chosen) - len(good)


def _select_common(
    runs: pd.DataFrame, table: pd.DataFrame, column: str, ends: list
) -> tuple[pd.DataFrame, int, int]:
    """Like :func:`_select` for a comparison of two levels of ``column``: only the ratios t at which
    both have a usable cell, so that the two groups are averaged over the same ratios."""
    chosen = table[table[column].isin(ends)]
    both = chosen[chosen.usable].groupby("compression")[column].nunique()
    keep = chosen.usable & chosen.compression.isin(both[both == len(ends)].index)
    sel, n, _ = _select(runs, chosen, keep)
    return sel, n, int((~chosen.usable).sum())


@dataclass(frozen=True)
class Design:
    """What every claim selects from: the per-run table, its cells, and the strategy comparisons
    (the (dataset, model, width, basis) groups pruned by more than one strategy, and their cells)."""

    runs: pd.DataFrame
    cells: pd.DataFrame
    strat: pd.DataFrame
    strat_cells: pd.DataFrame
    metric: str
    high: float
    low: float
    margin: float
    accuracy_margin: float
    harder_datasets: Sequence[str] | None


@dataclass(frozen=True)
class Claim:
    """One claim's input to the inference: its statement, the sign it claims, the per-dense-model
    values of each stratum (with Welch weights between two groups), cells kept and left out."""

    statement: str
    sign: int
    strata: list[np.ndarray]
    cells: int
    excluded: int
    accuracy: bool = False
    weights: list[float] | None = None


CLAIMS: Registry[Callable[[Design], Claim]] = Registry("claim")


def relative(claim: Callable[[Design], Claim]) -> Callable[[Design], Claim]:
    """Mark a claim whose alpha_hat has a reference (the dense model, or the t = 1 control)."""
    claim.relative = True  # type: ignore[attr-defined]
    return claim


def _randomness(strategies: pd.Series) -> pd.Series:
    """Whether each strategy draws its mask at random (RP), from the strategies' own attribute."""
    return strategies.map(lambda s: s in STRATEGIES and getattr(STRATEGIES[s], "random", False))


def _ratio_claim(d: Design, keep: pd.Series, text: str, sign: int) -> Claim:
    sel, n, out = _select(d.strat, d.strat_cells, keep)
    return Claim(text, sign, _strata(_unit_means(sel, sel[d.metric] - 1)), n, out)


@CLAIMS.register("high")
@relative
def _high(d: Design) -> Claim:
    keep = ~_randomness(d.strat_cells.strategy) & (d.strat_cells.compression >= d.high)
    return _ratio_claim(
        d, keep, f"pruning intensifies recall differences at t >= {d.high:g} ({d.metric} > 1)", 1
    )


@CLAIMS.register("low")
@relative
def _low(d: Design) -> Claim:
    keep = ~_randomness(d.strat_cells.strategy) & (d.strat_cells.compression <= d.low)
    text = f"pruning de-intensifies recall differences at t <= {d.low:g} ({d.metric} < 1)"
    return _ratio_claim(d, keep, text, -1)


@CLAIMS.register("up_alpha")
@relative
def _up_alpha(d: Design) -> Claim:
    up_mp = d.strat_cells.strategy.isin(["UP", "MP"]) & (d.strat_cells.compression >= d.high)
    sel, n, out = _select(d.strat, d.strat_cells, up_mp)
    sel = sel[sel.groupby([*GROUP, "compression", "dense_id"]).strategy.transform("nunique") == 2]
    text = f"UP intensifies less than MP at t >= {d.high:g} ({d.metric} of UP - MP < 0)"
    return Claim(text, -1, _strata(_paired(sel, "UP", ["MP"], d.metric)), n, out)


def _accuracy_claim(d: Design, a: str, sign: int, text: str) -> Claim:
    every = d.strat[d.strat.compression >= d.high]
    n = int((d.strat_cells.strategy.isin([a, "MP"]) & (d.strat_cells.compression >= d.high)).sum())
    return Claim(text, sign, _strata(_paired(every, a, ["MP"], "accuracy")), n, 0, accuracy=True)


@CLAIMS.register("up_accuracy")
def _up_accuracy(d: Design) -> Claim:
    return _accuracy_claim(
        d, "UP", 1, f"UP is more accurate than MP at t >= {d.high:g} (accuracy of UP - MP > 0)"
    )


@CLAIMS.register("rp_alpha")
@relative
def _rp_alpha(d: Design) -> Claim:
    sel, _, out = _select(d.strat, d.strat_cells, pd.Series(True, index=d.strat_cells.index))
    keys = [*GROUP, "compression", "dense_id"]
    with_rp = sel.groupby(keys).strategy.transform(lambda s: (s == "RP").any())
    sel = sel[with_rp & (sel.groupby(keys).strategy.transform("nunique") > 1)]
    others = list(dict.fromkeys(sel.strategy[~_randomness(sel.strategy)]))
    text = f"RP intensifies least, wherever its accuracy is usable ({d.metric} of RP - each other < 0)"
    n = len(sel[CELL].drop_duplicates())
    return Claim(text, -1, _strata(_paired(sel, "RP", others, d.metric)), n, out)


@CLAIMS.register("rp_accuracy")
def _rp_accuracy(d: Design) -> Claim:
    text = f"RP is far less accurate than MP at t >= {d.high:g} (accuracy of RP - MP < 0)"
    return _accuracy_claim(d, "RP", -1, text)


@CLAIMS.register("harder")
def _harder(d: Design) -> Claim:
    pool, pool_cells = d.strat, d.strat_cells
    if d.harder_datasets is not None:
        pool, pool_cells = (t[t.dataset.isin(list(d.harder_datasets))] for t in (d.runs, d.cells))
    mp = pool_cells[(pool_cells.strategy == "MP") & (pool_cells.compression >= d.high)]
    alive = pool[pool.dataset.isin(mp.dataset[mp.usable])]  # a collapsed task cannot rank
    order = tables.difficulty_order(alive[alive.strategy == "MP"]) if len(alive) else pd.DataFrame()
    if len(order) < 2:
        text = f"harder tasks intensify more at t >= {d.high:g} (one dataset only)"
        return Claim(text, 1, [], 0, 0, weights=[1.0, -1.0])
    ends = [order.index[-1], order.index[0]]
    sel, n, out = _select_common(pool, mp, "dataset", ends)
    units = _unit_means(sel, sel[d.metric])
    groups = [units[units.dataset == e].value.to_numpy(float) for e in ends]
    text = f"harder tasks intensify more at t >= {d.high:g} ({d.metric} of {ends[0]} - {ends[1]} > 0)"
    return Claim(text, 1, groups, n, out, weights=[1.0, -1.0])


def _smaller(d: Design, basis: str) -> Claim:
    part = d.runs[(d.runs.strategy == "MP") & (d.runs.basis == basis)]
    sizes = part.groupby("dataset").n_params.nunique()
    part = part[part.dataset.isin(sizes[sizes > 1].index)]
    groups, n, out = [], 0, 0
    if len(part):
        ends = [part.n_params.min(), part.n_params.max()]
        t = d.cells
        cand = t[
            t.dataset.isin(part.dataset.unique())
            & (t.strategy == "MP")
            & (t.basis == basis)
            & t.n_params.isin(ends)
            & (t.compression >= d.high)
        ]
        sel, n, out = _select_common(part, cand, "n_params", ends)
        units = sel.assign(value=sel[d.metric]).groupby(["n_params", "dense_id"]).value.mean().reset_index()
        groups = [units[units.n_params == e].value.to_numpy(float) for e in ends]
    text = (
        f"smaller models intensify more at t >= {d.high:g}, {basis}-parameter basis "
        f"({d.metric} of smallest - largest > 0)"
    )
    return Claim(text, 1, groups, n, out, weights=[1.0, -1.0])


for _basis in ("prunable", "all"):
    CLAIMS.register(f"smaller_{_basis}")(lambda d, b=_basis: _smaller(d, b))

KEYS = tuple(CLAIMS.names())
RELATIVE = tuple(k for k in KEYS if getattr(CLAIMS[k], "relative", False))


def evaluate(
    frame: pd.DataFrame,
    *,
    level: float = 0.99,
    margin: float = 0.1,
    accuracy_margin: float = 0.02,
    usable: Callable[[pd.DataFrame], pd.Series] = Usable(),
    metric: str = "alpha_hat",
    high: float = 20,
    low: float = 4,
    seed: int = 0,
    resamples: int = 2000,
    harder_datasets: Sequence[str] | None = None,
    claims: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per claim of ``claims`` (names in :data:`CLAIMS`, default all; Holm-adjusted together):
    estimate, ``level`` interval, p, Holm-adjusted p, TOST p against +-``margin`` (``accuracy_margin``
    for accuracy), verdict, cells (kept / left out as unusable), models (dense models), bootstrap
    interval (``resamples`` draws; 0 skips it) and models per stratum for a half-width of the margin
    and half of it. ``metric`` names the per-run column of the intensification claims (null value
    1, e.g. ``alpha_hat`` or an excess ratio).
    ``harder_datasets`` (e.g. a difficulty ladder pruned by MP) are the datasets the task-difficulty
    claim compares, hardest against easiest by dense error among those with a usable MP cell at
    t >= ``high``; default: those of the strategy runs.
    Verdict: 'supported' / 'contradicted' when the Holm-adjusted p < 1 - level with the claimed /
    opposite sign, else 'equivalent' when the Holm-adjusted TOST p < 1 - level, else 'inconclusive'."""
    keys = list(KEYS if claims is None else claims)
    for key in keys:
        check_choice("claim", key, KEYS)
    runs = per_run(frame)
    table = cells(runs, usable, level=level, metric=metric)
    strat = _strategy_runs(runs)
    design = Design(
        runs,
        table,
        strat,
        table.merge(strat[CELL].drop_duplicates(), on=CELL),
        metric,
        high,
        low,
        margin,
        accuracy_margin,
        harder_datasets,
    )
    rows = []
    for key in keys:
        claim = CLAIMS[key](design)
        scale = (
            "accuracy difference"
            if claim.accuracy
            else f"{metric} - 1"
            if key in ("high", "low")
            else (f"{metric} difference")
        )
        rows.append(
            dict(
                claim=key,
                statement=claim.statement,
                scale=scale,
                sign=claim.sign,
                strata_values=claim.strata,
                weights=claim.weights,
                cells=claim.cells,
                excluded=claim.excluded,
                margin=accuracy_margin if claim.accuracy else margin,
            )
        )
    return _infer(rows, level, seed, resamples)


def _infer(rows: list[dict], level: float, seed: int, resamples: int) -> pd.DataFrame:
    """Estimates, tests, Holm, TOST, verdicts, bootstrap and power of the claim rows."""
    out = []
    for row in rows:
        strata, weights = row.pop("strata_values"), row.pop("weights")
        est = inference.pooled(strata, weights)
        low, high = est.ci(level)
        boot = inference.bootstrap_ci(strata, weights, level, seed, resamples)
        boot_eq = inference.bootstrap_ci(strata, weights, 1 - 2 * (1 - level), seed, resamples)
        out.append(
            row
            | dict(
                estimate=est.value,
                ci_low=low,
                ci_high=high,
                p_value=est.p_value(),
                p_tost=est.tost(row["margin"]),
                se=est.se,
                df=est.df,
                models=est.units,
                strata=est.strata,
                boot_low=boot[0],
                boot_high=boot[1],
                interval_verdict=_interval_verdict(
                    row["sign"], (low, high), est.ci(1 - 2 * (1 - level)), row["margin"]
                ),
                bootstrap_verdict=_interval_verdict(row["sign"], boot, boot_eq, row["margin"]),
                seeds_margin=inference.seeds_needed(est, row["margin"], level),
                seeds_half_margin=inference.seeds_needed(est, row["margin"] / 2, level),
            )
        )
    table = pd.DataFrame(out)
    table = table.astype({"seeds_margin": "Int64", "seeds_half_margin": "Int64"})
    table["p_adjusted"] = inference.holm(table.p_value)
    table["p_tost_adjusted"] = inference.holm(table.p_tost)
    alpha = 1 - level
    verdict = np.where(
        table.p_adjusted < alpha,
        np.where(np.sign(table.estimate) == table.sign, "supported", "contradicted"),
        np.where(table.p_tost_adjusted < alpha, "equivalent", "inconclusive"),
    )
    table["verdict"] = verdict
    table["bootstrap_agrees"] = (table.bootstrap_verdict == table.interval_verdict) | (resamples == 0)
    return table


def _interval_verdict(sign: int, ci: tuple[float, float], ci_eq: tuple[float, float], margin: float) -> str:
    """Verdict read off intervals (no multiplicity): the ``level`` interval excludes 0, or the
    1 - 2(1 - level) interval lies within +-margin (the interval form of TOST)."""
    low, high = ci
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if low > 0 or high < 0:
        return "supported" if np.sign(low if low > 0 else high) == sign else "contradicted"
    if -margin < ci_eq[0] and ci_eq[1] < margin:
        return "equivalent"
    return "inconclusive"


def by_family(runs: pd.DataFrame, **options) -> pd.DataFrame:
    """:func:`evaluate` (with ``options``) on the runs of each architecture family apart
    (:func:`.tables.family` of the model: MLP, LeNet-5, ResNet), Holm-adjusted within the family; one
    row per family and claim that has a cell in it, with ``family`` and its ``seeds`` (models per cell)."""
    families = runs.model.map(tables.family)
    parts = [
        evaluate(runs[families == name], **options).assign(
            family=name, seeds=runs[families == name].seed.nunique()
        )
        for name in sorted(families.unique(), key=_family_order)
    ]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["family", "claim"])
    return table[table.cells > 0].reset_index(drop=True)


def _family_order(name: str) -> tuple[int, str]:
    order = list(dict.fromkeys(tables.FAMILIES.values()))
    return (order.index(name) if name in order else len(order), name)


def beside_pooled(pooled: pd.DataFrame, families: pd.DataFrame, level: float) -> pd.DataFrame:
    """One row per claim: its pooled verdict with estimate and ``level`` interval, and the same in each
    family of ``families`` (:func:`by_family`; blank where the family has no cell of the claim)."""

    def cell(row) -> str:
        if not math.isfinite(row.se):
            return f"{row.verdict} (not estimable: too few models in usable cells)"
        return f"{row.verdict} ({row.estimate:+.3f}, {row.ci_low:+.3f} to {row.ci_high:+.3f})"

    table = pd.DataFrame({"claim": pooled.claim, "pooled": [cell(r) for r in pooled.itertuples()]})
    for name, group in families.groupby("family", sort=False):
        table[name] = table.claim.map({r.claim: cell(r) for r in group.itertuples()}).fillna("")
    return table.rename(columns={"pooled": f"pooled ({level:.0%} CI)"})


def power(table: pd.DataFrame, seeds: int) -> pd.DataFrame:
    """Per claim: models per stratum for a CI half-width of the margin and of half of it, and
    whether ``seeds`` (the profile's models per cell) reaches them."""
    return table[["claim", "margin", "models", "strata", "seeds_margin", "seeds_half_margin"]].assign(
        seeds=seeds,
        reaches_margin=lambda d: seeds >= d.seeds_margin,
        reaches_half_margin=lambda d: seeds >= d.seeds_half_margin,
    )


ANSWERS = {
    "supported": "yes",
    "contradicted": "no, the effect goes the other way",
    "equivalent": "no, any effect lies within the equivalence margin",
    "inconclusive": "not settled by these models",
}


def paragraph(row: pd.Series, level: float, seeds: int) -> str:
    """The plain-language answer to one claim, led by its verdict and the one number that carries it
    (markdown, for glue); the tests behind it (Holm, TOST, bootstrap, power) are in the claims and power
    tables, and only a bootstrap that disagrees is said here."""
    head = f"*{row.statement[0].upper()}{row.statement[1:]}:* **{row.verdict}**, {ANSWERS[row.verdict]}."
    if not math.isfinite(row.se):
        return (
            f"{head} Too few models in usable cells to estimate it on this profile ({row.cells} cells of "
            f"{row.models} models; {row.excluded} cells left out as unusable)."
        )
    caution = (
        f" **Caution:** the bootstrap over dense models ({row.boot_low:.3f} to {row.boot_high:.3f}) "
        f"changes the verdict read off the interval (heavy tails)."
        if math.isfinite(row.boot_low) and not row.bootstrap_agrees
        else ""
    )
    enough = "" if seeds >= row.seeds_margin else f" ({row.seeds_margin} models per cell would settle it)"
    return (
        f"{head} The pooled {row.scale} is {row.estimate:+.3f} ({level:.0%} CI {row.ci_low:+.3f} to "
        f"{row.ci_high:+.3f}), from {row.cells} cells of {row.models} independently trained models"
        f"{enough}; {row.excluded} cells were left out as unusable.{caution}"
    )


def labelled(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """``table`` (of :func:`cells`) with a ``cell`` column naming each row by ``by`` and its ratio t."""
    names = table[by].astype(str).agg(", ".join, axis=1) if by else ""
    return table.assign(cell=names + [f", t = {t:g}" if by else f"t = {t:g}" for t in table.compression])


def unusable_sentence(table: pd.DataFrame) -> str:
    """Which cells of ``table`` (of :func:`labelled`) are left out of the intensification claims."""
    out = table[~table.usable]
    if not len(out):
        return f"All {len(table)} cells are usable."
    verb = "is" if len(out) == 1 else "are"
    return (
        f"{len(out)} of the {len(table)} cells {verb} left out of the intensification claims as unusable "
        f"(accuracy collapsed towards chance): {'; '.join(out.cell)}."
    )
