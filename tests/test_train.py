"""Training: masks hold through fine-tuning, runs are reproducible per seed, evaluation is exact."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from torch import nn

from pruneflow import prune
from pruneflow.data import Dataset
from pruneflow.devices import seeded
from pruneflow.masks import Mask, prunable_weights
from pruneflow.models import build
from pruneflow.train import Diverged, Schedule, evaluate, fit, gradient_batches

FINETUNE = Schedule(epochs=3, lr=0.05, momentum=0.9, weight_decay=5e-3, batch_size=128)


def mlp(data: Dataset, seed: int = 0) -> nn.Module:
    """A quarter-width lenet300-100 for ``data``, built under ``seeded(seed)``."""
    with seeded(seed):
        return build("lenet300-100", data.input_shape, data.num_classes, width=0.25)


def random_mask(model: nn.Module, seed: int) -> Mask:
    """A random mask keeping ~30% of the prunable weights (not applied)."""
    gen = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(p.shape, generator=gen) < 0.3 for n, p in prunable_weights(model).items()})


def tiny_images(augment: bool) -> Dataset:
    """64 random 3x8x8 images in 4 classes (augmented like CIFAR when ``augment``)."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(80, 3, 8, 8, generator=gen), torch.randint(0, 4, (80,), generator=gen)
    return Dataset("tiny", "tiny", x[:64], y[:64], x[64:], y[64:], 4, augment)


@pytest.mark.parametrize("use_mask", [True, False])
def test_finetuning_keeps_pruned_weights_zero(digits: Dataset, use_mask: bool) -> None:
    """With the mask, pruned weights stay exactly 0 under momentum and decay; without it they revive."""
    model = mlp(digits)
    masks = prune(model, "MP", 10).masks
    before = {n: p.detach().clone() for n, p in prunable_weights(model).items()}
    fit(model, digits, FINETUNE, seed=1, mask=masks if use_mask else None)
    for name, p in prunable_weights(model).items():
        pruned, kept = ~masks[name], masks[name]
        assert (torch.count_nonzero(p[pruned]) == 0) == use_mask, name
        assert not torch.equal(p[kept], before[name][kept]), name  # the kept weights did train


def test_masked_weights_get_zero_gradient(digits: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an injected (not yet applied) mask, every optimiser step sees zero gradient on masked weights."""
    model = mlp(digits)
    mask = random_mask(model, seed=0)
    pairs = [(p, mask[n]) for n, p in prunable_weights(model).items()]
    seen: list[tuple[bool, bool]] = []
    step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        seen.append(
            (
                all(torch.count_nonzero(p.grad[~m]) == 0 for p, m in pairs),
                all(torch.count_nonzero(p.grad[m]) > 0 for p, m in pairs),
            )
        )
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    fit(model, digits, Schedule(epochs=1, lr=0.05, batch_size=256), seed=0, mask=mask)
    assert len(seen) == math.ceil(len(digits.y_train) / 256)
    assert all(masked_zero and kept_nonzero for masked_zero, kept_nonzero in seen)
    assert all(torch.count_nonzero(p[~m]) == 0 for p, m in pairs)


def train(data: Dataset, init_seed: int, fit_seed: int) -> nn.Module:
    """A model built under seeded(init_seed), trained with seed fit_seed (MLP or tiny ResNet)."""
    with seeded(init_seed):
        if data.augment:
            model = build("resnet20", data.input_shape, data.num_classes, width=0.25)
        else:
            model = build("lenet300-100", data.input_shape, data.num_classes, width=0.25)
    fit(model, data, Schedule(epochs=2, lr=0.05, batch_size=32), seed=fit_seed)
    return model


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether every parameter and buffer of ``a`` and ``b`` is identical."""
    return all(
        torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.fixture(params=["digits", "augmented"])
def train_data(request, digits: Dataset) -> Dataset:
    """The digits (plain) and tiny random images (crop + flip augmentation)."""
    return digits if request.param == "digits" else tiny_images(augment=True)


def test_same_seed_same_weights_other_seed_other_weights(train_data: Dataset) -> None:
    """Same config and seed give identical weights; another seed (init or shuffling) gives others."""
    reference = train(train_data, 0, 0)
    assert same_weights(reference, train(train_data, 0, 0))
    assert not same_weights(reference, train(train_data, 1, 1))
    assert not same_weights(reference, train(train_data, 0, 1))


def test_seeded_restores_global_rng() -> None:
    """seeded(s) gives the same draws for the same s and leaves the global torch RNG as it was."""
    outside = torch.random.get_rng_state()
    with seeded(5):
        a = torch.rand(3)
    with seeded(5):
        b = torch.rand(3)
    assert torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), outside)


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_matches_sklearn_confusion(digits: Dataset, training: bool) -> None:
    """evaluate's confusion matrix equals sklearn's on the argmax predictions; the train flag is kept."""
    model = mlp(digits)
    model.train(training)
    got = evaluate(model, digits.x_test, digits.y_test, digits.num_classes, batch_size=100)
    assert model.training == training
    model.eval()
    with torch.no_grad():
        pred = model(digits.x_test).argmax(dim=1).numpy()
    want = sk_confusion_matrix(digits.y_test.numpy(), pred, labels=np.arange(digits.num_classes))
    np.testing.assert_array_equal(got, want)


def test_gradient_batches_draw_without_replacement() -> None:
    """count x batch_size distinct training samples, the same for the same seed."""
    n = 100
    ids = torch.arange(n, dtype=torch.float32)[:, None]
    data = Dataset("ids", "ids", ids, torch.arange(n) % 7, ids, torch.arange(n) % 7, 7)
    batches = gradient_batches(data, 3, 16, seed=4)
    assert [tuple(x.shape) for x, _ in batches] == [(16, 1)] * 3
    drawn = torch.cat([x for x, _ in batches]).flatten().long()
    assert len(set(drawn.tolist())) == 48
    assert all(torch.equal(y, x.flatten().long() % 7) for x, y in batches)
    again = gradient_batches(data, 3, 16, seed=4)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "bad", "valid"),
    [
        ({"weight_decay": -1e-3}, "got -0.001", ">= 0"),
        ({"weight_decay": math.inf}, "got inf", ">= 0"),
        ({"lr": 0}, "lr=0.0", "lr > 0"),
        ({"epochs": -1}, "epochs=-1", "epochs >= 0"),
    ],
)
def test_bad_schedule_raises(both, kwargs, bad: str, valid: str) -> None:
    """Negative weight decay, lr <= 0 or negative epochs raise ValueError naming value and rule."""
    with pytest.raises(ValueError, match=both(bad, valid)):
        Schedule(**{"epochs": 1, "lr": 0.1, **kwargs})


def test_nan_loss_raises_diverged() -> None:
    """A NaN training loss raises Diverged."""
    data = tiny_images(augment=False)
    data = dataclasses.replace(data, x_train=data.x_train * math.nan)
    with pytest.raises(Diverged, match="nan"):
        fit(build("lenet300-100", data.input_shape, 4, 0.1), data, Schedule(epochs=1, lr=0.1), seed=0)


def test_bf16_autocast_is_an_option_off_by_default(digits) -> None:
    """precision='bf16' trains under autocast (different weights); the default is fp32."""
    assert Schedule(1, 0.05).precision == "fp32"
    weights = {}
    for precision in ("fp32", "bf16"):
        with seeded(0):
            model = build("lenet300-100", digits.input_shape, digits.num_classes, 0.25)
        losses = fit(model, digits, Schedule(1, 0.05, precision=precision), seed=0)
        assert all(np.isfinite(losses))
        weights[precision] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.equal(weights["fp32"], weights["bf16"])
    with pytest.raises(ValueError, match=r"unknown precision 'fp16'.*'bf16'"):
        Schedule(1, 0.05, precision="fp16")
