"""Global pruning: MP against torch's L1 pruning, RP seeding, realised compression, untouched layers."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from pruneflow import compute_mask, prune
from pruneflow.masks import prunable_weights
from pruneflow.pruning import score
from pruneflow.strategies import STRATEGIES

MODELS = ["lenet300-100", "lenet5", "resnet20"]
RATIOS = [2, 4, 10, 20, 50]


def prunable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Conv2d/Linear modules by name, except the last nn.Linear (the classifier)."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    head = [n for n, m in layers.items() if isinstance(m, nn.Linear)][-1]
    return {n: m for n, m in layers.items() if n != head}


def counts(model: nn.Module) -> tuple[int, int]:
    """(prunable weights, all parameters), counted from the modules."""
    prunable = sum(m.weight.numel() for m in prunable_modules(model).values())
    return prunable, sum(p.numel() for p in model.parameters())


def same_masks(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether two name -> bool tensor masks are identical."""
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


@pytest.fixture(scope="module")
def models(make_model) -> dict[str, nn.Module]:
    """One freshly initialised model per name (tests prune deep copies)."""
    return {name: make_model(name) for name in MODELS}


def test_prunable_weights_are_conv_and_linear_weights_but_the_classifier(models) -> None:
    """Prunable = 2-D/4-D weights of Conv2d/Linear minus the last Linear; no bias, norm or classifier."""
    resnet = models["resnet20"]
    expected = {n for n, p in resnet.named_parameters() if n.endswith("weight") and p.dim() in (2, 4)}
    assert set(prunable_weights(resnet)) == expected - {"fc.weight"}
    assert set(prunable_weights(models["lenet5"])) == {"0.weight", "3.weight", "7.weight", "9.weight"}


@pytest.mark.parametrize("t", [2, 10])
@pytest.mark.parametrize("name", MODELS)
def test_mp_equals_torch_global_l1_unstructured(models, name: str, t: int) -> None:
    """MP keeps exactly the weights torch's global L1Unstructured keeps for the same pruned count."""
    model = models[name]
    n_prunable, _ = counts(model)
    result = compute_mask(model, "MP", t)
    reference = copy.deepcopy(model)
    layers = prunable_modules(reference)
    torch_prune.global_unstructured(
        [(m, "weight") for m in layers.values()],
        pruning_method=torch_prune.L1Unstructured,
        amount=n_prunable - round(n_prunable / t),
    )
    assert same_masks(result.masks, {f"{n}.weight": m.weight_mask.bool() for n, m in layers.items()})


def test_rp_masks_repeat_for_a_seed_and_differ_across_seeds(models) -> None:
    """RP gives the same mask for the same seed, another for another seed, each ~1/t of every layer."""
    model = models["lenet300-100"]
    a, b, c = (compute_mask(model, "RP", 4, seed=s).masks for s in (7, 7, 8))
    assert same_masks(a, b)
    assert not same_masks(a, c)
    for name in a:
        assert a[name].float().mean().item() == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize("t", RATIOS)
@pytest.mark.parametrize("basis", ["prunable", "all"])
@pytest.mark.parametrize("name", MODELS)
def test_realised_compression_is_t(models, name: str, basis: str, t: int) -> None:
    """kept follows the basis formula, compression is t within one weight, zeros are the masked weights."""
    model = copy.deepcopy(models[name])
    n_prunable, n_all = counts(model)
    n_fixed = n_all - n_prunable
    if basis == "prunable":
        kept = round(n_prunable / t)
        total, nonzero = n_prunable, kept
    else:
        kept = round(n_all / t - n_fixed)
        total, nonzero = n_all, kept + n_fixed

    result = prune(model, "MP", t, basis=basis)

    assert (result.kept, result.n_prunable, result.n_params) == (kept, n_prunable, n_all)
    assert result.compression == pytest.approx(total / nonzero, rel=1e-12)
    assert total / (nonzero + 1) < t < total / (nonzero - 1)
    assert result.compression_prunable == pytest.approx(n_prunable / kept, rel=1e-12)
    assert result.compression_all == pytest.approx(n_all / (kept + n_fixed), rel=1e-12)
    assert sum(int(m.sum()) for m in result.masks.values()) == kept
    for layer, module in prunable_modules(model).items():
        assert torch.equal(module.weight == 0, ~result.masks[f"{layer}.weight"])


@pytest.mark.parametrize(
    ("name", "input_shape", "num_classes", "t"),
    [
        ("resnet20", (3, 32, 32), 10, 1000),  # 2,026 unprunable > 269,722 / 1000
        ("lenet300-100", (1, 2, 2), 1000, 2),  # the classifier holds most of the parameters
    ],
)
def test_unreachable_ratio_on_all_basis_raises(make_model, name, input_shape, num_classes, t) -> None:
    """A t the unprunable parameters alone exceed raises ValueError pointing to basis='prunable'."""
    model = make_model(name, input_shape=input_shape, num_classes=num_classes)
    n_prunable, n_all = counts(model)
    assert n_all / t < n_all - n_prunable  # really unreachable
    with pytest.raises(ValueError, match=r"basis=.prunable."):
        compute_mask(model, "MP", t, basis="all")
    assert compute_mask(model, "MP", t, basis="prunable").kept == round(n_prunable / t)


@pytest.mark.parametrize("strategy", ["MP", "RP"])
@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_pruning_changes_only_pruned_weights(models, state, name: str, strategy: str) -> None:
    """Classifier, biases, BatchNorm parameters and buffers are unchanged; kept weights keep their value."""
    model = copy.deepcopy(models[name])
    before = state(model)
    result = prune(model, strategy, 10, basis="all")
    after = state(model)
    for key, value in after.items():
        expected = before[key] * result.masks[key] if key in result.masks else before[key]
        assert torch.equal(value, expected), key


def test_compute_mask_leaves_model_and_prune_zeroes(models, state) -> None:
    """compute_mask changes nothing; prune applies the same mask, zeroing exactly the pruned weights."""
    model = copy.deepcopy(models["lenet5"])
    before = state(model)
    planned = compute_mask(model, "MP", 4)
    assert all(torch.equal(v, before[k]) for k, v in state(model).items())
    applied = prune(model, "MP", 4)
    assert same_masks(planned.masks, applied.masks)
    for name, p in prunable_weights(model).items():
        assert torch.equal(p, before[name] * applied.masks[name])
        assert int((p == 0).sum()) == int((~applied.masks[name]).sum()) > 0


@pytest.mark.parametrize(
    ("kwargs", "bad", "valid"),
    [
        ({"strategy": "XX"}, "'XX'", "'MP'"),
        ({"basis": "nope"}, "'nope'", "'prunable'"),
        ({"compression": 1}, "got 1", "> 1"),
        ({"compression": 0.5}, "got 0.5", "> 1"),
        ({"compression": math.nan}, "got nan", "finite"),
        ({"compression": math.inf}, "got inf", "finite"),
        ({"weight_decay": -1e-4}, "got -0.0001", ">= 0"),
        ({"weight_decay": math.nan}, "got nan", ">= 0"),
    ],
)
def test_bad_arguments_name_value_and_choices(models, both, kwargs, bad: str, valid: str) -> None:
    """Unknown strategy/basis, compression <= 1 or non-finite, negative decay: ValueError with both."""
    args = {"strategy": "MP", "compression": 2, **kwargs}
    model = models["lenet300-100"]
    with pytest.raises(ValueError, match=both(bad, valid)):
        prune(model, args.pop("strategy"), args.pop("compression"), **args)


@pytest.mark.parametrize("scalar", [np.int64, np.float32])
def test_numpy_scalars_work_like_python_numbers(models, scalar) -> None:
    """compression and weight_decay given as numpy scalars give the same mask as Python numbers."""
    model = models["lenet300-100"]
    got = compute_mask(model, "MP", scalar(4), weight_decay=scalar(0)).masks
    assert same_masks(got, compute_mask(model, "MP", 4).masks)


@pytest.mark.parametrize("strategy", ["MP", "GP", "UP", "UP-signed"])
def test_scores_computed_once_give_every_ratio_the_same_mask(models, strategy: str) -> None:
    """A ratio-free strategy scored once (as the grid shares it across ratios) masks as scoring anew."""
    model = models["lenet300-100"]
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(32, 1, 28, 28, generator=gen), torch.randint(0, 10, (32,), generator=gen))]
    assert getattr(STRATEGIES[strategy], "ratio_free", False)
    scores = score(model, strategy, batches=batches, weight_decay=5e-4)
    for t in (2, 10, 50):
        fresh = compute_mask(model, strategy, t, batches=batches, weight_decay=5e-4)
        shared = compute_mask(model, strategy, t, batches=batches, weight_decay=5e-4, scores=scores)
        assert same_masks(fresh.masks, shared.masks) and fresh.kept == shared.kept


def test_random_strategies_are_not_ratio_free() -> None:
    """RP draws new scores per run (its seed): sharing them across ratios would couple the runs."""
    assert not any(getattr(STRATEGIES[s], "ratio_free", False) for s in ("RP", "RP-bernoulli"))
