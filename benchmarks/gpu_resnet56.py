"""One fine-tuning epoch of N pruned ResNet-56 trained at once (``fit_many``, vmapped), per precision.

For the GPU section of README.md: CIFAR-shaped synthetic tensors (the data cannot be fetched on a
lent GPU machine), each model pruned by MP to t = 10 from its own seed, fine-tuned for one epoch
(batch 128, no validation split) in fp32 and in bf16 autocast, N = 8, 16, 32 at once. A one-batch run
of each (N, precision) warms up first; the device is synchronised around each timing. Prints seconds
per epoch, per model and epoch, and images per second (all models together), and the device.

    python benchmarks/gpu_resnet56.py                                   # on CUDA: the README's table
    python benchmarks/gpu_resnet56.py --sizes 1 2 --samples 256 --model resnet20 --width 0.25  # CPU check
"""

from __future__ import annotations

import argparse
import copy
import functools

import torch
from vmap_speed import timed  # this folder's: the script's own folder is on sys.path

from pruneflow import prune
from pruneflow.batched import fit_many
from pruneflow.data import Dataset
from pruneflow.devices import default_device, generator, seeded
from pruneflow.models import build
from pruneflow.train import Schedule


def synthetic(samples: int, device: torch.device) -> Dataset:
    """``samples`` random 3 x 32 x 32 images with 10 random labels (CIFAR-10's shapes), on ``device``."""
    gen = generator(0)
    x = torch.randn(samples, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (samples,), generator=gen)
    return Dataset("synthetic", "CIFAR-shaped noise", x, y, x[:128], y[:128], 10).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--samples", type=int, default=50_000, help="training images (default 50,000)")
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--width", type=float, default=1.0)
    args = parser.parse_args()
    device = default_device()
    data = synthetic(args.samples, device)
    warm = synthetic(128, device)
    cpu = f"CPU, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    print(f"{args.model} x{args.width:g}, one epoch of {args.samples} CIFAR-shaped images, batch 128, {name}")
    print(f"{'N':>3}  {'precision':>9}  {'s/epoch':>8}  {'s/model-epoch':>13}  {'images/s':>9}")
    for n in args.sizes:
        pruned, masks = [], []
        for seed in range(n):
            with seeded(seed):
                model = build(args.model, data.input_shape, data.num_classes, args.width).to(device)
            masks.append(prune(model, "MP", 10).masks)
            pruned.append(model)
        for precision in args.precisions:
            schedule = Schedule(epochs=1, lr=0.01, precision=precision)
            seeds = list(range(n))
            fit_many(copy.deepcopy(pruned), warm, schedule, seeds=seeds, masks=masks)  # warm-up
            models = copy.deepcopy(pruned)
            run = functools.partial(fit_many, models, data, schedule, seeds=seeds, masks=masks)
            seconds = timed(device, run)
            print(
                f"{n:>3}  {precision:>9}  {seconds:>8.2f}  {seconds / n:>13.3f}  "
                f"{n * args.samples / seconds:>9.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
