"""ResNet in ResNet (Targ, Almeida & Lyman 2016, "Resnet in Resnet: Generalizing Residual
Architectures", https://arxiv.org/abs/1603.08029), CIFAR port of weiaicunzai/pytorch-cifar100.

Two parallel streams of 48 channels each: a residual stream with shortcuts and a transient stream
without. Every generalized residual layer convolves each stream into both streams (3x3 convs with
bias), adds the residual stream's shortcut, and applies BN-ReLU per stream. Eight RiR blocks of
two such layers, 48/48/96/96/96/192/192/192 channels per stream (stride 2 entering the 96 and 192
widths), the streams concatenated to 384 channels, a 3x3 stride-2 conv to 100 channels (3x3
map) and an MLP classifier 900 -> 450 -> num_classes. Kaiming-normal conv init, conv bias 0.01.

Fix of the seed's head: upstream's bottleneck conv had ``num_classes`` channels (100 by
default, giving the MLP's 900 = 100 x 3 x 3 inputs) and its last Linear was hard-wired to 100
outputs; the seed made the conv ``num_classes * 10`` wide, so 10 classes built upstream's
100-class net and returned 100 logits, and 100 classes crashed (9000 features into
Linear(900, 450)). Here the bottleneck conv keeps upstream's 100 channels (``head_channels``)
and the last Linear outputs ``num_classes``: 10 classes is the seed's net with a 10-way last
layer (10,253,044 params instead of 10,293,634), 100 classes is upstream's net exactly
(10,293,634).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from . import register_model
from .layers import Classifier, ParamInit, init_weights

__all__ = ["GeneralizedResidualLayer", "ResNetInResNet", "rir"]

State = tuple[torch.Tensor, torch.Tensor]  # (residual stream, transient stream)

# (out channels per stream, stride) of the eight RiR blocks
_BLOCKS = ((48, 1), (48, 1), (96, 2), (96, 1), (96, 1), (192, 2), (192, 1), (192, 1))


class GeneralizedResidualLayer(nn.Module):
    """One layer of a generalized residual block on the state (residual, transient).

    r' = BN-ReLU(W_rr r + W_tr t + shortcut(r)) and t' = BN-ReLU(W_rt r + W_tt t); each stream's
    two outgoing convs are one conv with doubled output channels (same parameters).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.from_residual = nn.Conv2d(in_channels, 2 * out_channels, 3, stride, padding=1)
        self.from_transient = nn.Conv2d(in_channels, 2 * out_channels, 3, stride, padding=1)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )
        self.residual_act = nn.Sequential(nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
        self.transient_act = nn.Sequential(nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, state: State) -> State:
        r, t = state
        r_to_r, r_to_t = self.from_residual(r).chunk(2, dim=1)
        t_to_r, t_to_t = self.from_transient(t).chunk(2, dim=1)
        residual = self.residual_act(r_to_r + t_to_r + self.shortcut(r))
        return residual, self.transient_act(r_to_t + t_to_t)


class ResNetInResNet(Classifier):
    """Two-stream stem, RiR blocks, concat, then a conv + MLP head.

    Args:
        base_channels: channels per stream of the first blocks (48: 96 in total).
        layers_per_block: generalized residual layers per RiR block.
        head_channels: width of the 3x3 stride-2 head conv (upstream: 100).
        dropout: dropout between the two Linear layers.
    """

    def __init__(self, num_classes: int = 10, base_channels: int = 48, layers_per_block: int = 2,
                 head_channels: int = 100, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.residual_stem = self._stem(base_channels)
        self.transient_stem = self._stem(base_channels)
        layers, in_ch = [], base_channels
        for width, stride in _BLOCKS:
            out_ch = width * base_channels // 48
            for i in range(layers_per_block):
                layers.append(GeneralizedResidualLayer(in_ch, out_ch, stride if i == 0 else 1))
                in_ch = out_ch
        self.blocks = nn.Sequential(*layers)
        self.num_features = 2 * in_ch
        self.head_conv = nn.Sequential(
            # upstream: "without this convolution, loss will soon be nan"
            nn.Conv2d(self.num_features, head_channels, 3, stride=2),
            nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(head_channels * 3 * 3, 450),  # 8x8 map -> 3x3 after the unpadded conv
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(450, num_classes),
        )
        init_weights(self, conv=ParamInit(nn.init.kaiming_normal_,
                                          partial(nn.init.constant_, val=0.01)))

    @staticmethod
    def _stem(channels: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        r, t = self.blocks((self.residual_stem(x), self.transient_stem(x)))
        return torch.cat([r, t], 1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head_conv(x))


@register_model
def rir(num_classes: int = 10, dropout: float = 0.5, **kwargs: Any) -> ResNetInResNet:
    """ResNet in ResNet, two 48-channel streams, 8 RiR blocks, 10.25M params (head fixed)."""
    return ResNetInResNet(num_classes=num_classes, dropout=dropout, **kwargs)
