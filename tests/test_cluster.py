"""The Dask executor: the smoke grid on a 2-worker LocalCluster, one worker killed mid-run."""

from __future__ import annotations

import os
import signal
import threading
import time

import pandas as pd
import pytest
from test_grid import run_rows, tidy

from pruneflow.experiment import grid, results
from pruneflow.experiment.profiles import load_profile

distributed = pytest.importorskip("distributed")


def test_lost_worker_gives_the_local_table(tmp_path):
    """Killing a worker mid-run loses nothing: the final table equals the local executor's in the same
    mode, each model trained and fine-tuned on its own (as Dask's tasks do; trained together, float
    sums round differently: tests/test_grid.py)."""
    local = run_rows("smoke", tmp_path / "local", dense_together=1, finetune_together=1)
    target, outcome = tmp_path / "dask", {}
    total = len(load_profile("smoke").runs)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        distributed.Client(cluster) as client,
    ):

        def work() -> None:
            outcome["summary"] = grid.run(
                "smoke", target, executor="dask", scheduler=cluster.scheduler_address, progress=False
            )

        thread = threading.Thread(target=work)
        thread.start()
        deadline = time.monotonic() + 120
        while len(list(target.glob("runs/*.parquet"))) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        victim = next(iter(client.run(os.getpid).values()))
        os.kill(victim, signal.SIGKILL)
        done_at_kill = len(list(target.glob("runs/*.parquet")))
        thread.join(timeout=300)
    assert 10 <= done_at_kill < total, "the worker was not killed mid-run"
    assert "summary" in outcome, "the grid did not finish"
    assert outcome["summary"].total == total and not outcome["summary"].errored
    pd.testing.assert_frame_equal(tidy(results.load(target)), tidy(local))
    assert not list(target.rglob("*.tmp")), "temporary files left behind"
