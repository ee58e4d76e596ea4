"""Where tensors live and how randomness is seeded: explicitly, never through global state."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def default_device() -> torch.device:
    """CUDA when present, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def derive_seed(*parts: object) -> int:
    """A 63-bit seed derived deterministically from ``parts`` (stable across processes)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``; random draws move to the device afterwards, so
    the same seed gives the same numbers on every device."""
    return torch.Generator().manual_seed(seed)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (e.g. model construction) under ``seed`` and restore the global RNG after."""
    devices = list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
