"""The grid against the plain loop a researcher would write, on one cell of a profile.

The plain loop is one sequential script in plain PyTorch: train each dense model once, then for
every strategy and ratio copy it, prune it (``pruneflow.prune``, the library's one pruning call),
evaluate, fine-tune with the mask, evaluate. No store, no files, torch's default threads. It uses
the grid's seeds, data and models, so both do the same work and must reach the same accuracies.
The two alternate, ``--reps`` times each, in one process; the median ratio plain / grid is printed
with its spread, and the grid's time per phase.

    python benchmarks/grid_speed.py                      # quick, mnist5k cell, 10 seeds, 3 reps
    python benchmarks/grid_speed.py --seeds 2 --reps 1   # a one-minute check
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from pruneflow import data, models, prune
from pruneflow.devices import default_device, generator, seeded
from pruneflow.experiment import grid, results
from pruneflow.experiment.config import CONTROL, PruneConfig
from pruneflow.experiment.profiles import Profile, load_profile
from pruneflow.experiment.tasks import Stopwatch, Stream, stream_seed
from pruneflow.train import Schedule, gradient_batches


def train(model, ds, s: Schedule, seed: int, masks=None) -> None:
    """SGD with momentum, weight decay and a cosine schedule; pruned weights held at zero."""
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    total = max(1, s.epochs * math.ceil(len(ds.y_train) / s.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / total)))
    params = dict(model.named_parameters())
    gen = generator(seed)
    model.train()
    for _ in range(s.epochs):
        for idx in torch.randperm(len(ds.y_train), generator=gen).split(s.batch_size):
            loss = F.cross_entropy(model(ds.x_train[idx]), ds.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for name, m in (masks or {}).items():
                params[name].grad.mul_(m)
            opt.step()
            sched.step()
            with torch.no_grad():
                for name, m in (masks or {}).items():
                    params[name].mul_(m)


@torch.no_grad()
def accuracy(model, ds) -> float:
    model.eval()
    return (model(ds.x_test).argmax(1) == ds.y_test).float().mean().item()


def plain_loop(runs: list[PruneConfig]) -> dict[str, float]:
    """Fine-tuned accuracy of every run, computed the plain way."""
    found = {}
    for dense in dict.fromkeys(r.dense for r in runs):
        ds = data.load(dense.dataset)
        with seeded(stream_seed(Stream.INIT, dense.seed)):
            model = models.build(dense.model, ds.input_shape, ds.num_classes, dense.width)
        train(model, ds, dense.train, stream_seed(Stream.ORDER, dense.seed))
        accuracy(model, ds)
        for run in (r for r in runs if r.dense == dense):
            pruned = copy.deepcopy(model)
            batches = gradient_batches(
                ds, run.grad_batches, run.grad_batch_size, seed=stream_seed(Stream.GRADIENT, dense.seed)
            )
            masks = prune(
                pruned,
                run.strategy,
                run.compression,
                basis=run.basis,
                batches=batches,
                weight_decay=dense.train.weight_decay,
                seed=stream_seed(Stream.PRUNE, run.streams),
            ).masks
            accuracy(pruned, ds)
            train(pruned, ds, run.finetune, stream_seed(Stream.FINETUNE, run.streams), masks)
            found[run.id] = accuracy(pruned, ds)
    return found


def grid_run(profile: Profile, clock: Stopwatch) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        grid.run(profile, folder, progress=False, stopwatch=clock)
        frame = results.load(folder)
    done = frame[(frame.stage == "finetuned") & (frame["class"] == 0)]
    return dict(zip(done.run_id, done.accuracy, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--grid", default="strategy", help="the profile's grid (default: strategy)")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions (default 3)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads of the plain loop (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    full = load_profile(args.profile).subset(args.grid)
    runs = [
        r
        for r in full.runs
        if r.dense.dataset == args.dataset and r.dense.seed < args.seeds and r.strategy != CONTROL
    ]
    cell = Profile(full.name, full.description, full.spec, {args.grid: tuple(runs)})
    data.load(args.dataset)  # loaded once, outside both timings
    plain_loop(runs[:1])  # warm up torch's kernels outside both timings

    plain_s, grid_s, clock = [], [], Stopwatch()
    for _ in range(args.reps):
        start = time.perf_counter()
        reference = plain_loop(runs)
        plain_s.append(time.perf_counter() - start)
        clock = Stopwatch()
        start = time.perf_counter()
        ours = grid_run(cell, clock)
        grid_s.append(time.perf_counter() - start)
    gap = max(abs(ours[k] - reference[k]) for k in reference)
    ratios = [p / g for p, g in zip(plain_s, grid_s, strict=True)]

    print(
        f"{full.name}/{args.grid}, {args.dataset}, seeds 0..{args.seeds - 1}: {len(runs)} runs of "
        f"{len({r.dense for r in runs})} dense models on {default_device()}; plain loop on "
        f"{torch.get_num_threads()} threads, grid on {grid.default_workers(default_device())} worker(s)"
    )
    print(
        f"plain loop: median {statistics.median(plain_s):7.1f} s  ({', '.join(f'{s:.1f}' for s in plain_s)})"
    )
    print(f"grid:       median {statistics.median(grid_s):7.1f} s  ({', '.join(f'{s:.1f}' for s in grid_s)})")
    print(
        f"ratio plain / grid: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x over {args.reps} reps)"
    )
    work = sum(clock.seconds.values())
    print(f"grid phases (last rep, worker seconds summed over processes: {work:.1f} s)")
    for phase in ("dense", "prune", "finetune", "evaluate"):
        print(f"  {phase:<10} {clock.seconds[phase]:7.1f} s  {clock.seconds[phase] / work:6.1%}")
    print(f"largest fine-tuned accuracy gap, grid vs plain loop: {gap:.3g} over {len(reference)} runs")
    print(
        "(not bit for bit: the grid's workers run single-threaded and fine-tune 10 runs at once (vmapped), "
        "so float sums round differently and SGD amplifies it; the distributions agree)"
    )


if __name__ == "__main__":
    main()
