"""ResNet (He et al. 2016, "Deep Residual Learning for Image Recognition"), CIFAR variant of
kuangliu/pytorch-cifar: ImageNet widths and depths, but a 3x3 stride-1 stem and no max-pool so
32x32 inputs keep their resolution in the first stage.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import Classifier, make_stages

__all__ = [
    "BasicBlock", "Bottleneck", "ResNet",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
]  # fmt: skip


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """1x1 conv + BN shortcut when the shape changes, identity otherwise."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class BasicBlock(nn.Module):
    """Post-activation block: conv3x3-BN-ReLU-conv3x3-BN, add shortcut, ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """Post-activation bottleneck: 1x1 reduce, 3x3 (strided), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = self.expansion * planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _projection(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(Classifier):
    """Four stages of 64/128/256/512 planes (times the block expansion) at strides 1/2/2/2."""

    def __init__(
        self, block: type[BasicBlock | Bottleneck], layers: list[int], num_classes: int = 10
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        self.layers, self.num_features = make_stages(block, 64, (64, 128, 256, 512), layers,
                                                     expansion=block.expansion)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)


@register_model
def resnet18(num_classes: int = 10, **kwargs: Any) -> ResNet:
    """ResNet-18, 11.2M params."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, **kwargs)


@register_model
def resnet34(num_classes: int = 10, **kwargs: Any) -> ResNet:
    """ResNet-34, 21.3M params."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


@register_model
def resnet50(num_classes: int = 10, **kwargs: Any) -> ResNet:
    """ResNet-50 (bottleneck blocks), 23.5M params."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


@register_model
def resnet101(num_classes: int = 10, **kwargs: Any) -> ResNet:
    """ResNet-101 (bottleneck blocks), 42.5M params."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes=num_classes, **kwargs)


@register_model
def resnet152(num_classes: int = 10, **kwargs: Any) -> ResNet:
    """ResNet-152 (bottleneck blocks), 58.2M params."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes=num_classes, **kwargs)
