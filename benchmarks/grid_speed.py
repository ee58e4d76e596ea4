"""The grid against the plain loop a researcher would write, on one cell of a profile.

The plain loop is one sequential script in plain PyTorch: train each dense model once, then for
every strategy and ratio copy it, prune it (``pruneflow.prune``, the library's one pruning call),
evaluate, fine-tune with the mask, evaluate. No store, no files, torch's default threads and
kernels (MKL's fp32 products on a CPU; the grid takes oneDNN's where they stay fp32). It uses
the grid's seeds, data and models, so both do the same work and must reach the same accuracies.
The two alternate, ``--reps`` times each, in one process; the median ratio plain / grid is printed
with its spread, and the grid's time per phase.

Utilisation, measured in the same run: the training arithmetic of the cell, counted as
6 x multiply-adds per sample (from the model's layer shapes: a linear layer in x out, a convolution
out x in/groups x kh x kw x output pixels) x training samples x epochs, dense and fine-tuning
(evaluation and pruning left out), divided by each side's median wall time, in GFLOP/s, and as a
fraction of the machine's matmul peak in fp32 (the better of torch's default kernel and oneDNN's)
and in bf16 (the best of a few 2048 x 2048 products on every core, measured before and after the
repetitions). ``--precision`` sets the grid's
(default: the profile's, ``auto`` resolved for this machine); the plain loop stays fp32.

    python benchmarks/grid_speed.py                      # quick, mnist5k cell, 10 seeds, 3 reps
    python benchmarks/grid_speed.py --seeds 2 --reps 1   # a one-minute check
    python benchmarks/grid_speed.py --precision fp32     # the grid in fp32, whatever the profile says
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from pruneflow import data, models, prune
from pruneflow.devices import (
    default_device,
    generator,
    onednn_keeps_fp32,
    onednn_matmuls,
    resolve_precision,
    seeded,
)
from pruneflow.experiment import grid, results
from pruneflow.experiment.config import CONTROL, PruneConfig
from pruneflow.experiment.profiles import Profile, load_profile
from pruneflow.experiment.tasks import Stopwatch, Stream, stream_seed
from pruneflow.train import PRECISIONS, Schedule, gradient_batches, validation_split


def train(model, ds, s: Schedule, seed: int, masks=None) -> None:
    """SGD with momentum, weight decay and a cosine schedule; pruned weights held at zero; with a
    validation split, the weights of the epoch of lowest validation loss kept (as the grid does)."""
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    train_idx, val_idx = validation_split(len(ds.y_train), s.validation)
    total = max(1, s.epochs * math.ceil(len(train_idx) / s.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / total)))
    params = dict(model.named_parameters())
    gen = generator(seed)
    best, kept = math.inf, None
    for _ in range(s.epochs):
        model.train()
        for idx in train_idx[torch.randperm(len(train_idx), generator=gen)].split(s.batch_size):
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
        if len(val_idx):
            model.eval()
            with torch.no_grad():
                val = F.cross_entropy(model(ds.x_train[val_idx]), ds.y_train[val_idx]).item()
            if val < best:
                best, kept = val, copy.deepcopy(model.state_dict())
    if kept is not None:
        model.load_state_dict(kept)


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


def multiply_adds(model: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of one sample: linear in x out, convolution
    out x in/groups x kh x kw x output pixels (counted from a pass with hooks)."""
    total = 0

    def count(module, _inputs, output) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features
        elif isinstance(module, torch.nn.Conv2d):
            kernel = math.prod(module.kernel_size) * module.in_channels // module.groups
            total += kernel * output[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    for hook in hooks:
        hook.remove()
    return total


def training_flop(runs: list[PruneConfig]) -> float:
    """6 x multiply-adds x training samples x epochs over the dense models and fine-tunings of ``runs``."""
    flop = 0.0
    for dense in dict.fromkeys(r.dense for r in runs):
        ds = data.load(dense.dataset)
        macs = multiply_adds(
            models.build(dense.model, ds.input_shape, ds.num_classes, dense.width), ds.input_shape
        )
        samples = len(validation_split(len(ds.y_train), dense.train.validation)[0])
        epochs = dense.train.epochs + sum(r.finetune_epochs for r in runs if r.dense == dense)
        flop += 6 * macs * samples * epochs
    return flop


def matmul_peak(dtype: torch.dtype, onednn: bool = False, size: int = 2048, tries: int = 5) -> float:
    """GFLOP/s of the best of ``tries`` size x size products on every core (2 size^3 flop each), on
    torch's default kernel or (``onednn``) on oneDNN's (:func:`pruneflow.devices.onednn_matmuls`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    best = math.inf
    with onednn_matmuls() if onednn else contextlib.nullcontext():
        for _ in range(tries + 1):  # the first one warms up
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    torch.set_num_threads(threads)
    return 2 * size**3 / best / 1e9


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
    parser.add_argument(
        "--precision", choices=[*PRECISIONS, "auto"], default=None, help="the grid's (default: the profile's)"
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
    if args.precision:
        precision = resolve_precision(args.precision)
        train = dataclasses.replace(runs[0].dense.train, precision=precision)
        runs = [dataclasses.replace(r, dense=dataclasses.replace(r.dense, train=train)) for r in runs]
    precision = runs[0].dense.train.precision
    cell = Profile(full.name, full.description, full.spec, {args.grid: tuple(runs)})
    data.load(args.dataset)  # loaded once, outside both timings
    fp32 = dataclasses.replace(runs[0].dense.train, precision="fp32")
    plain = [dataclasses.replace(r, dense=dataclasses.replace(r.dense, train=fp32)) for r in runs]
    plain_loop(plain[:1])  # warm up torch's kernels outside both timings
    kernels = {"fp32": (torch.float32, False), "bf16": (torch.bfloat16, False)}
    if onednn_keeps_fp32():
        kernels["fp32 oneDNN"] = (torch.float32, True)
    peaks = {name: [matmul_peak(*kernel)] for name, kernel in kernels.items()}

    plain_s, grid_s, clock = [], [], Stopwatch()
    for _ in range(args.reps):
        start = time.perf_counter()
        reference = plain_loop(plain)
        plain_s.append(time.perf_counter() - start)
        clock = Stopwatch()
        start = time.perf_counter()
        ours = grid_run(cell, clock)
        grid_s.append(time.perf_counter() - start)
    for name, measured in peaks.items():
        measured.append(matmul_peak(*kernels[name]))
    gap = statistics.median(abs(ours[r.id] - reference[p.id]) for r, p in zip(runs, plain, strict=True))
    ratios = [p / g for p, g in zip(plain_s, grid_s, strict=True)]

    print(
        f"{full.name}/{args.grid}, {args.dataset}, seeds 0..{args.seeds - 1}: {len(runs)} runs of "
        f"{len({r.dense for r in runs})} dense models on {default_device()}; plain loop (fp32) on "
        f"{torch.get_num_threads()} threads, grid ({precision}) on "
        f"{grid.default_workers(default_device())} worker(s)"
    )
    print(
        f"plain loop: median {statistics.median(plain_s):7.1f} s  ({', '.join(f'{s:.1f}' for s in plain_s)})"
    )
    print(f"grid:       median {statistics.median(grid_s):7.1f} s  ({', '.join(f'{s:.1f}' for s in grid_s)})")
    print(
        f"ratio plain / grid: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x over {args.reps} reps)"
    )
    flop = training_flop(runs)
    peak = {name: max(measured) for name, measured in peaks.items()}
    fp32 = max(v for k, v in peak.items() if k.startswith("fp32"))  # the machine's, on its best kernel
    print(
        f"training arithmetic: {flop / 1e12:.2f} TFLOP (6 x multiply-adds x samples x epochs); matmul "
        f"peak on {os.cpu_count()} cores: "
        + ", ".join(f"{name} {rate:.0f} GFLOP/s" for name, rate in peak.items())
        + " (fp32, bf16: torch's default kernels)"
    )
    for name, wall in (("plain loop", plain_s), ("grid", grid_s)):
        rate = flop / statistics.median(wall) / 1e9
        print(
            f"  {name:<10} {rate:7.1f} GFLOP/s = {rate / fp32:6.1%} of the fp32 peak, "
            f"{rate / peak['bf16']:6.1%} of the bf16 peak"
        )
    work = sum(clock.seconds.values())
    print(f"grid phases (last rep, worker seconds summed over processes: {work:.1f} s)")
    for phase in ("dense", "prune", "finetune", "evaluate"):
        print(f"  {phase:<10} {clock.seconds[phase]:7.1f} s  {clock.seconds[phase] / work:6.1%}")
    print(f"median fine-tuned accuracy gap, grid vs plain loop: {gap:.3g} over {len(reference)} runs")
    print(
        "(not bit for bit: the grid's workers run single-threaded and train seeds and fine-tune runs "
        "together (vmapped), so float sums round differently (bf16: more) and SGD amplifies it; the "
        "distributions agree: benchmarks/precision_equivalence.py)"
    )


if __name__ == "__main__":
    main()
