"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks"),
CIFAR variant of kuangliu/pytorch-cifar: the stem conv and the second stage (24 channels) have
stride 1 instead of 2, so 32 px inputs reach 4 px, then a 1x1 conv to 1280 channels and a linear
head. As in the code followed, a stride-1 block whose width changes gets a 1x1 conv + BN
projection shortcut (the paper has no shortcut there).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenetv2"]

# (expansion, out channels, blocks, stride) of the paper's Table 2, second stage at stride 1
_V2 = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise 3x3 (strided) -> linear 1x1 project; residual when stride is 1."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        planes = expansion * in_planes
        # the expansion conv is kept at expansion 1 too, as in the code followed
        self.conv = nn.Sequential(
            ConvBnAct(in_planes, planes, 1),
            ConvBnAct(planes, planes, 3, stride=stride, groups=planes),
            ConvBnAct(planes, out_planes, 1, act_layer=None),
        )
        self.shortcut: nn.Module | None = None
        if stride == 1:
            self.shortcut = (nn.Identity() if in_planes == out_planes
                             else ConvBnAct(in_planes, out_planes, 1, act_layer=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out if self.shortcut is None else out + self.shortcut(x)


class MobileNetV2(Classifier):
    """Stem conv 3->32, inverted-residual stages of ``cfg``, 1x1 conv to ``head_width``, head."""

    def __init__(self, cfg: list[tuple[int, int, int, int]] = _V2, num_classes: int = 10,
                 stem_width: int = 32, head_width: int = 1280) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = ConvBnAct(3, stem_width, 3)
        blocks, in_planes = [], stem_width
        for expansion, out_planes, n, stride in cfg:
            for i in range(n):
                blocks.append(InvertedResidual(in_planes, out_planes, expansion,
                                               stride if i == 0 else 1))
                in_planes = out_planes
        self.layers = nn.Sequential(*blocks)
        self.head_conv = ConvBnAct(in_planes, head_width, 1)
        self.num_features = head_width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_conv(self.layers(self.stem(x)))


@register_model
def mobilenetv2(num_classes: int = 10, **kwargs: Any) -> MobileNetV2:
    """MobileNetV2 (width 1.0) with CIFAR strides and a 1280-d head, 2.3M params."""
    return MobileNetV2(_V2, num_classes=num_classes, **kwargs)
