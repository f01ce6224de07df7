"""CoAtNet (Dai et al. 2021, "CoAtNet: Marrying Convolution and Attention for All Data Sizes"),
following the chinhsuanwu/coatnet-pytorch port that the seed used, built for 32x32 images.

Layout C-C-T-T: a stem s0 of two 3x3 conv-BN-GELU, stages s1/s2 of MBConv blocks (expansion 4,
bias-free squeeze-excitation at 1/4 of the block input width), stages s3/s4 of pre-norm Transformer
blocks with relative attention (8 heads of 32 dims, MLP x4), then global average pooling and a
bias-free Linear head. The first block of every stage halves the resolution, so 32 px inputs go
32 -> 16 -> 8 -> 4 -> 2 -> 1: s3 attends over 2x2 tokens and s4 over a single one.

As in the port: the downsampling blocks add a max-pool + 1x1 conv shortcut to a branch that sees
the max-pooled input (Transformer) or strides its first 1x1 conv (MBConv); the Transformer MLP is
4x the block's *input* width; the relative bias table starts at zero.

Fixed here: the port's CoAtNet-2 last-stage width 1026 is a typo for the paper's 1024 (Table 3).
``coatnet_2`` uses 1024: 54,623,872 / 54,716,032 parameters for 10 / 100 classes instead of the
seed's 54,668,496 / 54,760,836.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct, DropPath, SqueezeExcite, drop_path_rates

__all__ = ["MBConv", "relative_position_index", "RelativeAttention",
           "TransformerBlock", "CoAtNet", "coatnet_0", "coatnet_1", "coatnet_2"]


class MBConv(nn.Module):
    """Pre-BN inverted residual: BN -> 1x1 expand (strided) -> depthwise 3x3 -> SE -> 1x1 project.

    The shortcut is the identity, or max-pool + 1x1 conv when the block downsamples.
    """

    def __init__(self, in_ch: int, out_ch: int, downsample: bool = False, expansion: int = 4,
                 se_ratio: float = 0.25, drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.shortcut = (nn.Sequential(nn.MaxPool2d(3, 2, 1),
                                       nn.Conv2d(in_ch, out_ch, 1, bias=False))
                         if downsample else nn.Identity())
        self.conv = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            ConvBnAct(in_ch, hidden, 1, stride=2 if downsample else 1, act_layer=nn.GELU),
            ConvBnAct(hidden, hidden, 3, groups=hidden, act_layer=nn.GELU),
            # bias-free with GELU, as the port; the width comes from the block input
            SqueezeExcite(hidden, int(in_ch * se_ratio), act_layer=nn.GELU, bias=False),
            ConvBnAct(hidden, out_ch, 1, act_layer=None),
        )
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.drop_path(self.conv(x))


def relative_position_index(height: int, width: int) -> torch.Tensor:
    """(N, N) index into a (2H-1)(2W-1) table of the offset from token j to token i, N = H*W."""
    coords = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij"))
    rel = coords.flatten(1)[:, :, None] - coords.flatten(1)[:, None, :]  # (2, N, N)
    return (rel[0] + height - 1) * (2 * width - 1) + rel[1] + width - 1


class RelativeAttention(nn.Module):
    """Multi-head self-attention over an H x W grid with a learned relative position bias B:
    softmax(QK^T / sqrt(d) + B + mask) V, with B + mask passed to SDPA as an additive ``attn_mask``.

    Args:
        image_size: (H, W) of the token grid; the table holds one entry per 2D offset.
        bias_heads: columns of the table: one per head (paper, CoAtNet port) or 1, shared by all
            heads (the Swin port).
    """

    def __init__(self, in_dim: int, out_dim: int, image_size: tuple[int, int], heads: int = 8,
                 dim_head: int = 32, bias_heads: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.relative_bias_table = nn.Parameter(torch.zeros(
            (2 * image_size[0] - 1) * (2 * image_size[1] - 1), bias_heads or heads))
        self.register_buffer("relative_index", relative_position_index(*image_size),
                             persistent=False)
        self.to_qkv = nn.Linear(in_dim, 3 * inner, bias=False)
        self.to_out = nn.Linear(inner, out_dim)

    def relative_bias(self) -> torch.Tensor:
        """(bias_heads, N, N) additive bias."""
        return self.relative_bias_table[self.relative_index].permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, N, C); mask: None or additive, broadcastable to (B, heads, N, N)."""
        q, k, v = rearrange(self.to_qkv(x), "b n (t h d) -> t b h n d", t=3, h=self.heads)
        bias = self.relative_bias() if mask is None else self.relative_bias() + mask
        # SDPA wants the float mask in the query's dtype (bf16/fp16 under autocast)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class TransformerBlock(nn.Module):
    """Pre-LN block on a (B, C, H, W) map: x + attn(LN(x)), then x + MLP(LN(x)).

    A downsampling block max-pools x first and adds a 1x1 conv projection of the pooled x instead
    of the identity; its MLP hidden width is 4x the *input* width, as in the port.
    """

    def __init__(self, in_ch: int, out_ch: int, image_size: tuple[int, int],
                 downsample: bool = False, heads: int = 8, dim_head: int = 32,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(3, 2, 1) if downsample else nn.Identity()
        self.proj = nn.Conv2d(in_ch, out_ch, 1, bias=False) if downsample else nn.Identity()
        self.norm1 = nn.LayerNorm(in_ch)
        self.attn = RelativeAttention(in_ch, out_ch, image_size, heads, dim_head)
        self.norm2 = nn.LayerNorm(out_ch)
        self.mlp = nn.Sequential(nn.Linear(out_ch, 4 * in_ch), nn.GELU(),
                                 nn.Linear(4 * in_ch, out_ch))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        h, w = x.shape[2:]
        tokens = rearrange(x, "b c h w -> b (h w) c")
        shortcut = rearrange(self.proj(x), "b c h w -> b (h w) c")
        tokens = shortcut + self.drop_path(self.attn(self.norm1(tokens)))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return rearrange(tokens, "b (h w) c -> b c h w", h=h, w=w)


class CoAtNet(Classifier):
    """s0 stem, two MBConv stages, two relative-attention stages; each stage halves the resolution.

    Args:
        depths: blocks of s0..s4 (the L of the paper).
        channels: widths of s0..s4 (the D of the paper).
        image_size: input side; fixes the relative bias tables of s3 and s4.
        drop_path_rate: stochastic depth, rising linearly over the blocks of s1..s4 (0 in the seed).
    """

    def __init__(self, depths: Sequence[int], channels: Sequence[int], num_classes: int = 10,
                 image_size: int = 32, heads: int = 8, dim_head: int = 32,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(*[ConvBnAct(3 if i == 0 else channels[0], channels[0],
                                              stride=2 if i == 0 else 1, act_layer=nn.GELU)
                                    for i in range(depths[0])])
        # float32, the values of timm's torch.linspace idiom
        rates = drop_path_rates(drop_path_rate, sum(depths[1:]), dtype=torch.float32)
        stages, in_ch = [], channels[0]
        for s, (depth, out_ch) in enumerate(zip(depths[1:], channels[1:]), start=1):
            size = (image_size // 2 ** (s + 1),) * 2
            blocks = []
            for i in range(depth):
                rate, first = rates.pop(0), i == 0
                blocks.append(MBConv(in_ch, out_ch, first, drop_path=rate) if s <= 2 else
                              TransformerBlock(in_ch, out_ch, size, first, heads, dim_head, rate))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_ch
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes, bias=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


@register_model
def coatnet_0(num_classes: int = 10, drop_path_rate: float = 0.0, **kwargs: Any) -> CoAtNet:
    """CoAtNet-0, 17.0M params."""
    return CoAtNet([2, 2, 3, 5, 2], [64, 96, 192, 384, 768], num_classes=num_classes,
                   drop_path_rate=drop_path_rate, **kwargs)


@register_model
def coatnet_1(num_classes: int = 10, drop_path_rate: float = 0.0, **kwargs: Any) -> CoAtNet:
    """CoAtNet-1, 32.3M params."""
    return CoAtNet([2, 2, 6, 14, 2], [64, 96, 192, 384, 768], num_classes=num_classes,
                   drop_path_rate=drop_path_rate, **kwargs)


@register_model
def coatnet_2(num_classes: int = 10, drop_path_rate: float = 0.0, **kwargs: Any) -> CoAtNet:
    """CoAtNet-2, 54.6M params (last width 1024, the port's 1026 being a typo)."""
    return CoAtNet([2, 2, 6, 14, 2], [128, 128, 256, 512, 1024], num_classes=num_classes,
                   drop_path_rate=drop_path_rate, **kwargs)
