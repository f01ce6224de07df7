"""Inception-v3, Inception-v4 and Inception-ResNet-v2, CIFAR ports of weiaicunzai/pytorch-cifar100.

- Inception-v3: Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer
  Vision", https://arxiv.org/abs/1512.00567. The port's stem does not stride (3x3 convs, one
  unpadded: 32 -> 30), then modules A x3 (30x30), B (-> 14), C x4, D (-> 6), E x2; 2048-d head.
- Inception-v4 and Inception-ResNet-v2: Szegedy et al. 2017, "Inception-v4, Inception-ResNet
  and the Impact of Residual Connections on Learning", https://arxiv.org/abs/1602.07261. The
  port's shared stem keeps 30x30 (one unpadded 3x3 conv, stride-1 pools); v4 has A x4, B x7,
  C x3 (1536-d head), Inception-ResNet-v2 has A x5, B x10, C x5 (2048-d head). The port gives
  every residual module a 1x1 conv shortcut (with bias) and BN after the sum; B and C scale the
  residual by 0.1, A does not.

A module is a `Concat` of branches; a branch is a sequence of conv-BN-ReLU layers (`ConvBnAct`),
and a branch that forks ends in a nested `Concat`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct

__all__ = ["Concat", "InceptionResNetBlock", "Inception", "inceptionv3", "inceptionv4",
           "inception_resnet_v2"]


class Concat(nn.ModuleList):
    """Apply every branch to the same input and concatenate along channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self], 1)


def _cbr(in_ch: int, out_ch: int, k: int | tuple[int, int] = 1, stride: int = 1,
         padding: int | tuple[int, int] = 0) -> ConvBnAct:
    """Conv-BN-ReLU with torch's default padding 0 (the port pads explicitly)."""
    return ConvBnAct(in_ch, out_ch, k, stride, padding)  # type: ignore[arg-type]


def _cbr_seq(in_ch: int, *layers: tuple) -> nn.Sequential:
    """Chain of conv-BN-ReLU layers given as (out, kernel[, stride[, padding]])."""
    mods = []
    for out_ch, *args in layers:
        mods.append(_cbr(in_ch, out_ch, *args))
        in_ch = out_ch
    return nn.Sequential(*mods)


def _avg_cbr(in_ch: int, out_ch: int, k: int = 1, padding: int = 0) -> nn.Sequential:
    """3x3 stride-1 average pool, then conv-BN-ReLU: the pooling branch."""
    return nn.Sequential(nn.AvgPool2d(3, 1, 1), _cbr(in_ch, out_ch, k, padding=padding))


def _fork(in_ch: int, out_ch: int, k: int) -> Concat:
    """The two factorised convs 1 x k and k x 1 side by side."""
    return Concat([_cbr(in_ch, out_ch, (1, k), padding=(0, k // 2)),
                   _cbr(in_ch, out_ch, (k, 1), padding=(k // 2, 0))])


# Inception-v3 modules; the names A-E are the port's.
def _v3_a(in_ch: int, pool_ch: int) -> Concat:
    # the port's pool branch uses a 3x3 conv (1x1 in the paper)
    return Concat([_cbr(in_ch, 64), _cbr_seq(in_ch, (48, 1), (64, 5, 1, 2)),
                   _cbr_seq(in_ch, (64, 1), (96, 3, 1, 1), (96, 3, 1, 1)),
                   _avg_cbr(in_ch, pool_ch, 3, padding=1)])


def _v3_b(in_ch: int) -> Concat:
    return Concat([_cbr(in_ch, 384, 3, 2), _cbr_seq(in_ch, (64, 1), (96, 3, 1, 1), (96, 3, 2)),
                   nn.MaxPool2d(3, 2)])


def _v3_c(in_ch: int, c7: int) -> Concat:
    seven = [((7, 1), 1, (3, 0)), ((1, 7), 1, (0, 3))]  # 7x1 then 1x7, both 'same'
    return Concat([
        _cbr(in_ch, 192),
        _cbr_seq(in_ch, (c7, 1), (c7, *seven[0]), (192, *seven[1])),
        _cbr_seq(in_ch, (c7, 1), (c7, *seven[0]), (c7, *seven[1]), (c7, *seven[0]),
                 (192, *seven[1])),
        _avg_cbr(in_ch, 192),
    ])


def _v3_d(in_ch: int) -> Concat:
    return Concat([
        _cbr_seq(in_ch, (192, 1), (320, 3, 2)),
        _cbr_seq(in_ch, (192, 1), (192, (1, 7), 1, (0, 3)), (192, (7, 1), 1, (3, 0)), (192, 3, 2)),
        nn.AvgPool2d(3, 2),
    ])


def _v3_e(in_ch: int) -> Concat:
    return Concat([
        _cbr(in_ch, 320),
        nn.Sequential(_cbr(in_ch, 384), _fork(384, 384, 3)),
        nn.Sequential(_cbr_seq(in_ch, (448, 1), (384, 3, 1, 1)), _fork(384, 384, 3)),
        _avg_cbr(in_ch, 192),
    ])


def _stem_v4() -> nn.Sequential:
    """Stem shared by v4 and Inception-ResNet-v2 (3 -> 384 channels, 32x32 -> 30x30)."""
    return nn.Sequential(
        _cbr_seq(3, (32, 3), (32, 3, 1, 1), (64, 3, 1, 1)),
        Concat([_cbr(64, 96, 3, padding=1), nn.MaxPool2d(3, 1, 1)]),
        Concat([_cbr_seq(160, (64, 1), (64, (7, 1), 1, (3, 0)), (64, (1, 7), 1, (0, 3)),
                         (96, 3, 1, 1)),
                _cbr_seq(160, (64, 1), (96, 3, 1, 1))]),
        Concat([nn.MaxPool2d(3, 1, 1), _cbr(192, 192, 3, padding=1)]),
    )


def _v4_a(in_ch: int) -> Concat:
    return Concat([_cbr_seq(in_ch, (64, 1), (96, 3, 1, 1), (96, 3, 1, 1)),
                   _cbr_seq(in_ch, (64, 1), (96, 3, 1, 1)), _cbr(in_ch, 96),
                   _avg_cbr(in_ch, 96)])


def _reduction_a(in_ch: int, k: int, l: int, m: int, n: int) -> Concat:  # noqa: E741
    """Reduction-A with the paper's filter banks k, l, m, n: in + m + n channels out."""
    return Concat([_cbr_seq(in_ch, (k, 1), (l, 3, 1, 1), (m, 3, 2)), _cbr(in_ch, n, 3, 2),
                   nn.MaxPool2d(3, 2)])


def _v4_b(in_ch: int) -> Concat:
    return Concat([
        _cbr(in_ch, 384),
        _cbr_seq(in_ch, (192, 1), (224, (1, 7), 1, (0, 3)), (256, (7, 1), 1, (3, 0))),
        _cbr_seq(in_ch, (192, 1), (192, (1, 7), 1, (0, 3)), (224, (7, 1), 1, (3, 0)),
                 (224, (1, 7), 1, (0, 3)), (256, (7, 1), 1, (3, 0))),
        _avg_cbr(in_ch, 128),
    ])


def _v4_reduction_b(in_ch: int) -> Concat:
    return Concat([
        _cbr_seq(in_ch, (192, 1), (192, 3, 2, 1)),
        _cbr_seq(in_ch, (256, 1), (256, (1, 7), 1, (0, 3)), (320, (7, 1), 1, (3, 0)),
                 (320, 3, 2, 1)),
        nn.MaxPool2d(3, 2, 1),
    ])


def _v4_c(in_ch: int) -> Concat:
    # the port's fork order: (3x1, 1x3) in the short branch, (1x3, 3x1) in the long one
    short_fork = Concat([_cbr(384, 256, (3, 1), padding=(1, 0)),
                         _cbr(384, 256, (1, 3), padding=(0, 1))])
    return Concat([
        _cbr(in_ch, 256),
        nn.Sequential(_cbr(in_ch, 384), short_fork),
        nn.Sequential(_cbr_seq(in_ch, (384, 1), (448, (1, 3), 1, (0, 1)), (512, (3, 1), 1, (1, 0))),
                      _fork(512, 256, 3)),
        _avg_cbr(in_ch, 256),
    ])


class InceptionResNetBlock(nn.Module):
    """ReLU(BN(shortcut(x) + scale * conv1x1(branches(x)))), both 1x1 convs with bias."""

    def __init__(self, branches: Concat, branch_channels: int, in_channels: int,
                 out_channels: int, scale: float) -> None:
        super().__init__()
        self.branches = branches
        self.project = nn.Conv2d(branch_channels, out_channels, 1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.scale = scale
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.project(self.branches(x)) * self.scale
        return self.act(self.bn(self.shortcut(x) + residual))


def _ir_a(in_ch: int) -> InceptionResNetBlock:
    branches = Concat([_cbr(in_ch, 32), _cbr_seq(in_ch, (32, 1), (32, 3, 1, 1)),
                       _cbr_seq(in_ch, (32, 1), (48, 3, 1, 1), (64, 3, 1, 1))])
    return InceptionResNetBlock(branches, 128, in_ch, 384, scale=1.0)


def _ir_b(in_ch: int) -> InceptionResNetBlock:
    branches = Concat([_cbr(in_ch, 192), _cbr_seq(in_ch, (128, 1), (160, (1, 7), 1, (0, 3)),
                                                  (192, (7, 1), 1, (3, 0)))])
    return InceptionResNetBlock(branches, 384, in_ch, 1154, scale=0.1)


def _ir_c(in_ch: int) -> InceptionResNetBlock:
    branches = Concat([_cbr(in_ch, 192), _cbr_seq(in_ch, (192, 1), (224, (1, 3), 1, (0, 1)),
                                                  (256, (3, 1), 1, (1, 0)))])
    return InceptionResNetBlock(branches, 448, in_ch, 2048, scale=0.1)


def _ir_reduction_b(in_ch: int) -> Concat:
    return Concat([_cbr_seq(in_ch, (256, 1), (384, 3, 2)), _cbr_seq(in_ch, (256, 1), (288, 3, 2)),
                   _cbr_seq(in_ch, (256, 1), (288, 3, 1, 1), (320, 3, 2)), nn.MaxPool2d(3, 2)])


class Inception(Classifier):
    """A feature extractor (stem and Inception modules) with the shared head: global average
    pool, dropout, linear."""

    def __init__(self, features: nn.Module, num_features: int, num_classes: int = 10,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = features
        self.num_features = num_features
        self.pool = nn.AdaptiveAvgPool2d(1)
        # the port's Dropout2d acts on the pooled 1x1 map, i.e. plain dropout of features
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


def _build_inceptionv3() -> nn.Sequential:
    stem = _cbr_seq(3, (32, 3, 1, 1), (32, 3, 1, 1), (64, 3, 1, 1), (80, 1), (192, 3))
    return nn.Sequential(
        stem, _v3_a(192, 32), _v3_a(256, 64), _v3_a(288, 64), _v3_b(288),
        *[_v3_c(768, c7) for c7 in (128, 160, 160, 192)], _v3_d(768), _v3_e(1280), _v3_e(2048),
    )


def _build_inceptionv4(a: int, b: int, c: int) -> nn.Sequential:
    return nn.Sequential(
        _stem_v4(), *[_v4_a(384) for _ in range(a)], _reduction_a(384, 192, 224, 256, 384),
        *[_v4_b(1024) for _ in range(b)], _v4_reduction_b(1024), *[_v4_c(1536) for _ in range(c)],
    )


def _build_inception_resnet_v2(a: int, b: int, c: int) -> nn.Sequential:
    return nn.Sequential(
        _stem_v4(), *[_ir_a(384) for _ in range(a)], _reduction_a(384, 256, 256, 384, 384),
        *[_ir_b(1152 if i == 0 else 1154) for i in range(b)], _ir_reduction_b(1154),
        *[_ir_c(2146 if i == 0 else 2048) for i in range(c)],
    )


@register_model
def inceptionv3(num_classes: int = 10, dropout: float = 0.5, **kwargs: Any) -> Inception:
    """Inception-v3 (CIFAR stem), 22.1M params."""
    return Inception(_build_inceptionv3(), 2048, num_classes, dropout, **kwargs)


@register_model
def inceptionv4(num_classes: int = 10, dropout: float = 0.2, **kwargs: Any) -> Inception:
    """Inception-v4 with 4/7/3 A/B/C modules, 41.2M params."""
    return Inception(_build_inceptionv4(4, 7, 3), 1536, num_classes, dropout, **kwargs)


@register_model
def inception_resnet_v2(num_classes: int = 10, dropout: float = 0.2, **kwargs: Any) -> Inception:
    """Inception-ResNet-v2 with 5/10/5 A/B/C modules, 65.3M params."""
    return Inception(_build_inception_resnet_v2(5, 10, 5), 2048, num_classes, dropout, **kwargs)
