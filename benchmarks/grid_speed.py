"""Time a profile from scratch, split by phase, against a plain sequential baseline.

The grid trains each dense model once and reuses it for every strategy and ratio; the baseline
retrains the dense model for every run (one model per run, no reuse, no store), as a
straightforward script would. Both do the same computations and must agree on accuracy.

    python benchmarks/grid_speed.py                 # quick profile, seed 0 only
    python benchmarks/grid_speed.py --profile smoke --seeds 3
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd

from pruneflow import data
from pruneflow.devices import default_device
from pruneflow.experiment import grid
from pruneflow.experiment.profiles import load_profile
from pruneflow.experiment.tasks import Stopwatch, prune_run, train_dense


def baseline(runs, device) -> tuple[float, dict[str, float]]:
    """Seconds for every run done from scratch (its dense model retrained, nothing stored), and
    each run's fine-tuned accuracy."""
    start, accuracy = time.perf_counter(), {}
    for run in runs:
        dataset = data.load(run.dense.dataset).to(device)
        model, _ = train_dense(run.dense, dataset, device, Stopwatch())
        if model is None:  # diverged
            continue
        rows = prune_run(run, model, dataset, device, None, Stopwatch())
        finetuned = [row["accuracy"] for row in rows if row["stage"] == "finetuned"]
        if finetuned:
            accuracy[run.id] = finetuned[0]
    return time.perf_counter() - start, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 of the profile (default 1)")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    runs = [r for r in profile.runs if r.dense.seed < args.seeds]
    device = default_device()
    for name in {r.dense.dataset for r in runs}:  # load once, outside both timings
        data.load(name)
    baseline(runs[:1], device)  # warm up torch's kernels outside both timings

    clock = Stopwatch()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        frame = pd.concat(
            grid.run(profile, folder, only={"seed": str(s)}, progress=False, device=device, stopwatch=clock)
            for s in range(args.seeds)
        )
        grid_seconds = time.perf_counter() - start
    base_seconds, base_accuracy = baseline(runs, device)

    finetuned = frame[frame.stage == "finetuned"].groupby("run_id").accuracy.first()
    common = sorted(set(finetuned.index) & set(base_accuracy))
    gap = max(abs(finetuned[i] - base_accuracy[i]) for i in common)

    print(
        f"profile {profile.name}, seeds 0..{args.seeds - 1}: {len(runs)} runs, "
        f"{len({r.dense for r in runs})} dense models, on {device}"
    )
    print(f"grid (reuse, store):   {grid_seconds:8.1f} s")
    for phase in ("dense", "prune", "finetune", "evaluate"):
        print(f"  {phase:<10} {clock.seconds[phase]:8.1f} s")
    other = grid_seconds - sum(clock.seconds.values())
    print(f"  {'other':<10} {other:8.1f} s  (store, bookkeeping)")
    print(f"baseline (no reuse):   {base_seconds:8.1f} s")
    print(
        f"speed-up: {base_seconds / grid_seconds:.2f}x; largest accuracy gap grid vs baseline: "
        f"{gap:.2g} over {len(common)} runs"
    )
    assert np.isfinite(gap)


if __name__ == "__main__":
    main()
