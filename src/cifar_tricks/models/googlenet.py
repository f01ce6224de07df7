"""GoogLeNet / Inception-v1 (Szegedy et al. 2015, "Going Deeper with Convolutions"), CIFAR
variant of kuangliu/pytorch-cifar: a 192-channel 3x3 stem replaces the strided ImageNet stem,
every conv is followed by BatchNorm, the 5x5 branch is two stacked 3x3 convs, and there are no
auxiliary classifiers. Fixed here: the original's classifier was hard-wired to 10 classes; ours
follows ``num_classes`` (the reference counts were measured that way).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct

__all__ = ["Inception", "GoogLeNet", "googlenet"]

# (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) of the paper's Table 1, and where the
# 3x3 stride-2 max-pools sit (after b3 and e4; 32 -> 16 -> 8 px).
_CFG_3 = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64)]
_CFG_4 = [(480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64),
          (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
          (528, 256, 160, 320, 32, 128, 128)]
_CFG_5 = [(832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)]


def _conv_bn_relu(in_planes: int, out_planes: int, kernel_size: int) -> ConvBnAct:
    # conv keeps its bias before BN: redundant, but it is what the original builds and counts
    return ConvBnAct(in_planes, out_planes, kernel_size, bias=True)


class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1-3x3; 1x1-3x3-3x3; maxpool-1x1), concatenated."""

    def __init__(self, in_planes: int, n1x1: int, n3x3red: int, n3x3: int, n5x5red: int,
                 n5x5: int, pool_planes: int) -> None:
        super().__init__()
        self.b1 = _conv_bn_relu(in_planes, n1x1, 1)
        self.b2 = nn.Sequential(_conv_bn_relu(in_planes, n3x3red, 1),
                                _conv_bn_relu(n3x3red, n3x3, 3))
        # two 3x3 convs see a 5x5 window with fewer weights than one 5x5 conv
        self.b3 = nn.Sequential(_conv_bn_relu(in_planes, n5x5red, 1),
                                _conv_bn_relu(n5x5red, n5x5, 3), _conv_bn_relu(n5x5, n5x5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                _conv_bn_relu(in_planes, pool_planes, 1))
        self.out_planes = n1x1 + n3x3 + n5x5 + pool_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNet(Classifier):
    """3x3 stem, inception stages 3 (2 modules), 4 (5) and 5 (2) with max-pools between them."""

    def __init__(self, num_classes: int = 10, stem_width: int = 192) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = _conv_bn_relu(3, stem_width, 3)
        stages: list[nn.Module] = []
        for i, cfg in enumerate((_CFG_3, _CFG_4, _CFG_5)):
            if i > 0:
                stages.append(nn.MaxPool2d(3, stride=2, padding=1))
            stages.extend(Inception(*c) for c in cfg)
        self.layers = nn.Sequential(*stages)
        self.num_features = stages[-1].out_planes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)


@register_model
def googlenet(num_classes: int = 10, **kwargs: Any) -> GoogLeNet:
    """GoogLeNet with a 192-channel 3x3 stem, 6.2M params."""
    return GoogLeNet(num_classes=num_classes, **kwargs)
