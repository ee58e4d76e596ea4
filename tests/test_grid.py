"""The experiment grid: resumable after SIGKILL, cached, self-healing, traceable, strict on specs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from pruneflow.experiment import grid, results
from pruneflow.experiment.profiles import Profile, load_profile, parse

VOLATILE = ["seconds", "device", "code_version"]  # the only columns allowed to differ between runs


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a canonical order without the wall-time and provenance columns."""
    keys = ["run_id", "stage", "class"]
    return (
        frame.drop(columns=[*VOLATILE, "code_fingerprint"], errors="ignore")
        .sort_values(keys)
        .reset_index(drop=True)
    )


def tiny_spec(**grid_overrides) -> dict:
    """A profile of 2 seeds x 2 strategies x 2 ratios on digits with a narrow MLP."""
    spec = {
        "name": "tiny",
        "seeds": 2,
        "train": {"epochs": 2, "lr": 0.05},
        "finetune": {"epochs": 1, "lr": 0.01},
        "datasets": {"digits": {"model": "lenet300-100"}},
        "grids": {
            "g": {
                "datasets": ["digits"],
                "models": [{"name": "lenet300-100", "width": 0.125}],
                "strategies": ["MP", "RP"],
                "ratios": [2, 10],
            }
        },
    }
    spec["grids"]["g"].update(grid_overrides)
    return spec


def run_rows(spec: Profile | str, folder: Path, **options) -> pd.DataFrame:
    """Run ``spec`` into ``folder``; its rows as :func:`results.collect` reads them back."""
    profile = spec if isinstance(spec, Profile) else load_profile(spec)
    grid.run(profile, folder, progress=False, **options)
    done = results.collect(folder, profile.runs)
    assert not done.missing
    return done.frame


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    """An uninterrupted run of the smoke profile."""
    return run_rows("smoke", tmp_path_factory.mktemp("reference"))


def test_sigkill_then_resume_recomputes_nothing_finished(reference, tmp_path):
    """Kill the smoke run mid-way; the rerun keeps every finished file and ends equal to the reference."""
    cmd = [
        sys.executable,
        "-m",
        "pruneflow",
        "run",
        "--profile",
        "smoke",
        "--results",
        str(tmp_path),
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("runs/*.parquet"))) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*.parquet")}
    assert 30 <= len(finished) < len(load_profile("smoke").runs), "the kill did not land mid-run"

    resumed = subprocess.run([*cmd], capture_output=True, text=True, check=True).stdout
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items()), "a finished run was rewritten"
    failed = set(reference.run_id[reference.status != "ok"])
    unfinished = {r.id for r in load_profile("smoke").runs} - {p.stem for p in finished}
    assert f"{len(unfinished - failed)} computed" in resumed
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"
    pd.testing.assert_frame_equal(tidy(results.load(tmp_path)), tidy(reference))


def test_second_run_trains_nothing(tmp_path):
    """A finished profile is read back: nothing computed, same table."""
    spec = parse(tiny_spec())
    first = grid.run(spec, tmp_path, progress=False)
    assert (first.computed, first.cached, first.failed, first.errored) == (8, 0, 0, 0)
    rows = results.collect(tmp_path, spec.runs).frame
    second = grid.run(spec, tmp_path, progress=False)
    assert (second.computed, second.cached, second.failed) == (0, 8, 0)
    assert "8 runs - 0 computed, 8 cached, 0 failed" in str(second)
    pd.testing.assert_frame_equal(tidy(rows), tidy(results.collect(tmp_path, spec.runs).frame))


def test_collect_reads_the_runs_asked_for_and_names_the_missing(tmp_path):
    """collect: the rows of the runs asked for and of their dense models (each once), the runs
    without rows as missing; it writes nothing."""
    spec = parse(tiny_spec())
    assert results.collect(tmp_path / "none", spec.runs).missing == spec.runs
    assert not (tmp_path / "none").exists()
    mp = [r for r in spec.runs if r.strategy == "MP"]
    grid.run(spec, tmp_path, progress=False, only={"strategy": "MP"})
    done = results.collect(tmp_path, spec.runs)
    assert done.missing == [r for r in spec.runs if r.strategy == "RP"]
    assert set(done.frame.run_id) == {r.id for r in mp} | {d.id for d in spec.dense}
    assert not done.frame.duplicated(["run_id", "stage", "class"]).any()
    assert set(done.frame.code_fingerprint) == {r.code for r in mp} | {d.code for d in spec.dense}
    pd.testing.assert_frame_equal(tidy(done.frame), tidy(results.load(tmp_path)))


def test_finetuning_together_equals_one_by_one(tmp_path):
    """Fine-tuning runs of a dense model together (vmapped, the CUDA default) gives the same table."""
    spec = parse(tiny_spec(strategies=["MP", "GP", "UP", "RP"]))
    one = run_rows(spec, tmp_path / "one", finetune_together=1)
    together = run_rows(spec, tmp_path / "together", finetune_together=3)
    pd.testing.assert_frame_equal(tidy(one), tidy(together), check_exact=False, atol=1e-6)


# Across modes (one in-process sequence with torch's threads vs single-threaded worker processes)
# float reductions may differ; a run's accuracy may then move by at most this many test samples.
MODE_TOLERANCE_SAMPLES = 2


def test_worker_processes_agree_with_the_sequential_path(tmp_path):
    """Workers in processes give the sequential path's rows, accuracies within MODE_TOLERANCE_SAMPLES
    test samples (observed: identical), and a rerun in the same mode gives identical rows."""
    spec = parse(tiny_spec(strategies=["MP", "GP", "UP", "RP"]))
    sequential = tidy(run_rows(spec, tmp_path / "one", workers=1))
    pooled = tidy(run_rows(spec, tmp_path / "two", workers=2))
    again = tidy(run_rows(spec, tmp_path / "again", workers=2))
    pd.testing.assert_frame_equal(pooled, again)
    columns = [c for c in sequential.columns if c not in ("recall", "accuracy")]
    pd.testing.assert_frame_equal(sequential[columns], pooled[columns])
    test_size = sequential.groupby(["run_id", "stage"]).support.transform("sum")
    moved = ((sequential.accuracy - pooled.accuracy).abs() * test_size).round()
    assert moved.max() <= MODE_TOLERANCE_SAMPLES


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other shapes"])
def test_corrupted_files_are_recomputed(tmp_path, damage):
    """A truncated run file is recomputed, not read as data; a dense checkpoint that cannot be
    loaded (truncated, garbage bytes, weights of another shape) is retrained for the runs needing it."""
    spec = parse(tiny_spec())
    first = run_rows(spec, tmp_path)
    victim = sorted(tmp_path.glob("runs/*.parquet"))[0]
    dense = results.config(victim.stem, tmp_path).dense
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    checkpoint = tmp_path / "dense" / f"{dense.id}.pt"
    if damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    elif damage == "garbage":
        checkpoint.write_bytes(b"garbage\n")
    else:
        torch.save({"weight": torch.ones(3)}, checkpoint)
    assert victim.stem not in set(results.load(tmp_path).run_id), "a truncated file was read as data"
    again = grid.run(spec, tmp_path, progress=False)
    assert (again.computed, again.cached, again.failed) == (1, 7, 0)
    assert torch.load(checkpoint, weights_only=True).keys() != {"weight"}, "the checkpoint was not rewritten"
    pd.testing.assert_frame_equal(tidy(first), tidy(results.load(tmp_path)))


def test_rows_trace_to_their_config(tmp_path):
    """Every run id resolves to the full config that produced it."""
    spec = parse(tiny_spec())
    frame = run_rows(spec, tmp_path)
    by_id = {r.id: r for r in spec.runs} | {d.id: d for d in spec.dense}
    assert set(frame.run_id) == set(by_id)
    for run_id in frame.run_id.unique():
        assert results.config(run_id, tmp_path) == by_id[run_id]
    with pytest.raises(KeyError, match="nope"):
        results.config("nope", tmp_path)


def test_tidy_rows(tmp_path):
    """One row per (run, stage, class); recall and accuracy agree with each other."""
    frame = run_rows(parse(tiny_spec()), tmp_path)
    assert set(frame.stage) == {"dense", "pruned", "finetuned"}
    assert not frame.duplicated(["run_id", "stage", "class"]).any()
    assert (frame.groupby(["run_id", "stage"]).size() == 10).all()
    weighted = frame.assign(hits=frame.recall * frame.support).groupby(["run_id", "stage"])
    accuracy = weighted.hits.sum() / weighted.support.sum()
    pd.testing.assert_series_equal(accuracy, weighted.accuracy.first(), check_names=False)
    pruned = frame[frame.stage != "dense"]
    assert ((pruned.compression_prunable - pruned.compression).abs() / pruned.compression < 0.01).all()


def test_failures_are_data(tmp_path):
    """A diverging training is recorded with its reason; the rest of the grid goes on."""
    spec = tiny_spec()
    spec["train"]["lr"] = 1e6
    summary = grid.run(parse(spec), tmp_path, progress=False)
    frame = results.load(tmp_path)
    assert set(frame.status) == {"diverged"}
    assert frame.reason.str.contains("loss").all()
    assert (summary.computed, summary.cached, summary.failed, summary.errored) == (0, 0, 8, 0)
    assert len(summary.reasons) == 8 and all("loss" in r for r in summary.reasons)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"datasets": ["nope"]}, "unknown dataset 'nope'.*'digits'"),
        ({"models": ["nope"]}, "unknown model 'nope'.*'lenet5'"),
        ({"strategies": ["XX"]}, "unknown strategy 'XX'.*'MP'"),
        ({"ratios": [1]}, "compression must be a finite number > 1"),
        ({"ratios": []}, "grid 'g' is empty"),
        ({"bases": ["some"]}, "unknown basis 'some'.*'prunable'"),
    ],
)
def test_bad_specs_fail_before_work(tmp_path, change, message):
    """Bad specs raise a clear ValueError and write nothing."""
    target = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        grid.run(parse(tiny_spec(**change)), target, progress=False)
    assert not target.exists()


def test_bad_seed_count_and_results_dir(tmp_path):
    """A negative seed count, an unreadable results folder and an unknown profile are refused."""
    with pytest.raises(ValueError, match=r"seeds must be a positive number.*-1"):
        parse({**tiny_spec(), "seeds": -1})
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="not a readable, writable directory"):
        grid.run(parse(tiny_spec()), blocker / "results", progress=False)
    with pytest.raises(ValueError, match=r"unknown profile 'nope'.*'quick'"):
        load_profile("nope")


def test_cli_refuses_bad_filter(tmp_path):
    """The CLI exits 2 with the valid filter keys on an unknown key."""
    cmd = [
        sys.executable,
        "-m",
        "pruneflow",
        "run",
        "--profile",
        "smoke",
        "--results",
        str(tmp_path / "r"),
        "--only",
        "colour=red",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2
    assert "unknown filter key 'colour'" in done.stderr and "dataset" in done.stderr
    assert not Path(tmp_path / "r").exists()


def test_a_subset_of_one_collection_equals_collecting_it(tmp_path):
    """The book collects the folder once and each page takes its grids' subset: the same rows in the
    same order, the same histories and the same missing runs as collecting that subset, also with a
    run file and a dense model's file gone; runs outside the collection give None."""
    spec = tiny_spec()
    spec["grids"]["h"] = {"datasets": ["digits"], "models": [{"name": "lenet300-100", "width": 0.25}],
                          "strategies": ["MP"], "ratios": [4]}  # fmt: skip
    profile = parse(spec)
    grid.run(profile, tmp_path, progress=False)
    store = results.Store(tmp_path)
    store.path(profile.grids["g"][1]).unlink()
    store.path(profile.grids["h"][0].dense).unlink()
    whole = results.collect(tmp_path, profile.runs)
    assert len(whole.missing) == 1 + sum(r.dense == profile.grids["h"][0].dense for r in profile.runs)
    for runs in (profile.grids["g"], profile.grids["h"], profile.grids["g"][::-3], profile.runs[::-1]):
        expected, subset = results.collect(tmp_path, runs), whole.subset(runs)
        pd.testing.assert_frame_equal(subset.frame, expected.frame)
        pd.testing.assert_frame_equal(subset.history, expected.history)
        assert subset.missing == expected.missing and subset.runs == expected.runs
    other = parse(tiny_spec(ratios=[3])).runs
    assert whole.subset(other) is None and whole.subset(profile.grids["g"]).subset(profile.grids["h"]) is None
