"""VGG (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition") with batch normalisation, as in kuangliu/pytorch-cifar (``models/vgg.py``).

Five blocks of 3x3 convs (with bias, then BN-ReLU), each closed by a 2x2 max-pool, take 32x32
inputs down to 1x1x512; a single Linear(512, num_classes) replaces the ImageNet MLP head.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct

__all__ = ["VGG", "vgg", "vgg16"]

# Conv widths per block of the paper's configurations A (VGG-11) and D (VGG-16).
_VGG11 = ((64,), (128,), (256, 256), (512, 512), (512, 512))
_VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG(Classifier):
    """``blocks`` lists the conv widths of each block; every block ends with a 2x2 max-pool."""

    def __init__(self, blocks: Sequence[Sequence[int]], num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        in_channels = 3
        for widths in blocks:
            for width in widths:
                # the conv keeps its bias although BN follows, as the reference code does
                layers.append(ConvBnAct(in_channels, width, bias=True))
                in_channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.num_features = in_channels
        # 32 px / 2^5 = 1x1 already; pooling keeps the head valid for other input sizes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_model
def vgg(num_classes: int = 10, **kwargs: Any) -> VGG:
    """VGG-11 with BN (8 convs), 9.2M params."""
    return VGG(_VGG11, num_classes=num_classes, **kwargs)


@register_model
def vgg16(num_classes: int = 10, **kwargs: Any) -> VGG:
    """VGG-16 with BN (13 convs), 14.7M params."""
    return VGG(_VGG16, num_classes=num_classes, **kwargs)
