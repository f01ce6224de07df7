"""SqueezeNet (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters
and <0.5MB model size", https://arxiv.org/abs/1602.07360) with simple bypass, CIFAR port of
weiaicunzai/pytorch-cifar100.

CIFAR changes of that port: a 3x3 stride-1 stem of 96 channels with BatchNorm and one 2x2
max-pool, BatchNorm in every Fire conv, max-pools after fire4 and fire8 (32 -> 16 -> 8 -> 4).
Bypasses around fire3, fire5 and fire7 (the paper also bypasses fire9; the port does not).
The classifier is the paper's 1x1 conv to ``num_classes`` channels followed by global average
pooling: no Linear layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import register_model
from .layers import Classifier

__all__ = ["Fire", "SqueezeNet", "squeezenet"]

# (in, out, squeeze, bypass, max-pool after) per Fire module, fire2..fire9
_FIRES = (
    (96, 128, 16, False, False),
    (128, 128, 16, True, False),
    (128, 256, 32, False, True),
    (256, 256, 32, True, False),
    (256, 384, 48, False, False),
    (384, 384, 48, True, False),
    (384, 512, 64, False, True),
    (512, 512, 64, False, False),
)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Conv (with bias, as in the port) -> BN -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Fire(nn.Module):
    """1x1 squeeze, then 1x1 and 3x3 expands of ``out_channels / 2`` each, concatenated;
    ``bypass`` adds the input (simple bypass, needs ``in_channels == out_channels``)."""

    def __init__(self, in_channels: int, out_channels: int, squeeze_channels: int,
                 bypass: bool = False) -> None:
        super().__init__()
        if bypass and in_channels != out_channels:
            raise ValueError(f"bypass needs in == out channels, got {in_channels}, {out_channels}")
        self.bypass = bypass
        self.squeeze = _conv_bn_relu(in_channels, squeeze_channels, 1)
        self.expand1x1 = _conv_bn_relu(squeeze_channels, out_channels // 2, 1)
        self.expand3x3 = _conv_bn_relu(squeeze_channels, out_channels // 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        out = torch.cat([self.expand1x1(s), self.expand3x3(s)], 1)
        return out + x if self.bypass else out


class SqueezeNet(Classifier):
    """Stem, eight Fire modules, 1x1 conv classifier, global average pool."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = [_conv_bn_relu(3, 96, 3), nn.MaxPool2d(2, 2)]
        for in_ch, out_ch, squeeze_ch, bypass, pool in _FIRES:
            layers.append(Fire(in_ch, out_ch, squeeze_ch, bypass))
            layers += [nn.MaxPool2d(2, 2)] if pool else []
        self.features = nn.Sequential(*layers)
        self.num_features = _FIRES[-1][1]
        self.classifier = nn.Conv2d(self.num_features, num_classes, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.classifier(x)), 1)


@register_model
def squeezenet(num_classes: int = 10, **kwargs: Any) -> SqueezeNet:
    """SqueezeNet with simple bypass, 0.73M params."""
    return SqueezeNet(num_classes=num_classes, **kwargs)
