"""SPP-ResNeXt: the seed's SPP attention study on a CIFAR ResNeXt.

Backbone: ResNeXt (Xie et al. 2017, "Aggregated Residual Transformations for Deep Neural
Networks") in the CIFAR layout of CIFAR-ZOO's `resnext.py`: 64-channel 3x3 stem, three stages of
(depth - 2) // 9 bottlenecks with output widths 256/512/1024 at strides 1/2/2, average pool, fc.
Module: YOLOv5-style Spatial Pyramid Pooling (He et al. 2014, "Spatial Pyramid Pooling in Deep
Convolutional Networks"; ultralytics/yolov5 `SPP`) on the residual branch of every bottleneck,
before the skip addition. Follows the seed's `spp_depth/spp_resnet.py` + `poolings.py`.

Variants ``spp_d{11,20,29}_p{N,A,B,C,D}``: depth 11/20/29 (1/2/3 bottlenecks per stage) and
max-pool kernels N = no SPP, A = [3], B = [5], C = [7], D = [3, 5, 7].

Fix of an original bug: every seed factory passed ``spp=False``, so pA..pD silently built the plain
pN network (d11/d20/d29: 1,912,138 / 3,489,098 / 5,066,058 params for 10 classes). Here the SPP
module is on for pA..pD: for 10 / 100 classes, d11 pA-pC 3,981,898 / 4,074,148, pD 5,358,154 /
5,450,404; d20 pA-pC 7,628,618 / 7,720,868, pD 10,381,130 / 10,473,380; d29 pA-pC 11,275,338 /
11,367,588, pD 15,404,106 / 15,496,356.

`ResNeXtBottleneck` and `CifarResNeXt` take any residual-branch module, so `ge_resnext` reuses them.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from . import register_model
from .layers import HE_NORMAL, Classifier, ConvBnAct, init_weights

__all__ = [
    "SPP", "ResNeXtBottleneck", "CifarResNeXt",
    "spp_d11_pN", "spp_d11_pA", "spp_d11_pB", "spp_d11_pC", "spp_d11_pD",
    "spp_d20_pN", "spp_d20_pA", "spp_d20_pB", "spp_d20_pC", "spp_d20_pD",
    "spp_d29_pN", "spp_d29_pA", "spp_d29_pB", "spp_d29_pC", "spp_d29_pD",
]  # fmt: skip

# (channels, feature-map size) -> module applied to the residual branch of a bottleneck
BranchLayer = Callable[[int, int], nn.Module]


class SPP(nn.Module):
    """1x1 Conv-BN-SiLU to c/2, stride-1 "same" max-pools, concat with the input, 1x1 back to c."""

    def __init__(self, in_channels: int, out_channels: int, kernels: Sequence[int]) -> None:
        super().__init__()
        if not kernels or any(k % 2 == 0 for k in kernels):
            raise ValueError(f"SPP needs odd max-pool kernels for 'same' padding, got {kernels}")
        hidden = in_channels // 2
        self.reduce = ConvBnAct(in_channels, hidden, 1, act_layer=nn.SiLU)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernels)
        self.expand = ConvBnAct(hidden * (len(kernels) + 1), out_channels, 1, act_layer=nn.SiLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        return self.expand(torch.cat([x] + [pool(x) for pool in self.pools], dim=1))


class ResNeXtBottleneck(nn.Module):
    """1x1 reduce to D, grouped 3x3 (stride), 1x1 expand, [branch module], add shortcut, ReLU.

    D = cardinality * int(base_width * out_channels / (64 * expansion)), as in CIFAR-ZOO.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, cardinality: int,
                 base_width: int, expansion: int = 4, branch: nn.Module | None = None) -> None:
        super().__init__()
        width = cardinality * int(base_width * out_channels / (expansion * 64.0))
        self.conv_reduce = ConvBnAct(in_channels, width, 1)
        self.conv_conv = ConvBnAct(width, width, 3, stride, groups=cardinality)
        self.conv_expand = ConvBnAct(width, out_channels, 1, act_layer=None)
        self.branch = branch if branch is not None else nn.Identity()
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = ConvBnAct(in_channels, out_channels, 1, stride, act_layer=None)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_expand(self.conv_conv(self.conv_reduce(x)))
        return self.act(self.branch(out) + self.shortcut(x))


class CifarResNeXt(Classifier):
    """CIFAR ResNeXt-``depth``: 64-ch 3x3 stem, 3 stages of (depth - 2) // 9 bottlenecks.

    Args:
        depth: 9n + 2 (11, 20, 29, ...).
        cardinality, base_width: groups of the 3x3 conv and their width in the first stage.
        expansion: stage output widths are 64/128/256 * expansion.
        branch_layer: builds the module on each bottleneck's residual branch from (channels,
            feature-map size at 32x32 input); None for a plain ResNeXt.
    """

    def __init__(self, depth: int, cardinality: int, base_width: int, num_classes: int = 10,
                 expansion: int = 4, branch_layer: BranchLayer | None = None) -> None:
        super().__init__()
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"CIFAR ResNeXt depth must be 9n+2 with n >= 1, got {depth}")
        self.num_classes = num_classes
        self.stem = ConvBnAct(3, 64, 3)
        stages, in_channels = [], 64
        for i, (planes, size) in enumerate(zip((64, 128, 256), (32, 16, 8))):
            out_channels, blocks = planes * expansion, []
            for j in range((depth - 2) // 9):
                branch = branch_layer(out_channels, size) if branch_layer is not None else None
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(ResNeXtBottleneck(in_channels, out_channels, stride, cardinality,
                                                base_width, expansion, branch))
                in_channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_channels
        self.pool = nn.AdaptiveAvgPool2d(1)  # the original's 8x8 average pool at 32x32 input
        self.fc = nn.Linear(self.num_features, num_classes)

        # CIFAR-ZOO init: He-normal convs; BN (1, 0) and the fc keep PyTorch's defaults
        init_weights(self, conv=HE_NORMAL)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


def _build_spp_resnext(depth: int, kernels: Sequence[int], num_classes: int,
                       cardinality: int = 16, base_width: int = 8, **kwargs: Any) -> CifarResNeXt:
    """SPP-ResNeXt-``depth`` 16x8d; ``kernels``: the SPP max-pools (empty: no SPP)."""
    kernels = tuple(kernels)
    branch = (lambda c, _size: SPP(c, c, kernels)) if kernels else None
    return CifarResNeXt(depth, cardinality, base_width, num_classes, branch_layer=branch,
                        **kwargs)


@register_model
def spp_d11_pN(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-11 16x8d without SPP, 1.91M params."""
    return _build_spp_resnext(11, (), num_classes, **kwargs)


@register_model
def spp_d11_pA(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-11 16x8d + SPP max-pool [3], 3.98M params."""
    return _build_spp_resnext(11, (3,), num_classes, **kwargs)


@register_model
def spp_d11_pB(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-11 16x8d + SPP max-pool [5], 3.98M params."""
    return _build_spp_resnext(11, (5,), num_classes, **kwargs)


@register_model
def spp_d11_pC(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-11 16x8d + SPP max-pool [7], 3.98M params."""
    return _build_spp_resnext(11, (7,), num_classes, **kwargs)


@register_model
def spp_d11_pD(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-11 16x8d + SPP max-pools [3, 5, 7], 5.36M params."""
    return _build_spp_resnext(11, (3, 5, 7), num_classes, **kwargs)


@register_model
def spp_d20_pN(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-20 16x8d without SPP, 3.49M params."""
    return _build_spp_resnext(20, (), num_classes, **kwargs)


@register_model
def spp_d20_pA(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-20 16x8d + SPP max-pool [3], 7.63M params."""
    return _build_spp_resnext(20, (3,), num_classes, **kwargs)


@register_model
def spp_d20_pB(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-20 16x8d + SPP max-pool [5], 7.63M params."""
    return _build_spp_resnext(20, (5,), num_classes, **kwargs)


@register_model
def spp_d20_pC(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-20 16x8d + SPP max-pool [7], 7.63M params."""
    return _build_spp_resnext(20, (7,), num_classes, **kwargs)


@register_model
def spp_d20_pD(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-20 16x8d + SPP max-pools [3, 5, 7], 10.38M params."""
    return _build_spp_resnext(20, (3, 5, 7), num_classes, **kwargs)


@register_model
def spp_d29_pN(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-29 16x8d without SPP, 5.07M params."""
    return _build_spp_resnext(29, (), num_classes, **kwargs)


@register_model
def spp_d29_pA(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-29 16x8d + SPP max-pool [3], 11.28M params."""
    return _build_spp_resnext(29, (3,), num_classes, **kwargs)


@register_model
def spp_d29_pB(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-29 16x8d + SPP max-pool [5], 11.28M params."""
    return _build_spp_resnext(29, (5,), num_classes, **kwargs)


@register_model
def spp_d29_pC(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-29 16x8d + SPP max-pool [7], 11.28M params."""
    return _build_spp_resnext(29, (7,), num_classes, **kwargs)


@register_model
def spp_d29_pD(num_classes: int = 10, **kwargs: Any) -> CifarResNeXt:
    """ResNeXt-29 16x8d + SPP max-pools [3, 5, 7], 15.40M params."""
    return _build_spp_resnext(29, (3, 5, 7), num_classes, **kwargs)
