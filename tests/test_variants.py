"""The Q4 checks of the authors' variants and of random pruning's accuracy, against scipy and by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pruneflow.experiment.profiles import parse
from pruneflow.report import paper, tables, variants
from tests.test_grid import run_rows, tiny_spec


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    spec = tiny_spec(strategies=["UP", "UP-signed", "RP", "RP-bernoulli"], seeds=3)
    return run_rows(parse(spec), tmp_path_factory.mktemp("variants"))


def test_differences_are_paired_t_intervals_of_variant_minus_ours(frame) -> None:
    runs = tables.alphas(tables.intensification(frame))
    diffs = variants.differences(runs)
    assert set(diffs.comparison) == {"UP-signed - UP", "RP-bernoulli - RP"} and len(diffs) == 2 * 2
    row = diffs[(diffs.comparison == "RP-bernoulli - RP") & (diffs.compression == 10)].iloc[0]
    cell = runs[runs.compression == 10].pivot(index="dense_id", columns="strategy", values="accuracy")
    d = (cell["RP-bernoulli"] - cell["RP"]).to_numpy()
    low, high = stats.t.interval(0.99, len(d) - 1, d.mean(), stats.sem(d))
    assert row.models == 3 and row.accuracy_diff == pytest.approx(d.mean())
    assert (row.accuracy_low, row.accuracy_high) == pytest.approx((low, high))
    assert variants.differences(runs[runs.strategy.isin(["UP", "RP"])]).empty


def test_accuracy_by_stage_averages_each_runs_accuracy_per_stage(frame) -> None:
    got = variants.accuracy_by_stage(frame, "RP").set_index("compression")
    runs = frame.drop_duplicates(["run_id", "stage"])
    dense = runs[runs.stage == "dense"].set_index("dense_id").accuracy
    for t in (2.0, 10.0):
        rp = runs[(runs.strategy == "RP") & (runs.compression == t)]
        for stage in ("pruned", "finetuned"):
            assert got.loc[t, stage] == pytest.approx(rp[rp.stage == stage].accuracy.mean())
        assert got.loc[t, "dense"] == pytest.approx(dense.loc[rp.dense_id.unique()].mean())
        assert got.loc[t, "models"] == 3


def test_retained_by_width_is_a_t_interval_of_retained_accuracy() -> None:
    rng = np.random.default_rng(0)
    runs = pd.DataFrame(
        {
            "width": np.repeat([0.5, 1.0], 10),
            "compression": 50.0,
            "accuracy": rng.uniform(0.5, 0.9, 20),
            "retained": rng.uniform(0.6, 1.0, 20),
        }
    )
    got = variants.retained_by_width(runs).set_index("width")
    part = runs.retained[runs.width == 0.5].to_numpy()
    low, high = stats.t.interval(0.99, 9, part.mean(), stats.sem(part))
    assert (got.loc[0.5, "retained_low"], got.loc[0.5, "retained_high"]) == pytest.approx((low, high))


def _sentences(draw_ci: tuple[float, float], narrow: tuple[float, float, float]) -> str:
    by_stage = pd.DataFrame(
        dict(dataset=["a", "b"], compression=2.0, models=30, dense=0.95, pruned=[0.90, 0.92], finetuned=0.93)
    )
    diffs = pd.DataFrame(
        dict(
            comparison="RP-bernoulli - RP",
            dataset=["a", "b"],
            compression=2.0,
            accuracy_diff=sum(draw_ci) / 2,
            accuracy_low=[draw_ci[0], -0.001],
            accuracy_high=[draw_ci[1], 0.001],
        )
    )
    widths = pd.DataFrame(
        dict(
            width=[0.125, 1.0],
            compression=50.0,
            retained=[narrow[0], 0.95],
            retained_low=[narrow[1], 0.94],
            retained_high=[narrow[2], 0.96],
        )
    )
    return variants.rp_sentences(by_stage, diffs, widths, paper.published())


def test_rp_sentences_read_the_intervals() -> None:
    text = _sentences((-0.01, 0.01), (0.80, 0.78, 0.82))
    assert "paper's RP on CIFAR-10/ResNet-56 ends at mean accuracy 0.645" in text
    assert "fine-tuning adds +0.010 to +0.030" in text and "stays above the paper's fine-tuned RP" in text
    assert "the mask draw does not explain the gap" in text and "narrower models lose more" in text
    text = _sentences((0.01, 0.05), (0.94, 0.90, 0.97))
    assert "the mask draw matters" in text and "beyond +-0.02 on a:" in text
    assert "the intervals overlap" in text


def test_differences_sentence_counts_the_marks() -> None:
    diffs = pd.DataFrame(
        dict(
            comparison=["A - a"] * 3 + ["B - b"],
            accuracy_diff=[-0.2, -0.1, 0.01, 0.0],
            accuracy_mark=["<", "<", "?", "?"],
            alpha_hat_mark=[">", "?", "<", "?"],
        )
    )
    text = variants.differences_sentence(diffs)
    assert "A - a: accuracy lower in 2 and higher in 0 of 3 cells (differences -0.200 to +0.010)" in text
    assert "alpha_hat higher in 1 and lower in 1; B - b: accuracy lower in 0" in text
