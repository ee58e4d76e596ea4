"""Training and evaluation: SGD with momentum, weight decay and a cosine or step learning-rate schedule.

One step: w <- w - lr_k * (m_k), m_k = momentum * m_{k-1} + dL/dw + eps * w (torch's SGD), with
lr_k = lr * (1 + cos(pi * k / K)) / 2 over the K steps of the run (the default), or, with
``lr_steps = ((e_1, f_1), (e_2, f_2), ...)``, lr * f_i through the e_i epochs of stage i (the
paper's "decreasing" schedule as the authors' script ran it: ResNets 10 epochs at 0.01, 20 at 0.1,
10 each at 0.01, 0.001, 0.0001 is lr = 0.1 with steps (10, 0.1), (20, 1), (10, 0.1), (10, 0.01),
(10, 0.001)). With ``validation = v > 0`` a fraction v of the training set, drawn under the fixed
seed ``VALIDATION_SEED`` (the same for every model), is held out and the weights of the epoch of
lowest validation loss are kept (the paper's checkpoint selection). With a ``Mask``, gradients of
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

from .checks import check_weight_decay
from .data import Dataset, augment
from .devices import fp32_matmuls, generator
from .masks import Mask, prunable_weights
from .metrics import confusion_matrix
from .registry import check_choice

PRECISIONS = ("fp32", "bf16")
VALIDATION_SEED = 12345


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class History(list[float]):
    """The mean training loss of each epoch (a list), with ``validation``: the mean validation loss
    of each epoch (empty without a validation split); ``best_epoch`` (1-based) is the epoch whose
    weights a validation split keeps, argmin of ``validation`` (the last epoch without one)."""

    def __init__(self, train: list[float] = (), validation: list[float] = ()) -> None:
        super().__init__(train)
        self.validation: list[float] = list(validation)

    @property
    def best_epoch(self) -> int:
        return int(np.argmin(self.validation)) + 1 if self.validation else len(self)


@dataclass(frozen=True)
class Schedule:
    """Hyperparameters of one SGD run (dense training or fine-tuning)."""

    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    precision: str = "fp32"  # or "bf16": forward and loss under bf16 autocast (off for the statistics)
    lr_steps: tuple[tuple[int, float], ...] = ()  # (epochs, lr factor) stages; () = cosine
    validation: float = 0.0  # held-out fraction of the training set; > 0 keeps the best-val-loss epoch

    def __post_init__(self) -> None:
        check_choice("precision", self.precision, PRECISIONS)
        steps = tuple((int(e), float(f)) for e, f in self.lr_steps)
        object.__setattr__(self, "lr_steps", steps)
        if steps and (sum(e for e, _ in steps) != self.epochs or min(min(e, f) for e, f in steps) <= 0):
            raise ValueError(
                f"lr_steps must be (epochs > 0, factor > 0) stages summing to epochs, got {self}"
            )
        object.__setattr__(self, "validation", float(self.validation))
        if not 0 <= self.validation < 1:
            raise ValueError(f"validation must be a fraction in [0, 1), got {self.validation!r}")
        for name in ("lr", "momentum", "weight_decay"):  # YAML may give ints or strings like '5e-4'
            object.__setattr__(self, name, float(getattr(self, name)))
        check_weight_decay(self.weight_decay)
        if not (math.isfinite(self.momentum) and self.momentum >= 0):
            raise ValueError(f"momentum must be a finite number >= 0, got {self.momentum!r}")
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"need epochs >= 0, batch_size >= 1 and lr > 0, got {self}")


def fit(
    model: nn.Module, data: Dataset, schedule: Schedule, *, seed: int, mask: Mask | None = None
) -> History:
    """Train ``model`` in place on ``data`` (already on the model's device); returns its
    :class:`History` (training and validation loss per epoch). Same model, data, schedule and seed
    give the same weights. With ``mask``, the pruned weights are set to 0 and their gradients masked
    at every step, so under SGD (decay and momentum included) they stay exactly 0."""
    masked = []  # (weight, 0/1 mask in its dtype: cheaper to multiply by each step than a bool one)
    if mask is not None:
        mask.check(model)
        masked = [(p, mask[n].to(p.device, p.dtype)) for n, p in prunable_weights(model).items()]
        with torch.no_grad():  # pruned weights start at 0; masked gradients keep them there under SGD
            for p, m in masked:
                p.mul_(m)
    gen = generator(seed)
    opt = torch.optim.SGD(
        model.parameters(), lr=schedule.lr, momentum=schedule.momentum, weight_decay=schedule.weight_decay
    )
    train_idx, val_idx = validation_split(len(data.y_train), schedule.validation)
    train_idx, val_idx = train_idx.to(data.x_train.device), val_idx.to(data.x_train.device)
    n = len(train_idx)
    steps_per_epoch = math.ceil(n / schedule.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(schedule, steps_per_epoch))
    model.train()
    losses = History()
    best = (math.inf, None)
    bf16 = schedule.precision == "bf16"
    with fp32_matmuls(data.x_train.device):  # bf16: autocast, in the forward pass
        for epoch in range(schedule.epochs):
            order = train_idx[torch.randperm(n, generator=gen).to(data.x_train.device)]
            running = torch.zeros((), device=data.x_train.device)
            for idx in order.split(schedule.batch_size):
                x = data.x_train.index_select(0, idx)  # = x_train[idx], a quarter of its time
                if data.augment:
                    x = augment(x, gen)
                with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = F.cross_entropy(model(x), data.y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                for p, m in masked:
                    p.grad.mul_(m)
                opt.step()
                sched.step()
                running += loss.detach() * len(idx)
            losses.append(running.item() / n)
            if not math.isfinite(losses[-1]):
                raise Diverged(f"training loss is {losses[-1]} at epoch {epoch + 1}/{schedule.epochs}")
            if len(val_idx):
                val = validation_loss(model, data.x_train[val_idx], data.y_train[val_idx])
                losses.validation.append(val)
                if val < best[0]:
                    best = (val, {k: v.detach().clone() for k, v in model.state_dict().items()})
    if best[1] is not None:
        model.load_state_dict(best[1])
    return losses


def validation_split(n: int, fraction: float) -> tuple[Tensor, Tensor]:
    """(training indices, validation indices): ``round(fraction * n)`` indices held out, drawn
    under ``VALIDATION_SEED`` so every model of a dataset holds out the same examples."""
    n_val = round(fraction * n)
    if fraction and not 0 < n_val < n:
        raise ValueError(
            f"validation={fraction} holds out {n_val} of {n} training examples; need 0 < it < {n}"
        )
    perm = torch.randperm(n, generator=generator(VALIDATION_SEED))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def lr_factor(schedule: Schedule, steps_per_epoch: int):
    """Step k -> lr factor: the stage's factor under ``lr_steps``, else the cosine (1 + cos(pi k / K)) / 2."""
    if schedule.lr_steps:
        ends = np.cumsum([e for e, _ in schedule.lr_steps]) * steps_per_epoch
        factors = [f for _, f in schedule.lr_steps]
        return lambda k: factors[min(int(np.searchsorted(ends, k, side="right")), len(factors) - 1)]
    total = max(1, schedule.epochs * steps_per_epoch)
    return lambda k: 0.5 * (1 + math.cos(math.pi * k / total))


@torch.no_grad()
def validation_loss(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 4096) -> float:
    """Mean cross-entropy of ``model`` (eval mode) on (x, y)."""
    was_training = model.training
    model.eval()
    total = sum(
        F.cross_entropy(model(xb), yb, reduction="sum")
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True)
    )
    model.train(was_training)
    return float(total) / len(y)


@torch.inference_mode()
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
