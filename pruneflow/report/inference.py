"""Statistical machinery of the claims: one pooled estimate per claim, with its test, TOST,
Holm adjustment, bootstrap check and the number of models a target precision needs.

The unit of every analysis is an independently trained dense model: each claim first reduces
the runs of one dense model to one number (its mean contrast over the claim's cells), so the
strategies and ratios that prune the same model are paired and never counted as independent.
The units come in strata (datasets, or the two groups compared), and the pooled estimate is

    estimate = (1/D) sum_d mean_d,    se^2 = (1/D^2) sum_d s_d^2 / n_d,

with Welch-Satterthwaite degrees of freedom df = se^4 / sum_d (s_d^2 / n_d / D^2)^2 / (n_d - 1).
With one stratum it is the one-sample (paired) t-test; with two strata and weights (+1, -1) it is
Welch's test. On a balanced design it equals the fixed effect of a linear mixed model with the
dense model as random intercept (and cell slopes per model absorbed into the contrast).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    """A pooled contrast: value, standard error, degrees of freedom, units and strata."""

    value: float
    se: float
    df: float
    units: int
    strata: int

    def ci(self, level: float) -> tuple[float, float]:
        """Student-t interval value +- t_{(1+level)/2, df} se."""
        if not math.isfinite(self.se) or self.df <= 0:
            return math.nan, math.nan
        half = stats.t.ppf((1 + level) / 2, self.df) * self.se
        return self.value - half, self.value + half

    def p_value(self) -> float:
        """Two-sided p of H0: contrast = 0."""
        if not math.isfinite(self.se) or self.df <= 0:
            return math.nan
        if self.se == 0:
            return 0.0 if self.value != 0 else 1.0
        return float(2 * stats.t.sf(abs(self.value) / self.se, self.df))

    def tost(self, margin: float) -> float:
        """TOST p of H0: |contrast| >= margin, max of the one-sided p of value > -margin and < margin."""
        if not math.isfinite(self.se) or self.df <= 0:
            return math.nan
        if self.se == 0:
            return 0.0 if abs(self.value) < margin else 1.0
        lower = stats.t.sf((self.value + margin) / self.se, self.df)
        upper = stats.t.cdf((self.value - margin) / self.se, self.df)
        return float(max(lower, upper))


def pooled(strata: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> Estimate:
    """sum_d w_d mean_d over strata of unit values (w_d = 1/D by default; (+1, -1) for Welch)."""
    groups = [np.asarray(g, dtype=float)[np.isfinite(g)] for g in strata]
    groups = [g for g in groups if g.size]
    if weights is None:
        weights = [1 / len(groups)] * len(groups) if groups else []
    if not groups or len(weights) != len(groups):
        return Estimate(math.nan, math.nan, math.nan, sum(g.size for g in groups), len(groups))
    value = float(sum(w * g.mean() for w, g in zip(weights, groups, strict=True)))
    if any(g.size < 2 for g in groups):
        return Estimate(value, math.nan, math.nan, sum(g.size for g in groups), len(groups))
    parts = [w**2 * g.var(ddof=1) / g.size for w, g in zip(weights, groups, strict=True)]
    var = float(sum(parts))
    denominator = sum(p**2 / (g.size - 1) for p, g in zip(parts, groups, strict=True))
    df = var**2 / denominator if denominator > 0 else float(sum(g.size - 1 for g in groups))
    return Estimate(value, math.sqrt(var), df, sum(g.size for g in groups), len(groups))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values: with p_(1) <= ... <= p_(m) sorted,
    p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); NaN stays NaN and does not count in m."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    steps = np.minimum(1.0, (len(order) - np.arange(len(order))) * p[order])
    out[order] = np.maximum.accumulate(steps) if len(order) else steps
    return out


def bootstrap_ci(
    strata: Sequence[np.ndarray],
    weights: Sequence[float] | None,
    level: float,
    seed: int = 0,
    resamples: int = 2000,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`pooled`'s value, resampling units within each
    stratum (scipy ``bootstrap`` with one sample per stratum); NaN when ``resamples`` is 0."""
    groups = [np.asarray(g, dtype=float)[np.isfinite(g)] for g in strata]
    groups = [g for g in groups if g.size]
    if not resamples or not groups or any(g.size < 2 for g in groups):
        return math.nan, math.nan
    w = np.asarray(weights if weights is not None else [1 / len(groups)] * len(groups))

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return sum(wi * s.mean(axis=axis) for wi, s in zip(w, samples, strict=True))

    result = stats.bootstrap(
        tuple(groups),
        statistic,
        confidence_level=level,
        n_resamples=resamples,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def seeds_needed(estimate: Estimate, half_width: float, level: float, limit: int = 100_000) -> int | None:
    """Smallest number n of models per stratum for which the interval's half-width
    t_{(1+level)/2, D(n-1)} * sd / sqrt(n) <= ``half_width``, where sd = se * sqrt(units / D) is the
    observed per-unit spread (t formula of the planned design, D strata of n models); ``limit`` if
    no n below it does; None without a spread. The half-width falls as n grows, so n is found by
    bisection (about 17 quantiles instead of up to ``limit``)."""
    if not math.isfinite(estimate.se) or estimate.strata == 0:
        return None
    sd = estimate.se * math.sqrt(estimate.units / estimate.strata)
    d = estimate.strata

    def wide(n: int) -> bool:
        return stats.t.ppf((1 + level) / 2, d * (n - 1)) * sd / math.sqrt(n) > half_width

    lo, hi = 2, limit  # wide(n) for every n < lo; hi = limit or not wide(hi)
    if not wide(lo):
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if wide(mid) else (lo, mid)
    return hi
