"""ResNet-18 with stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth",
arXiv:1603.09382).

Follows weiaicunzai/pytorch-cifar100 `models/stochasticdepth.py`, the code the seed copied: the
kuangliu CIFAR ResNet-18 layout ([2, 2, 2, 2] basic blocks, 64-512 channels, 3x3 stride-1 stem)
with convs that keep their bias (hence 4,800 more parameters than `resnet18`) and, as in the
authors' Torch code rather than the paper's equation, no ReLU after the residual add. Block l of
L survives with probability 1 - 0.5 (l - 1) / (L - 1), i.e. from 1.0 down to 0.5. In training
the whole residual branch is kept or dropped for the mini-batch; in evaluation it is scaled by
its survival probability.

The original blocks were `torch.jit.ScriptModule`s; these are plain modules.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import register_model
from .layers import Classifier, DropPath, drop_path_rates, make_stages

__all__ = ["StochasticDepthBlock", "StochasticDepthResNet", "stochastic_depth_resnet18"]


class StochasticDepthBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN (convs with bias), gated by DropPath, plus the shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 survival_prob: float = 1.0) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, padding=1),
            nn.BatchNorm2d(planes),
        )
        # one gate per mini-batch and no rescaling in training, x p in eval: the paper's rule
        self.drop_path = DropPath(1.0 - survival_prob, per_sample=False, scale_by_keep=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # no ReLU after the sum, as in the authors' Torch code and the original
        return self.drop_path(self.residual(x)) + self.shortcut(x)


class StochasticDepthResNet(Classifier):
    """Stem conv-BN-ReLU 3->64, four stages of 64/128/256/512 at strides 1/2/2/2, pool, fc.

    Args:
        layers: blocks per stage.
        min_survival_prob: survival probability of the last block (the first one always survives).
        num_classes: outputs of the linear head.
    """

    def __init__(self, layers: list[int], min_survival_prob: float = 0.5,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        # survival falls linearly from 1 (first block) to min_survival_prob (last), block order
        drop = iter(drop_path_rates(1.0 - min_survival_prob, sum(layers)))
        self.layers, self.num_features = make_stages(
            lambda cin, planes, stride: StochasticDepthBlock(cin, planes, stride, 1.0 - next(drop)),
            64, (64, 128, 256, 512), layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)


@register_model
def stochastic_depth_resnet18(num_classes: int = 10, min_survival_prob: float = 0.5,
                              **kwargs: Any) -> StochasticDepthResNet:
    """ResNet-18 with stochastic depth (survival 1.0 -> 0.5), 11.2M params."""
    return StochasticDepthResNet([2, 2, 2, 2], min_survival_prob, num_classes=num_classes, **kwargs)
