"""Recall metrics against scikit-learn and numpy references; t intervals against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.metrics import accuracy_score, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from pruneflow.metrics import (
    accuracy_from_confusion,
    alpha_hat,
    confusion_matrix,
    intensification_ratio,
    normalized_recall_balance,
    per_class_recall,
)
from pruneflow.stats import mark, mean_ci


def labels(num_classes: int, seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Random true labels (every class present) and 60%-correct predictions never naming the last class."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, num_classes, n)
    y_true[:num_classes] = np.arange(num_classes)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, num_classes, n))
    y_pred[y_pred == num_classes - 1] = 0
    return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("num_classes", [2, 3, 10, 17])
def test_per_class_recall_matches_sklearn(num_classes: int, seed: int) -> None:
    """per_class_recall equals recall_score(average=None), including a class never predicted (0)."""
    y_true, y_pred = labels(num_classes, seed)
    got = per_class_recall(y_true, y_pred, num_classes)
    want = recall_score(y_true, y_pred, labels=np.arange(num_classes), average=None, zero_division=0)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[-1] == 0


@pytest.mark.parametrize("num_classes", [2, 10])
def test_confusion_and_accuracy_match_sklearn(num_classes: int) -> None:
    """confusion_matrix and accuracy_from_confusion (also batched over models) match scikit-learn."""
    pairs = [labels(num_classes, seed) for seed in range(3)]
    confusions = np.stack(
        [confusion_matrix(torch.as_tensor(t), torch.as_tensor(p), num_classes).numpy() for t, p in pairs]
    )
    for (t, p), c in zip(pairs, confusions, strict=True):
        np.testing.assert_array_equal(c, sk_confusion_matrix(t, p, labels=np.arange(num_classes)))
        assert accuracy_from_confusion(c) == pytest.approx(accuracy_score(t, p), rel=1e-12)
    want = [accuracy_score(t, p) for t, p in pairs]
    np.testing.assert_allclose(accuracy_from_confusion(confusions), want, rtol=1e-12)


def test_normalized_recall_balance_is_recall_minus_accuracy_over_accuracy() -> None:
    """Bbar = (R - A) / A, broadcast over a leading models axis."""
    rng = np.random.default_rng(0)
    recall, accuracy = rng.random((4, 10)), rng.uniform(0.2, 1.0, 4)
    want = np.array([[(r - a) / a for r in row] for row, a in zip(recall, accuracy, strict=True)])
    np.testing.assert_allclose(normalized_recall_balance(recall, accuracy), want, rtol=1e-12)


def test_intensification_ratio_is_nan_exactly_where_dense_balance_is_zero() -> None:
    """I = Bbar_t / Bbar_1 where Bbar_1 != 0 and NaN exactly where Bbar_1 == 0."""
    rng = np.random.default_rng(1)
    dense, pruned = rng.normal(size=(3, 10)), rng.normal(size=(3, 10))
    dense[0, 2] = dense[2, [0, 9]] = 0.0
    got = intensification_ratio(pruned, dense)
    np.testing.assert_array_equal(np.isnan(got), dense == 0)
    np.testing.assert_allclose(got[dense != 0], pruned[dense != 0] / dense[dense != 0], rtol=1e-12)


def lstsq_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x through the origin, via numpy."""
    return float(np.linalg.lstsq(x[:, None], y, rcond=None)[0][0])


def test_alpha_hat_is_least_squares_slope_through_origin() -> None:
    """alpha_hat equals numpy's lstsq slope through the origin, for one model and batched over models."""
    rng = np.random.default_rng(2)
    dense = rng.normal(size=(5, 10))
    pruned = 1.7 * dense + rng.normal(scale=0.3, size=(5, 10))
    assert alpha_hat(dense[0], pruned[0]) == pytest.approx(lstsq_slope(dense[0], pruned[0]), rel=1e-10)
    got = alpha_hat(dense, pruned)
    assert got.shape == (5,)
    want = [lstsq_slope(x, y) for x, y in zip(dense, pruned, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_alpha_hat_leaves_out_nan_classes() -> None:
    """A class with a NaN balance is left out of the fit."""
    rng = np.random.default_rng(3)
    dense, pruned = rng.normal(size=10), rng.normal(size=10)
    pruned[4] = np.nan
    keep = np.arange(10) != 4
    assert alpha_hat(dense, pruned) == pytest.approx(lstsq_slope(dense[keep], pruned[keep]), rel=1e-10)


@pytest.mark.parametrize(
    "level",
    [
        0.99,
        0.9,
        0.95,
    ],
)
@pytest.mark.parametrize("n", [2, 3, 10, 40])
def test_mean_ci_matches_scipy_t_interval(n: int, level: float) -> None:
    """mean_ci equals scipy.stats.t.interval(level, n - 1, loc=mean, scale=sem)."""
    values = np.random.default_rng(n).normal(1.2, 0.4, n)
    mean, low, high = mean_ci(values, level=level)
    want = scipy.stats.t.interval(level, n - 1, loc=values.mean(), scale=scipy.stats.sem(values))
    assert mean == pytest.approx(values.mean(), rel=1e-12)
    np.testing.assert_allclose([low, high], want, rtol=1e-9)


def test_mean_ci_drops_nan_and_needs_two_values() -> None:
    """NaNs are dropped; one value gives NaN bounds; a level outside (0, 1) raises ValueError."""
    values = np.array([0.8, 1.1, np.nan, 1.3, 0.9])
    assert mean_ci(values) == pytest.approx(mean_ci(values[np.isfinite(values)]), rel=1e-12)
    mean, low, high = mean_ci([2.5, np.nan])
    assert mean == 2.5 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="level"):
        mean_ci(values, level=99)


@pytest.mark.parametrize(
    ("low", "high", "reference", "expected"),
    [
        (1.1, 1.5, 1.0, ">"),
        (0.2, 0.9, 1.0, "<"),
        (0.9, 1.1, 1.0, "?"),
        (1.0, 1.2, 1.0, "?"),
        (0.5, 1.0, 1.0, "?"),
        (math.nan, math.nan, 1.0, "?"),
        (0.1, 0.2, 0.0, ">"),
        (-0.3, -0.1, 0.0, "<"),
    ],
)
def test_mark(low: float, high: float, reference: float, expected: str) -> None:
    """'>' when the interval lies above the reference, '<' below, '?' when it touches, overlaps or is NaN."""
    assert mark(low, high, reference) == expected
