"""Shared fixtures: seeded model builders, random batches and the offline digits dataset."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch import nn

from pruneflow.data import Dataset, load
from pruneflow.devices import seeded
from pruneflow.models import build

# The models here are tiny: one intra-op thread is several times faster than two on a shared 2-core
# machine (no spin-waiting for a descheduled sibling thread) and changes no result within a process.
torch.set_num_threads(1)

INPUT_SHAPES = {"lenet300-100": (1, 28, 28), "lenet5": (1, 28, 28), "resnet20": (3, 32, 32)}


@pytest.fixture(scope="session")
def make_model() -> Callable[..., nn.Module]:
    """Build a model by name under ``seeded(seed)`` (continuous random weights, no ties)."""

    def make(
        name: str,
        seed: int = 0,
        width: float = 1.0,
        num_classes: int = 10,
        input_shape: tuple[int, ...] | None = None,
    ) -> nn.Module:
        with seeded(seed):
            return build(name, input_shape or INPUT_SHAPES[name], num_classes, width)

    return make


@pytest.fixture(scope="session")
def make_batches() -> Callable[..., list[tuple[torch.Tensor, torch.Tensor]]]:
    """``count`` random (inputs, labels) batches for ``input_shape`` from a fixed generator."""

    def make(
        input_shape: tuple[int, ...], count: int = 2, size: int = 8, num_classes: int = 10, seed: int = 0
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        return [
            (
                torch.randn((size, *input_shape), generator=gen),
                torch.randint(0, num_classes, (size,), generator=gen),
            )
            for _ in range(count)
        ]

    return make


@pytest.fixture(scope="session")
def digits() -> Dataset:
    """scikit-learn's digits (1,437 train / 360 test 1x8x8 images): the cheapest real dataset."""
    return load("digits")


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer of ``model``."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="session")
def state() -> Callable[[nn.Module], dict[str, torch.Tensor]]:
    """``state(model)``: a detached copy of every parameter and buffer."""
    return snapshot


def _both(first: str, second: str) -> str:
    """A ``re.search`` pattern matching text that contains both literal strings, in any order."""
    return rf"(?s)^(?=.*{re.escape(first)})(?=.*{re.escape(second)})"


@pytest.fixture(scope="session")
def both() -> Callable[[str, str], str]:
    """``both(a, b)``: a ``pytest.raises(match=...)`` pattern requiring both literals in the message."""
    return _both
