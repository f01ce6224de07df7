"""EfficientNet (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks"), CIFAR variant of kuangliu/pytorch-cifar: a 32-channel 3x3 stride-1 stem, the B0 stages
of MBConv blocks (swish, squeeze-excitation at 1/4 of the block input width), no 1280-channel head
conv, dropout before a Linear(320, classes) head.

Fixed here, against the code followed:
- drop-connect never acted: the per-block rate ``drop_connect_rate * b / blocks`` was computed with
  a block counter ``b`` that was never incremented, so every rate was 0. Ours increments it, so the
  rate rises linearly from 0 to ``drop_path_rate * 15/16`` over the 16 blocks (as in the Keras
  reference it cites).
- expansion-1 blocks built an expansion conv + BN that forward skipped: 1,088 dead parameters that
  never get a gradient. Ours does not build them: 3,598,598 / 3,627,488 parameters for 10 / 100
  classes instead of 3,599,686 / 3,628,576.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import register_model
from .layers import ActLayer, Classifier, ConvBnAct, DropPath, SqueezeExcite, drop_path_rates

__all__ = ["MBConv", "EfficientNet", "efficientnetb0"]

# (expansion, out channels, blocks, kernel size, stride) of the B0 stages; the first stage keeps
# stride 1 like the stem, so 32 px inputs reach 2 px after the four stride-2 stages.
_B0 = [(1, 16, 1, 3, 1), (6, 24, 2, 3, 2), (6, 40, 2, 5, 2), (6, 80, 3, 3, 2),
       (6, 112, 3, 5, 1), (6, 192, 4, 5, 2), (6, 320, 1, 3, 1)]


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> depthwise kxk (strided) -> SE -> linear 1x1 project,
    with an identity shortcut (behind drop-path) when stride is 1 and the width is unchanged.
    `act_layer` (swish in the paper) is the activation of the expand, depthwise and SE layers."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, stride: int,
                 expand_ratio: int = 1, se_ratio: float = 0.25, drop_path: float = 0.0,
                 act_layer: str | ActLayer = nn.SiLU) -> None:
        super().__init__()
        planes = expand_ratio * in_planes
        self.expand = (ConvBnAct(in_planes, planes, 1, act_layer=act_layer) if expand_ratio != 1
                       else nn.Identity())
        self.dwconv = ConvBnAct(planes, planes, kernel_size, stride=stride, groups=planes,
                                act_layer=act_layer)
        # SE width is a fraction of the block input, not of the expanded width (paper and Keras)
        self.se = SqueezeExcite(planes, int(in_planes * se_ratio), act_layer=act_layer)
        self.project = ConvBnAct(planes, out_planes, 1, act_layer=None)
        self.has_skip = stride == 1 and in_planes == out_planes
        self.drop_path = DropPath(drop_path) if self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dwconv(self.expand(x))))
        return x + self.drop_path(out) if self.has_skip else out


class EfficientNet(Classifier):
    """Stem conv 3->32 (swish), MBConv stages of ``cfg``, global pool, dropout, linear head.

    Args:
        cfg: (expansion, out channels, blocks, kernel size, stride) per stage.
        drop_rate: dropout before the classifier.
        drop_path_rate: drop-connect rate, scaled by block index / number of blocks.
        act_layer: activation of the stem and the blocks, a class or a `get_act_layer` name
            ("silu", i.e. swish, in the paper).
    """

    def __init__(self, cfg: list[tuple[int, int, int, int, int]], num_classes: int = 10,
                 drop_rate: float = 0.2, drop_path_rate: float = 0.2, stem_width: int = 32,
                 se_ratio: float = 0.25, act_layer: str | ActLayer = nn.SiLU) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = ConvBnAct(3, stem_width, 3, act_layer=act_layer)
        rates = iter(drop_path_rates(drop_path_rate, sum(c[2] for c in cfg), "efficientnet"))
        blocks, in_planes = [], stem_width
        for expansion, out_planes, n, kernel_size, stride in cfg:
            for i in range(n):
                blocks.append(MBConv(in_planes, out_planes, kernel_size, stride if i == 0 else 1,
                                     expansion, se_ratio, next(rates), act_layer))
                in_planes = out_planes
        self.layers = nn.Sequential(*blocks)
        self.num_features = in_planes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


@register_model
def efficientnetb0(num_classes: int = 10, drop_rate: float = 0.2, drop_path_rate: float = 0.2,
                   **kwargs: Any) -> EfficientNet:
    """EfficientNet-B0 with a stride-1 stem and no 1280 head conv, 3.6M params."""
    return EfficientNet(_B0, num_classes=num_classes, drop_rate=drop_rate,
                        drop_path_rate=drop_path_rate, **kwargs)
