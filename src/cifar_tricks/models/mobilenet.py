"""MobileNet (Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications"), CIFAR variant of kuangliu/pytorch-cifar: the stem conv has stride 1 instead
of 2, so 32 px inputs reach 2 px after the four strided depthwise-separable blocks.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct

__all__ = ["DepthwiseSeparable", "MobileNet", "mobilenet"]

# (out channels, stride) of the 13 depthwise-separable blocks of the paper's Table 1
_V1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
       (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 conv-BN-ReLU (strided) then pointwise 1x1 conv-BN-ReLU."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__(
            ConvBnAct(in_planes, in_planes, 3, stride=stride, groups=in_planes),
            ConvBnAct(in_planes, out_planes, 1),
        )


class MobileNet(Classifier):
    """Stem conv 3->32, depthwise-separable blocks of ``cfg``, global pool, linear head.

    Args:
        cfg: (out channels, stride) per block.
        width_mult: the paper's width multiplier alpha, applied to every layer.
    """

    def __init__(self, cfg: list[tuple[int, int]] = _V1, num_classes: int = 10,
                 width_mult: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        in_planes = int(32 * width_mult)
        self.stem = ConvBnAct(3, in_planes, 3)
        blocks = []
        for out_planes, stride in cfg:
            blocks.append(DepthwiseSeparable(in_planes, int(out_planes * width_mult), stride))
            in_planes = int(out_planes * width_mult)
        self.layers = nn.Sequential(*blocks)
        self.num_features = in_planes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)


@register_model
def mobilenet(num_classes: int = 10, width_mult: float = 1.0, **kwargs: Any) -> MobileNet:
    """MobileNetV1 (width 1.0) with a stride-1 stem, 3.2M params."""
    return MobileNet(_V1, num_classes=num_classes, width_mult=width_mult, **kwargs)
