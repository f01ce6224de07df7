"""Xception (Chollet 2017, "Xception: Deep Learning with Depthwise Separable Convolutions",
https://arxiv.org/abs/1610.02357), CIFAR port of weiaicunzai/pytorch-cifar100.

CIFAR changes of that port: 3x3 stride-1 stem convs, the entry flow downsamples only twice (the
third entry block keeps 16x16 and widens to 728), the exit flow downsamples to 4x4; eight
middle-flow blocks of 728 channels as in the paper, 2048-d head.

The port's in-place ReLU at the start of the entry blocks 2-3 and of each middle-flow block also
activated the tensor its shortcut read, so those shortcuts add relu(x), not x; we keep that
behaviour explicitly. The exit block runs its shortcut first and keeps the raw x.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct

__all__ = ["SeparableConv2d", "XceptionBlock", "MiddleFlowBlock", "Xception", "xception"]


class SeparableConv2d(nn.Sequential):
    """Depthwise k x k conv then pointwise 1x1 conv (no activation or norm in between).

    ``dw_bias`` / ``pw_bias`` give the two convs a bias: Xception has none, the NASNet port has
    one on every pointwise conv and on some depthwise convs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dw_bias: bool = False, pw_bias: bool = False) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, kernel_size, stride, kernel_size // 2,
                      groups=in_channels, bias=dw_bias),
            nn.Conv2d(in_channels, out_channels, 1, bias=pw_bias),
        )


class XceptionBlock(nn.Module):
    """[ReLU]-sep(in, mid)-BN-ReLU-sep(mid, out)-BN-maxpool(3, stride), plus a 1x1 conv + BN
    shortcut (with bias, as in the port).

    Args:
        pre_act: start the residual branch with a ReLU.
        act_shortcut: feed that activated input to the shortcut too (the port's in-place ReLU).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int,
                 pre_act: bool = True, act_shortcut: bool = True) -> None:
        super().__init__()
        self.act = nn.ReLU() if pre_act else nn.Identity()
        self.act_shortcut = act_shortcut
        self.residual = nn.Sequential(
            SeparableConv2d(in_channels, mid_channels, 3), nn.BatchNorm2d(mid_channels), nn.ReLU(),
            SeparableConv2d(mid_channels, out_channels, 3), nn.BatchNorm2d(out_channels),
            nn.MaxPool2d(3, stride, padding=1),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(x)
        return self.residual(out) + self.shortcut(out if self.act_shortcut else x)


class MiddleFlowBlock(nn.Module):
    """Three ReLU-sep3x3-BN layers at constant width; the identity adds the activated input."""

    def __init__(self, channels: int = 728) -> None:
        super().__init__()
        self.act = nn.ReLU()
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.ReLU()] if i else []  # the first ReLU is self.act, shared with the skip
            layers += [SeparableConv2d(channels, channels, 3), nn.BatchNorm2d(channels)]
        self.residual = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        return x + self.residual(x)


class Xception(Classifier):
    """Entry flow (two convs, three separable blocks), middle flow, exit flow, pool, fc."""

    def __init__(self, num_classes: int = 10, middle_blocks: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.entry_flow = nn.Sequential(
            ConvBnAct(3, 32), ConvBnAct(32, 64),
            XceptionBlock(64, 128, 128, stride=2, pre_act=False),
            XceptionBlock(128, 256, 256, stride=2),
            XceptionBlock(256, 728, 728, stride=1),
        )
        self.middle_flow = nn.Sequential(*[MiddleFlowBlock(728) for _ in range(middle_blocks)])
        self.exit_flow = nn.Sequential(
            XceptionBlock(728, 728, 1024, stride=2, act_shortcut=False),
            SeparableConv2d(1024, 1536, 3), nn.BatchNorm2d(1536), nn.ReLU(),
            SeparableConv2d(1536, 2048, 3), nn.BatchNorm2d(2048), nn.ReLU(),
        )
        self.num_features = 2048
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.exit_flow(self.middle_flow(self.entry_flow(x)))


@register_model
def xception(num_classes: int = 10, middle_blocks: int = 8, **kwargs: Any) -> Xception:
    """Xception with 8 middle-flow blocks, 20.8M params."""
    return Xception(num_classes=num_classes, middle_blocks=middle_blocks, **kwargs)
