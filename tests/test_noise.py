"""Test-set noise of per-class recall: chi-square homogeneity test and simulated alpha_hat under noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pruneflow.report.noise import (
    alpha_noise,
    homogeneity,
    noise_check,
    noise_spread,
    recall_se,
    spread_sentence,
)

SUPPORT = np.full(10, 100)


def test_homogeneity_matches_pearson_by_hand() -> None:
    """Statistic = sum (O - E)^2 / E over the classes x {right, wrong} table, p from chi2 with k - 1 df."""
    from scipy.stats import chi2

    correct = np.array([95, 90, 99, 80, 97, 93, 88, 99, 91, 96])
    table = np.stack([correct, SUPPORT - correct], axis=1).astype(float)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    statistic = ((table - expected) ** 2 / expected).sum()
    assert homogeneity(correct, SUPPORT) == pytest.approx((statistic, chi2.sf(statistic, 9)), rel=1e-12)


def test_homogeneity_rejects_strongly_unequal_recalls() -> None:
    correct = np.array([99, 98, 60, 97, 99, 65, 98, 99, 70, 97])
    assert homogeneity(correct, SUPPORT)[1] < 1e-6


def test_homogeneity_keeps_its_level_with_equal_recalls() -> None:
    """100 seeded draws with every class recall 0.9: at most 5 rejections at 1% (expected 1)."""
    rng = np.random.default_rng(13)
    rejections = sum(homogeneity(rng.binomial(SUPPORT, 0.9), SUPPORT)[1] < 0.01 for _ in range(100))
    assert rejections <= 5


def test_homogeneity_of_a_perfect_model_is_not_a_rejection() -> None:
    assert homogeneity(SUPPORT, SUPPORT) == (0.0, 1.0)


def test_recall_se_is_binomial() -> None:
    np.testing.assert_allclose(recall_se([0.9, 0.5], [100, 400]), [0.03, 0.025])


def test_alpha_noise_is_one_without_noise_and_spreads_with_small_test_sets() -> None:
    """Huge test sets: alpha_hat of the class-blind pruned model ~ 1; small ones: a wide seeded spread."""
    recall = np.array([0.99, 0.95, 0.9, 0.97, 0.93, 0.98, 0.92, 0.96, 0.94, 0.91])
    big = alpha_noise(recall, np.full(10, 10**7), acc_pruned=0.8, draws=50, seed=1)
    np.testing.assert_allclose(big, 1.0, atol=0.02)
    small = alpha_noise(recall, np.full(10, 36), acc_pruned=0.8, draws=400, seed=1)
    assert np.nanquantile(small, 0.995) - np.nanquantile(small, 0.005) > 1.0
    np.testing.assert_array_equal(small, alpha_noise(recall, np.full(10, 36), 0.8, draws=400, seed=1))
    with pytest.raises(ValueError, match="acc_pruned"):
        alpha_noise(recall, np.full(10, 36), acc_pruned=0.99)


def test_alpha_noise_keeps_the_pairing_on_the_same_images() -> None:
    """Equal true recalls: Bbar_1 is pure noise, yet the pruned model shares the dense errors, so the
    simulated alpha_hat centres well above 0 (about A_1/A_t), not at 0 as for independent test sets."""
    sims = alpha_noise(np.full(10, 0.9), np.full(10, 100), acc_pruned=0.6, draws=2000, seed=3, equal=True)
    assert 0.9 < np.nanmedian(sims) < 2.0


def synthetic_frame(recalls: dict[str, np.ndarray], models: int, support: int, seed: int) -> pd.DataFrame:
    """Tidy dense rows: per dataset, ``models`` dense models whose per-class right answers are binomial."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, recall in recalls.items():
        for m in range(models):
            correct = rng.binomial(support, recall)
            for c, k in enumerate(correct):
                rows.append(
                    {
                        "dataset": dataset,
                        "dense_id": f"{dataset}{m}",
                        "stage": "dense",
                        "status": "ok",
                        "class": c,
                        "support": support,
                        "recall": k / support,
                        "accuracy": correct.sum() / (support * len(recall)),
                    }
                )
    return pd.DataFrame(rows)


def test_noise_check_flags_only_the_dataset_without_class_differences() -> None:
    recalls = {"flat": np.full(10, 0.95), "uneven": np.linspace(0.7, 0.99, 10)}
    frame = synthetic_frame(recalls, models=6, support=200, seed=0)
    check = noise_check(frame).set_index("dataset")
    assert check.loc["uneven", "rejecting"] == 6 and not check.loc["uneven", "flagged"]
    assert check.loc["flat", "flagged"] and "not distinguishable" in check.loc["flat", "reason"]


def test_noise_spread_marks_a_strong_intensification_beyond_noise() -> None:
    frame = synthetic_frame({"uneven": np.linspace(0.7, 0.99, 10)}, models=2, support=500, seed=0)
    runs = pd.DataFrame({"dense_id": ["uneven0", "uneven1"], "accuracy": [0.8, 0.8], "alpha_hat": [1.0, 5.0]})
    spread = noise_spread(frame, runs, draws=300)
    assert (spread.noise_low < 1).all() and (spread.noise_high > 1).all()
    assert spread.beyond_noise.tolist() == [False, True]


def test_spread_sentence_counts_runs_beyond_noise() -> None:
    spread = pd.DataFrame({"noise_low": [0.5, 0.6], "noise_high": [1.5, 1.4], "beyond_noise": [True, False]})
    assert "from 0.55 to 1.45" in spread_sentence(spread) and "1 of 2 pruned runs" in spread_sentence(spread)
