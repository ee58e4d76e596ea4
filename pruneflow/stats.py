"""Statistics across independently trained models: mean, 99% t interval, and its mark."""

from __future__ import annotations

import math

import numpy as np
import pingouin as pg
from numpy.typing import ArrayLike


def mean_ci(values: ArrayLike, level: float = 0.99) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval mean +- t_{(1+level)/2, n-1} * s / sqrt(n).

    NaN values are dropped; with fewer than two values the bounds are NaN."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    if np.ptp(x) == 0:  # no spread: the interval is the point
        return mean, mean, mean
    low, high = _ci(pg.ttest(x, 0.0, confidence=level))
    return mean, float(low), float(high)


def mark(low: float, high: float, reference: float = 1.0) -> str:
    """``>`` if the interval lies above ``reference``, ``<`` if below, ``?`` if it overlaps (or is NaN)."""
    if low > reference:
        return ">"
    if high < reference:
        return "<"
    return "?"


def diff_ci(a: ArrayLike, b: ArrayLike, *, paired: bool, level: float = 0.99) -> tuple[float, float, float]:
    """(mean difference a - b, low, high): paired t interval of the differences, or Welch's
    interval for independent samples."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if paired:
        return mean_ci(x - y, level)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size < 2 or y.size < 2:
        return float(np.mean(x) - np.mean(y)) if x.size and y.size else math.nan, math.nan, math.nan
    test = pg.ttest(x, y, paired=False, correction=True, confidence=level)
    low, high = _ci(test)
    return float(x.mean() - y.mean()), float(low), float(high)


def _ci(test) -> tuple[float, float]:
    """The confidence-interval column of a pingouin t-test table."""
    return next(v for k, v in test.iloc[0].items() if str(k).startswith("CI"))


pg.options["round.column.CI95"] = None  # pingouin rounds 95% intervals to 2 decimals by default
