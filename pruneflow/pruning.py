"""One-shot global unstructured pruning to a compression ratio t.

Compression has two bases (``basis``):

- ``"prunable"`` (default): t = P_prunable / kept, so ``round(P_prunable / t)`` prunable weights
  remain; t means the same sparsity for every model size.
- ``"all"`` (ShrinkBench's, the authors'): t = P_all / nonzero parameters, so the prunable weights
  keep ``round(P_all / t - P_unprunable)``; a small model is then pruned harder than t says.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .checks import check_weight_decay
from .devices import generator
from .masks import Mask, parameter_counts, prunable_weights
from .registry import check_choice
from .strategies import STRATEGIES, Context

BASES = ("prunable", "all")


class Unreachable(ValueError):
    """The compression ratio cannot be reached on the asked basis by this model."""


def check_compression(compression: float) -> None:
    """Raise ``ValueError`` unless ``compression`` is a finite number > 1."""
    if not (
        isinstance(compression, numbers.Real)
        and not isinstance(compression, bool)
        and math.isfinite(compression)
        and compression > 1
    ):
        raise ValueError(
            f"compression must be a finite number > 1 (t = 1 is the dense model), got {compression!r}"
        )


def weights_to_keep(compression: float, basis: str, n_prunable: int, n_all: int) -> int:
    """How many prunable weights remain at ``compression`` on ``basis``."""
    check_compression(compression)
    check_choice("basis", basis, BASES)
    compression = float(compression)
    if basis == "prunable":
        keep = n_prunable / compression
    else:
        keep = n_all / compression - (n_all - n_prunable)
        if keep < 0.5:
            raise Unreachable(
                f"compression {compression} is unreachable on basis='all': the {n_all - n_prunable} "
                f"unprunable parameters alone exceed {n_all}/{compression} = {n_all / compression:.0f}; "
                f"use basis='prunable' or a smaller ratio"
            )
    if round(keep) < 1:
        raise ValueError(f"compression {compression} would keep no weight of {n_prunable} prunable ones")
    return round(keep)


@dataclass(frozen=True)
class PruneResult:
    """Masks applied and the compression realised (``compression`` is on the asked basis)."""

    masks: Mask
    compression: float
    compression_prunable: float
    compression_all: float
    kept: int
    n_prunable: int
    n_params: int


def global_mask(scores: dict[str, Tensor], keep: int) -> Mask:
    """Keep the ``keep`` highest scores across all tensors (ties broken arbitrarily)."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    if not 0 < keep <= flat.numel():
        raise ValueError(f"cannot keep {keep} of {flat.numel()} weights")
    kept = torch.zeros_like(flat, dtype=torch.bool)
    kept[torch.topk(flat, keep, sorted=False).indices] = True
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = kept[start : start + s.numel()].view_as(s)
        start += s.numel()
    return Mask(masks)


class StrategyError(ValueError):
    """A strategy broke its contract (:func:`check_output`); the message names it and what was wrong."""


def check_output(strategy: str, weights: dict[str, Tensor], output: object, masks: bool = False) -> None:
    """Raise :class:`StrategyError` unless ``output`` maps exactly the names of ``weights`` to tensors
    of their shapes: finite scores, or boolean keep-masks if ``masks`` (a mask-drawing strategy)."""
    what = "masks" if masks else "scores"

    def broken(problem: str) -> StrategyError:
        return StrategyError(f"strategy {strategy!r} broke its contract: {problem}")

    if not isinstance(output, Mapping):
        raise broken(f"returned a {type(output).__name__}, not a dict of {what} by weight name")
    if set(output) != set(weights):
        missing, extra = sorted(set(weights) - set(output)), sorted(map(str, set(output) - set(weights)))
        raise broken(
            f"{what} for {sorted(map(str, output))} instead of the prunable weights {sorted(weights)}"
            f" (missing {missing}, unknown {extra})"
        )
    for name, weight in weights.items():
        value = output[name]
        if not isinstance(value, Tensor):
            raise broken(f"{what} of {name!r} are a {type(value).__name__}, not a tensor")
        if value.shape != weight.shape:
            raise broken(
                f"{what} of {name!r} have shape {tuple(value.shape)}, the weight {tuple(weight.shape)}"
            )
        if masks and value.dtype != torch.bool:
            raise broken(f"masks of {name!r} are {value.dtype}, not torch.bool")
        if not masks and not (finite := torch.isfinite(value)).all():
            raise broken(f"scores of {name!r} are not finite ({int((~finite).sum())} of {value.numel()})")


def _call(strategy: str, model: nn.Module, context: Context) -> dict[str, Tensor]:
    """``strategy``'s output on ``model``, checked (:func:`check_output`) and with the model's
    parameters verified unchanged."""
    before = [p.detach().clone() for p in model.parameters()]
    weights = prunable_weights(model)
    output = STRATEGIES[strategy](weights, context)
    if not all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)):
        raise StrategyError(f"strategy {strategy!r} broke its contract: it changed the model's parameters")
    check_output(strategy, weights, output, masks=getattr(STRATEGIES[strategy], "draws_mask", False))
    return output


def score(
    model: nn.Module,
    strategy: str,
    *,
    batches: Iterable[tuple[Tensor, Tensor]] | None = None,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Scores of ``strategy`` for every prunable weight of ``model`` (left unchanged); raises
    :class:`StrategyError` if the strategy breaks its contract."""
    check_weight_decay(weight_decay)
    context = Context(model, batches, weight_decay, generator(seed), 1.0)
    return _call(strategy, model, context)


def compute_mask(
    model: nn.Module,
    strategy: str,
    compression: float,
    *,
    basis: str = "prunable",
    batches: Iterable[tuple[Tensor, Tensor]] | None = None,
    weight_decay: float = 0.0,
    seed: int = 0,
    scores: dict[str, Tensor] | None = None,
    keep: int | None = None,
) -> PruneResult:
    """The mask ``strategy`` would apply at ``compression``; ``model`` is left unchanged.
    ``scores``, if given, are the strategy's scores computed beforehand (as ``importance_scores`` of
    ``torch.nn.utils.prune``; e.g. one :func:`score` shared by every ratio of a ratio-free strategy).
    ``keep``, if given, is the number of prunable weights to keep instead of the one ``compression``
    asks for (a run matched to another strategy's kept count); the realised compression follows it.
    A mask-drawing strategy (``draws_mask``: RP-bernoulli, UP-authors) keeps what its rule gives,
    at least one weight; when it keeps every weight, the realised compression is 1."""
    check_weight_decay(weight_decay)
    n_prunable, n_all = parameter_counts(model)
    asked = weights_to_keep(compression, basis, n_prunable, n_all)
    weights = prunable_weights(model)
    draws = getattr(STRATEGIES[strategy], "draws_mask", False)
    if keep is not None and (draws or not 0 < keep <= n_prunable):
        raise ValueError(f"cannot keep {keep} of {n_prunable} weights with {strategy!r}")
    keep = asked if keep is None else keep
    if draws:  # it draws its masks; the kept count is random
        context = Context(model, batches, weight_decay, generator(seed), keep / n_prunable)
        masks = Mask(_call(strategy, model, context))
        keep = max(sum(int(m.sum()) for m in masks.values()), 1)
    else:
        if scores is None:
            scores = score(model, strategy, batches=batches, weight_decay=weight_decay, seed=seed)
        else:
            check_output(strategy, weights, scores)
        masks = global_mask(scores, keep)
    by_basis = {"prunable": n_prunable / keep, "all": n_all / (n_all - n_prunable + keep)}
    return PruneResult(masks, by_basis[basis], by_basis["prunable"], by_basis["all"], keep, n_prunable, n_all)


def prune(
    model: nn.Module,
    strategy: str,
    compression: float,
    *,
    basis: str = "prunable",
    batches: Iterable[tuple[Tensor, Tensor]] | None = None,
    weight_decay: float = 0.0,
    seed: int = 0,
    scores: dict[str, Tensor] | None = None,
    keep: int | None = None,
) -> PruneResult:
    """Prune ``model`` in place with ``strategy`` to ``compression`` and return the masks.

    ``strategy`` is a name in :data:`pruneflow.strategies.STRATEGIES` (MP, GP, UP, RP),
    ``batches`` an iterable of (inputs, labels) for the gradient strategies, ``weight_decay`` the
    eps of UP, ``seed`` the seed of RP, ``scores`` precomputed scores, ``keep`` an exact kept
    count overriding the one ``compression`` asks for (:func:`compute_mask`).
    """
    result = compute_mask(
        model,
        strategy,
        compression,
        basis=basis,
        batches=batches,
        weight_decay=weight_decay,
        seed=seed,
        scores=scores,
        keep=keep,
    )
    result.masks.apply(model)
    return result
