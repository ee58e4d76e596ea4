"""Fine-tuning a pruned BatchNorm ResNet (issue 21): the masked conv weights stay exactly 0 and get
zero gradient at every step, through ``fit`` and ``fit_many``, while the running statistics are
re-estimated; checked against the same training with ``torch.nn.utils.prune``'s reparametrisation
(w = w_orig * mask), whose effective weights are the reference."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from pruneflow import batched
from pruneflow.batched import fit_many
from pruneflow.data import Dataset
from pruneflow.devices import seeded
from pruneflow.masks import Mask, prunable_weights
from pruneflow.models import build
from pruneflow.train import Schedule, fit

SCHEDULE = Schedule(epochs=2, lr=0.05, momentum=0.9, weight_decay=5e-3, batch_size=32)
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def images() -> Dataset:
    """96 random 3x8x8 images in 4 classes, augmented (crop and flip) like CIFAR, in float64."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 3, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (128,), generator=gen)
    return Dataset("tiny-cifar", "synthetic", x[:96], y[:96], x[96:], y[96:], 4, augment=True)


def resnet(seed: int) -> nn.Module:
    with seeded(seed):
        return build("resnet20", (3, 8, 8), 4, 0.25).double()


def known_mask(model: nn.Module, seed: int) -> Mask:
    """A random mask keeping ~30% of each prunable weight tensor, applied to ``model`` as pruning does."""
    gen = torch.Generator().manual_seed(seed)
    mask = Mask({n: torch.rand(p.shape, generator=gen) < 0.3 for n, p in prunable_weights(model).items()})
    mask.apply(model)
    return mask


def reference(model: nn.Module, mask: Mask, seed: int, data: Dataset) -> dict[str, torch.Tensor]:
    """The state after ``fit`` of a copy reparametrised by torch.nn.utils.prune with ``mask``."""
    twin = copy.deepcopy(model)
    modules = dict(twin.named_modules())
    for name in mask:
        torch_prune.custom_from_mask(modules[name.removesuffix(".weight")], "weight", mask[name])
    fit(twin, data, SCHEDULE, seed=seed)
    for name in mask:
        torch_prune.remove(modules[name.removesuffix(".weight")], "weight")
    return twin.state_dict()


def check(model: nn.Module, before: nn.Module, mask: Mask, want: dict[str, torch.Tensor]) -> None:
    convs = [n for n, p in prunable_weights(model).items() if p.dim() == 4]
    assert len(convs) == 19, convs  # the stem and two convs in each of 9 blocks
    for name, p in prunable_weights(model).items():
        assert torch.count_nonzero(p[~mask[name]]) == 0, name
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, want[name], atol=1e-9, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
    old = before.state_dict()
    for name in ("bn.running_mean", "blocks.8.bn2.running_var"):  # re-estimated by the fine-tuning
        assert not torch.allclose(model.state_dict()[name], old[name]), name


def test_fit_keeps_masked_conv_weights_zero_with_zero_gradient(images, monkeypatch):
    model = resnet(0)
    mask = known_mask(model, 7)
    before, want = copy.deepcopy(model), reference(model, mask, 5, images)
    pairs = [(p, mask[n]) for n, p in prunable_weights(model).items()]
    seen = []
    step = torch.optim.SGD.step

    def recording(self, *args, **kwargs):
        seen.append(all(torch.count_nonzero(p.grad[~m]) == 0 for p, m in pairs))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording)
    fit(model, images, SCHEDULE, seed=5, mask=mask)
    assert len(seen) == 2 * 3 and all(seen)
    check(model, before, mask, want)


def test_fit_many_keeps_masked_conv_weights_zero_with_zero_gradient(images, monkeypatch):
    models = [resnet(s) for s in SEEDS]
    masks = [known_mask(m, 10 + i) for i, m in enumerate(models)]
    before = [copy.deepcopy(m) for m in models]
    wants = [reference(m, k, s, images) for m, k, s in zip(models, masks, SEEDS, strict=True)]
    stacked = {n: torch.stack([k[n] for k in masks]) for n in masks[0]}
    seen = []
    step = batched._sgd_step

    def recording(params, grads, *args):
        seen.append(all(torch.count_nonzero(grads[n][~m]) == 0 for n, m in stacked.items()))
        return step(params, grads, *args)

    monkeypatch.setattr(batched, "_sgd_step", recording)
    fit_many(models, images, SCHEDULE, seeds=SEEDS, masks=masks)
    assert len(seen) == 2 * 3 and all(seen)
    for model, old, mask, want in zip(models, before, masks, wants, strict=True):
        check(model, old, mask, want)


def test_methods_say_which_models_have_batchnorm():
    """The methods page's BatchNorm paragraph names the profile's models with BatchNorm (and the
    running statistics' momentum as torch has it), and says so when there is none."""
    from pruneflow.experiment.profiles import load_profile
    from pruneflow.report import methods

    smoke = load_profile("smoke")
    text = methods.batchnorm_sentence(methods.Spec.of(smoke))
    assert text.startswith("Models with BatchNorm: resnet20 (19 BatchNorm layers).")
    assert f"momentum {nn.BatchNorm2d(1).momentum:g}" in text
    mlp = methods.Spec.of(smoke.subset("strategy"))
    assert methods.batchnorm_sentence(mlp) == "No model of this profile has BatchNorm."
