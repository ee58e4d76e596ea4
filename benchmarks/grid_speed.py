"""Time a profile from scratch, split by phase, against a plain sequential baseline.

The grid trains each dense model once and reuses it for every strategy and ratio; the baseline
retrains the dense model for every run (one model per run, no reuse, no store), as a
straightforward script would. Both do the same computations and must agree on accuracy.

    python benchmarks/grid_speed.py                 # quick profile, seed 0 only
    python benchmarks/grid_speed.py --profile smoke --seeds 3
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import numpy as np
import pandas as pd

from pruneflow import data, grid
from pruneflow.devices import default_device, derive_seed
from pruneflow.grid import Stopwatch, build_model
from pruneflow.metrics import accuracy_from_confusion
from pruneflow.profiles import load_profile
from pruneflow.pruning import Unreachable, prune
from pruneflow.train import evaluate, fit, gradient_batches


def baseline(runs, device) -> tuple[float, dict[str, float]]:
    """Seconds for every run done from scratch, and each run's fine-tuned accuracy."""
    start, accuracy = time.perf_counter(), {}
    for run in runs:
        dataset = data.load(run.dense.dataset).to(device)
        model = build_model(run.dense, dataset).to(device)
        fit(model, dataset, run.dense.train, seed=derive_seed("order", run.dense.seed))
        evaluate(model, dataset.x_test, dataset.y_test, dataset.num_classes)
        model = copy.deepcopy(model)
        batches = gradient_batches(
            dataset, run.grad_batches, run.grad_batch_size, seed=derive_seed("gradient", run.dense.seed)
        )
        try:
            result = prune(
                model,
                run.strategy,
                run.compression,
                basis=run.basis,
                batches=batches,
                weight_decay=run.dense.train.weight_decay,
                seed=derive_seed("prune", run.id),
            )
        except Unreachable:
            continue
        evaluate(model, dataset.x_test, dataset.y_test, dataset.num_classes)
        fit(model, dataset, run.finetune, seed=derive_seed("finetune", run.id), mask=result.masks)
        confusion = evaluate(model, dataset.x_test, dataset.y_test, dataset.num_classes)
        accuracy[run.id] = float(accuracy_from_confusion(confusion))
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
