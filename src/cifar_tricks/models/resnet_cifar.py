"""CIFAR ResNet (He et al. 2016, "Deep Residual Learning for Image Recognition", section 4.2).

6n+2 layers: a 3x3 stem, then three stages of n basic blocks with 16/32/64 channels at
feature-map sizes 32/16/8, global average pooling and a linear classifier.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import HE_NORMAL, Classifier, init_weights, make_stages

__all__ = [
    "PadShortcut", "BasicBlock", "ResNetCifar",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
]  # fmt: skip


class PadShortcut(nn.Module):
    """Option A: parameter-free identity that subsamples by ``stride`` and zero-pads channels."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = out_planes - in_planes
        # split the zero channels around the input, as the paper's Torch code does
        self.pad = (0, 0, 0, 0, extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, :: self.stride, :: self.stride], self.pad)


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """Option B: 1x1 conv + BN projection."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


_SHORTCUTS: dict[str, Callable[[int, int, int], nn.Module]] = {"A": PadShortcut, "B": _projection}


class BasicBlock(nn.Module):
    """Post-activation block: conv3x3-BN-ReLU-conv3x3-BN, add shortcut, ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride == 1 and in_planes == planes:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = _SHORTCUTS[shortcut](in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(Classifier):
    """Three stages of ``blocks_per_stage`` basic blocks, 16/32/64 channels at strides 1/2/2."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, shortcut: str = "B") -> None:
        super().__init__()
        if shortcut not in _SHORTCUTS:
            raise ValueError(f"shortcut must be one of {sorted(_SHORTCUTS)}, got {shortcut!r}")
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )
        self.layers, self.num_features = make_stages(
            partial(BasicBlock, shortcut=shortcut), 16, (16, 32, 64), [blocks_per_stage] * 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)

        init_weights(self, conv=HE_NORMAL, linear=HE_NORMAL)  # He init, the paper's own scheme


def _build_resnet_cifar(
    depth: int, num_classes: int, shortcut: str, **kwargs: Any
) -> ResNetCifar:
    """ResNet-``depth``; the paper's layer count is 6n+2 (2 convs per block, stem and fc)."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    return ResNetCifar((depth - 2) // 6, num_classes=num_classes, shortcut=shortcut, **kwargs)


@register_model
def resnet20(num_classes: int = 10, shortcut: str = "B", **kwargs: Any) -> ResNetCifar:
    """ResNet-20 (n=3), 0.27M params."""
    return _build_resnet_cifar(20, num_classes, shortcut, **kwargs)


@register_model
def resnet32(num_classes: int = 10, shortcut: str = "B", **kwargs: Any) -> ResNetCifar:
    """ResNet-32 (n=5), 0.47M params."""
    return _build_resnet_cifar(32, num_classes, shortcut, **kwargs)


@register_model
def resnet44(num_classes: int = 10, shortcut: str = "B", **kwargs: Any) -> ResNetCifar:
    """ResNet-44 (n=7), 0.66M params."""
    return _build_resnet_cifar(44, num_classes, shortcut, **kwargs)


@register_model
def resnet56(num_classes: int = 10, shortcut: str = "B", **kwargs: Any) -> ResNetCifar:
    """ResNet-56 (n=9), 0.86M params."""
    return _build_resnet_cifar(56, num_classes, shortcut, **kwargs)


@register_model
def resnet110(num_classes: int = 10, shortcut: str = "B", **kwargs: Any) -> ResNetCifar:
    """ResNet-110 (n=18), 1.7M params."""
    return _build_resnet_cifar(110, num_classes, shortcut, **kwargs)
