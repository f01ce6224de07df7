"""Wide Residual Networks (Zagoruyko & Komodakis 2016, "Wide Residual Networks").

WRN-d-k: pre-activation basic blocks, (d-4)/6 per stage, stage widths 16k/32k/64k,
following the layout of pytorch-ricap / the authors' Torch code.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import BN_IDENTITY, ZERO_BIAS, Classifier, ParamInit, init_weights, make_stages

__all__ = ["WideBasic", "WideResNet", "wideresnet", "wideresnet16_8", "wideresnet40_2"]


class WideBasic(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3, plus shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # dropout sits right before the second conv, as in the authors' code
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
            if stride != 1 or in_planes != planes
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # a projection shares the block's pre-activation, as in the authors' code
        residual = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.drop(F.relu(self.bn2(out))))
        return out + residual


class WideResNet(Classifier):
    """Stem conv 3->16, three stages of ``blocks_per_stage`` blocks, final BN-ReLU, pool, fc."""

    def __init__(
        self, blocks_per_stage: int, widen_factor: int, dropout: float = 0.0, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.layers, self.num_features = make_stages(
            partial(WideBasic, dropout=dropout), 16, widths, [blocks_per_stage] * 3)
        # pre-activation blocks end without a nonlinearity, so normalise once before pooling
        self.norm = nn.BatchNorm2d(self.num_features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)

        xavier_relu = partial(nn.init.xavier_uniform_, gain=nn.init.calculate_gain("relu"))
        init_weights(self, conv=ParamInit(xavier_relu), batchnorm=BN_IDENTITY, linear=ZERO_BIAS)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.layers(self.stem(x))))


def _build_wide_resnet(
    depth: int, widen_factor: int, dropout: float, num_classes: int, **kwargs: Any
) -> WideResNet:
    """WRN-``depth``-``widen_factor``: depth = 6n + 4 for n blocks per stage (the paper's count)."""
    if (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n+4, got {depth}")
    return WideResNet(
        (depth - 4) // 6, widen_factor, dropout=dropout, num_classes=num_classes, **kwargs
    )


@register_model
def wideresnet(num_classes: int = 10, dropout: float = 0.3, **kwargs: Any) -> WideResNet:
    """WRN-28-10, 36.5M params."""
    return _build_wide_resnet(28, 10, dropout, num_classes, **kwargs)


@register_model
def wideresnet16_8(num_classes: int = 10, dropout: float = 0.3, **kwargs: Any) -> WideResNet:
    """WRN-16-8, 11.0M params."""
    return _build_wide_resnet(16, 8, dropout, num_classes, **kwargs)


@register_model
def wideresnet40_2(num_classes: int = 10, dropout: float = 0.3, **kwargs: Any) -> WideResNet:
    """WRN-40-2, 2.2M params."""
    return _build_wide_resnet(40, 2, dropout, num_classes, **kwargs)
