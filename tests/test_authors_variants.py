"""The authors' variants: UP-signed (their script's score) and RP-bernoulli (their random masks)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pruneflow import compute_mask
from pruneflow.devices import generator
from pruneflow.masks import prunable_weights
from pruneflow.strategies import STRATEGIES, Context
from tests.test_strategies import EPS, W1, hand_gradient_w1, toy_batches, toy_model


def test_up_signed_matches_hand_score_and_keeps_highest() -> None:
    """UP-signed = eps w^2 - w g (no absolute value); t=2 keeps the 2 highest signed scores."""
    want = EPS * W1**2 - W1 * hand_gradient_w1()
    weights = prunable_weights(toy_model())
    got = STRATEGIES["UP-signed"](weights, Context(toy_model(), toy_batches(), EPS, generator(0)))
    np.testing.assert_allclose(got["0.weight"].numpy(), want, rtol=1e-5, atol=1e-7)
    assert (want < 0).any(), "the toy must have a negative score for the sign to matter"
    result = compute_mask(toy_model(), "UP-signed", 2, batches=toy_batches(), weight_decay=EPS)
    np.testing.assert_array_equal(result.masks["0.weight"].numpy(), want >= np.sort(want, axis=None)[-2])


def test_rp_bernoulli_matches_hand_draw_with_layer_keep_fraction() -> None:
    """Each layer's mask is uniform(seeded) < keep/prunable, drawn in parameter order; the kept count
    is the mask's and the realised compression follows it."""
    model = nn.Sequential(nn.Linear(30, 40, bias=False), nn.Linear(40, 20, bias=False), nn.Linear(20, 3))
    weights = prunable_weights(model)
    n_prunable = sum(w.numel() for w in weights.values())
    result = compute_mask(model, "RP-bernoulli", 4, seed=7)
    gen = generator(7)
    fraction = round(n_prunable / 4) / n_prunable
    for name, w in weights.items():
        want = torch.rand(w.shape, generator=gen) < fraction
        assert torch.equal(result.masks[name], want)
    kept = sum(int(m.sum()) for m in result.masks.values())
    assert kept == result.kept != round(n_prunable / 4)  # Binomial, not the exact count
    assert abs(kept / n_prunable - 0.25) < 0.05
    assert result.compression_prunable == n_prunable / kept
