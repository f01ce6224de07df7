"""MobileViT (Mehta & Rastegari 2021, "MobileViT: Light-weight, General-purpose, and Mobile-friendly
Vision Transformer"), following the chinhsuanwu/mobilevit-pytorch port (lucidrains style) as the
seed adapted it to 32x32 images:

- the stride-2 stem is kept (32 -> 16), but the second MV2 block and the last MV2 block have stride
  1 instead of 2, so the MobileViT blocks see 8x8, 4x4 and 4x4 maps and the head pools a 4x4 map
  (the port's ``AvgPool2d(ih // 8)``; a global average here, the same thing on 32 px inputs);
- patches of 2x2, transformer depths [2, 4, 3], attention with one head of width 32 (the seed's
  port; same parameters as the later 4 heads x 8), MLP widths 2x / 4x / 4x the transformer dim;
- bias-free Linear head.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct

__all__ = ["MV2Block", "Attention", "Transformer", "MobileViTBlock", "MobileViT",
           "mobilevit_s", "mobilevit_xs", "mobilevit_xxs"]


class MV2Block(nn.Module):
    """MobileNetV2 inverted residual: [1x1 expand] -> depthwise 3x3 -> linear 1x1 (SiLU),
    with an identity shortcut when the shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 expansion: int = 4) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.conv = nn.Sequential(
            (ConvBnAct(in_channels, hidden, 1, act_layer=nn.SiLU) if expansion != 1
             else nn.Identity()),
            ConvBnAct(hidden, hidden, 3, stride=stride, groups=hidden, act_layer=nn.SiLU),
            ConvBnAct(hidden, out_channels, 1, act_layer=None),
        )
        self.use_shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_shortcut else self.conv(x)


class Attention(nn.Module):
    """Multi-head self-attention over tokens (..., n, dim): bias-free qkv, projection with bias."""

    def __init__(self, dim: int, heads: int = 1, dim_head: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, p = x.shape[:2]
        # fold the patch-pixel axis into the batch so SDPA gets 4-D inputs (fused kernels)
        q, k, v = (rearrange(t, "b p n (h d) -> (b p) h n d", h=self.heads)
                   for t in self.to_qkv(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(rearrange(out, "(b p) h n d -> b p n (h d)", b=b, p=p))


class Transformer(nn.Module):
    """Pre-norm encoder layers: x + attn(LN(x)), then x + MLP(LN(x)) with SiLU."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(depth):
            self.layers.append(nn.ModuleList([
                nn.Sequential(nn.LayerNorm(dim), Attention(dim, heads, dim_head, dropout)),
                nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, mlp_dim), nn.SiLU(),
                              nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, mlp in self.layers:
            x = x + attn(x)
            x = x + mlp(x)
        return x


class MobileViTBlock(nn.Module):
    """Local nxn conv + 1x1 to `dim`, a transformer across patches (one sequence per pixel
    position inside the patch), 1x1 back to `channels`, then fusion with the input by nxn conv."""

    def __init__(self, dim: int, depth: int, channels: int, mlp_dim: int, kernel_size: int = 3,
                 patch_size: tuple[int, int] = (2, 2), heads: int = 1, dim_head: int = 32,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.ph, self.pw = patch_size
        self.local = nn.Sequential(ConvBnAct(channels, channels, kernel_size, act_layer=nn.SiLU),
                                   ConvBnAct(channels, dim, 1, act_layer=nn.SiLU))
        self.transformer = Transformer(dim, depth, heads, dim_head, mlp_dim, dropout)
        self.proj = ConvBnAct(dim, channels, 1, act_layer=nn.SiLU)
        self.fusion = ConvBnAct(2 * channels, channels, kernel_size, act_layer=nn.SiLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.local(x)
        h, w = y.shape[2] // self.ph, y.shape[3] // self.pw
        y = rearrange(y, "b d (h ph) (w pw) -> b (ph pw) (h w) d", ph=self.ph, pw=self.pw)
        y = self.transformer(y)
        y = rearrange(y, "b (ph pw) (h w) d -> b d (h ph) (w pw)", h=h, w=w, ph=self.ph, pw=self.pw)
        return self.fusion(torch.cat((self.proj(y), x), 1))


class MobileViT(Classifier):
    """Stem, MV2 blocks, three (MV2, MobileViT block) stages, 1x1 conv, avg pool, bias-free fc.

    Args:
        dims: transformer widths of the three MobileViT blocks.
        channels: the 11 conv widths of the port (stem, MV2 outputs, last 1x1 conv).
        expansion: MV2 expansion ratio.
        strides: strides of MV2 blocks 2, 5, 6 and 7; (1, 2, 2, 1) is the seed's CIFAR edit of the
            ImageNet (2, 2, 2, 2), keeping 4x4 maps at the end for 32 px inputs.
        depths: transformer layers per MobileViT block.
        heads, dim_head: attention shape (the seed's port: 1 head of 32).
        dropout: dropout in the attention projection and the MLPs.
    """

    def __init__(self, dims: Sequence[int], channels: Sequence[int], num_classes: int = 10,
                 expansion: int = 4, strides: Sequence[int] = (1, 2, 2, 1),
                 depths: Sequence[int] = (2, 4, 3), kernel_size: int = 3,
                 patch_size: tuple[int, int] = (2, 2), heads: int = 1, dim_head: int = 32,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        c, s = channels, strides
        mlp_dims = (2 * dims[0], 4 * dims[1], 4 * dims[2])

        def vit(i: int, ch: int) -> MobileViTBlock:
            return MobileViTBlock(dims[i], depths[i], ch, mlp_dims[i], kernel_size, patch_size,
                                  heads, dim_head, dropout)

        self.stem = ConvBnAct(3, c[0], 3, stride=2, act_layer=nn.SiLU)
        self.layers = nn.Sequential(
            nn.Sequential(MV2Block(c[0], c[1], 1, expansion), MV2Block(c[1], c[2], s[0], expansion),
                          MV2Block(c[2], c[3], 1, expansion), MV2Block(c[3], c[3], 1, expansion)),
            nn.Sequential(MV2Block(c[3], c[4], s[1], expansion), vit(0, c[5])),
            nn.Sequential(MV2Block(c[5], c[6], s[2], expansion), vit(1, c[7])),
            nn.Sequential(MV2Block(c[7], c[8], s[3], expansion), vit(2, c[9])),
        )
        self.conv = ConvBnAct(c[9], c[10], 1, act_layer=nn.SiLU)
        self.num_features = c[10]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes, bias=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.layers(self.stem(x)))


@register_model
def mobilevit_s(num_classes: int = 10, dropout: float = 0.0, **kwargs: Any) -> MobileViT:
    """MobileViT-S, 5.0M params."""
    return MobileViT([144, 192, 240], [16, 32, 64, 64, 96, 96, 128, 128, 160, 160, 640],
                     num_classes=num_classes, expansion=4, dropout=dropout, **kwargs)


@register_model
def mobilevit_xs(num_classes: int = 10, dropout: float = 0.0, **kwargs: Any) -> MobileViT:
    """MobileViT-XS, 2.0M params."""
    return MobileViT([96, 120, 144], [16, 32, 48, 48, 64, 64, 80, 80, 96, 96, 384],
                     num_classes=num_classes, expansion=4, dropout=dropout, **kwargs)


@register_model
def mobilevit_xxs(num_classes: int = 10, dropout: float = 0.0, **kwargs: Any) -> MobileViT:
    """MobileViT-XXS (MV2 expansion 2), 1.0M params."""
    return MobileViT([64, 80, 96], [16, 16, 24, 24, 48, 48, 64, 64, 80, 80, 320],
                     num_classes=num_classes, expansion=2, dropout=dropout, **kwargs)
