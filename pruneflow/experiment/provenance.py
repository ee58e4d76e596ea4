"""Where a number came from: code version, device and library versions."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from .. import __version__, devices

LIBRARIES = ("torch", "torchvision", "numpy", "pandas", "scikit-learn", "pingouin", "altair", "jupyter-book")


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+g<commit>`` (``.dirty`` if pruneflow/ has uncommitted changes) inside a
    git checkout, else the package version."""
    here = Path(__file__).parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


def device_name(device: torch.device) -> str:
    """``cpu (<processor>, <n> threads, fp32 products: <kernel>)`` or ``cuda:0 (<GPU name>)``; the
    kernel is oneDNN's where :func:`pruneflow.devices.onednn_keeps_fp32`, else torch's default."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    kernel = "oneDNN" if devices.onednn_keeps_fp32() else "torch's default"
    processor = platform.processor() or platform.machine()
    return f"cpu ({processor}, {torch.get_num_threads()} threads, fp32 products: {kernel})"


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries the results depend on."""
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
