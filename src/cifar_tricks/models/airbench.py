"""airbench (Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv 2404.00498).

The networks of KellerJordan/cifar10-airbench (`airbench/lib_airbench94.py`, `lib_airbench95.py`,
`lib_airbench96.py`): a 2x2 patch-whitening conv with 2 * 3 * 2^2 = 24 outputs (and a bias) and
GELU, three `ConvGroup`s, MaxPool(3) (a global max over the last 3x3 map), Linear(width,
num_classes, bias=False), and the output multiplied by 1/9.

- airbench94: groups of widths 64/256/256, BatchNorm momentum 0.4 (airbench's 0.6 is
  1 - PyTorch's momentum);
- airbench95: the same at widths 128/384/384;
- airbench96: widths 128/384/512, each group with a third conv and a residual connection around
  its last two convs, BatchNorm momentum PyTorch's default 0.1.

Every BatchNorm has eps 1e-12, a fixed scale of 1 and a trainable shift (airbench builds the
scale as a parameter with requires_grad False; here it is no parameter at all, which computes the
same function: the parameter count is therefore airbench's minus the BatchNorm scales, and every
parameter trains). Every conv starts from PyTorch's default initialisation with its first
in_channels output filters set to the identity (Dirac) and a zero bias.

The whitening conv is an ordinary trainable conv here; `trick=[whiten_init]`
(cifar_tricks.tricks.whiten) gives it airbench's data-dependent, frozen whitening weights and
trains its bias only for the first epochs.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from . import register_model
from .layers import Classifier

__all__ = ["Conv", "BatchNorm", "ConvGroup", "Airbench", "airbench94", "airbench95", "airbench96"]


class Conv(nn.Conv2d):
    """A 'same'-padded conv whose first `in_channels` filters start as the identity (Dirac) and
    whose bias starts at 0 (airbench's `Conv.reset_parameters`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 padding: int | str = "same", bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            if self.bias is not None:
                self.bias.zero_()
            nn.init.dirac_(self.weight[: self.in_channels])


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a fixed unit scale and a trainable shift (airbench's `BatchNorm` with
    `weight=False, bias=True`), eps 1e-12. `momentum` is PyTorch's: the weight of the new batch
    in the running statistics."""

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-12) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        self.bias = nn.Parameter(torch.zeros(num_features))


class ConvGroup(nn.Module):
    """conv -> maxpool(2) -> BN -> GELU -> conv -> BN -> GELU (airbench94/95).

    With `residual` (airbench96) a third conv follows: ... -> conv -> BN -> GELU -> conv -> BN,
    plus the group's first activation (after the pool), -> GELU.
    """

    def __init__(self, in_channels: int, out_channels: int, bn_momentum: float,
                 residual: bool = False) -> None:
        super().__init__()
        self.conv1 = Conv(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(out_channels, bn_momentum)
        self.conv2 = Conv(out_channels, out_channels)
        self.norm2 = BatchNorm(out_channels, bn_momentum)
        self.conv3 = Conv(out_channels, out_channels) if residual else None
        self.norm3 = BatchNorm(out_channels, bn_momentum) if residual else None
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        out = self.activ(self.norm2(self.conv2(x)))
        if self.conv3 is None:
            return out
        return self.activ(self.norm3(self.conv3(out)) + x)


class Airbench(Classifier):
    """Whitening conv + GELU (`stem`), three `ConvGroup`s (`layers`), then MaxPool(3), a linear
    layer without bias and the constant `scaling_factor` (`forward_head`).

    Args:
        widths: the three groups' widths.
        num_classes: outputs of the linear layer.
        bn_momentum: PyTorch's BatchNorm momentum.
        residual: the airbench96 group (a third conv and a residual connection).
        whiten_kernel_size: k of the k x k first conv, which has 2 * 3 * k^2 outputs (the
            positive and negative halves of a whitening of the k x k patches).
        scaling_factor: the logits' multiplier (airbench's `Mul(1/9)`).
    """

    def __init__(self, widths: Sequence[int], num_classes: int = 10, bn_momentum: float = 0.4,
                 residual: bool = False, whiten_kernel_size: int = 2,
                 scaling_factor: float = 1 / 9) -> None:
        super().__init__()
        self.num_classes, self.scaling_factor = num_classes, scaling_factor
        whiten_width = 2 * 3 * whiten_kernel_size**2
        self.stem = nn.Sequential(
            Conv(3, whiten_width, whiten_kernel_size, padding=0, bias=True), nn.GELU())
        channels = [whiten_width, *widths]
        self.layers = nn.Sequential(*(ConvGroup(c_in, c_out, bn_momentum, residual)
                                      for c_in, c_out in zip(channels, channels[1:])))
        self.num_features = channels[-1]
        self.pool = nn.MaxPool2d(3)
        self.fc = nn.Linear(self.num_features, num_classes, bias=False)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward_head(x) * self.scaling_factor


@register_model
def airbench94(num_classes: int = 10, bn_momentum: float = 0.4) -> Airbench:
    """airbench94: widths 64/256/256, 1.97M params (lib_airbench94.make_net94)."""
    return Airbench((64, 256, 256), num_classes, bn_momentum)


@register_model
def airbench95(num_classes: int = 10, bn_momentum: float = 0.4) -> Airbench:
    """airbench95: widths 128/384/384, 4.60M params (lib_airbench95.make_net95)."""
    return Airbench((128, 384, 384), num_classes, bn_momentum)


@register_model
def airbench96(num_classes: int = 10, bn_momentum: float = 0.1) -> Airbench:
    """airbench96: widths 128/384/512, residual groups of three convs, 9.92M params
    (lib_airbench96.make_net96)."""
    return Airbench((128, 384, 512), num_classes, bn_momentum, residual=True)


@register_model
def airbench_cpu(num_classes: int = 10, bn_momentum: float = 0.4) -> Airbench:
    """airbench94 at widths 32/128/128 (a quarter of its FLOPs per image), 0.50M params: the
    network of experiment=speedrun_cpu, sized for a 2-core CPU (not one of airbench's)."""
    return Airbench((32, 128, 128), num_classes, bn_momentum)
