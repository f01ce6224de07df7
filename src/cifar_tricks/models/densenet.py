"""DenseNet-BC (Huang et al. 2017, "Densely Connected Convolutional Networks"), CIFAR variant of
kuangliu/pytorch-cifar: a single 3x3 stem conv of 2 x growth channels (no BN, no max-pool), four
dense blocks of pre-activation bottleneck layers joined by compressing transitions, and a final
BN-ReLU before global pooling.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import Classifier

__all__ = ["DenseLayer", "Transition", "DenseNet", "densenet", "densenet121"]


def _bn_relu_conv(in_planes: int, out_planes: int, kernel_size: int) -> nn.Sequential:
    """Pre-activation unit BN -> ReLU -> conv (no bias)."""
    return nn.Sequential(
        nn.BatchNorm2d(in_planes), nn.ReLU(inplace=True),
        nn.Conv2d(in_planes, out_planes, kernel_size, padding=kernel_size // 2, bias=False),
    )  # fmt: skip


class DenseLayer(nn.Module):
    """Bottleneck layer: BN-ReLU-conv1x1 to 4k, BN-ReLU-conv3x3 to k, concatenated to the input."""

    def __init__(self, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        self.conv1 = _bn_relu_conv(in_planes, 4 * growth_rate, 1)
        self.conv2 = _bn_relu_conv(4 * growth_rate, growth_rate, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # new features first, as in the code this follows (the order only permutes channels)
        return torch.cat([self.conv2(self.conv1(x)), x], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 (compression) followed by 2x2 average pooling."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.conv = _bn_relu_conv(in_planes, out_planes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(x), 2)


class DenseNet(Classifier):
    """Dense blocks of ``block_config`` layers; each transition keeps floor(reduction * C) channels.

    Args:
        block_config: layers per dense block.
        growth_rate: channels each layer adds (k); the stem has 2k channels.
        reduction: compression factor of the transitions (0.5 in DenseNet-BC).
    """

    def __init__(self, block_config: list[int], growth_rate: int = 12, reduction: float = 0.5,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        planes = 2 * growth_rate
        self.stem = nn.Conv2d(3, planes, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i, n in enumerate(block_config):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(planes, growth_rate))
                planes += growth_rate
            stages.append(nn.Sequential(*layers))
            if i < len(block_config) - 1:
                out_planes = int(math.floor(planes * reduction))
                stages.append(Transition(planes, out_planes))
                planes = out_planes
        self.layers = nn.Sequential(*stages)
        self.num_features = planes
        # the dense blocks end on a concatenation of pre-activation outputs: normalise them once
        self.norm = nn.BatchNorm2d(planes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.layers(self.stem(x))))


@register_model
def densenet(num_classes: int = 10, **kwargs: Any) -> DenseNet:
    """densenet_cifar: DenseNet-BC with blocks [6, 12, 24, 16] and growth 12, 1.0M params."""
    return DenseNet([6, 12, 24, 16], growth_rate=12, reduction=0.5, num_classes=num_classes,
                    **kwargs)


@register_model
def densenet121(num_classes: int = 10, **kwargs: Any) -> DenseNet:
    """DenseNet-121 (BC, growth 32) with the CIFAR 3x3 stem, 7.0M params."""
    return DenseNet([6, 12, 24, 16], growth_rate=32, reduction=0.5, num_classes=num_classes,
                    **kwargs)
