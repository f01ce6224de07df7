"""Swin Transformer (Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using
Shifted Windows"), following the berniwal/swin-transformer-pytorch port that the seed used, with
the seed's CIFAR edits: window 4 (from 7) and patch-merging factors (2, 1, 2, 2) (from 4, 2, 2, 2),
so 32 px inputs give 16 -> 16 -> 8 -> 4 px feature maps.

Each stage merges patches (space-to-depth then a Linear, no norm, as the port) and alternates
regular and shifted-window blocks: pre-LN window attention (heads of 32 dims, a learned relative
position bias) and a 4x MLP. Mean pooling, LayerNorm and a Linear head close the network.

As in the port: one relative bias table per block shared by all heads (the paper has one per head),
initialised from N(0, 1); it is indexed by the offset of the query from the key (the paper's
sign; the port's is the opposite, the same model with the table flipped).

As in the paper's code (not the port): a stage whose map is no larger than the window (the 4x4
last stage) does not shift, since one window already covers the map; the port shifted it and
masked its single window into four 2x2 regions.

Parameters: 27,428,086 / 27,497,296 (swin_t) and 48,708,418 / 48,777,628 (swin_s) for 10 / 100
classes. The seed's counts are 3,072 / 6,144 higher: the port stored each shifted block's two 16x16
attention masks as frozen ``nn.Parameter``s (512 numbers in each of 6 / 12 shifted blocks); here the
mask is a buffer. The trainable counts are the seed's.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from einops import rearrange
from torch import nn

from . import register_model
from .coatnet import RelativeAttention
from .layers import Classifier, DropPath, drop_path_rates

__all__ = ["window_partition", "window_reverse", "shifted_window_mask", "SwinBlock",
           "PatchMerging", "SwinTransformer", "swin_t", "swin_s"]


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, window_size**2, C), windows in row-major order per image."""
    return rearrange(x, "b (nh wh) (nw ww) c -> (b nh nw) (wh ww) c",
                     wh=window_size, ww=window_size)


def window_reverse(windows: torch.Tensor, window_size: int, height: int,
                   width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * windows, window_size**2, C) -> (B, H, W, C)."""
    return rearrange(windows, "(b nh nw) (wh ww) c -> b (nh wh) (nw ww) c",
                     nh=height // window_size, nw=width // window_size, wh=window_size)


def shifted_window_mask(height: int, width: int, window_size: int, shift: int) -> torch.Tensor:
    """(windows, N, N) additive mask for a map rolled by -shift: 0 between tokens of the same
    region, -inf between tokens that the roll brought together from opposite borders."""
    regions = torch.zeros(1, height, width, 1)
    bands = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    for i, rows in enumerate(bands):
        for j, cols in enumerate(bands):
            regions[:, rows, cols] = 3 * i + j
    labels = window_partition(regions, window_size).squeeze(-1)  # (windows, N)
    different = labels[:, :, None] != labels[:, None, :]
    return torch.zeros(different.shape).masked_fill(different, float("-inf"))


class SwinBlock(nn.Module):
    """x + attn(LN(x)) over (shifted) windows, then x + MLP(LN(x)), on a (B, H, W, C) map.

    Args:
        resolution: side of the square map the block sees; fixes the shift mask.
        shifted: roll the map by half a window first (every second block), unless one window
            already covers the map.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, window_size: int, resolution: int,
                 shifted: bool, drop_path: float = 0.0) -> None:
        super().__init__()
        self.window_size = min(window_size, resolution)
        self.shift = window_size // 2 if shifted and resolution > window_size else 0
        self.norm1 = nn.LayerNorm(dim)
        ws = self.window_size
        self.attn = RelativeAttention(dim, dim, (ws, ws), heads, head_dim, bias_heads=1)
        nn.init.normal_(self.attn.relative_bias_table)  # the port's torch.randn
        mask = shifted_window_mask(resolution, resolution, ws, self.shift) if self.shift else None
        self.register_buffer("attn_mask", mask, persistent=False)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop_path = DropPath(drop_path)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        if self.shift:
            x = torch.roll(x, (-self.shift, -self.shift), (1, 2))
        # windows are batch-major, so window i of every image gets mask i
        mask = None if self.attn_mask is None else self.attn_mask.repeat(b, 1, 1)[:, None]
        x = self.attn(window_partition(x, self.window_size), mask)
        x = window_reverse(x, self.window_size, h, w)
        return torch.roll(x, (self.shift, self.shift), (1, 2)) if self.shift else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self._attention(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Space-to-depth by ``factor`` then a Linear (the port's nn.Unfold + Linear), (B, H, W, C) in
    and out; factor 1 is a plain channel projection."""

    def __init__(self, in_ch: int, out_ch: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.linear = nn.Linear(in_ch * factor ** 2, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.factor
        return self.linear(rearrange(x, "b (h p1) (w p2) c -> b h w (c p1 p2)", p1=p, p2=p))


class SwinTransformer(Classifier):
    """Four stages of patch merging + alternating regular / shifted window blocks.

    Args:
        hidden_dim: width of stage 1, doubled by every later stage.
        layers, heads: blocks and attention heads per stage.
        downscaling_factors: patch-merging factor of each stage.
        image_size: input side; fixes the shift masks.
        drop_path_rate: stochastic depth, rising linearly over all blocks (0 in the seed).
    """

    def __init__(self, hidden_dim: int, layers: Sequence[int], heads: Sequence[int],
                 num_classes: int = 10, head_dim: int = 32, window_size: int = 4,
                 downscaling_factors: Sequence[int] = (2, 1, 2, 2), image_size: int = 32,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        # float32, the values of the paper's code (torch.linspace)
        rates = drop_path_rates(drop_path_rate, sum(layers), dtype=torch.float32)
        stages, in_ch, resolution = [], 3, image_size
        for i, (depth, n_heads, factor) in enumerate(zip(layers, heads, downscaling_factors)):
            dim, resolution = hidden_dim * 2 ** i, resolution // factor
            blocks = [SwinBlock(dim, n_heads, head_dim, window_size, resolution, j % 2 == 1,
                                rates.pop(0)) for j in range(depth)]
            stages.append(nn.Sequential(PatchMerging(in_ch, dim, factor), *blocks))
            in_ch = dim
        self.stages = nn.Sequential(*stages)
        self.num_features = in_ch
        self.norm = nn.LayerNorm(in_ch)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(rearrange(x, "b c h w -> b h w c"))
        return rearrange(x, "b h w c -> b c h w")

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x.mean((2, 3))))


@register_model
def swin_t(num_classes: int = 10, drop_path_rate: float = 0.0, **kwargs: Any) -> SwinTransformer:
    """Swin-T, 27.4M params."""
    return SwinTransformer(96, (2, 2, 6, 2), (3, 6, 12, 24), num_classes=num_classes,
                           drop_path_rate=drop_path_rate, **kwargs)


@register_model
def swin_s(num_classes: int = 10, drop_path_rate: float = 0.0, **kwargs: Any) -> SwinTransformer:
    """Swin-S, 48.7M params."""
    return SwinTransformer(96, (2, 2, 18, 2), (3, 6, 12, 24), num_classes=num_classes,
                           drop_path_rate=drop_path_rate, **kwargs)
