"""Pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks").

CIFAR variant of kuangliu/pytorch-cifar (``models/preact_resnet.py``): ImageNet widths and depths
(64/128/256/512), a bare 3x3 stride-1 conv stem, no max-pool, BN-ReLU before every conv, and 1x1
projection shortcuts fed by the block's pre-activation. As in that code the network ends on the
last residual sum (no final BN-ReLU) before average pooling.

`PreActBlock` takes an optional attention layer on its residual branch; SENet (`senet.py`) is
this network with a squeeze-and-excitation layer there and a BN-ReLU stem.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct, make_stages

__all__ = [
    "PreActBlock", "PreActBottleneck", "PreActResNet",
    "preact_resnet", "preact_resnet34", "preact_resnet50",
]  # fmt: skip

# Builds a module from a channel count, e.g. a squeeze-and-excitation layer.
AttnLayer = Callable[[int], nn.Module]


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    """Bias-free 1x1 conv (no BN: the input is already normalised) when the shape changes."""
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 [-attention], plus shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 attn_layer: AttnLayer | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.attn = attn_layer(planes) if attn_layer is not None else nn.Identity()
        self.shortcut = _projection(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # a projection shares the block's pre-activation, as in the authors' code
        residual = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return self.attn(out) + residual


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3 (strided), BN-ReLU-conv1x1 expanding by 4, plus shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 attn_layer: AttnLayer | None = None) -> None:
        super().__init__()
        out_planes = self.expansion * planes
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.attn = attn_layer(out_planes) if attn_layer is not None else nn.Identity()
        self.shortcut = _projection(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        residual = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return self.attn(out) + residual


class PreActResNet(Classifier):
    """Stem, four stages of 64/128/256/512 planes (times the expansion) at strides 1/2/2/2, fc.

    Args:
        block: `PreActBlock` or `PreActBottleneck`.
        layers: blocks per stage.
        stem_norm: follow the stem conv by BN-ReLU (kuangliu's SENet18) or not (PreActResNet).
        attn_layer: optional attention on every block's residual branch.
    """

    def __init__(self, block: type[PreActBlock | PreActBottleneck], layers: list[int],
                 num_classes: int = 10, stem_norm: bool = False,
                 attn_layer: AttnLayer | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = (ConvBnAct(3, 64) if stem_norm
                     else nn.Conv2d(3, 64, 3, padding=1, bias=False))
        self.layers, self.num_features = make_stages(
            partial(block, attn_layer=attn_layer), 64, (64, 128, 256, 512), layers,
            expansion=block.expansion)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)


@register_model
def preact_resnet(num_classes: int = 10, **kwargs: Any) -> PreActResNet:
    """PreActResNet-18, 11.2M params."""
    return PreActResNet(PreActBlock, [2, 2, 2, 2], num_classes=num_classes, **kwargs)


@register_model
def preact_resnet34(num_classes: int = 10, **kwargs: Any) -> PreActResNet:
    """PreActResNet-34, 21.3M params."""
    return PreActResNet(PreActBlock, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


@register_model
def preact_resnet50(num_classes: int = 10, **kwargs: Any) -> PreActResNet:
    """PreActResNet-50 (bottleneck blocks), 23.5M params."""
    return PreActResNet(PreActBottleneck, [3, 4, 6, 3], num_classes=num_classes, **kwargs)
