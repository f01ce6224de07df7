"""PNASNet (Liu et al. 2018, "Progressive Neural Architecture Search"), the simplified CIFAR
version of kuangliu/pytorch-cifar: a 3x3 stem, then three stages of ``num_cells`` searched cells
joined by stride-2 cells that double the width. Fixed here: the original's classifier was
hard-wired to 10 classes; ours follows ``num_classes`` (the reference counts were measured that
way).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct

__all__ = ["CellB", "PNASNet", "pnasnet"]


def _dw_conv_bn(in_planes: int, out_planes: int, kernel_size: int, stride: int) -> ConvBnAct:
    """The original's "separable" conv: only its depthwise part (channel multiplier
    out/in), then BN; there is no pointwise conv."""
    return ConvBnAct(in_planes, out_planes, kernel_size, stride=stride, groups=in_planes,
                     act_layer=None)


class CellB(nn.Module):
    """Two branches, relu(sep7x7 + sep3x3) and relu(maxpool3x3 + sep5x5), concatenated and
    reduced back to ``out_planes`` by a 1x1 conv-BN-ReLU.

    A strided cell projects its max-pool branch with 1x1 conv + BN to the new width.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.sep7 = _dw_conv_bn(in_planes, out_planes, 7, stride)
        self.sep3 = _dw_conv_bn(in_planes, out_planes, 3, stride)
        self.sep5 = _dw_conv_bn(in_planes, out_planes, 5, stride)
        self.pool_proj = (ConvBnAct(in_planes, out_planes, 1, act_layer=None) if stride == 2
                          else nn.Identity())
        self.reduce = ConvBnAct(2 * out_planes, out_planes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.sep7(x) + self.sep3(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=self.stride, padding=1)
        right = F.relu(self.pool_proj(pooled) + self.sep5(x))
        return self.reduce(torch.cat([left, right], 1))


class PNASNet(Classifier):
    """Stem conv 3->``num_planes``; cells at width C, 2C, 4C with a stride-2 cell between stages."""

    def __init__(self, cell: type[CellB] = CellB, num_cells: int = 6, num_planes: int = 32,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = ConvBnAct(3, num_planes, 3)
        layers: list[nn.Module] = []
        in_planes = num_planes
        for i, planes in enumerate((num_planes, 2 * num_planes, 4 * num_planes)):
            if i > 0:
                layers.append(cell(in_planes, planes, stride=2))
                in_planes = planes
            layers.extend(cell(planes, planes) for _ in range(num_cells))
        self.layers = nn.Sequential(*layers)
        self.num_features = 4 * num_planes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)


@register_model
def pnasnet(num_classes: int = 10, num_cells: int = 6, num_planes: int = 32,
            **kwargs: Any) -> PNASNet:
    """PNASNet-B: CellB, 6 cells per stage, 32 planes, 0.45M params."""
    return PNASNet(CellB, num_cells=num_cells, num_planes=num_planes, num_classes=num_classes,
                   **kwargs)
