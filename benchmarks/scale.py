"""Scale-out ratios measured in one run: local executor vs a 2-worker Dask LocalCluster, and
one-by-one vs vmapped fine-tuning (``finetune_together``; the grid's default on CUDA).

    python benchmarks/scale.py                   # smoke profile
    python benchmarks/scale.py --profile quick --seeds 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

from pruneflow.devices import default_device
from pruneflow.experiment import grid
from pruneflow.experiment.profiles import load_profile


def timed(work: Callable[[str], object]) -> float:
    """Seconds ``work`` takes on a fresh results folder."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        work(folder)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--seeds", type=int, default=None, help="keep seeds 0..N-1 only (default: all)")
    parser.add_argument("--together", type=int, default=8, help="runs fine-tuned at once (default 8)")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    seeds = args.seeds or profile.spec.get("seeds", 1)

    def run(folder: str, **options) -> None:
        for seed in range(seeds):
            grid.run(profile, folder, only={"seed": str(seed)}, progress=False, **options)

    timed(
        lambda f: grid.run(
            profile, f, only={"seed": "0", "dataset": profile.runs[0].dense.dataset}, progress=False
        )
    )  # warm-up: imports, data, kernels
    local = timed(lambda f: run(f, finetune_together=1))
    together = timed(lambda f: run(f, finetune_together=args.together))
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster):
        started = time.perf_counter() - start
        dask = timed(lambda f: run(f, executor="dask", scheduler=cluster.scheduler_address))
    print(f"profile {profile.name}, seeds 0..{seeds - 1}, device {default_device()}")
    print(f"local, one by one:         {local:7.1f} s")
    print(f"local, {args.together} fine-tuned at once: {together:7.1f} s  ({local / together:.2f}x)")
    print(f"dask, 2 local workers:     {dask:7.1f} s  ({local / dask:.2f}x; cluster start {started:.1f} s)")


if __name__ == "__main__":
    main()
