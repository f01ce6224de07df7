"""SENet (Hu et al. 2018, "Squeeze-and-Excitation Networks"), as kuangliu/pytorch-cifar's SENet18.

A pre-activation ResNet-18 (`preact_resnet.py`: [2, 2, 2, 2] blocks, 64-512 planes, 3x3
stride-1 stem, here followed by BN-ReLU) with a squeeze-and-excitation layer (two 1x1 convs
with bias, reduction 16) on the residual branch of every block, just before the shortcut add.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn

from . import register_model
from .layers import SqueezeExcite
from .preact_resnet import PreActBlock, PreActResNet

__all__ = ["se_layer", "senet"]


def se_layer(channels: int, reduction: int = 16) -> nn.Module:
    """Squeeze-and-excitation with a ``channels // reduction`` bottleneck."""
    return SqueezeExcite(channels, channels // reduction)


@register_model
def senet(num_classes: int = 10, reduction: int = 16, **kwargs: Any) -> PreActResNet:
    """SENet-18 (pre-activation ResNet-18 with SE, r=16), 11.3M params."""
    attn_layer = partial(se_layer, reduction=reduction)
    return PreActResNet(PreActBlock, [2, 2, 2, 2], num_classes=num_classes, stem_norm=True,
                        attn_layer=attn_layer, **kwargs)
