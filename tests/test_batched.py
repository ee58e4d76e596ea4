"""fit_many against sequential fit: same weights and losses per model, masks held, inputs checked."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from pruneflow import prune
from pruneflow.batched import fit_many
from pruneflow.data import Dataset, load
from pruneflow.devices import seeded
from pruneflow.masks import Mask, prunable_weights
from pruneflow.models import build
from pruneflow.train import Diverged, Schedule, fit, validation_split

SCHEDULE = Schedule(epochs=2, lr=0.1, batch_size=100)  # 1,437 digits: 14 full batches + one of 37
SEEDS = [3, 14, 15]
TOL = {"atol": 1e-5, "rtol": 0}


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load("digits")


def mlp(data: Dataset, seed: int, width: float = 0.1) -> nn.Module:
    with seeded(seed):
        return build("lenet300-100", data.input_shape, data.num_classes, width)


def random_mask(model: nn.Module, seed: int) -> Mask:
    gen = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(p.shape, generator=gen) < 0.5 for n, p in prunable_weights(model).items()})


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, **TOL, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("masked", [False, True])
def test_matches_sequential_fit(digits: Dataset, masked: bool) -> None:
    models = [mlp(digits, seed) for seed in range(3)]
    masks = None
    if masked:  # a pruned model, a dense one, and a mask whose weights are not zeroed before training
        masks = [prune(models[0], "MP", 4).masks, None, random_mask(models[2], 0)]
    initial = [copy.deepcopy(m) for m in models]
    expected = [copy.deepcopy(m) for m in models]
    expected_losses = [
        fit(m, digits, SCHEDULE, seed=s, mask=None if masks is None else masks[i])
        for i, (m, s) in enumerate(zip(expected, SEEDS, strict=True))
    ]

    losses = fit_many(models, digits, SCHEDULE, seeds=SEEDS, masks=masks)

    assert len(losses) == 3 and all(len(h) == SCHEDULE.epochs for h in losses)
    for got, want in zip(losses, expected_losses, strict=True):
        assert got == pytest.approx(want, abs=1e-5, rel=0)
    for model, want, before in zip(models, expected, initial, strict=True):
        assert_same_weights(model, want)
        assert not torch.equal(model[-1].weight, before[-1].weight)  # training did happen
    if masks is not None:
        for model, mask in zip(models, masks, strict=True):
            if mask is not None:
                for name, w in prunable_weights(model).items():
                    assert torch.all(w[~mask[name]] == 0), name


def test_seed_order_matters(digits: Dataset) -> None:
    """Same initial model, different seeds: different batch orders, so different results."""
    model = mlp(digits, 0)
    models = [copy.deepcopy(model) for _ in range(2)]
    losses = fit_many(models, digits, SCHEDULE, seeds=[1, 2])
    assert losses[0] != losses[1]
    assert not torch.allclose(models[0][-1].weight, models[1][-1].weight)


def test_zero_epochs_leaves_models_unchanged(digits: Dataset) -> None:
    models = [mlp(digits, seed) for seed in range(2)]
    before = [copy.deepcopy(m) for m in models]
    assert fit_many(models, digits, dataclasses.replace(SCHEDULE, epochs=0), seeds=[0, 1]) == [[], []]
    for model, want in zip(models, before, strict=True):
        for p, q in zip(model.parameters(), want.parameters(), strict=True):
            assert torch.equal(p, q)


def test_divergence_of_one_model(digits: Dataset) -> None:
    """A NaN weight makes model 1 diverge; model 0 is unaffected and holds its epoch-1 weights."""
    schedule = dataclasses.replace(SCHEDULE, epochs=1)
    models = [mlp(digits, seed) for seed in range(2)]
    with torch.no_grad():
        models[1][-1].weight[0, 0] = math.nan
    expected = copy.deepcopy(models[0])
    fit(expected, digits, schedule, seed=SEEDS[0])
    with pytest.raises(Diverged, match=r"model\(s\) \{1: nan\} at epoch 1/1"):
        fit_many(models, digits, schedule, seeds=SEEDS[:2])
    assert_same_weights(models[0], expected)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("architectures", "model 1 differs from model 0 in architecture"),
        ("seeds", "got 2 seeds for 3 models"),
        ("masks", "got 1 for 3 models"),
        ("duplicate", "the same model object appears twice"),
        ("empty", "needs at least one model"),
        ("mask shape", r"mask .1.weight. has shape \(60, 64\), weight \(30, 64\)"),
    ],
)
def test_bad_inputs(digits: Dataset, case: str, message: str) -> None:
    models = [mlp(digits, seed) for seed in range(3)]
    seeds, masks, data = SEEDS, None, digits
    if case == "architectures":
        models[1] = mlp(digits, 1, width=0.2)
    elif case == "seeds":
        seeds = SEEDS[:2]
    elif case == "masks":
        masks = [None]
    elif case == "duplicate":
        models[2] = models[0]
    elif case == "empty":
        models, seeds = [], []
    elif case == "mask shape":
        masks = [None, random_mask(mlp(digits, 0, width=0.2), 0), None]
    before = [copy.deepcopy(m) for m in models]
    with pytest.raises(ValueError, match=message):
        fit_many(models, data, SCHEDULE, seeds=seeds, masks=masks)
    for model, want in zip(models, before, strict=True):  # nothing trained
        for p, q in zip(model.parameters(), want.parameters(), strict=True):
            assert torch.equal(p, q)


def test_batchnorm_resnets_with_augmentation_match_sequential_fit() -> None:
    """CIFAR-style ResNets (BatchNorm, augmented inputs), masked and not: fit_many equals fit in
    weights, running statistics and losses. In float64, so that the check is of the algorithm (1e-9);
    in float32 the two differ by rounding only (about 1e-7, up to 1e-4 where a mask was not applied
    before training)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (96,), generator=gen)
    data = Dataset("tiny-cifar", "synthetic", x, y, x[:32], y[:32], 4, augment=True)
    schedule = Schedule(epochs=2, lr=0.05, batch_size=32)
    models = []
    for seed in range(3):
        with seeded(seed):
            models.append(build("resnet20", (3, 8, 8), 4, 0.25).double())
    masks = [None, prune(models[1], "MP", 4).masks, random_mask(models[2], 1)]
    expected = [copy.deepcopy(m) for m in models]
    expected_losses = [
        fit(m, data, schedule, seed=s, mask=k) for m, s, k in zip(expected, SEEDS, masks, strict=True)
    ]

    losses = fit_many(models, data, schedule, seeds=SEEDS, masks=masks)

    for got, want in zip(losses, expected_losses, strict=True):
        assert got == pytest.approx(want, abs=1e-9, rel=0)
    for model, want in zip(models, expected, strict=True):
        for (name, p), q in zip(model.state_dict().items(), want.state_dict().values(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-9, rtol=0, msg=lambda m, name=name: f"{name}: {m}")
    assert models[0].bn.num_batches_tracked.item() == 2 * math.ceil(96 / 32)


def test_step_schedule_and_best_validation_epoch_match_sequential_fit() -> None:
    """On a task that can only be memorised, each model's best-validation epoch differs; fit_many
    keeps each model's own, as fit does, under a step learning-rate schedule."""
    from tests.test_schedule_options import noisy_dataset

    data = noisy_dataset()
    schedule = Schedule(
        epochs=8, lr=0.2, weight_decay=0.0, batch_size=16, validation=0.25, lr_steps=((4, 1), (4, 0.5))
    )
    models = [mlp(data, seed, width=0.5) for seed in range(3)]
    expected = [copy.deepcopy(m) for m in models]
    for model, seed in zip(expected, SEEDS, strict=True):
        fit(model, data, schedule, seed=seed)
    kept, _ = validation_split(len(data.y_train), schedule.validation)  # the same run, no selection
    train_only = dataclasses.replace(data, x_train=data.x_train[kept], y_train=data.y_train[kept])
    last = [copy.deepcopy(m) for m in models]
    fit_many(last, train_only, dataclasses.replace(schedule, validation=0.0), seeds=SEEDS)

    fit_many(models, data, schedule, seeds=SEEDS)

    for model, want in zip(models, expected, strict=True):
        assert_same_weights(model, want)
    assert any(not torch.equal(m[-1].weight, f[-1].weight) for m, f in zip(models, last, strict=True))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_per_model_gradients_of_an_mlp_by_batched_products(digits: Dataset, precision: str) -> None:
    """A plain MLP's per-model gradients come from batched matrix products (no torch.func): each
    model's equal the gradient of its own loss by autograd (and torch.func's), with and without biases
    or a Flatten; other architectures keep vmap(grad)."""
    from torch.func import stack_module_state

    from pruneflow.batched import _layers, per_model_gradients

    bf16 = precision == "bf16"
    tol = {"atol": 2e-2, "rtol": 2e-2} if bf16 else {"atol": 1e-6, "rtol": 1e-5}
    gen = torch.Generator().manual_seed(0)
    no_flatten = nn.Sequential(nn.Linear(64, 12, bias=False), nn.ReLU(), nn.Linear(12, 10))
    for kind in ("lenet300-100", "no flatten"):
        models = [mlp(digits, s) if kind == "lenet300-100" else copy.deepcopy(no_flatten) for s in SEEDS]
        for i, model in enumerate(models[1:], start=1):
            with seeded(i), torch.no_grad():
                for p in model.parameters():
                    p.normal_(0, 0.3)
        assert _layers(models[0]) is not None
        idx = torch.randint(0, len(digits.y_train), (len(models), 50), generator=gen)
        x, y = digits.x_train[idx], digits.y_train[idx]
        x = x if kind == "lenet300-100" else x.flatten(2)
        params, buffers = stack_module_state(models)
        grads, losses = per_model_gradients(copy.deepcopy(models[0]).to("meta"), bf16)(params, buffers, x, y)
        for i, model in enumerate(models):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
            loss.backward()
            torch.testing.assert_close(losses[i], loss.detach(), **tol)
            for name, p in model.named_parameters():
                torch.testing.assert_close(grads[name][i], p.grad, **tol)
                assert grads[name][i].is_contiguous()
    assert _layers(build("lenet5", (1, 28, 28), 10)) is None
    assert _layers(nn.Sequential(nn.Linear(4, 4), nn.Dropout(), nn.Linear(4, 2))) is None
    assert _layers(nn.Sequential(nn.Linear(4, 4), nn.Flatten(), nn.Linear(4, 2))) is None
    assert _layers(nn.Sequential(nn.ReLU())) is None
