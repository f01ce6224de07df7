"""Shake-Shake ResNet-26 (Gastaldi 2017, "Shake-Shake regularization", arXiv:1705.07485).

Follows the CIFAR-ZOO implementation (BIGBALLON/CIFAR-ZOO `models/shake_shake.py`) that the seed
copied: a 16-channel 3x3 stem conv (with bias, as there) and BN; three stages of 4 two-branch
residual blocks of widths (k, 2k, 4k), each branch ReLU-conv3x3-BN-ReLU-conv3x3-BN; the branches
mixed by Shake-Shake ("Shake-Shake-Image": per-sample alpha forward, independent beta backward,
0.5 in evaluation); a parameterised shortcut where the shape changes (two 1x1 convs on the input
and on the input shifted by one pixel, both subsampled, concatenated, then BN); Kaiming init.

Fixes of the original:
- it drew alpha and beta as `torch.cuda.FloatTensor`, so it could only train on a GPU; the shared
  `layers.shake_shake` draws them on the input's device, so this model runs on CPU and CUDA.
- `self.shortcut = self.equal_io and None or Shortcut(...)` built a shortcut in EVERY block
  (`True and None` is None, so `or` picks the Shortcut), while forward used the identity
  whenever shapes matched: 9 of the 12 shortcuts were dead weights that never got a gradient
  (63 k^2 + 42 k parameters). Only the 3 used shortcuts are built here, so the counts drop from
  2,989,034 to 2,923,178 (2x32d) and from 11,914,730 to 11,653,994 (2x64d), 10 classes; the
  function computed is the same.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import (
    BN_IDENTITY,
    HE_NORMAL,
    ZERO_BIAS,
    Classifier,
    init_weights,
    make_stages,
    shake_shake,
)

__all__ = [
    "ShakeShortcut", "ShakeBlock", "ShakeResNet",
    "shake_resnet26_2x32d", "shake_resnet26_2x64d", "shake_resnet26_2x96d",
]  # fmt: skip


class ShakeShortcut(nn.Module):
    """ReLU, then two 1x1 convs (half the output channels each) on the strided input and on
    the input shifted by one pixel, concatenated and batch-normalised."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, out_planes // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(in_planes, out_planes // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        # 1x1 average pooling with a stride is plain subsampling
        h1 = self.conv1(F.avg_pool2d(x, 1, self.stride))
        # negative padding crops the first row/column and zero-pads the last: a one-pixel shift,
        # so with stride 2 the second path samples the pixels the first one skips
        h2 = self.conv2(F.avg_pool2d(F.pad(x, (-1, 1, -1, 1)), 1, self.stride))
        return self.bn(torch.cat((h1, h2), 1))


def _branch(in_planes: int, planes: int, stride: int) -> nn.Sequential:
    """ReLU-conv3x3-BN-ReLU-conv3x3-BN; the leading ReLU is not in place, the shortcut reads x."""
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(planes),
        nn.ReLU(inplace=True),
        nn.Conv2d(planes, planes, 3, padding=1, bias=False),
        nn.BatchNorm2d(planes),
    )


class ShakeBlock(nn.Module):
    """Two residual branches mixed by Shake-Shake, plus an identity or ShakeShortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.shortcut: nn.Module = (
            nn.Identity() if in_planes == planes and stride == 1
            else ShakeShortcut(in_planes, planes, stride)
        )  # fmt: skip
        self.branch1 = _branch(in_planes, planes, stride)
        self.branch2 = _branch(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = shake_shake(self.branch1(x), self.branch2(x), self.training)
        return mixed + self.shortcut(x)


class ShakeResNet(Classifier):
    """Stem conv 3->16, three stages of ``blocks_per_stage`` ShakeBlocks of widths
    (``width``, 2 ``width``, 4 ``width``) at strides 1/2/2, ReLU, pool, fc."""

    def __init__(self, blocks_per_stage: int, width: int, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        # conv with bias and BN, no ReLU: each branch and the shortcut start with their own ReLU
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.layers, self.num_features = make_stages(
            ShakeBlock, 16, (width, 2 * width, 4 * width), [blocks_per_stage] * 3, (1, 2, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)
        # fan-in He init, as in the original
        init_weights(self, conv=HE_NORMAL, batchnorm=BN_IDENTITY, linear=ZERO_BIAS)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # blocks end in a sum without activation, so one ReLU before pooling
        return F.relu(self.layers(self.stem(x)))


def _build_shake_resnet(depth: int, width: int, num_classes: int, **kwargs: Any) -> ShakeResNet:
    """Shake-Shake ResNet-``depth``; depth = 6n + 2 for n two-conv blocks per stage."""
    if (depth - 2) % 6:
        raise ValueError(f"Shake-Shake ResNet depth must be 6n+2, got {depth}")
    return ShakeResNet((depth - 2) // 6, width, num_classes=num_classes, **kwargs)


@register_model
def shake_resnet26_2x32d(num_classes: int = 10, **kwargs: Any) -> ShakeResNet:
    """Shake-Shake-26 2x32d, 2.92M params."""
    return _build_shake_resnet(26, 32, num_classes, **kwargs)


@register_model
def shake_resnet26_2x64d(num_classes: int = 10, **kwargs: Any) -> ShakeResNet:
    """Shake-Shake-26 2x64d, 11.7M params."""
    return _build_shake_resnet(26, 64, num_classes, **kwargs)


@register_model
def shake_resnet26_2x96d(num_classes: int = 10, **kwargs: Any) -> ShakeResNet:
    """Shake-Shake-26 2x96d, the paper's best CIFAR-10 model, 26.2M params."""
    return _build_shake_resnet(26, 96, num_classes, **kwargs)
