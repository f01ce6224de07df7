"""NASNet-A (Zoph et al. 2018, "Learning Transferable Architectures for Scalable Image
Recognition", https://arxiv.org/abs/1707.07012), CIFAR port of weiaicunzai/pytorch-cifar100.

NasNetA(repeat_cell_num=4, reduction_num=2, filters=44, stemfilter=44): a 3x3 conv-BN stem, then
three stages of 4 normal cells (44, 88, 176 filters per branch, 6 branches concatenated) with a
reduction cell (4 branches) between stages, ReLU, global pool, 1056-d head. Cells follow the
port's wiring, which differs from the paper's figure in a few inputs (e.g. the third normal
branch is avgpool(h) + h, where the paper adds the previous cell).

Parameter count differs from the port on purpose: its ``Fit`` module (which matches the previous
cell's output to the current one) built both a factorized reduction and a 1x1 projection in every
cell and used at most one at run time; the unused half (887,568 params) never got
a gradient. We build only the path each cell uses, so the function is the port's but the count is
4,238,926 / 4,334,056 instead of 5,126,494 / 5,221,624 (10 / 100 classes). The port's first cell
had no previous cell and reused its input; feeding the stem output as both inputs is the same
thing, and lifts the port's restriction that ``stem_filters`` equal ``filters``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import Classifier
from .xception import SeparableConv2d

__all__ = ["SeparableBranch", "FactorizedReduce", "NormalCell", "ReductionCell", "NASNet",
           "nasnet"]

State = tuple[torch.Tensor, torch.Tensor]  # (this cell's input, the previous cell's input)


class SeparableBranch(nn.Sequential):
    """Two ReLU-separable conv-BN layers; only the first may stride. The port gives every
    pointwise conv a bias, and the first depthwise conv one only in reduction cells."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1,
                 first_dw_bias: bool = False) -> None:
        super().__init__(
            nn.ReLU(),
            SeparableConv2d(channels, channels, kernel_size, stride, first_dw_bias, pw_bias=True),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            SeparableConv2d(channels, channels, kernel_size, dw_bias=True, pw_bias=True),
            nn.BatchNorm2d(channels),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution without dropping pixels: ReLU, two 1x1 stride-2 convs (bias) on the
    input and on the input shifted by one pixel, concatenated, BN."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2)
        self.conv2 = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))  # the other pixel of each 2x2 window
        return self.bn(torch.cat([self.conv1(x), self.conv2(shifted)], 1))


def _fit_prev(prev_channels: int, channels: int, reduce: bool) -> nn.Module:
    """Match the previous cell's output to this cell: factorized reduction after a reduction
    cell, ReLU-1x1 conv (bias)-BN if the widths differ, identity otherwise."""
    if reduce:
        return FactorizedReduce(prev_channels, channels)
    if prev_channels != channels:
        return nn.Sequential(nn.ReLU(), nn.Conv2d(prev_channels, channels, 1),
                             nn.BatchNorm2d(channels))
    return nn.Identity()


def _reduce_input(in_channels: int, channels: int, bias: bool) -> nn.Sequential:
    """ReLU-1x1 conv-BN on the current input (bias only in the port's reduction cell)."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(in_channels, channels, 1, bias=bias),
                         nn.BatchNorm2d(channels))


class NormalCell(nn.Module):
    """Five two-input blocks on h (this input) and p (previous input), concatenated with p:
    sep3(h) + h, sep3(p) + sep5(h), avg3(h) + h, 2 avg3(p), sep5(p) + sep3(p)."""

    def __init__(self, in_channels: int, prev_channels: int, channels: int,
                 reduce_prev: bool = False) -> None:
        super().__init__()
        self.fit_prev = _fit_prev(prev_channels, channels, reduce_prev)
        self.reduce_input = _reduce_input(in_channels, channels, bias=False)
        self.sep3_h = SeparableBranch(channels, 3)
        self.sep3_p = SeparableBranch(channels, 3)
        self.sep5_h = SeparableBranch(channels, 5)
        self.sep5_p = SeparableBranch(channels, 5)
        self.sep3_p2 = SeparableBranch(channels, 3)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1)
        self.out_channels = 6 * channels

    def forward(self, state: State) -> State:
        x, prev = state
        p, h = self.fit_prev(prev), self.reduce_input(x)
        blocks = [
            self.sep3_h(h) + h,
            self.sep3_p(p) + self.sep5_h(h),
            self.avg(h) + h,
            2 * self.avg(p),  # the port adds the same avg-pool of p twice
            self.sep5_p(p) + self.sep3_p2(p),
        ]
        return torch.cat([p, *blocks], 1), x


class ReductionCell(nn.Module):
    """Stride-2 cell of four concatenated blocks (the port's wiring, after keras-applications):
    a = sep7(p) + sep5(h), b = max3(h) + sep7(p), c = avg3(h) + sep5(p),
    d = max3(h) + sep3(a), e = avg3(a, stride 1) + b; output [b, c, d, e]."""

    def __init__(self, in_channels: int, prev_channels: int, channels: int) -> None:
        super().__init__()
        self.fit_prev = _fit_prev(prev_channels, channels, reduce=False)
        self.reduce_input = _reduce_input(in_channels, channels, bias=True)
        self.sep7_p = SeparableBranch(channels, 7, stride=2, first_dw_bias=True)
        self.sep5_h = SeparableBranch(channels, 5, stride=2, first_dw_bias=True)
        self.sep7_p2 = SeparableBranch(channels, 7, stride=2, first_dw_bias=True)
        self.sep5_p = SeparableBranch(channels, 5, stride=2, first_dw_bias=True)
        self.sep3_a = SeparableBranch(channels, 3, first_dw_bias=True)
        self.max = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1)
        self.avg_s1 = nn.AvgPool2d(3, stride=1, padding=1)
        self.out_channels = 4 * channels

    def forward(self, state: State) -> State:
        x, prev = state
        p, h = self.fit_prev(prev), self.reduce_input(x)
        a = self.sep7_p(p) + self.sep5_h(h)
        b = self.max(h) + self.sep7_p2(p)
        c = self.avg(h) + self.sep5_p(p)
        d = self.max(h) + self.sep3_a(a)
        e = self.avg_s1(a) + b
        return torch.cat([b, c, d, e], 1), x


class NASNet(Classifier):
    """Stem, (``cells_per_stage`` normal cells, reduction cell) x ``reductions``, normal cells,
    ReLU, pool, fc. Filters double at each reduction."""

    def __init__(self, num_classes: int = 10, cells_per_stage: int = 4, reductions: int = 2,
                 filters: int = 44, stem_filters: int = 44) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(3, stem_filters, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(stem_filters))
        cells: list[nn.Module] = []
        x_ch = prev_ch = stem_filters
        reduce_prev = False
        for stage in range(reductions + 1):
            for _ in range(cells_per_stage):
                cells.append(NormalCell(x_ch, prev_ch, filters, reduce_prev))
                x_ch, prev_ch, reduce_prev = cells[-1].out_channels, x_ch, False
            if stage < reductions:
                filters *= 2
                cells.append(ReductionCell(x_ch, prev_ch, filters))
                # the next cell's previous input is this cell's input, at twice the resolution
                x_ch, prev_ch, reduce_prev = cells[-1].out_channels, x_ch, True
        self.cells = nn.Sequential(*cells)
        self.num_features = x_ch
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return F.relu(self.cells((x, x))[0])


@register_model
def nasnet(num_classes: int = 10, filters: int = 44, stem_filters: int = 44,
           **kwargs: Any) -> NASNet:
    """NASNet-A, 4 cells per stage, 2 reductions, 44 filters, 4.2M params (dead params dropped)."""
    return NASNet(num_classes=num_classes, filters=filters, stem_filters=stem_filters, **kwargs)
