"""Numbers of the pages on the authors' UP (issue 18): realised t, and paired differences at the
same asked t and at matched compression, against pandas and scipy by hand."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy import stats

from pruneflow.experiment import grid, results
from pruneflow.experiment.profiles import parse
from pruneflow.report import authors, tables
from tests.test_grid import tiny_spec


def _run(profile, folder) -> pd.DataFrame:
    """Run ``profile`` into ``folder`` and read back its rows."""
    grid.run(profile, folder, progress=False)
    return results.collect(folder, profile.runs).frame


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    strategies = ["MP", "UP", "UP-authors", "MP@UP-authors", "UP@UP-authors"]
    spec = tiny_spec(strategies=strategies, ratios=[2, 10], seeds=3)
    return _run(parse(spec), tmp_path_factory.mktemp("authors"))


def test_realised_summarises_each_strategys_realised_t_on_both_bases(frame) -> None:
    got = authors.realised(frame).set_index(["strategy", "compression"])
    assert set(got.index.get_level_values(0)) == {"MP", "UP", "UP-authors", "MP@UP-authors", "UP@UP-authors"}
    runs = frame[frame.stage == "finetuned"].drop_duplicates("run_id")
    cell = runs[(runs.strategy == "UP-authors") & (runs.compression == 10)]
    row = got.loc[("UP-authors", 10.0)]
    assert row.models == 3 and row.t_prunable_mean == pytest.approx(cell.compression_prunable.mean())
    assert (row.t_all_min, row.t_all_max) == (cell.compression_all.min(), cell.compression_all.max())
    assert row.t_prunable_max < 10  # the authors' rule keeps more than asked
    assert got.loc[("MP", 10.0)].t_prunable_mean == pytest.approx(10, rel=1e-3)
    assert got.loc[("MP@UP-authors", 10.0)].t_prunable_mean == pytest.approx(row.t_prunable_mean)


def test_differences_are_paired_t_intervals_at_asked_and_matched_compression(frame) -> None:
    table = tables.intensification(frame)
    runs = tables.alphas(table)
    diffs = authors.differences(runs, frame)
    assert list(diffs.columns[:7]) == [
        "comparison",
        "compared_at",
        "dataset",
        "basis",
        "compression",
        "t_a",
        "t_b",
    ]
    assert set(zip(diffs.comparison, diffs.compared_at, strict=True)) == {
        ("UP-authors - MP", "asked t"),
        ("UP-authors - MP@UP-authors", "realised t"),
        ("UP-authors - UP@UP-authors", "realised t"),
    }
    assert len(diffs) == 3 * 2
    for b in ("MP", "UP@UP-authors"):
        row = diffs[(diffs.comparison == f"UP-authors - {b}") & (diffs.compression == 10)].iloc[0]
        cell = runs[runs.compression == 10].pivot(index="dense_id", columns="strategy", values="alpha_hat")
        d = (cell["UP-authors"] - cell[b]).to_numpy()
        low, high = stats.t.interval(0.99, len(d) - 1, d.mean(), stats.sem(d))
        assert row.models == 3 and row.alpha_hat_diff == pytest.approx(d.mean())
        assert (row.alpha_hat_low, row.alpha_hat_high) == pytest.approx((low, high))
    matched = diffs[diffs.compared_at == "realised t"]
    assert (matched.t_a == matched.t_b).all() and (matched.t_a < matched.compression).all()
    asked = diffs[diffs.compared_at == "asked t"]
    assert asked.t_b.to_numpy() == pytest.approx(asked.compression.to_numpy(), rel=1e-3)
    assert authors.differences(runs[runs.strategy.isin(["MP", "UP"])], frame).empty
    text = authors.advantage_sentence(diffs)
    assert text.startswith(
        "Where the 99% interval excludes 0: UP-authors - MP at the same asked t: accuracy higher"
    )
    assert "UP-authors - MP@UP-authors at the compression it reached: accuracy higher in" in text


def test_advantage_sentence_counts_the_marks() -> None:
    diffs = pd.DataFrame(
        dict(
            comparison=["A - a"] * 3,
            compared_at=["asked t", "asked t", "realised t"],
            accuracy_mark=[">", "?", "<"],
            alpha_hat_mark=["<", "<", ">"],
        )
    )
    assert authors.advantage_sentence(diffs) == (
        "Where the 99% interval excludes 0: A - a at the same asked t: accuracy higher in 1 and lower in 0 "
        "of 2 cells, alpha_hat lower in 2 and higher in 0; A - a at the compression it reached: accuracy "
        "higher in 0 and lower in 1 of 1 cells, alpha_hat lower in 0 and higher in 1."
    )


def test_methods_text_names_the_files_and_the_reproductions() -> None:
    for text in (
        "strategies/magnitude.py",
        "strategies/utils.py",
        "MixedMagGrad",
        "RP-bernoulli",
        "UP-signed",
    ):
        assert text in authors.METHODS
