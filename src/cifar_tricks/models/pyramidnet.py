"""PyramidNet (Han et al. 2017, "Deep Pyramidal Residual Networks", arXiv:1610.02915) with
ShakeDrop (Yamada et al. 2018, "ShakeDrop Regularization for Deep Residual Learning",
arXiv:1802.02375).

Follows the PyramidNet+ShakeDrop code of the seed's era A (`model/pyramidnet.py`, from the
FastAutoAugment lineage of dyhan0920/PyramidNet-PyTorch): a 16-channel conv-BN stem, three stages
of pre-activation blocks whose width grows by alpha / (number of blocks) at every block
(additive widening), zero-padded identity shortcuts (2x2 average pooling when downsampling),
ShakeDrop on every residual branch with p_l = 0.5 l / L, a final BN-ReLU, pooling and a linear
head. Bottleneck blocks (depth 9n+2) for PyramidNet-272; basic blocks (depth 6n+2) for the
ShakeDrop paper's PyramidNet-110.

Fix: the original built the zero channels of the shortcut as `torch.cuda.FloatTensor` (and drew
ShakeDrop's randomness the same way), so it ran on GPUs only, even in eval; here the padding is
made on the input's device and dtype and `layers.ShakeDrop` draws on the input's device, so the
model runs on CPU and CUDA. Parameter counts are unchanged.

ShakeDrop's gate: the seed drew one gate b per mini-batch (every sample of a batch shaken or none;
alpha and beta per sample); the ShakeDrop paper and the default here (`gate_per_sample=True`) draw
one per sample. `gate_per_sample=False` (`model.gate_per_sample=false`) re-creates the seed.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import register_model
from .layers import BN_IDENTITY, Classifier, ParamInit, ShakeDrop, drop_path_rates, init_weights

__all__ = ["PyramidBasicBlock", "PyramidBottleneck", "PyramidNet", "pyramidnet272", "pyramidnet110"]


def _pad_shortcut(x: torch.Tensor, out_channels: int, stride: int) -> torch.Tensor:
    """Identity shortcut: 2x2 average pool when downsampling, then zero channels appended."""
    if stride != 1:
        x = F.avg_pool2d(x, 2, stride, ceil_mode=True)
    # F.pad makes the zero channels on x's device and dtype (the original used torch.cuda)
    return F.pad(x, (0, 0, 0, 0, 0, out_channels - x.shape[1]))


class PyramidBasicBlock(nn.Module):
    """BN-conv3x3-BN-ReLU-conv3x3-BN, ShakeDrop, plus the zero-padded identity."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 drop_prob: float = 0.0, gate_per_sample: bool = True) -> None:
        super().__init__()
        self.stride, self.out_planes = stride, planes
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_planes),
            nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, padding=1, bias=False),
            nn.BatchNorm2d(planes),
        )
        self.shake_drop = ShakeDrop(drop_prob, gate_per_sample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shake_drop(self.residual(x))
        return out + _pad_shortcut(x, self.out_planes, self.stride)


class PyramidBottleneck(nn.Module):
    """BN-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1(x4)-BN, ShakeDrop, plus the padded identity."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 drop_prob: float = 0.0, gate_per_sample: bool = True) -> None:
        super().__init__()
        self.stride, self.out_planes = stride, planes * self.expansion
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_planes),
            nn.Conv2d(in_planes, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, self.out_planes, 1, bias=False),
            nn.BatchNorm2d(self.out_planes),
        )
        self.shake_drop = ShakeDrop(drop_prob, gate_per_sample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shake_drop(self.residual(x))
        return out + _pad_shortcut(x, self.out_planes, self.stride)


class PyramidNet(Classifier):
    """Stem conv-BN 3->16, three stages of ``blocks_per_stage`` blocks at strides 1/2/2 whose
    width grows linearly by ``alpha`` over all blocks, final BN-ReLU, pool, fc.

    Args:
        blocks_per_stage: n; the network has L = 3n blocks.
        alpha: total widening over the L blocks (block l has round(16 + alpha l / L) planes).
        block: PyramidBottleneck or PyramidBasicBlock.
        max_drop_prob: ShakeDrop probability of the last block; block l gets max * l / L.
        num_classes: outputs of the linear head.
        gate_per_sample: ShakeDrop's gate per sample (True) or one per mini-batch (False, the
            seed's code).
    """

    def __init__(self, blocks_per_stage: int, alpha: float,
                 block: type[PyramidBasicBlock | PyramidBottleneck] = PyramidBottleneck,
                 max_drop_prob: float = 0.5, num_classes: int = 10,
                 gate_per_sample: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        num_blocks = 3 * blocks_per_stage
        # ShakeDrop is strongest deep in the network: the paper's linear decay rule
        drop_probs = iter(drop_path_rates(max_drop_prob, num_blocks, "huang"))
        stages, in_planes, width = [], 16, 16.0
        for i in range(3):
            blocks = []
            for j in range(blocks_per_stage):
                width += alpha / num_blocks
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(in_planes, int(round(width)), stride, next(drop_probs),
                                    gate_per_sample))
                in_planes = int(round(width)) * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.num_features = in_planes
        # pre-activation blocks end without a nonlinearity, so normalise once before pooling
        self.norm = nn.BatchNorm2d(self.num_features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)

        he_fan_out = partial(nn.init.kaiming_normal_, mode="fan_out", nonlinearity="relu")
        init_weights(self, conv=ParamInit(he_fan_out), batchnorm=BN_IDENTITY)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.layers(self.stem(x))))


def _build_pyramidnet(depth: int, alpha: float, bottleneck: bool, max_drop_prob: float,
                      num_classes: int, gate_per_sample: bool, **kwargs: Any) -> PyramidNet:
    """PyramidNet-``depth``: depth = 9n + 2 with bottlenecks (3 convs), 6n + 2 with basic blocks."""
    block, convs = (PyramidBottleneck, 3) if bottleneck else (PyramidBasicBlock, 2)
    if (depth - 2) % (3 * convs):
        raise ValueError(f"PyramidNet depth must be {3 * convs}n+2 for this block, got {depth}")
    return PyramidNet((depth - 2) // (3 * convs), alpha, block, max_drop_prob,
                      num_classes=num_classes, gate_per_sample=gate_per_sample, **kwargs)


@register_model
def pyramidnet272(num_classes: int = 10, max_drop_prob: float = 0.5,
                  gate_per_sample: bool = True, **kwargs: Any) -> PyramidNet:
    """PyramidNet-272 (alpha 200, bottleneck) + ShakeDrop, 26.2M params. `gate_per_sample`:
    ShakeDrop's gate per sample (True) or per mini-batch (False, the seed's code)."""
    return _build_pyramidnet(272, 200, True, max_drop_prob, num_classes, gate_per_sample,
                             **kwargs)


@register_model
def pyramidnet110(num_classes: int = 10, max_drop_prob: float = 0.5,
                  gate_per_sample: bool = True, **kwargs: Any) -> PyramidNet:
    """PyramidNet-110 (alpha 270, basic blocks) + ShakeDrop, the ShakeDrop paper's model; 28.5M
    params (the paper rounds to 28.3M). `gate_per_sample`: ShakeDrop's gate per sample (True) or
    per mini-batch (False, the seed's code)."""
    return _build_pyramidnet(110, 270, False, max_drop_prob, num_classes, gate_per_sample,
                             **kwargs)
