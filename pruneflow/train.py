"""Training and evaluation: SGD with momentum, weight decay and a cosine learning-rate schedule.

One step: w <- w - lr_k * (m_k), m_k = momentum * m_{k-1} + dL/dw + eps * w (torch's SGD), with
lr_k = lr * (1 + cos(pi * k / K)) / 2 over the K steps of the run. With a ``Mask``, gradients of
pruned weights are zeroed before each step and the weights re-zeroed after it, so pruned
weights stay exactly 0 through fine-tuning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import Dataset, augment
from .devices import generator
from .masks import Mask, prunable_weights
from .metrics import confusion_matrix
from .pruning import check_weight_decay
from .registry import check_choice

PRECISIONS = ("fp32", "bf16")


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class Schedule:
    """Hyperparameters of one SGD run (dense training or fine-tuning)."""

    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    precision: str = "fp32"  # or "bf16": forward and loss under bf16 autocast (off for the statistics)

    def __post_init__(self) -> None:
        check_choice("precision", self.precision, PRECISIONS)
        for name in ("lr", "momentum", "weight_decay"):  # YAML may give ints or strings like '5e-4'
            object.__setattr__(self, name, float(getattr(self, name)))
        check_weight_decay(self.weight_decay)
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"need epochs >= 0, batch_size >= 1 and lr > 0, got {self}")


def fit(
    model: nn.Module, data: Dataset, schedule: Schedule, *, seed: int, mask: Mask | None = None
) -> list[float]:
    """Train ``model`` in place on ``data`` (already on the model's device); returns the mean
    training loss of each epoch. Same model, data, schedule and seed give the same weights."""
    if mask is not None:
        mask.check(model)
        masked = [(p, mask[n].to(p.device)) for n, p in prunable_weights(model).items()]
    gen = generator(seed)
    opt = torch.optim.SGD(
        model.parameters(), lr=schedule.lr, momentum=schedule.momentum, weight_decay=schedule.weight_decay
    )
    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / schedule.batch_size)
    total = max(1, schedule.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / total)))
    model.train()
    losses = []
    for epoch in range(schedule.epochs):
        order = torch.randperm(n, generator=gen).to(data.x_train.device)
        running = torch.zeros((), device=data.x_train.device)
        for idx in order.split(schedule.batch_size):
            x = data.x_train[idx]
            if data.augment:
                x = augment(x, gen)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=schedule.precision == "bf16"):
                loss = F.cross_entropy(model(x), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if mask is not None:
                for p, m in masked:
                    p.grad.mul_(m)
            opt.step()
            sched.step()
            if mask is not None:
                with torch.no_grad():
                    for p, m in masked:
                        p.mul_(m)
            running += loss.detach() * len(idx)
        losses.append(running.item() / n)
        if not math.isfinite(losses[-1]):
            raise Diverged(f"training loss is {losses[-1]} at epoch {epoch + 1}/{schedule.epochs}")
    return losses


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, num_classes: int, batch_size: int = 4096) -> np.ndarray:
    """Confusion matrix (classes x classes) of ``model`` on (x, y), accumulated on their device."""
    was_training = model.training
    model.eval()
    total = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=y.device)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        total += confusion_matrix(yb, model(xb).argmax(dim=1), num_classes)
    model.train(was_training)
    return total.cpu().numpy()


def gradient_batches(data: Dataset, count: int, batch_size: int, *, seed: int) -> list[tuple[Tensor, Tensor]]:
    """``count`` training batches of ``batch_size`` drawn without replacement under ``seed``
    (the data GP and UP take their loss gradient from; the authors used 1 batch)."""
    order = torch.randperm(len(data.y_train), generator=generator(seed))[: count * batch_size]
    order = order.to(data.x_train.device)
    return [(data.x_train[i], data.y_train[i]) for i in order.split(batch_size)]
