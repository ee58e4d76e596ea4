"""Pruning strategies: each scores every prunable weight; the highest scores are kept.

A strategy is one function ``score(weights, context) -> scores`` registered by name; it reads
the model's weights and never modifies them. ``weights`` maps parameter names to tensors,
``scores`` maps the same names to tensors of the same shapes. Scoring is separate from
masking (as ``torch.nn.utils.prune.global_unstructured(importance_scores=...)``):
:func:`pruneflow.pruning.global_mask` turns scores into a global, exactly-sized mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masks import Mask
from .registry import Registry

Batches = Iterable[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Context:
    """What a strategy may use beyond the weights."""

    model: nn.Module
    batches: Batches | None
    weight_decay: float
    generator: torch.Generator
    keep_fraction: float = 1.0  # kept / prunable weights; read by mask-drawing strategies only


Scores = dict[str, Tensor]
Strategy = Callable[[dict[str, Tensor], Context], Scores]
STRATEGIES: Registry[Strategy] = Registry("strategy")


def ratio_free(strategy: Strategy) -> Strategy:
    """Mark ``strategy`` as drawing nothing at random: its scores depend on the weights, batches and eps
    only, so one scoring serves every ratio of a dense model (:func:`pruneflow.pruning.score`)."""
    strategy.ratio_free = True  # type: ignore[attr-defined]
    return strategy


@STRATEGIES.register("MP")
@ratio_free
def magnitude(weights: dict[str, Tensor], ctx: Context) -> Scores:
    """MP: ``|w|``."""
    return {n: w.detach().abs() for n, w in weights.items()}


@STRATEGIES.register("GP")
@ratio_free
def gradient(weights: dict[str, Tensor], ctx: Context) -> Scores:
    """GP: ``|w * g|``, g = dL/dw of the plain cross-entropy (first-order loss change when w -> 0)."""
    grads = loss_gradients(ctx.model, weights, ctx.batches)
    return {n: (w.detach() * grads[n]).abs() for n, w in weights.items()}


@STRATEGIES.register("UP")
@ratio_free
def undecayed(weights: dict[str, Tensor], ctx: Context) -> Scores:
    """UP: ``|eps * w^2 - w * g|``, eps = the training weight decay, g as in GP.

    Derivation (the authors' "GP + eps*MP"): training minimised ``L(w) + eps/2 |w|^2``, so at
    its end ``g ~ -eps w``: the loss gradient mostly records the decay's pull, and GP's
    first-order loss change ``-w g`` degenerates to ``eps w^2``. UP scores the change of the
    undecayed objective as if each weight's decay term were released, ``-w g + eps w^2``:
    with eps = 0 it is GP, with g = 0 it is ``eps w^2``, which ranks exactly like MP.
    """
    grads = loss_gradients(ctx.model, weights, ctx.batches)
    eps = ctx.weight_decay
    return {n: (eps * w.detach() ** 2 - w.detach() * grads[n]).abs() for n, w in weights.items()}


def draws_at_random(strategy: Strategy) -> Strategy:
    """Mark ``strategy`` as random: its kept set is drawn from the generator, not from the weights
    (the claims compare such strategies with the others)."""
    strategy.random = True  # type: ignore[attr-defined]
    return strategy


@STRATEGIES.register("RP")
@draws_at_random
def random(weights: dict[str, Tensor], ctx: Context) -> Scores:
    """RP: i.i.d. uniform scores from the seeded generator, so the kept set is a uniformly random
    subset of exactly the requested size (the authors drew Bernoulli masks, of random size)."""
    return {n: torch.rand(w.shape, generator=ctx.generator).to(w.device) for n, w in weights.items()}


@STRATEGIES.register("UP-signed")
@ratio_free
def undecayed_signed(weights: dict[str, Tensor], ctx: Context) -> Scores:
    """UP-signed: ``eps * w^2 - w * g`` without the absolute value (the authors' script ranked so).

    A weight whose removal lowers the undecayed loss gets a negative score and is pruned first.
    """
    grads = loss_gradients(ctx.model, weights, ctx.batches)
    eps = ctx.weight_decay
    return {n: eps * w.detach() ** 2 - w.detach() * grads[n] for n, w in weights.items()}


def draws_mask(strategy: Strategy) -> Strategy:
    """Mark ``strategy`` as returning boolean keep-masks itself (of random size), not scores."""
    strategy.draws_mask = True  # type: ignore[attr-defined]
    return strategy


@STRATEGIES.register("RP-bernoulli")
@draws_at_random
@draws_mask
def random_bernoulli(weights: dict[str, Tensor], ctx: Context) -> Scores:
    """RP-bernoulli: keep each weight independently with probability ``kept / prunable`` (the layer's
    keep fraction; the authors' code drew RP so), so the kept count is Binomial, not exact."""
    return {
        n: (torch.rand(w.shape, generator=ctx.generator) < ctx.keep_fraction).to(w.device)
        for n, w in weights.items()
    }


@STRATEGIES.register("UP-authors")
@draws_mask
def undecayed_authors(weights: dict[str, Tensor], ctx: Context) -> Scores:
    """UP-authors: the authors' UP as their code ran it: UP-signed's score ``eps * w^2 - w * g``
    through their global threshold (:func:`authors_threshold_mask`) at the asked keep fraction, so
    it keeps at least as many weights as asked when scores are negative, and all of them once
    the threshold is <= 0.

    Pruning iff ``-thr < s < thr`` is pruning iff ``|s| < thr``: the kept weights are UP's top
    ``|eps * w^2 - w * g|``, as many as the signed quantile lets through; so this is our UP at a
    lower compression than asked."""
    return authors_threshold_mask(undecayed_signed(weights, ctx), ctx.keep_fraction)


def authors_threshold_mask(scores: Scores, keep_fraction: float) -> Mask:
    """Keep-mask of the authors' ShrinkBench rule (``strategies/utils.py``): one threshold over the
    flattened scores of every tensor, ``thr = np.quantile(scores, 1 - keep_fraction)`` (numpy's
    default linear interpolation, on the scores as float32, as their numpy arrays were), and a weight
    is pruned iff ``-thr < s < thr``. With non-negative scores and no ties this keeps exactly the
    ``keep_fraction`` highest (numpy 2 interpolates float32 scores in float32, so when two scores
    lie within a float32 rounding of the threshold one more may stay); with signed scores it keeps
    more (the negative scores below ``-thr`` too), and everything when ``thr <= 0``."""
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction!r}")
    flat = torch.cat([s.detach().flatten() for s in scores.values()])
    threshold = float(np.quantile(flat.cpu().numpy(), 1 - keep_fraction))  # numpy: no size limit
    # thr (float32 for float32 scores) is exact as a Python float: comparing in float64 is numpy's comparison
    return Mask({n: ~((s.double() > -threshold) & (s.double() < threshold)) for n, s in scores.items()})


def loss_gradients(model: nn.Module, weights: dict[str, Tensor], batches: Batches | None) -> Scores:
    """Mean over ``batches`` of dL/dw (mean cross-entropy of each batch, no weight decay).

    The model runs in training mode (batch statistics, as the authors' ShrinkBench code did) on
    copies of its buffers, so neither its weights, its ``.grad`` nor its running statistics change.
    """
    if batches is None:
        raise ValueError("gradient strategies need batches=[(inputs, labels), ...] of training data")
    params = dict(model.named_parameters())
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    names = list(weights)
    total = {n: torch.zeros_like(params[n]) for n in names}
    was_training, count = model.training, 0
    model.train()
    try:
        for x, y in batches:
            out = torch.func.functional_call(model, {**params, **buffers}, (x,))
            grads = torch.autograd.grad(F.cross_entropy(out, y), [params[n] for n in names])
            for n, g in zip(names, grads, strict=True):
                total[n] += g
            count += 1
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("gradient strategies need at least one batch; got an empty iterable")
    return {n: g / count for n, g in total.items()}
