"""Scoring strategies: GP/UP against a hand computation, UP's limits (eps = 0, g = 0), no side effects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pruneflow.strategies
from pruneflow import compute_mask
from pruneflow.devices import generator
from pruneflow.masks import prunable_weights
from pruneflow.strategies import STRATEGIES, Context, loss_gradients

LENET5_INPUT = (1, 28, 28)

# A toy network x -> W2 (W1 x) + b2; only W1 ("0.weight") is prunable, W2 being the classifier.
W1 = np.array([[0.5, -1.0], [1.5, 0.25]])
W2 = np.array([[1.0, -0.5], [-2.0, 0.75]])
B2 = np.array([0.1, -0.2])
TOY_BATCHES = [
    (np.array([[1.0, 2.0], [-0.5, 0.3], [2.0, -1.0]]), np.array([0, 1, 1])),
    (np.array([[0.2, -1.5], [1.0, 1.0]]), np.array([1, 0])),
]
EPS = 0.3


def toy_model() -> nn.Module:
    """The toy network with W1, W2, b2 set (float32)."""
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(W1))
        model[1].weight.copy_(torch.tensor(W2))
        model[1].bias.copy_(torch.tensor(B2))
    return model


def toy_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """TOY_BATCHES as tensors."""
    return [(torch.tensor(x, dtype=torch.float32), torch.tensor(y)) for x, y in TOY_BATCHES]


def hand_gradient_w1() -> np.ndarray:
    """Mean over the batches of d(mean softmax cross-entropy)/dW1, by the chain rule in numpy."""
    grads = []
    for x, y in TOY_BATCHES:
        z = x @ W1.T @ W2.T + B2
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        dz = (p - np.eye(2)[y]) / len(y)  # dL/dz of the batch-mean cross-entropy
        grads.append((dz @ W2).T @ x)  # dL/dW1 = sum_i (W2^T dz_i) x_i^T
    return np.mean(grads, axis=0)


def scores(strategy: str, model: nn.Module, batches, weight_decay: float = 0.0) -> dict[str, torch.Tensor]:
    """The scores ``strategy`` gives the prunable weights of ``model``."""
    weights = prunable_weights(model)
    return STRATEGIES[strategy](weights, Context(model, batches, weight_decay, generator(0)))


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("GP", lambda w, g: np.abs(w * g)),
        ("UP", lambda w, g: np.abs(EPS * w**2 - w * g)),
    ],
)
def test_gradient_scores_match_hand_computation(strategy: str, expected) -> None:
    """GP = |w g| and UP = |eps w^2 - w g| with g the hand-derived mean batch gradient."""
    got = scores(strategy, toy_model(), toy_batches(), EPS)
    assert list(got) == ["0.weight"]
    want = expected(W1, hand_gradient_w1())
    np.testing.assert_allclose(got["0.weight"].numpy(), want, rtol=1e-5, atol=1e-7)


def test_up_mask_keeps_highest_hand_scores() -> None:
    """compute_mask(UP, t=2) on the toy network keeps the 2 weights of highest hand-computed UP score."""
    want = np.abs(EPS * W1**2 - W1 * hand_gradient_w1())
    assert len(np.unique(want)) == want.size  # no ties
    result = compute_mask(toy_model(), "UP", 2, batches=toy_batches(), weight_decay=EPS)
    np.testing.assert_array_equal(result.masks["0.weight"].numpy(), want >= np.sort(want, axis=None)[-2])


def test_up_equals_gp_without_weight_decay(make_model, make_batches) -> None:
    """With eps = 0, UP's scores and masks are GP's."""
    model, batches = make_model("lenet5"), make_batches(LENET5_INPUT)
    up, gp = scores("UP", model, batches, 0.0), scores("GP", model, batches)
    assert all(torch.equal(up[n], gp[n]) for n in gp)
    up_mask = compute_mask(model, "UP", 10, batches=batches, weight_decay=0.0).masks
    gp_mask = compute_mask(model, "GP", 10, batches=batches).masks
    assert all(torch.equal(up_mask[n], gp_mask[n]) for n in gp_mask)


def zero_classifier(model: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    """Zero the last Linear: logits are constant, so dL/dw = 0 exactly for every prunable weight."""
    with torch.no_grad():
        model[-1].weight.zero_()


def zero_loss_gradients(model: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the loss gradient by zeros."""
    monkeypatch.setattr(
        pruneflow.strategies,
        "loss_gradients",
        lambda model, weights, batches: {n: torch.zeros_like(w) for n, w in weights.items()},
    )


@pytest.mark.parametrize("make_zero", [zero_classifier, zero_loss_gradients])
@pytest.mark.parametrize("t", [2, 10])
def test_up_ranks_like_mp_when_gradient_is_zero(make_model, make_batches, monkeypatch, make_zero, t) -> None:
    """With g = 0, UP's score is eps w^2 and its mask equals MP's."""
    model, batches = make_model("lenet5"), make_batches(LENET5_INPUT)
    make_zero(model, monkeypatch)
    weights = prunable_weights(model)
    grads = pruneflow.strategies.loss_gradients(model, weights, batches)
    assert all(torch.count_nonzero(g) == 0 for g in grads.values())
    up = compute_mask(model, "UP", t, batches=batches, weight_decay=5e-4).masks
    mp = compute_mask(model, "MP", t).masks
    assert all(torch.equal(up[n], mp[n]) for n in mp)


@pytest.mark.parametrize(
    ("strategy", "training", "with_grad"),
    [("GP", True, True), ("GP", False, False), ("UP", False, True), ("RP", True, True)],
)
def test_strategies_leave_model_untouched(
    make_model, make_batches, state, strategy: str, training: bool, with_grad: bool
) -> None:
    """compute_mask on resnet20 changes no weight, .grad, BatchNorm running statistic or train flag."""
    model = make_model("resnet20")
    if with_grad:
        x, y = make_batches((3, 32, 32), count=1, size=4, seed=1)[0]
        F.cross_entropy(model(x), y).backward()
    model.train(training)
    before = state(model)
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}

    compute_mask(model, strategy, 4, batches=make_batches((3, 32, 32)), weight_decay=5e-4)

    assert model.training == training
    for key, value in state(model).items():
        assert torch.equal(value, before[key]), key
    for name, p in model.named_parameters():
        assert (p.grad is None) == (grads[name] is None), name
        assert p.grad is None or torch.equal(p.grad, grads[name]), name


def test_loss_gradients_match_autograd_in_training_mode(make_model, make_batches) -> None:
    """loss_gradients is the mean over batches of the batch-statistics gradient, whatever the mode."""
    model, batches = make_model("resnet20", width=0.25), make_batches((3, 8, 8), count=2, size=4)
    model.eval()
    got = loss_gradients(model, prunable_weights(model), batches)
    reference = make_model("resnet20", width=0.25)
    reference.train()
    for x, y in batches:
        F.cross_entropy(reference(x), y).backward()
    for name, p in prunable_weights(reference).items():
        torch.testing.assert_close(got[name], p.grad / len(batches), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("strategy", ["GP", "UP"])
@pytest.mark.parametrize("batches", [None, []])
def test_gradient_strategies_need_batches(make_model, strategy: str, batches) -> None:
    """GP and UP without batches (None or empty) raise ValueError asking for batches."""
    with pytest.raises(ValueError, match="batch"):
        compute_mask(make_model("lenet300-100", width=0.1), strategy, 2, batches=batches)
