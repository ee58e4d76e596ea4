"""Where tensors live and how randomness is seeded: explicitly, never through global state."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

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


@contextmanager
def onednn_matmuls() -> Iterator[None]:
    """A block whose fp32 matrix products on the CPU go to oneDNN instead of MKL, through torch's
    switch for that (``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``, which also *permits*
    oneDNN a bf16 down-conversion: see :func:`onednn_keeps_fp32`)."""
    backend = torch.backends.mkldnn.matmul
    before = backend.fp32_precision
    backend.fp32_precision = "bf16"
    try:
        yield
    finally:
        backend.fp32_precision = before


def keeps_fp32(multiply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Whether ``multiply`` computes a probe product (256 x 512 @ 512 x 256, entries in [1, 2)) to
    within 1e-5 relative error of float64: fp32 kernels do about 1e-6, a bf16 one about 4e-4."""
    gen = generator(0)
    a, w = torch.rand(256, 512, generator=gen) + 1, torch.rand(512, 256, generator=gen) + 1
    exact = a.double() @ w.double()
    return bool(((multiply(a, w).double() - exact) / exact).abs().max() < 1e-5)


@functools.cache
def onednn_keeps_fp32() -> bool:
    """Whether oneDNN computes this CPU's fp32 matrix products in fp32 under :func:`onednn_matmuls`
    (:func:`keeps_fp32`). On a CPU without AMX oneDNN has no bf16 kernel for them and runs its AVX-512
    fp32 one (``brg_matmul:avx512_core``), about twice as fast as MKL's on AMD CPUs, where MKL takes
    its AVX2 path (``benchmarks/grid_speed.py`` measures both)."""

    def onednn(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        with onednn_matmuls():
            return a @ w

    return torch.backends.mkldnn.is_available() and keeps_fp32(onednn)


def fp32_matmuls(device: torch.device) -> AbstractContextManager[None]:
    """A block whose fp32 matrix products on ``device`` run on its fastest fp32 kernel: oneDNN's on a
    CPU where :func:`onednn_keeps_fp32`, torch's default elsewhere. Only the order of float sums
    changes (``benchmarks/precision_equivalence.py`` shows the runs agree with the default's)."""
    return onednn_matmuls() if device.type == "cpu" and onednn_keeps_fp32() else nullcontext()


def place(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device``; on a CPU, a model with 2-d convolutions in channels-last memory order,
    the layout oneDNN's convolutions and max pooling run fastest in (one core: LeNet-5 on mnist5k trains
    1.1x faster, the ResNet-20 of quick 1.03x). The same function of the same weights: only the order
    of float sums changes, as with the matmul kernel, so it is not part of a run's hash."""
    model = model.to(device)
    if device.type == "cpu" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model
