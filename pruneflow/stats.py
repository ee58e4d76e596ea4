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
    test = pg.ttest(x, 0.0, confidence=level)
    low, high = next(v for k, v in test.iloc[0].items() if str(k).startswith("CI"))
    return mean, float(low), float(high)


def mark(low: float, high: float, reference: float = 1.0) -> str:
    """``>`` if the interval lies above ``reference``, ``<`` if below, ``?`` if it overlaps (or is NaN)."""
    if low > reference:
        return ">"
    if high < reference:
        return "<"
    return "?"
