"""Which weights are prunable, and the validated boolean ``Mask`` over them (True = kept)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


def classifier(model: nn.Module) -> nn.Linear:
    """The model's final classifier: its last ``nn.Linear`` module."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    return linears[-1]


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of every Conv2d/Linear layer but the classifier, by parameter name.

    Biases, normalisation layers and the classifier are never pruned (the authors' ShrinkBench
    setting)."""
    head = classifier(model)
    return {
        f"{name}.weight" if name else "weight": module.weight
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.Linear) and module is not head
    }


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(prunable weights, all parameters) of ``model``."""
    prunable = sum(p.numel() for p in prunable_weights(model).values())
    return prunable, sum(p.numel() for p in model.parameters())


class Mask(dict[str, Tensor]):
    """Parameter name -> bool tensor of the parameter's shape; True keeps the weight."""

    def __init__(self, masks: Mapping[str, Tensor]) -> None:
        super().__init__(masks)
        for name, mask in self.items():
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
                raise ValueError(
                    f"mask {name!r} must be a bool tensor, got {getattr(mask, 'dtype', type(mask))}"
                )

    @classmethod
    def ones_like(cls, model: nn.Module) -> Mask:
        """The dense mask: every prunable weight kept."""
        return cls({n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_weights(model).items()})

    def check(self, model: nn.Module) -> None:
        """Raise ``ValueError`` unless this mask covers exactly ``model``'s prunable weights."""
        weights = prunable_weights(model)
        if set(self) != set(weights):
            raise ValueError(f"mask names {sorted(self)} differ from prunable weights {sorted(weights)}")
        for name, p in weights.items():
            if self[name].shape != p.shape:
                raise ValueError(
                    f"mask {name!r} has shape {tuple(self[name].shape)}, weight {tuple(p.shape)}"
                )

    @property
    def num_kept(self) -> int:
        return int(sum(m.sum().item() for m in self.values()))

    @property
    def num_weights(self) -> int:
        return sum(m.numel() for m in self.values())

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero the pruned weights of ``model`` in place."""
        self.check(model)
        for name, p in prunable_weights(model).items():
            p.mul_(self[name].to(p.device))
