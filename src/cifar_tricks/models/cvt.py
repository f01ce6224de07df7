"""CvT (Wu et al. 2021, "CvT: Introducing Convolutions to Vision Transformers"), following the
lucidrains/vit-pytorch port with the CvT-13-like layout the seed trained on CIFAR:

- three stages of convolutional token embedding, kernel 3 in every stage (the seed changed the
  first from 7 to 3), strides 4/2/2 so 32x32 inputs become 8x8, 4x4 and 2x2 token maps;
- widths 64/192/384, heads 1/3/6 of width 64, depths 1/2/10, MLP x4 (1x1 convs, GELU);
- convolutional projection: q/k/v come from depthwise 3x3 conv + BN + pointwise conv, with
  stride 2 for keys and values; LayerNorm is over channels of the (B, C, H, W) map;
- global average pooling, then Linear(384, classes); no class token.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from . import register_model
from .layers import Classifier, DropPath, drop_path_rates

__all__ = ["ChannelLayerNorm", "ConvProjection", "ConvAttention", "CvTBlock", "CvT", "cvt"]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel dimension of a (B, C, H, W) map."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvProjection(nn.Sequential):
    """Depthwise-separable projection: depthwise kxk (strided) -> BN -> pointwise 1x1, no biases."""

    def __init__(self, dim: int, out_dim: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(dim, dim, kernel_size, stride, kernel_size // 2, groups=dim, bias=False),
            nn.BatchNorm2d(dim),
            nn.Conv2d(dim, out_dim, 1, bias=False),
        )


class ConvAttention(nn.Module):
    """Pre-norm multi-head attention with convolutional q/k/v projections; keys and values are
    subsampled by `kv_stride`, which is CvT's main saving over a plain ViT."""

    def __init__(self, dim: int, heads: int, dim_head: int = 64, proj_kernel: int = 3,
                 kv_stride: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dropout = heads, dropout
        self.norm = ChannelLayerNorm(dim)
        self.to_q = ConvProjection(dim, inner, proj_kernel, 1)
        self.to_kv = ConvProjection(dim, 2 * inner, proj_kernel, kv_stride)
        self.to_out = nn.Sequential(nn.Conv2d(inner, dim, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[3]
        x = self.norm(x)
        q, k, v = (rearrange(t, "b (h d) x y -> b h (x y) d", h=self.heads)
                   for t in (self.to_q(x), *self.to_kv(x).chunk(2, dim=1)))
        out = F.scaled_dot_product_attention(q, k, v,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(rearrange(out, "b h (x y) d -> b (h d) x y", y=w))


class CvTBlock(nn.Module):
    """x + attn(x), then x + MLP(LN(x)); both branches behind drop-path."""

    def __init__(self, dim: int, heads: int, dim_head: int = 64, mlp_ratio: int = 4,
                 proj_kernel: int = 3, kv_stride: int = 2, dropout: float = 0.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.attn = ConvAttention(dim, heads, dim_head, proj_kernel, kv_stride, dropout)
        self.mlp = nn.Sequential(
            ChannelLayerNorm(dim), nn.Conv2d(dim, dim * mlp_ratio, 1), nn.GELU(),
            nn.Dropout(dropout), nn.Conv2d(dim * mlp_ratio, dim, 1), nn.Dropout(dropout),
        )
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.mlp(x))


class CvT(Classifier):
    """Stages of (conv token embedding -> channel LayerNorm -> CvT blocks), avg pool, linear head.

    Args:
        dims, depths, heads: per-stage width, number of blocks and attention heads.
        emb_kernels, emb_strides: per-stage token-embedding conv.
        dim_head: width of one head (64 in the port, so inner width = heads * 64).
        mlp_ratio: MLP expansion.
        proj_kernel, kv_stride: convolutional projection kernel and key/value subsampling.
        dropout: dropout on attention weights, attention output and MLP (0 in the seed).
        drop_path_rate: stochastic depth, rising linearly to this rate over all blocks (0 in the
            seed; the paper used 0.1 for CvT-13).
    """

    def __init__(self, dims: Sequence[int], depths: Sequence[int], heads: Sequence[int],
                 emb_kernels: Sequence[int], emb_strides: Sequence[int], num_classes: int = 10,
                 dim_head: int = 64, mlp_ratio: int = 4, proj_kernel: int = 3, kv_stride: int = 2,
                 dropout: float = 0.0, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        rates, in_dim, stages = iter(drop_path_rates(drop_path_rate, sum(depths))), 3, []
        for dim, depth, n_heads, k, s in zip(dims, depths, heads, emb_kernels, emb_strides):
            blocks = [CvTBlock(dim, n_heads, dim_head, mlp_ratio, proj_kernel, kv_stride, dropout,
                               next(rates))
                      for _ in range(depth)]
            stages.append(nn.Sequential(nn.Conv2d(in_dim, dim, k, s, k // 2),
                                        ChannelLayerNorm(dim), *blocks))
            in_dim = dim
        self.stages = nn.Sequential(*stages)
        self.num_features = in_dim
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)


@register_model
def cvt(num_classes: int = 10, dropout: float = 0.0, drop_path_rate: float = 0.0,
        **kwargs: Any) -> CvT:
    """CvT-13-like, embedding kernels 3/3/3 and strides 4/2/2 (32 -> 8 -> 4 -> 2), 19.5M params."""
    return CvT(dims=(64, 192, 384), depths=(1, 2, 10), heads=(1, 3, 6), emb_kernels=(3, 3, 3),
               emb_strides=(4, 2, 2), num_classes=num_classes, dropout=dropout,
               drop_path_rate=drop_path_rate, **kwargs)
