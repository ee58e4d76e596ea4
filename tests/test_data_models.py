"""Datasets (offline, and real ones from tiny files in torchvision's format), augmentation and models."""

from __future__ import annotations

import itertools
import math
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets.cifar
from torch import nn

from pruneflow.data import DATASETS, MNIST1D_LADDER, OFFLINE, augment, load, mnist1d_variant
from pruneflow.devices import seeded
from pruneflow.masks import classifier, parameter_counts, prunable_weights
from pruneflow.metrics import accuracy_from_confusion
from pruneflow.models import MODELS, build
from pruneflow.train import Schedule, evaluate, fit


def n_params(model: nn.Module) -> int:
    """All parameters of ``model`` as the store records them (``n_params``)."""
    return parameter_counts(model)[1]


# ---------------------------------------------------------------- offline datasets

SHAPES = {  # (train, test) input shapes from the dataset descriptions
    "digits": ((1437, 1, 8, 8), (360, 1, 8, 8)),  # 1,797 images, 80/20
    "mnist5k": ((4000, 1, 28, 28), (1000, 1, 28, 28)),  # 5,000 images, 80/20
    "mnist1d": ((4000, 40), (1000, 40)),  # 4,000/1,000 signals of length 40
    **{f"mnist1d-{level}": ((4000, 40), (10000, 40)) for level in MNIST1D_LADDER},  # 4,000/10,000
}


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_dataset_shapes_classes_and_standardisation(name: str) -> None:
    """Right shapes and dtypes, 10 classes all present, train inputs with mean ~0 and std ~1."""
    data = load(name)
    assert (tuple(data.x_train.shape), tuple(data.x_test.shape)) == SHAPES[name]
    assert (data.x_train.dtype, data.y_train.dtype) == (torch.float32, torch.int64)
    assert data.num_classes == 10 and not data.augment
    assert set(data.y_train.tolist()) == set(data.y_test.tolist()) == set(range(10))
    assert data.x_train.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert data.x_train.std().item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("name", ["digits", "mnist5k"])  # mnist1d keeps its generator's standard split
def test_offline_split_is_stratified(name: str) -> None:
    """Each class's test count is its total count times the test fraction, within one sample."""
    data = load(name)
    train, test = (np.bincount(y.numpy(), minlength=10) for y in (data.y_train, data.y_test))
    fraction = test.sum() / (train.sum() + test.sum())
    np.testing.assert_array_less(np.abs(test - fraction * (train + test)), 1.0)


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_load_is_deterministic(name: str) -> None:
    """A fresh (uncached) load gives the same tensors as the cached one."""
    cached, fresh = load(name), DATASETS[name](None, False)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(fresh, field), getattr(cached, field)), field


def numpy_state() -> tuple:
    """numpy's global RNG state in a comparable form."""
    state = np.random.get_state()
    return state[0], state[1].tolist(), *state[2:]


@pytest.mark.parametrize(
    ("draw", "get_state"),
    [
        pytest.param(np.random.random, numpy_state, id="numpy"),
        pytest.param(random.random, random.getstate, id="python"),
    ],
)
def test_mnist1d_leaves_global_rng_unchanged(draw, get_state) -> None:
    """Generating mnist1d leaves the global RNG as it was."""
    draw()  # move off the state that an earlier generation (which seeds 42) may have left
    before = get_state()
    DATASETS["mnist1d"](None, False)
    assert get_state() == before


def test_mnist1d_variant_is_deterministic_and_graded() -> None:
    """Same arguments give the same arrays; a larger distortion level gives different signals, and the
    standard level's first training signals are the generator's own (same seed, same settings)."""
    a, b, c = mnist1d_variant(0.5, 200, 100), mnist1d_variant(0.5, 200, 100), mnist1d_variant(1.5, 200, 100)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert not torch.equal(a.x_test, c.x_test)
    assert len(a.y_train) == 200 and len(a.y_test) == 100


def test_generated_mnist1d_is_cached_on_disk(tmp_path, monkeypatch) -> None:
    """The generator runs once per setting: a second process (here: a second call) reads the same
    arrays from the data folder's generated/ cache; a damaged cache file is regenerated, and an
    unwritable data folder only means generating each time."""
    import mnist1d.data

    from pruneflow.data import GENERATED, generate_mnist1d

    monkeypatch.setenv("PRUNEFLOW_DATA", str(tmp_path / "data"))
    calls, make = [], mnist1d.data.make_dataset
    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda args: calls.append(1) or make(args))
    args = {**vars(mnist1d.data.get_dataset_args()), "num_samples": 300, "train_split": 2 / 3}
    first = generate_mnist1d(args)
    second = generate_mnist1d(args)
    assert len(calls) == 1 and len(first["y"]) == 200 and len(first["y_test"]) == 100
    for key in ("x", "y", "x_test", "y_test"):
        np.testing.assert_array_equal(first[key], second[key])
    (cached,) = (tmp_path / "data" / GENERATED).glob("mnist1d-*.npz")
    assert not list(cached.parent.glob(".*.tmp"))
    generate_mnist1d({**args, "seed": 7})  # another setting: another file
    assert len(calls) == 2 and len(list(cached.parent.glob("mnist1d-*.npz"))) == 2
    cached.write_bytes(b"truncated")
    np.testing.assert_array_equal(generate_mnist1d(args)["x"], first["x"])
    assert len(calls) == 3
    np.testing.assert_array_equal(generate_mnist1d(args)["x"], first["x"])
    assert len(calls) == 3  # rewritten
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("PRUNEFLOW_DATA", str(blocked))  # a file: no folder can be made under it
    np.testing.assert_array_equal(generate_mnist1d(args)["x"], first["x"])
    assert len(calls) == 4


def test_ladder_levels_are_registered_easy_to_hard() -> None:
    """Four offline levels, distortion factors rising up to beyond the generator's standard (1)."""
    assert list(MNIST1D_LADDER) == ["easy", "medium", "standard", "hard"]
    assert (
        list(MNIST1D_LADDER.values()) == sorted(MNIST1D_LADDER.values()) and MNIST1D_LADDER["standard"] == 1
    )
    assert {f"mnist1d-{level}" for level in MNIST1D_LADDER} <= set(OFFLINE)


@pytest.mark.slow
def test_ladder_dense_accuracy_strictly_decreases() -> None:
    """lenet300-100 on quick's schedule (20 epochs, lr 0.05): easy > medium > standard > hard."""
    accuracies = []
    for level in MNIST1D_LADDER:
        data = load(f"mnist1d-{level}")
        with seeded(0):
            model = build("lenet300-100", data.input_shape, data.num_classes)
        fit(model, data, Schedule(epochs=20, lr=0.05), seed=0)
        accuracies.append(float(accuracy_from_confusion(evaluate(model, data.x_test, data.y_test, 10))))
    print("ladder dense accuracies", accuracies)
    assert all(x > y for x, y in itertools.pairwise(accuracies))


@pytest.mark.parametrize(
    ("name", "epochs", "floor"),
    [("digits", 20, 0.9), ("mnist5k", 20, 0.85), ("mnist1d", 20, 0.45)],
)
def test_offline_dataset_trains_above_floor(name: str, epochs: int, floor: float) -> None:
    """lenet300-100 trained densely reaches a test accuracy above the floor."""
    data = load(name)
    with seeded(0):
        model = build("lenet300-100", data.input_shape, data.num_classes)
    fit(model, data, Schedule(epochs=epochs, lr=0.05), seed=0)
    accuracy = float(accuracy_from_confusion(evaluate(model, data.x_test, data.y_test, data.num_classes)))
    print(f"{name}: dense test accuracy {accuracy:.4f} after {epochs} epochs")
    assert accuracy > floor


def test_unknown_dataset_names_value_and_choices(both) -> None:
    """load('nope') raises ValueError naming 'nope' and the valid dataset names."""
    with pytest.raises(ValueError, match=both("'nope'", "'digits'")):
        load("nope")


# ---------------------------------------------------------------- real datasets from tiny files


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """An uncompressed big-endian idx file: magic, dimensions, then the uint8 data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.array([magic, *array.shape], dtype=">i4").tobytes() + array.tobytes())


def standardised(images: np.ndarray, train: np.ndarray) -> torch.Tensor:
    """uint8 NCHW images scaled to [0, 1] and standardised per channel with ``train``'s statistics."""
    scaled, ref = images / 255.0, train / 255.0
    mean, std = ref.mean(axis=(0, 2, 3), keepdims=True), ref.std(axis=(0, 2, 3), keepdims=True)
    return torch.as_tensor((scaled - mean) / std, dtype=torch.float32)


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_idx_files_load_standardised(tmp_path: Path, name: str, folder: str) -> None:
    """Tiny idx files under root/<folder>/raw come back as standardised images with their labels."""
    rng = np.random.default_rng(0)
    images, labels = {}, {}
    for split, n in (("train", 12), ("t10k", 5)):
        images[split] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels[split] = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(tmp_path / folder / "raw" / f"{split}-images-idx3-ubyte", images[split], 2051)
        write_idx(tmp_path / folder / "raw" / f"{split}-labels-idx1-ubyte", labels[split], 2049)

    data = load(name, root=tmp_path)

    train = images["train"][:, None]
    torch.testing.assert_close(data.x_train, standardised(train, train), atol=1e-5, rtol=0)
    torch.testing.assert_close(data.x_test, standardised(images["t10k"][:, None], train), atol=1e-5, rtol=0)
    assert data.y_train.tolist() == labels["train"].tolist()
    assert data.y_test.tolist() == labels["t10k"].tolist()
    assert data.num_classes == 10 and not data.augment


def test_cifar10_pickles_load_standardised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny CIFAR-10 batches load as (N, 3, 32, 32) per-channel standardised images, augmented."""
    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path)
    )
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batches = {}
    for file, n in [*((f"data_batch_{i}", 2) for i in range(1, 6)), ("test_batch", 3)]:
        batches[file] = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}
        (folder / file).write_bytes(pickle.dumps(batches[file]))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))

    data = load("cifar10", root=tmp_path)

    train = np.concatenate([batches[f"data_batch_{i}"]["data"] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    test = batches["test_batch"]["data"].reshape(-1, 3, 32, 32)
    assert tuple(data.x_train.shape) == (10, 3, 32, 32) and tuple(data.x_test.shape) == (3, 3, 32, 32)
    torch.testing.assert_close(data.x_train, standardised(train, train), atol=1e-5, rtol=0)
    torch.testing.assert_close(data.x_test, standardised(test, train), atol=1e-5, rtol=0)
    assert data.y_train.tolist() == [0, 1] * 5 and data.y_test.tolist() == [0, 1, 2]
    assert data.num_classes == 10 and data.augment


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_missing_real_dataset_says_where_and_how(tmp_path: Path, both, name: str) -> None:
    """Missing files raise FileNotFoundError naming the folder and download=True."""
    with pytest.raises(FileNotFoundError, match=both(str(tmp_path.resolve()), "download=True")):
        load(name, root=tmp_path)


# ---------------------------------------------------------------- augmentation


def crops(image: torch.Tensor, pad: int, h: int, w: int) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every (row, col, flipped, window) of the zero-padded image."""
    padded = F.pad(image, (pad, pad, pad, pad))
    out = []
    for r in range(2 * pad + 1):
        for c in range(2 * pad + 1):
            window = padded[:, r : r + h, c : c + w]
            out += [(r, c, False, window), (r, c, True, window.flip(-1))]
    return out


@pytest.mark.parametrize("pad", [0, 2, 4])
def test_augment_returns_flipped_or_plain_padded_crops(pad: int) -> None:
    """Each output is a window of the zero-padded input, maybe mirrored; flips and shifts both vary."""
    x = torch.randn(48, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    out = augment(x, torch.Generator().manual_seed(1), pad=pad)
    assert out.shape == x.shape
    assert torch.equal(out, augment(x, torch.Generator().manual_seed(1), pad=pad))
    found = []
    for image, result in zip(x, out, strict=True):
        matches = [key[:3] for key in crops(image, pad, 6, 5) if torch.equal(result, key[3])]
        assert matches, "output is no crop of the padded image"
        found.append(matches[0])
    assert {flip for _, _, flip in found} == {False, True}
    assert len({(r, c) for r, c, _ in found}) >= min(10, (2 * pad + 1) ** 2)


# ---------------------------------------------------------------- models


def conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    """Parameters of a k x k Conv2d."""
    return c_in * c_out * k * k + (c_out if bias else 0)


def linear(n_in: int, n_out: int) -> int:
    """Parameters of a Linear layer with bias."""
    return n_in * n_out + n_out


def lenet300_params(n_in: int, width: float) -> int:
    """MLP n_in -> 300w -> 100w -> 10."""
    h1, h2 = round(300 * width), round(100 * width)
    return linear(n_in, h1) + linear(h1, h2) + linear(h2, 10)


def lenet5_params(width: float) -> int:
    """conv5 1->6w (pad 2), conv5 6w->16w, fc 16w*5*5 -> 120w -> 84w -> 10."""
    c1, c2, f1, f2 = (round(n * width) for n in (6, 16, 120, 84))
    return conv(1, c1, 5) + conv(c1, c2, 5) + linear(c2 * 5 * 5, f1) + linear(f1, f2) + linear(f2, 10)


def resnet_params(depth: int, width: float) -> int:
    """3x3 convs without bias, 2 BatchNorm parameters per channel, parameter-free shortcuts, fc."""
    widths = [round(c * width) for c in (16, 32, 64)]
    total, c = conv(3, widths[0], 3, bias=False) + 2 * widths[0], widths[0]
    for w in widths:
        for _ in range((depth - 2) // 6):
            total += conv(c, w, 3, bias=False) + conv(w, w, 3, bias=False) + 4 * w
            c = w
    return total + linear(c, 10)


EXPECTED_PARAMS = {
    ("lenet300-100", (1, 28, 28)): lambda w: lenet300_params(784, w),
    ("lenet5", (1, 28, 28)): lenet5_params,
    ("resnet20", (3, 32, 32)): lambda w: resnet_params(20, w),
}


@pytest.mark.parametrize("width", [0.5, 1.0, 2.0])
@pytest.mark.parametrize(("name", "shape"), list(EXPECTED_PARAMS))
def test_parameter_count_matches_layer_formula(name: str, shape: tuple[int, ...], width: float) -> None:
    """All parameters (masks.parameter_counts) equal the layer-shape formulae, at several widths."""
    model = build(name, shape, 10, width)
    assert n_params(model) == sum(p.numel() for p in model.parameters())
    assert n_params(model) == EXPECTED_PARAMS[name, shape](width)


def test_parameter_counts_match_literature() -> None:
    """The formulae give 266,610 (MLP on 784 inputs), 61,706 (LeNet-5), 269,722 (ResNet-20: 0.27M)."""
    assert lenet300_params(784, 1.0) == 266_610
    assert lenet5_params(1.0) == 61_706
    assert resnet_params(20, 1.0) == 269_722
    reported = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85}  # He et al. 2016, table 6 (millions)
    for depth, millions in reported.items():
        model = build(f"resnet{depth}", (3, 32, 32), 10)
        assert n_params(model) == resnet_params(depth, 1.0)
        assert round(n_params(model) / 1e6, 2) == millions


@pytest.mark.parametrize(("name", "shape"), list(EXPECTED_PARAMS))
def test_width_increases_parameter_count(name: str, shape: tuple[int, ...]) -> None:
    """Wider models have strictly more parameters."""
    counts = [n_params(build(name, shape, 10, w)) for w in (0.25, 0.5, 1.0, 1.5, 2.0)]
    assert counts == sorted(set(counts))


@pytest.mark.parametrize(("name", "shape"), list(EXPECTED_PARAMS))
def test_classifier_is_last_linear_and_produces_the_output(name: str, shape: tuple[int, ...]) -> None:
    """classifier() is the last nn.Linear, maps to the classes, gives the model's output, isn't prunable."""
    model = build(name, shape, 7, 0.5)
    head = classifier(model)
    assert head is [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert head.out_features == 7
    assert all(p is not head.weight for p in prunable_weights(model).values())
    captured = []
    head.register_forward_hook(lambda module, inputs, output: captured.append(output))
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7) and torch.equal(out, captured[0])


@pytest.mark.parametrize(
    ("args", "bad", "valid"),
    [
        (("nope", (1, 28, 28), 10), "'nope'", "'resnet20'"),
        (("lenet5", (1, 32, 32), 10), "(1, 32, 32)", "28 x 28"),
        (("lenet300-100", (1, 28, 28), 10, 0.0), "0.0", "> 0"),
        (("lenet300-100", (1, 28, 28), 10, math.nan), "nan", "> 0"),
    ],
)
def test_bad_model_arguments_raise(both, args: tuple, bad: str, valid: str) -> None:
    """Unknown model, wrong lenet5 input or width <= 0 raise ValueError naming value and choices."""
    with pytest.raises(ValueError, match=both(bad, valid)):
        build(*args)


def test_every_registered_model_builds_and_runs() -> None:
    """Each registered model maps a batch of its inputs to class logits."""
    shapes = {"lenet300-100": (1, 8, 8), "lenet5": (1, 28, 28)}
    for name in MODELS.names():
        shape = shapes.get(name, (3, 16, 16))
        assert build(name, shape, 5, 0.25)(torch.randn(2, *shape)).shape == (2, 5), name
