"""Wall time of training N models: N sequential ``fit`` calls vs one ``fit_many`` (vmapped).

Runs on CUDA when available, else CPU; both paths are warmed up once first. Speed-up =
sequential time / fit_many time, both measured in this run; max |dw| is the largest weight
difference between the two results (float rounding only). The grid's choices of how many models
to train at once (``pruneflow.experiment.grid``) rest on these figures.

    python benchmarks/vmap_speed.py [--sizes 1 4 8 16] [--epochs 2]
    python benchmarks/vmap_speed.py --model lenet5 --threads 1     # one grid worker's view
    python benchmarks/vmap_speed.py --dataset digits --model resnet20 --width 0.5
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from pruneflow.batched import fit_many
from pruneflow.data import Dataset, load
from pruneflow.devices import default_device, seeded
from pruneflow.models import build
from pruneflow.train import Schedule, fit


def timed(device: torch.device, run: Callable[[], object]) -> float:
    """Seconds ``run()`` takes, with the device's queued work finished on both ends."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def compare(
    data: Dataset, model: str, width: float, schedule: Schedule, n: int, device: torch.device
) -> tuple[float, float, float]:
    """(sequential seconds, fit_many seconds, max |dw|) for ``n`` models."""
    models: list[nn.Module] = []
    for i in range(n):
        with seeded(i):
            models.append(build(model, data.input_shape, data.num_classes, width).to(device))
    sequential = [copy.deepcopy(m) for m in models]
    seeds = list(range(100, 100 + n))
    pairs = list(zip(sequential, seeds, strict=True))
    t_seq = timed(device, lambda: [fit(m, data, schedule, seed=s) for m, s in pairs])
    t_many = timed(device, lambda: fit_many(models, data, schedule, seeds=seeds))
    diff = max(
        (p - q).abs().max().item()
        for a, b in zip(models, sequential, strict=True)
        for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )
    return t_seq, t_many, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="lenet300-100")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device()
    data = load(args.dataset).to(device)
    schedule = Schedule(epochs=args.epochs, lr=0.05)
    arch = (args.model, args.width)
    compare(data, *arch, Schedule(epochs=1, lr=0.05), 2, device)  # warm-up: kernels, allocator, vmap
    cpu = f"CPU, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    label = args.model if args.width == 1 else f"{args.model}x{args.width:g}"
    print(f"{label} on {args.dataset}, {args.epochs} epochs, batch {schedule.batch_size}, {name}")
    print(f"{'N':>3}  {'sequential s':>12}  {'fit_many s':>10}  {'speed-up':>8}  {'max |dw|':>8}")
    for n in args.sizes:
        t_seq, t_many, diff = compare(data, *arch, schedule, n, device)
        print(f"{n:>3}  {t_seq:>12.3f}  {t_many:>10.3f}  {t_seq / t_many:>7.2f}x  {diff:>8.1e}")


if __name__ == "__main__":
    main()
