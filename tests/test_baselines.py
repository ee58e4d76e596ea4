"""Null baselines of alpha_hat: exact under uniform additive and proportional degradation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pruneflow.metrics import (
    accuracy_from_confusion,
    alpha_additive,
    alpha_hat,
    alpha_odds,
    normalized_recall_balance,
    recall_from_confusion,
)
from pruneflow.report.tables import with_baselines

SUPPORT = np.array([100, 200, 50, 100, 150, 100, 250, 100, 50, 200])


def confusion(correct: np.ndarray, support: np.ndarray = SUPPORT) -> np.ndarray:
    """A 10-class confusion matrix with ``correct`` right answers per class, errors put on class c + 1."""
    c = np.diag(np.rint(correct)).astype(np.int64)
    for i, (k, n) in enumerate(zip(correct, support, strict=True)):
        c[i, (i + 1) % len(support)] += n - k
    return c


def alpha_of(dense: np.ndarray, pruned: np.ndarray) -> float:
    """alpha_hat computed from two confusion matrices, through the recall and accuracy helpers."""
    bbar = [
        normalized_recall_balance(recall_from_confusion(c), accuracy_from_confusion(c))
        for c in (dense, pruned)
    ]
    return float(alpha_hat(*bbar))


DENSE_RECALL = np.array([0.98, 0.9, 0.96, 0.85, 0.94, 0.99, 0.92, 0.88, 0.98, 0.95])


def test_additive_degradation_gives_alpha_additive() -> None:
    """Every class recall drops by the same d = 0.2: alpha_hat = A_1 / A_t to 1e-12."""
    dense, pruned = confusion(DENSE_RECALL * SUPPORT), confusion((DENSE_RECALL - 0.2) * SUPPORT)
    np.testing.assert_allclose(recall_from_confusion(dense) - recall_from_confusion(pruned), 0.2, atol=1e-12)
    a1, at = accuracy_from_confusion(dense), accuracy_from_confusion(pruned)
    assert alpha_of(dense, pruned) == pytest.approx(float(alpha_additive(a1, at)), abs=1e-12)
    assert alpha_of(dense, pruned) > 1.2  # the baseline is well above 1: accuracy loss alone


def test_proportional_degradation_gives_alpha_odds() -> None:
    """Every class error count doubles: alpha_hat = odds(1 - A_t) / odds(1 - A_1) to 1e-12."""
    errors = np.rint((1 - DENSE_RECALL) * SUPPORT)
    dense, pruned = confusion(SUPPORT - errors), confusion(SUPPORT - 2 * errors)
    a1, at = accuracy_from_confusion(dense), accuracy_from_confusion(pruned)
    assert 1 - at == pytest.approx(2 * (1 - a1), abs=1e-15)
    expected = ((1 - at) / at) / ((1 - a1) / a1)
    assert float(alpha_odds(a1, at)) == pytest.approx(expected, abs=1e-15)
    assert alpha_of(dense, pruned) == pytest.approx(float(alpha_odds(a1, at)), abs=1e-12)
    assert alpha_of(dense, pruned) != pytest.approx(float(alpha_additive(a1, at)), abs=1e-3)


def test_baselines_are_one_without_accuracy_loss_and_vectorise() -> None:
    """A_t = A_1 gives 1 for both; arrays broadcast element-wise."""
    acc = np.array([[0.5, 0.9], [0.97, 0.3]])
    np.testing.assert_array_equal(alpha_additive(acc, acc), 1.0)
    np.testing.assert_allclose(alpha_odds(acc, acc), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(alpha_additive(0.9, [0.9, 0.45]), [1.0, 2.0])
    np.testing.assert_allclose(alpha_odds(0.9, [0.9, 0.45]), [1.0, (0.55 / 0.45) / (0.1 / 0.9)])


def test_with_baselines_adds_ratio_and_difference_columns() -> None:
    """Per run: baselines from the run's accuracies, excess = alpha_hat / baseline and the difference."""
    runs = pd.DataFrame({"alpha_hat": [3.0, 1.0], "accuracy": [0.8, 0.9], "dense_accuracy": [0.96, 0.9]})
    out = with_baselines(runs)
    odds = (0.2 / 0.8) / (0.04 / 0.96)
    np.testing.assert_allclose(out.alpha_odds, [odds, 1.0])
    np.testing.assert_allclose(out.alpha_additive, [1.2, 1.0])
    np.testing.assert_allclose(out.excess_odds, [3.0 / odds, 1.0])
    np.testing.assert_allclose(out.excess_additive_diff, [1.8, 0.0])
    np.testing.assert_allclose(out.retained, [0.8 / 0.96, 1.0])


def test_baseline_chart_draws_both_null_curves_at_the_panel_dense_accuracy() -> None:
    """The curves of the chart are A_1/A_t and the odds ratio at the runs' mean dense accuracy."""
    from pruneflow.report.charts import baselines

    runs = with_baselines(
        pd.DataFrame(
            {
                "strategy": ["MP", "MP", "GP", "GP"],
                "compression": [2.0, 20.0, 2.0, 20.0],
                "dense_id": ["a", "a", "a", "a"],
                "alpha_hat": [1.1, 2.0, 1.2, 2.5],
                "accuracy": [0.9, 0.6, 0.88, 0.5],
                "dense_accuracy": [0.9] * 4,
            }
        )
    )
    curves = baselines(runs, "strategy").layer[0].data
    additive = curves[curves.baseline.str.startswith("additive")]
    odds = curves[curves.baseline.str.startswith("error")]
    np.testing.assert_allclose(additive.alpha_hat, 1 / additive.retained)
    np.testing.assert_allclose(odds.alpha_hat, alpha_odds(0.9, 0.9 * odds.retained))
    assert curves.retained.min() == pytest.approx(0.5 / 0.9) and curves.retained.max() == 1.0
    assert len(baselines(runs.assign(dataset=["x", "y"] * 2), "strategy", facet="dataset").concat) == 2
