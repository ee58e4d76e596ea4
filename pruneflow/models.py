"""Models by name, each with a width knob (depth is in the name): a size ladder per input kind.

- ``lenet300-100``: the MLP 300-100 of LeCun et al.; ``width`` scales the hidden sizes.
- ``lenet5``: LeNet-5 (conv 6-16, fc 120-84) for 28x28 inputs; ``width`` scales every layer.
- ``resnet20/32/44/56/110``: He et al.'s CIFAR ResNets (3 stages of 16/32/64 channels x ``width``,
  identity shortcuts padded with zeros, "option A").

The classifier is always the model's last ``nn.Linear``: pruning never touches it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry

Builder = Callable[[tuple[int, ...], int, float], nn.Module]
MODELS: Registry[Builder] = Registry("model")


def build(name: str, input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    """The model ``name`` for inputs of ``input_shape`` (without batch) and ``num_classes``."""
    builder = MODELS[name]
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width!r}")
    return builder(tuple(input_shape), num_classes, width)


def _scale(n: int, width: float) -> int:
    return max(1, round(n * width))


@MODELS.register("lenet300-100")
def lenet300_100(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    """MLP in -> 300w -> 100w -> classes with ReLU (any input shape, flattened)."""
    n_in = int(torch.tensor(input_shape).prod())
    h1, h2 = _scale(300, width), _scale(100, width)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_in, h1),
        nn.ReLU(),
        nn.Linear(h1, h2),
        nn.ReLU(),
        nn.Linear(h2, num_classes),
    )


@MODELS.register("lenet5")
def lenet5(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    """LeNet-5 for C x 28 x 28 inputs: conv5(6w, pad 2)-pool-conv5(16w)-pool-fc120w-fc84w-fc."""
    if len(input_shape) != 3 or input_shape[1:] != (28, 28):
        raise ValueError(f"lenet5 needs C x 28 x 28 inputs, got {input_shape}")
    c1, c2, f1, f2 = (_scale(n, width) for n in (6, 16, 120, 84))
    return nn.Sequential(
        nn.Conv2d(input_shape[0], c1, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 25, f1),
        nn.ReLU(),
        nn.Linear(f1, f2),
        nn.ReLU(),
        nn.Linear(f2, num_classes),
    )


class _BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that normalises in its parameters' dtype: fp32 under bf16 autocast (where torch's
    vmap rule for batch norm needs input and statistics in one dtype); the same module in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.weight.dtype))


class _Block(nn.Module):
    """Basic residual block; the shortcut subsamples and zero-pads channels (no parameters)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = _BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = _BatchNorm2d(c_out)
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs (He et al. 2016, section 4.2)."""

    def __init__(self, depth: int, c_in: int, num_classes: int, width: float) -> None:
        super().__init__()
        n = (depth - 2) // 6
        widths = [_scale(c, width) for c in (16, 32, 64)]
        self.conv = nn.Conv2d(c_in, widths[0], 3, 1, 1, bias=False)
        self.bn = _BatchNorm2d(widths[0])
        blocks, c = [], widths[0]
        for stage, w in enumerate(widths):
            for i in range(n):
                blocks.append(_Block(c, w, 2 if stage > 0 and i == 0 else 1))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(out.mean(dim=(2, 3)))


def _resnet(depth: int) -> Builder:
    def builder(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
        if len(input_shape) != 3:
            raise ValueError(f"resnet{depth} needs C x H x W inputs, got {input_shape}")
        return CifarResNet(depth, input_shape[0], num_classes, width)

    builder.__doc__ = f"CIFAR ResNet-{depth} ({(depth - 2) // 6} blocks per stage)."
    return builder


for _depth in (20, 32, 44, 56, 110):
    MODELS.register(f"resnet{_depth}")(_resnet(_depth))
