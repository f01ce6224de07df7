"""ResNeXt (Xie et al. 2017, "Aggregated Residual Transformations for Deep Neural Networks").

CIFAR ResNeXt-29 of kuangliu/pytorch-cifar (``models/resnext.py``): a 1x1 conv stem to 64
channels, three stages of post-activation bottlenecks at strides 1/2/2 whose 3x3 conv is split
into ``cardinality`` groups. A block's group width is cardinality x bottleneck width, its output
twice that; the bottleneck width doubles from stage to stage, so ResNeXt-29 2x64d has
256/512/1024 output channels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct, make_stages

__all__ = ["ResNeXtBlock", "ResNeXt", "resnext"]


class ResNeXtBlock(nn.Module):
    """1x1 conv to the group width, grouped 3x3 conv (strided), 1x1 conv expanding by 2;
    shortcut."""

    expansion = 2

    def __init__(self, in_planes: int, cardinality: int, bottleneck_width: int,
                 stride: int = 1) -> None:
        super().__init__()
        group_width = cardinality * bottleneck_width
        out_planes = self.expansion * group_width
        self.conv1 = ConvBnAct(in_planes, group_width, kernel_size=1)
        self.conv2 = ConvBnAct(group_width, group_width, stride=stride, groups=cardinality)
        self.conv3 = ConvBnAct(group_width, out_planes, kernel_size=1, act_layer=None)
        self.shortcut = (
            ConvBnAct(in_planes, out_planes, kernel_size=1, stride=stride, act_layer=None)
            if stride != 1 or in_planes != out_planes
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        return F.relu(out + self.shortcut(x))


class ResNeXt(Classifier):
    """1x1 stem, one stage per entry of ``layers`` (strides 1, 2, 2, ...), pool, fc."""

    def __init__(self, layers: list[int], cardinality: int, bottleneck_width: int,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = ConvBnAct(3, 64, kernel_size=1)
        widths = [bottleneck_width * 2 ** i for i in range(len(layers))]  # doubles per stage
        self.layers, self.num_features = make_stages(
            lambda cin, width, stride: ResNeXtBlock(cin, cardinality, width, stride=stride),
            64, widths, layers, first_strides=[1] + [2] * (len(layers) - 1),
            expansion=ResNeXtBlock.expansion * cardinality)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)


@register_model
def resnext(num_classes: int = 10, **kwargs: Any) -> ResNeXt:
    """ResNeXt-29 2x64d, 9.1M params."""
    return ResNeXt([3, 3, 3], cardinality=2, bottleneck_width=64, num_classes=num_classes,
                   **kwargs)
