"""GE-ResNeXt (Hu et al. 2018, "Gather-Excite: Exploiting Feature Context in Convolutional Neural
Networks"), the CIFAR ResNeXt-29 variant of CIFAR-ZOO's `models/genet.py`.

Each bottleneck of a CIFAR ResNeXt-29 (3 per stage, widths 256/512/1024) gates its residual branch
with a parameterised gather-excite module of global extent (GE-theta+): a depthwise conv whose
kernel covers the whole feature map (32/16/8) + BN gathers one value per channel, a bias-free 1x1
MLP (reduction 16) excites, and the result is upsampled to the map and gated by a sigmoid.
The gather kernels are sized for 32x32 input, as in CIFAR-ZOO.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import ConvBnAct
from .spp_resnext import CifarResNeXt

__all__ = ["GatherExcite", "ge_resnext29_8x64d"]


class GatherExcite(nn.Module):
    """x * sigmoid(upsample(mlp(bn(depthwise_conv_{extent x extent}(x)))))."""

    def __init__(self, channels: int, extent: int, reduction: int = 16) -> None:
        super().__init__()
        # kernel = feature-map size, no padding: a learned per-channel global gather
        self.gather = ConvBnAct(channels, channels, extent, padding=0, groups=channels,
                                act_layer=None)
        rd_channels = channels // reduction
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, rd_channels, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(rd_channels, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.mlp(self.gather(x))
        # CIFAR-ZOO interpolates to the gate's own size (a no-op) and lets x * gate broadcast the
        # 1x1 gate; nearest upsampling to x's size is the same at 32x32 and what the paper means
        gate = F.interpolate(gate, size=x.shape[-2:], mode="nearest")
        return x * torch.sigmoid(gate)


def _build_ge_resnext(depth: int, cardinality: int, base_width: int, num_classes: int,
                      reduction: int = 16, **kwargs: Any) -> CifarResNeXt:
    """GE-ResNeXt-``depth`` ``cardinality``x``base_width``d for 32x32 input."""
    return CifarResNeXt(depth, cardinality, base_width, num_classes,
                        branch_layer=lambda c, size: GatherExcite(c, size, reduction), **kwargs)


@register_model
def ge_resnext29_8x64d(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """GE-ResNeXt-29 8x64d (cardinality 8, base width 64), 36.33M params."""
    return _build_ge_resnext(29, 8, 64, num_classes, **kwargs)
