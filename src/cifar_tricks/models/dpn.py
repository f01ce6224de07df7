"""Dual Path Networks (Chen et al. 2017, "Dual Path Networks"), as kuangliu/pytorch-cifar's DPN26.

Every block is a ResNeXt-style bottleneck (32 groups) whose output is split in two paths: the
first ``out_planes`` channels are added to the residual path, the remaining ``dense_depth``
channels are concatenated to a densely growing path. The first block of a stage projects its
input (1x1 conv + BN) to start both paths afresh.

Fix: the reference's classifier was hard-wired to 10 outputs (``num_classes`` ignored); here
it follows ``num_classes``: 11,574,842 params for 10 classes, 11,793,812 for 100.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct

__all__ = ["DualPathBlock", "DPN", "dpn"]


class DualPathBlock(nn.Module):
    """1x1 conv, grouped 3x3 conv (strided), 1x1 conv to ``out_planes + dense_depth``, then
    residual add on the first ``out_planes`` channels and dense concatenation of the rest."""

    def __init__(self, last_planes: int, in_planes: int, out_planes: int, dense_depth: int,
                 stride: int = 1, project: bool = False, groups: int = 32) -> None:
        super().__init__()
        self.out_planes = out_planes
        self.conv1 = ConvBnAct(last_planes, in_planes, kernel_size=1)
        self.conv2 = ConvBnAct(in_planes, in_planes, stride=stride, groups=groups)
        self.conv3 = ConvBnAct(in_planes, out_planes + dense_depth, kernel_size=1, act_layer=None)
        self.shortcut = (
            ConvBnAct(last_planes, out_planes + dense_depth, kernel_size=1, stride=stride,
                      act_layer=None)
            if project
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        x = self.shortcut(x)
        d = self.out_planes
        out = torch.cat([x[:, :d] + out[:, :d], x[:, d:], out[:, d:]], dim=1)
        return F.relu(out)


class DPN(Classifier):
    """3x3 stem to 64 channels, four stages at strides 1/2/2/2, pool, fc.

    Args:
        in_planes: bottleneck width per stage.
        out_planes: residual-path width per stage.
        layers: blocks per stage.
        dense_depth: channels each block adds to the dense path, per stage.
    """

    def __init__(self, in_planes: Sequence[int], out_planes: Sequence[int], layers: Sequence[int],
                 dense_depth: Sequence[int], num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = ConvBnAct(3, 64)
        stages, last_planes = [], 64
        for i, (width, out, n, dense) in enumerate(zip(in_planes, out_planes, layers, dense_depth)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(DualPathBlock(last_planes, width, out, dense, stride, project=j == 0))
                # the projection starts the dense path at one dense_depth; each block adds one
                last_planes = out + (j + 2) * dense
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.num_features = last_planes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)


@register_model
def dpn(num_classes: int = 10, **kwargs: Any) -> DPN:
    """DPN-26 ([2, 2, 2, 2] blocks), 11.6M params; follows num_classes (the reference did not)."""
    return DPN((96, 192, 384, 768), (256, 512, 1024, 2048), (2, 2, 2, 2), (16, 32, 24, 128),
               num_classes=num_classes, **kwargs)
