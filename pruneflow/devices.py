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


BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # native bf16 matrix instructions: x86 AMX or AVX-512, ARM


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The feature flags of the first CPU in ``cpuinfo`` (the text of /proc/cpuinfo, read when
    None; empty where there is none, e.g. macOS): its ``flags`` line (x86) or ``Features`` (ARM)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as file:
                cpuinfo = file.read()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def fast_bf16(device: torch.device | None = None) -> bool:
    """Whether ``device`` (default: :func:`default_device`) multiplies bf16 matrices natively: on
    CUDA ``torch.cuda.is_bf16_supported()``, on a CPU one of :data:`BF16_FLAGS` among its flags
    (without them bf16 is emulated and slower than fp32)."""
    device = device or default_device()
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and any(flag in cpu_flags() for flag in BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device | None = None) -> str:
    """``auto`` -> ``bf16`` where :func:`fast_bf16` says the device has native bf16 matrix
    instructions, else ``fp32``; any other value is returned as it is."""
    if precision != "auto":
        return precision
    return "bf16" if fast_bf16(device) else "fp32"
