"""RegNet (Radosavovic et al. 2020, "Designing Network Design Spaces"), CIFAR variant of
kuangliu/pytorch-cifar: a 64-channel 3x3 stride-1 stem, no max-pool, and four stages of
X blocks (1x1 -> grouped 3x3 -> 1x1 residual bottlenecks), optionally with squeeze-excitation
(the Y design space).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct, SqueezeExcite

__all__ = ["XBlock", "RegNet", "regnet"]


class XBlock(nn.Module):
    """1x1 conv -> grouped 3x3 conv (strided) -> [SE] -> 1x1 conv, add shortcut, ReLU.

    Args:
        w_in, w_out: input and output widths.
        stride: stride of the 3x3 conv (and of the projection shortcut).
        group_width: channels per group of the 3x3 conv.
        bottleneck_ratio: inner width = w_out * bottleneck_ratio.
        se_ratio: SE bottleneck width as a fraction of ``w_in`` (0: no SE, the X design space).
    """

    def __init__(self, w_in: int, w_out: int, stride: int, group_width: int,
                 bottleneck_ratio: float = 1.0, se_ratio: float = 0.0) -> None:
        super().__init__()
        w_b = int(round(w_out * bottleneck_ratio))
        self.conv1 = ConvBnAct(w_in, w_b, 1)
        self.conv2 = ConvBnAct(w_b, w_b, 3, stride=stride, groups=w_b // group_width)
        # the SE width follows the block input, as in the paper's RegNetY
        self.se = (SqueezeExcite(w_b, int(round(w_in * se_ratio))) if se_ratio > 0
                   else nn.Identity())
        self.conv3 = ConvBnAct(w_b, w_out, 1, act_layer=None)
        self.shortcut = (ConvBnAct(w_in, w_out, 1, stride=stride, act_layer=None)
                         if stride != 1 or w_in != w_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.se(self.conv2(self.conv1(x))))
        return F.relu(out + self.shortcut(x))


class RegNet(Classifier):
    """Stem conv 3->64, then one stage of X blocks per (depth, width, stride)."""

    def __init__(self, depths: list[int], widths: list[int], strides: list[int],
                 group_width: int, bottleneck_ratio: float = 1.0, se_ratio: float = 0.0,
                 stem_width: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = ConvBnAct(3, stem_width, 3)
        stages, w_in = [], stem_width
        for depth, width, stride in zip(depths, widths, strides):
            blocks = []
            for i in range(depth):
                blocks.append(XBlock(w_in, width, stride if i == 0 else 1, group_width,
                                     bottleneck_ratio, se_ratio))
                w_in = width
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.num_features = w_in
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)


@register_model
def regnet(num_classes: int = 10, **kwargs: Any) -> RegNet:
    """RegNetX-200MF (CIFAR stem, first two stages at stride 1), 2.3M params."""
    return RegNet(depths=[1, 1, 4, 7], widths=[24, 56, 152, 368], strides=[1, 1, 2, 2],
                  group_width=8, bottleneck_ratio=1.0, num_classes=num_classes, **kwargs)
