"""Faults a user meets (issue 23): Ctrl-C, strategies breaking their contract, broken plugins,
read-only and shared results folders, an unreachable scheduler, a report without its data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from pruneflow import compute_mask
from pruneflow.__main__ import main
from pruneflow.experiment import grid, results
from pruneflow.experiment.profiles import load_profile
from pruneflow.pruning import StrategyError, score
from pruneflow.strategies import STRATEGIES, draws_mask
from tests.test_grid import run_rows, tidy, tiny_spec

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None, **popen) -> subprocess.Popen:
    """``python -m pruneflow ARGS`` in a subprocess that takes Ctrl-C (SIGINT) as a terminal would,
    even when this test runs in a background job (where SIGINT is ignored and inherited so)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pruneflow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A finished smoke folder and its rows."""
    folder = tmp_path_factory.mktemp("smoke")
    return folder, run_rows("smoke", folder)


# ---------------------------------------------------------------- Ctrl-C


def test_sigint_stops_within_seconds_and_the_rerun_completes_the_table(smoke, tmp_path):
    """SIGINT mid-run: exit 130 within 10 s, one line on stderr, no partial file; the rerun
    computes the rest and its table equals an uninterrupted run's."""
    total = len(load_profile("smoke").runs)
    proc = cli("run", "--profile", "smoke", "--results", str(tmp_path), "--quiet")
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("runs/*.parquet"))) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    done = total - len(results.collect(tmp_path, load_profile("smoke").runs).missing)
    assert err == f"stopped: {done} of {total} runs done; rerun to resume\n"
    assert done < total, "the interrupt did not land mid-run"
    assert not list(tmp_path.rglob("*.tmp")) and not (tmp_path / results.LOCK).exists()
    finished = {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*.parquet")}
    rerun = cli("run", "--profile", "smoke", "--results", str(tmp_path), "--quiet")
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert out.startswith(f"smoke: {total} runs")
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items()), "a finished run was recomputed"
    pd.testing.assert_frame_equal(tidy(results.load(tmp_path)), tidy(smoke[1]))


def test_a_second_sigint_stops_at_once(tmp_path):
    proc = cli("run", "--profile", "smoke", "--results", str(tmp_path), "--quiet")
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("runs/*.parquet"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130 and err.startswith("stopped: ") and err.count("\n") == 1, err


# ---------------------------------------------------------------- the strategy contract


@pytest.fixture
def toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))  # prunable: 0.weight


def nan_scores(weights, ctx):
    return {n: torch.full_like(w, float("nan")) for n, w in weights.items()}


def wrong_shape(weights, ctx):
    return {n: w.detach().abs().flatten() for n, w in weights.items()}


def empty(weights, ctx):
    return {}


def meddling(weights, ctx):
    with torch.no_grad():
        for w in weights.values():
            w.mul_(2)
    return {n: w.detach().abs() for n, w in weights.items()}


@draws_mask
def float_mask(weights, ctx):
    return {n: torch.ones_like(w) for n, w in weights.items()}


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (nan_scores, r"'BAD' broke its contract: scores of '0.weight' are not finite \(12 of 12\)"),
        (
            wrong_shape,
            r"'BAD' broke its contract: scores of '0.weight' have shape \(12,\), the weight \(3, 4\)",
        ),
        (empty, r"'BAD' broke its contract: scores for \[\] instead of .*'0.weight'.*missing \['0.weight'\]"),
        (meddling, r"'BAD' broke its contract: it changed the model's parameters"),
        (float_mask, r"'BAD' broke its contract: masks of '0.weight' are torch.float32, not torch.bool"),
    ],
)
def test_a_strategy_breaking_its_contract_is_named_with_the_fault(toy, monkeypatch, strategy, message):
    monkeypatch.setitem(STRATEGIES._items, "BAD", strategy)
    with pytest.raises(StrategyError, match=message):
        compute_mask(toy, "BAD", 2)


def test_precomputed_scores_are_checked_too(toy):
    scores = score(toy, "MP")
    compute_mask(toy, "MP", 2, scores=scores)
    with pytest.raises(StrategyError, match=r"'MP' broke its contract: scores of '0\.weight' are not finite"):
        compute_mask(toy, "MP", 2, scores={"0.weight": scores["0.weight"] / 0 - float("inf")})


NAN_PLUGIN = """
import torch
from pruneflow.strategies import STRATEGIES


@STRATEGIES.register("NAN")
def nan(weights, ctx):
    return {n: torch.full_like(w, float("nan")) for n, w in weights.items()}
"""


def test_nan_scores_give_error_runs_never_read_as_results_and_exit_1(tmp_path):
    (tmp_path / "nan_strategy.py").write_text(NAN_PLUGIN)
    spec = {**tiny_spec(strategies=["MP", "NAN"], seeds=1), "plugins": ["nan_strategy.py"]}
    (tmp_path / "nan.yaml").write_text(yaml.safe_dump(spec))
    proc = cli("run", "--profile", "nan.yaml", "--results", "out", "--quiet", cwd=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "4 runs - 2 computed, 0 cached, 2 failed (2 errored)" in out
    assert "2 of 4 runs raised" in err and "Traceback" not in err
    everything = results.load(tmp_path / "out", errors=True)
    failed = everything[everything.status == "error"]
    assert set(failed.strategy) == {"NAN"} and failed.run_id.nunique() == 2
    assert failed.reason.str.contains("strategy 'NAN' broke its contract: scores of .* are not finite").all()
    kept = results.load(tmp_path / "out")
    assert "error" not in set(kept.status) and set(kept.strategy.dropna()) == {"MP"}
    profile = load_profile(tmp_path / "nan.yaml")
    done = results.collect(tmp_path / "out", profile.runs)
    assert {r.strategy for r in done.missing} == {"NAN"} and "error" not in set(done.frame.status)


@pytest.mark.parametrize(
    ("source", "error"),
    [("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"), ("def f(:\n", "SyntaxError")],
)
def test_a_broken_plugin_file_is_one_line_and_exit_2(tmp_path, capsys, source, error):
    (tmp_path / "broken.py").write_text(source)
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({**tiny_spec(), "plugins": ["broken.py"]}))
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--profile", str(profile), "--results", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert f"plugin file '{tmp_path / 'broken.py'}' failed to import: {error}" in err


# ---------------------------------------------------------------- read-only and shared folders


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """A read-only view of ``folder``: a read-only bind mount (as root), else a copy without write
    permissions."""
    view = folder.parent / f"{folder.name}-read-only"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(view)], capture_output=True)
    if mounted.returncode != 0:
        if os.geteuid() == 0:
            pytest.skip("a read-only view needs mount --bind as root, or a non-root user")
        shutil.copytree(folder, view, dirs_exist_ok=True)
        for path in [view, *view.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
    assert not os.access(view, os.W_OK)
    try:
        yield view
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(view)], check=True)
        else:
            for path in [view, *view.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)


def test_a_read_only_folder_serves_its_rows_and_a_run_with_nothing_to_do(smoke, tmp_path):
    folder, rows = smoke
    with read_only(folder) as view:
        pd.testing.assert_frame_equal(tidy(results.load(view)), tidy(rows))
        done = results.collect(view, load_profile("smoke").runs)
        assert not done.missing
        pd.testing.assert_frame_equal(tidy(done.frame), tidy(rows))
        proc = cli("run", "--profile", "smoke", "--results", str(view), "--quiet")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        failed = int((rows.drop_duplicates("run_id").stage == "failed").sum())
        assert f"0 computed, {len(load_profile('smoke').runs) - failed} cached, {failed} failed" in out
        page = subprocess.run(  # a page on the read-only folder reads its rows and writes nothing there
            [
                sys.executable,
                "-m",
                "papermill",
                str(ROOT / "notebooks" / "q1_strategy.ipynb"),
                str(tmp_path / "q1.ipynb"),
                "-p",
                "profile",
                "smoke",
                "-p",
                "results",
                str(view),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert page.returncode == 0, page.stderr[-2000:]
        more = {**tiny_spec(), "name": "more"}  # runs the folder does not hold
        (tmp_path / "more.yaml").write_text(yaml.safe_dump(more))
        proc = cli("run", "--profile", str(tmp_path / "more.yaml"), "--results", str(view), "--quiet")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2 and err.count("\n") == 1, err
        assert "is not a readable, writable directory, and 8 runs to compute are missing there" in err
        assert "digits lenet300-100x0.125 seed 0 MP t=2" in err and "and 5 more" in err


def test_two_concurrent_runs_into_one_folder_compute_each_run_once(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_spec()))
    args = ("run", "--profile", str(tmp_path / "tiny.yaml"), "--results", str(tmp_path / "out"), "--quiet")
    first, second = cli(*args), cli(*args)
    (out1, err1), (out2, err2) = first.communicate(timeout=600), second.communicate(timeout=600)
    assert first.returncode == second.returncode == 0, err1 + err2
    computed = sorted(int(out.split(" computed")[0].rsplit(" ", 1)[1]) for out in (out1, out2))
    assert computed == [0, 8], (out1, out2)
    assert "is locked by pid" in err1 + err2  # the second one said who held the folder
    assert not (tmp_path / "out" / results.LOCK).exists()


def test_a_stale_lock_is_taken_over_and_a_live_one_waited_for(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    store = results.Store(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    lock = tmp_path / results.LOCK
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": "then"}))
    with store.lock():
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "09:00:00"}))
    code = "from pruneflow.experiment.results import Store\n"
    code += f"with Store({str(tmp_path)!r}).lock(0.05): print('held')"
    waiter = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = waiter.stderr.readline()
    assert "is locked by pid 1 on elsewhere since 09:00:00; waiting" in line
    assert waiter.poll() is None, "it did not wait for the live holder"
    lock.unlink()
    assert waiter.communicate(timeout=60)[0] == "held\n"


# ---------------------------------------------------------------- clean exits


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path):
    pytest.importorskip("distributed")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = cli(
        "run",
        "--profile",
        str(ROOT / "pruneflow/experiment/profiles/smoke.yaml"),
        "--results",
        str(tmp_path),
        "--quiet",
        "--scheduler",
        f"tcp://127.0.0.1:{port}",
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert err.startswith(f"pruneflow: error: cannot reach the Dask scheduler 'tcp://127.0.0.1:{port}'")
    assert err.count("\n") == 1, err


def test_report_without_its_datasets_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRUNEFLOW_DATA", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--profile", "paper", "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "missing datasets" in err, err
    assert not (tmp_path / "r").exists()


def test_summary_counts_errored_runs():
    summary = grid.Summary("p", 1, 2, 3, 2, 1.0, ("a: x",))
    assert summary.total == 6 and "3 failed (2 errored)" in str(summary) and "failed: a: x" in str(summary)
    assert "errored" not in str(grid.Summary("p", 1, 2, 3, 0, 1.0, ()))
