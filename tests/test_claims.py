"""Claims: pooled paired estimates on synthetic frames with a known truth, against scipy,
statsmodels and pingouin, and a seeded null simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.multitest import multipletests

from pruneflow.report import claims, inference

RATIOS = (2, 4, 10, 20, 50)


def synthetic(
    rng: np.random.Generator,
    *,
    seeds: int = 10,
    datasets: dict[str, float] | None = None,
    alpha_high: dict[str, float] | None = None,
    noise: float = 0.05,
    model_sd: float = 0.05,
    up_accuracy: float = 0.0,
    rp_collapse: bool = False,
    sizes: tuple[float, float] = (0.0, 0.0),
) -> pd.DataFrame:
    """Per-run rows like tables.alphas: alpha_hat = truth + dense-model effect + noise.
    ``datasets`` maps a dataset to its dense accuracy, ``alpha_high`` a strategy to its alpha_hat at
    t >= 20 (1 elsewhere and for the others), ``sizes`` the extra alpha_hat of the (smaller, larger)
    model of the size ladder at t >= 20 (on the first dataset, MP, both bases)."""
    datasets = datasets or {"easy": 0.95, "hard": 0.8}
    alpha_high = alpha_high or {}
    rows = []

    def prune(dataset, dense, width, basis, strategies, seed, extra):
        u = rng.normal(0, model_sd)
        for s in strategies:
            for t in RATIOS:
                truth = (alpha_high.get(s, 1.0) + extra) if t >= 20 else 1.0
                acc = dense - 0.01 * (t >= 20) + (up_accuracy if s == "UP" and t >= 20 else 0.0)
                if s == "RP" and rp_collapse and t >= 20:
                    acc = 0.1
                rows.append(
                    dict(
                        dataset=dataset,
                        model="m",
                        width=width,
                        n_params=int(1000 * width),
                        basis=basis,
                        strategy=s,
                        compression=float(t),
                        seed=seed,
                        dense_id=f"{dataset}-{width}-{basis}-{seed}",
                        accuracy=acc + rng.normal(0, 0.003),
                        dense_accuracy=dense,
                        alpha_hat=truth + u + rng.normal(0, noise),
                        classes=10,
                    )
                )

    for seed in range(seeds):
        for dataset, dense in datasets.items():
            prune(dataset, dense, 1.0, "prunable", ["MP", "GP", "UP", "RP"], seed, 0.0)
        first = next(iter(datasets))
        for basis in ("prunable", "all"):
            prune(first, datasets[first], 0.25, basis, ["MP"], seed, sizes[0])
            if basis == "all":
                prune(first, datasets[first], 1.0, basis, ["MP"], seed, sizes[1])
    runs = pd.DataFrame(rows)
    big = (runs.width == 1.0) & (runs.basis == "prunable") & (runs.strategy == "MP") & (runs.dataset == first)
    shift = runs.compression >= 20
    runs.loc[big & shift, "alpha_hat"] += sizes[1]  # the largest model of the ladder on the prunable basis
    return runs


@pytest.fixture(scope="module")
def known() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = synthetic(
        rng,
        alpha_high={"MP": 1.3, "GP": 1.3, "UP": 1.3},
        up_accuracy=0.02,
        rp_collapse=True,
        sizes=(0.4, 0.0),
    )
    return claims.evaluate(frame, resamples=500).set_index("claim")


def test_known_truth_gives_the_right_verdicts(known):
    """MP = GP = UP at 1.3 for t >= 20: high supported, low equivalent, UP = MP equivalent, UP more
    accurate supported, RP collapsed (left out of the intensification claims, less accurate)."""
    assert list(known.index) == list(claims.KEYS)
    assert known.verdict["high"] == "supported"
    assert known.verdict["low"] == "equivalent"
    assert known.verdict["up_alpha"] == "equivalent"
    assert known.verdict["up_accuracy"] == "supported"
    assert known.verdict["rp_accuracy"] == "supported"
    assert known.verdict["smaller_all"] == "supported"
    truth = {"high": 0.3, "low": 0.0, "up_alpha": 0.0, "up_accuracy": 0.02, "smaller_all": 0.4}
    for key, value in truth.items():
        assert known.ci_low[key] <= value <= known.ci_high[key], key
    # RP at t >= 20 is at chance: its two cells per dataset are counted as left out
    assert known.excluded["rp_alpha"] == 4 and known.excluded["high"] == 0
    assert known.bootstrap_agrees.all()


def test_every_row_is_well_formed(known):
    assert (known.ci_low <= known.estimate).all() and (known.estimate <= known.ci_high).all()
    assert set(known.verdict) <= set(claims.VERDICTS)
    assert (known.p_adjusted >= known.p_value).all()
    power = claims.power(known.reset_index(), seeds=10)
    assert all(isinstance(n, (int, np.integer)) and n > 0 for n in power.seeds_margin)
    assert (power.seeds_half_margin >= power.seeds_margin).all()


def test_paired_estimate_equals_ttest_rel():
    """One dataset, one high ratio: up_alpha is the mean UP - MP difference per dense model and its p
    is scipy's ttest_rel."""
    rng = np.random.default_rng(2)
    frame = synthetic(rng, datasets={"only": 0.9}, alpha_high={"UP": 1.2, "MP": 1.3}, noise=0.1)
    frame = frame[frame.compression != 50]
    row = claims.evaluate(frame, resamples=0).set_index("claim").loc["up_alpha"]
    cell = frame[(frame.compression == 20) & (frame.width == 1) & (frame.basis == "prunable")]
    up = cell[cell.strategy == "UP"].sort_values("dense_id").alpha_hat.to_numpy()
    mp = cell[cell.strategy == "MP"].sort_values("dense_id").alpha_hat.to_numpy()
    assert row.estimate == pytest.approx((up - mp).mean())
    assert row.p_value == pytest.approx(stats.ttest_rel(up, mp).pvalue)
    assert row.models == len(up)


def test_pooled_estimate_equals_the_mixed_model():
    """On a balanced design the pooled estimate of 'high' is the fixed intercept of a linear mixed
    model of alpha_hat - 1 with the dense model as random intercept (statsmodels MixedLM)."""
    rng = np.random.default_rng(3)
    frame = synthetic(
        rng, datasets={"only": 0.9}, alpha_high={"MP": 1.2, "GP": 1.25, "UP": 1.1}, model_sd=0.2
    )
    row = claims.evaluate(frame, resamples=0).set_index("claim").loc["high"]
    used = frame[
        (frame.compression >= 20)
        & (frame.strategy != "RP")
        & (frame.width == 1)
        & (frame.basis == "prunable")
    ].assign(y=lambda d: d.alpha_hat - 1)
    fit = smf.mixedlm("y ~ 1", used, groups=used.dense_id).fit(reml=True)
    assert row.estimate == pytest.approx(fit.fe_params["Intercept"], rel=1e-6)
    assert row.se == pytest.approx(fit.bse["Intercept"], rel=0.05)


def test_tost_agrees_with_pingouin():
    x = np.random.default_rng(4).normal(0.03, 0.1, 12)
    ours = inference.pooled([x]).tost(0.1)
    theirs = pg.tost(x, np.zeros_like(x), bound=0.1, paired=True)["pval"].iloc[0]
    assert ours == pytest.approx(theirs)


def test_holm_is_monotone_and_matches_statsmodels():
    p = np.random.default_rng(5).uniform(0, 0.2, 9)
    adjusted = inference.holm(p)
    order = np.argsort(p)
    assert (np.diff(adjusted[order]) >= 0).all() and (adjusted >= p).all()
    assert np.allclose(adjusted, multipletests(p, method="holm")[1])
    with_nan = inference.holm([0.01, np.nan, 0.04])
    assert np.isnan(with_nan[1]) and np.allclose(
        with_nan[[0, 2]], multipletests([0.01, 0.04], method="holm")[1]
    )


def test_seeds_needed_is_the_smallest_n_reaching_the_half_width():
    est = inference.pooled([np.random.default_rng(6).normal(0, 0.3, 10)])
    n = inference.seeds_needed(est, 0.1, 0.99)
    sd = est.se * np.sqrt(10)
    half = lambda k: stats.t.ppf(0.995, k - 1) * sd / np.sqrt(k)  # noqa: E731
    assert half(n) <= 0.1 < half(n - 1)
    rng = np.random.default_rng(8)  # against the linear search over n, D strata, limits included
    for strata, spread, width, limit in [(1, 0.3, 0.1, 100_000), (3, 1.0, 0.05, 100_000), (2, 0.01, 0.5, 9),
                                         (1, 5.0, 0.001, 500), (4, 0.2, 0.02, 100_000)]:  # fmt: skip
        est = inference.pooled([rng.normal(0, spread, 12) for _ in range(strata)])
        sd, n = est.se * np.sqrt(est.units / strata), 2
        while n < limit and stats.t.ppf(0.995, strata * (n - 1)) * sd / np.sqrt(n) > width:
            n += 1
        assert inference.seeds_needed(est, width, 0.99, limit) == n


def test_null_frames_rarely_give_a_verdict():
    """Pure noise around alpha_hat = 1 and equal accuracies: at level 0.99, at least 95 of 100 seeded
    frames show no 'supported' or 'contradicted' claim (the same estimator, small frames)."""
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(100):
        frame = synthetic(rng, seeds=5, noise=0.2)
        table = claims.evaluate(frame, resamples=0)
        hits += table.verdict.isin(["supported", "contradicted"]).any()
    assert hits <= 5


def test_metric_names_the_column_of_the_intensification_claims():
    """Claims on another per-run column with null 1 (e.g. an excess ratio): doubling the deviation
    from 1 doubles the intensification estimates and leaves the accuracy claims alone."""
    rng = np.random.default_rng(8)
    frame = synthetic(rng, alpha_high={"MP": 1.3, "GP": 1.3, "UP": 1.2})
    base = claims.evaluate(frame, resamples=0).set_index("claim")
    other = claims.evaluate(frame.assign(excess=1 + 2 * (frame.alpha_hat - 1)), metric="excess", resamples=0)
    other = other.set_index("claim")
    for key in ("high", "low", "up_alpha", "rp_alpha", "smaller_all"):
        assert other.estimate[key] == pytest.approx(2 * base.estimate[key]), key
        assert "excess" in other.statement[key]
    assert other.estimate["up_accuracy"] == pytest.approx(base.estimate["up_accuracy"])


def test_each_architecture_family_gets_its_own_verdict():
    """Issue 21: an MLP that intensifies at t >= 20 and a ResNet that does not, in one frame: the pooled
    test mixes them, by_family finds each truth (high supported for the MLP, equivalent for the
    ResNet), equal to evaluate on the family's runs alone; a claim no family's runs can test is left out."""
    rng = np.random.default_rng(21)
    mlp = synthetic(rng, seeds=12, alpha_high={"MP": 1.4, "GP": 1.4, "UP": 1.4}).assign(model="lenet300-100")
    resnet = synthetic(rng, seeds=12, model_sd=0.01, noise=0.02).assign(model="resnet20")
    runs = pd.concat([mlp, resnet.assign(dense_id="r" + resnet.dense_id)], ignore_index=True)
    options = dict(claims=["high", "low", "harder"], resamples=0)
    table = claims.by_family(runs, **options)
    assert list(dict.fromkeys(table.family)) == ["MLP", "ResNet"]
    verdict = table.set_index(["family", "claim"]).verdict
    assert verdict["MLP", "high"] == "supported" and verdict["ResNet", "high"] == "equivalent"
    alone = claims.evaluate(runs[runs.model == "resnet20"], **options).set_index("claim")
    resnet_rows = table[table.family == "ResNet"].set_index("claim")
    pd.testing.assert_series_equal(resnet_rows.estimate, alone.estimate.loc[resnet_rows.index])
    pooled = claims.evaluate(runs, **options)
    side = claims.beside_pooled(pooled, table, 0.99)
    assert list(side.columns) == ["claim", "pooled (99% CI)", "MLP", "ResNet"]
    assert side.set_index("claim").loc["high", "MLP"].startswith("supported (+0.4")
    from pruneflow.report import words

    sentence = words.families(table)
    assert "**Architecture-specific**" in sentence and "high (MLP supported, ResNet equivalent)" in sentence
    for name, group in table.groupby("family"):  # 12 models per cell against each claim's need
        enough = sum(need <= 12 for need in group.seeds_margin if pd.notna(need))
        assert f"{enough} of {len(group)} in {name}" in sentence


def test_family_of_a_model_name():
    from pruneflow.report.tables import family

    names = ["lenet300-100", "lenet5", "resnet20", "resnet110", "my-net"]
    assert [family(n) for n in names] == ["MLP", "LeNet-5", "ResNet", "ResNet", "my-net"]
