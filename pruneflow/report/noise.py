"""Is a dataset's test set large enough to see class differences? Binomial test-set noise of recall.

For a model with n_c test samples of class c and k_c of them right (recall R^c = k_c / n_c):

- :func:`homogeneity` - chi-square test of homogeneity of the (classes x {right, wrong}) table:
  H0 = every class has the same recall; small p = the recall differences exceed binomial noise;
- :func:`recall_se` - binomial standard error of each class recall, sqrt(R^c (1 - R^c) / n_c);
- :func:`alpha_noise` - alpha_hat of simulated pruned models that degrade no class more than another,
  scored on the same test images as their dense model (see its docstring);
- :func:`noise_check` - per dataset: how many dense models pass the test, and the flag.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import chi2_contingency

from ..metrics import alpha_hat, normalized_recall_balance

LEVEL = 0.01  # significance level of the homogeneity test


def homogeneity(correct: ArrayLike, support: ArrayLike) -> tuple[float, float]:
    """(chi-square statistic, p-value) of H0 "all classes have the same recall", from per-class counts of
    right answers k_c and test samples n_c: Pearson's test on the table [[k_c, n_c - k_c]]_c.
    Classes with no sample are left out; a model with no error (or no right answer) gives p = 1."""
    k, n = np.asarray(correct, dtype=np.float64), np.asarray(support, dtype=np.float64)
    keep = n > 0
    table = np.stack([k[keep], n[keep] - k[keep]], axis=1)
    if (table.sum(axis=0) == 0).any():
        return 0.0, 1.0
    statistic, p, _, _ = chi2_contingency(table, correction=False)
    return float(statistic), float(p)


def recall_se(recall: ArrayLike, support: ArrayLike) -> np.ndarray:
    """Binomial standard error of each class recall: sqrt(R^c (1 - R^c) / n_c)."""
    r, n = np.asarray(recall, dtype=np.float64), np.asarray(support, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(r * (1 - r) / n)


def alpha_noise(
    recall: ArrayLike,
    support: ArrayLike,
    acc_pruned: float,
    draws: int = 1000,
    seed: int = 0,
    equal: bool = False,
) -> np.ndarray:
    """``draws`` values of alpha_hat when pruning degrades every class alike and only test-set noise acts.

    Each draw resamples the dense model's answers on the same test images: k_c ~ Binomial(n_c, p_c) right
    answers in class c, with p_c the dense recall R_1^c (or, with ``equal``, the dense accuracy for every
    class: no true class difference at all). The pruned model keeps the dense model's errors and loses each
    of its right answers with the same probability f = 1 - A_t / A_1 in every class,
    k'_c ~ Binomial(k_c, 1 - f) (so it is scored on the same images and shares the dense model's errors).
    Without noise R_t^c = R_1^c A_t / A_1, so Bbar_t = Bbar_1 and alpha_hat = 1 exactly; the spread of the
    draws is what test-set noise alone gives. Needs A_t <= A_1; seeded."""
    r, n = np.asarray(recall, dtype=np.float64), np.asarray(support, dtype=np.int64)
    acc_dense = float((r * n).sum() / n.sum())
    if not 0 < acc_pruned <= acc_dense:
        raise ValueError(f"acc_pruned must be in (0, A_1 = {acc_dense:.4g}], got {acc_pruned!r}")
    p = np.full_like(r, acc_dense) if equal else r
    rng = np.random.default_rng(seed)
    dense = rng.binomial(n, p, size=(draws, len(n)))
    pruned = rng.binomial(dense, acc_pruned / acc_dense)
    bbar = [normalized_recall_balance(k / n, k.sum(axis=1) / n.sum()) for k in (dense, pruned)]
    return alpha_hat(*bbar)


def dense_tests(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dense model (rows of stage ``dense`` of the tidy results): the homogeneity test's statistic and
    p-value, whether it rejects at 1%, its test samples, accuracy and mean binomial SE of a class recall."""
    dense = frame[(frame.stage == "dense") & (frame.status == "ok")].sort_values(["dense_id", "class"])
    rows = []
    for (dataset, dense_id), model in dense.groupby(["dataset", "dense_id"], sort=True):
        correct = np.rint(model.recall.to_numpy() * model.support.to_numpy())
        statistic, p = homogeneity(correct, model.support)
        rows.append(
            {
                "dataset": dataset,
                "dense_id": dense_id,
                "test_samples": int(model.support.sum()),
                "accuracy": float(model.accuracy.iloc[0]),
                "chi2": statistic,
                "p_value": p,
                "rejects": p < LEVEL,
                "recall_se": float(np.nanmean(recall_se(model.recall, model.support))),
            }
        )
    return pd.DataFrame(rows)


def noise_check(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: dense models, how many reject "equal recalls" at 1%, median p, mean binomial SE of a
    class recall, and ``flagged`` = fewer than half of the dense models reject (class differences not
    distinguishable from test-set noise), with a sentence saying why."""
    tests = dense_tests(frame)
    out = tests.groupby("dataset", sort=True).agg(
        models=("dense_id", "size"),
        rejecting=("rejects", "sum"),
        median_p=("p_value", "median"),
        test_samples=("test_samples", "first"),
        accuracy=("accuracy", "mean"),
        recall_se=("recall_se", "mean"),
    )
    out["flagged"] = out.rejecting * 2 < out.models
    out["reason"] = [
        f"{d}: the chi-square test of equal per-class recall rejects at 1% in {r} of {m} dense models "
        f"({s:,} test samples, binomial SE of a class recall {se:.1%})"
        + ("; its class differences are not distinguishable from test-set noise" if f else "")
        for d, r, m, s, se, f in zip(
            out.index, out.rejecting, out.models, out.test_samples, out.recall_se, out.flagged, strict=True
        )
    ]
    return out.reset_index()


def noise_spread(frame: pd.DataFrame, runs: pd.DataFrame, draws: int = 500, seed: int = 0) -> pd.DataFrame:
    """Per pruned run of ``runs`` (:func:`..tables.alphas`): the central 99% of alpha_hat under test-set
    noise alone (:func:`alpha_noise` with its dense model's recalls and its own A_t), ``noise_low`` and
    ``noise_high``, and ``beyond_noise`` = its alpha_hat lies outside that band (an A_t above A_1, after
    fine-tuning at small t, is simulated as A_1: no loss, alpha_hat = 1 up to noise)."""
    dense = frame[(frame.stage == "dense") & (frame.status == "ok")].sort_values(["dense_id", "class"])
    by_model = {k: (g.recall.to_numpy(), g.support.to_numpy()) for k, g in dense.groupby("dense_id")}
    low, high = [], []
    for i, (dense_id, acc) in enumerate(zip(runs.dense_id, runs.accuracy, strict=True)):
        recall, support = by_model[dense_id]
        acc = min(float(acc), float((recall * support).sum() / support.sum()))
        sims = alpha_noise(recall, support, acc, draws=draws, seed=seed + i)
        lo, hi = np.nanquantile(sims, [0.005, 0.995]) if np.isfinite(sims).any() else (np.nan, np.nan)
        low.append(lo)
        high.append(hi)
    out = runs.assign(noise_low=low, noise_high=high)
    return out.assign(beyond_noise=(out.alpha_hat < out.noise_low) | (out.alpha_hat > out.noise_high))


def flag_sentence(check: pd.DataFrame) -> str:
    """The page's sentence on test-set noise, from :func:`noise_check` of its datasets."""
    flagged = check[check.flagged]
    passed = check[~check.flagged]
    parts = []
    if len(flagged):
        parts.append(
            "**Test-set noise:** "
            + "; ".join(flagged.reason)
            + ". On such a dataset alpha_hat compares noise with noise: read it with care."
        )
    if len(passed):
        parts.append(
            "Class differences exceed test-set noise on "
            + ", ".join(
                f"{d} ({r} of {m} dense models reject equal recalls at 1%)"
                for d, r, m in zip(passed.dataset, passed.rejecting, passed.models, strict=True)
            )
            + "."
        )
    return " ".join(parts)


def spread_sentence(spread: pd.DataFrame) -> str:
    """The page's sentence on :func:`noise_spread`: mean 99% band of alpha_hat under noise alone, and how
    many runs lie outside their band."""
    finite = spread[np.isfinite(spread.noise_low) & np.isfinite(spread.noise_high)]
    if not len(finite):
        return ""
    return (
        "Test-set noise alone (pruning that degrades every class alike to the same accuracy, scored on the "
        f"same test images) would put alpha_hat in a 99% band from {finite.noise_low.mean():.2f} to "
        f"{finite.noise_high.mean():.2f} on average; {int(finite.beyond_noise.sum())} of {len(finite)} "
        "pruned runs lie outside their band."
    )
