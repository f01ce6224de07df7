"""Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words: Transformers for
Image Recognition at Scale"), in the omihub777/ViT-CIFAR layout the seed used for 32x32 images.

The image is cut into an 8x8 grid of 4x4-pixel patches (64 tokens); each flattened patch (48 values,
pixel-major, channel-last as the original's ``unfold``) goes through one Linear to the width, a cls
token is prepended and a learned position embedding added. Seven pre-norm encoder layers follow;
the cls token is read out through LayerNorm + Linear. Two quirks of the original are kept because
the seed's numbers were trained with them:

- the MLP has a GELU after *both* linears (``Linear-GELU-Linear-GELU``);
- attention logits are divided by sqrt(width) = sqrt(384), not sqrt(head width) = sqrt(48) as in
  the paper, i.e. a softmax sqrt(8) times softer. ``attn_scale_by_width=False`` gives the paper's.

The small blocks (`Attention`, `Mlp`, `EncoderBlock`) are shared by the other transformer families
(e.g. ``cct.py``). Attention goes through ``F.scaled_dot_product_attention`` so CUDA runs use the
fused kernels; a relative-position bias or window mask is passed as a float ``attn_mask``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from . import register_model
from .layers import ActLayer, Classifier, DropPath, drop_path_rates, get_act_layer

__all__ = ["Attention", "Mlp", "EncoderBlock", "VisionTransformer", "vision_transformer"]


class Attention(nn.Module):
    """Multi-head self-attention over tokens (B, N, dim) with one fused qkv projection.

    Args:
        dim: token width, split over `num_heads` heads.
        qkv_bias: bias on the qkv projection (the output projection always has one).
        attn_drop: dropout on the attention probabilities (training only).
        proj_drop: dropout after the output projection.
        scale: logit scale; None is the paper's head_dim ** -0.5.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, scale: float | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.scale, self.attn_drop = num_heads, scale, attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (qkv h d) -> qkv b h n d", qkv=3, h=self.num_heads)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale,
                                           dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(rearrange(x, "b h n d -> b n (h d)")))


class Mlp(nn.Sequential):
    """Linear -> act -> dropout -> Linear [-> act] -> dropout; `act_layer` is a class or a
    `get_act_layer` name.

    `act_out=True` adds the activation after the second linear too (omihub777's ViT does).
    """

    def __init__(self, dim: int, hidden_dim: int, act_layer: str | ActLayer = nn.GELU,
                 drop: float = 0.0, act_out: bool = False) -> None:
        act_layer = get_act_layer(act_layer)
        super().__init__(
            nn.Linear(dim, hidden_dim), act_layer(), nn.Dropout(drop),
            nn.Linear(hidden_dim, dim), act_layer() if act_out else nn.Identity(), nn.Dropout(drop),
        )


class EncoderBlock(nn.Module):
    """Transformer encoder layer around a given attention and MLP, with optional stochastic depth.

    Pre-norm (ViT): ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``. With `norm_residual=True`
    (Compact Transformers) `norm2` normalises the residual stream itself before the MLP branch,
    ``x = norm2(x + attn(norm1(x)))`` then ``x + mlp(x)``, as SHI-Labs' encoder layer does.
    """

    def __init__(self, dim: int, attn: nn.Module, mlp: nn.Module, drop_path: float = 0.0,
                 norm_residual: bool = False) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), attn
        self.norm2, self.mlp = nn.LayerNorm(dim), mlp
        self.drop_path = DropPath(drop_path)
        self.norm_residual = norm_residual

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), attn_mask))
        if self.norm_residual:
            x = self.norm2(x)
            return x + self.drop_path(self.mlp(x))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(Classifier):
    """ViT on a grid of `patch_size` patches with a cls token; LayerNorm + Linear head on it.

    `forward_features` returns the normalised cls token (B, embed_dim); `forward_head` is `fc`.
    Initialisation is PyTorch's default, with N(0, 1) cls token and position embedding, as the
    original. Stochastic depth rises linearly to `drop_path_rate` over the blocks; `act_layer` is
    the MLP activation (a class or a `get_act_layer` name such as "gelu", the original's).
    """

    def __init__(self, num_classes: int = 10, img_size: int = 32, patch_size: int = 4,
                 in_chans: int = 3, embed_dim: int = 384, depth: int = 7, num_heads: int = 8,
                 mlp_dim: int = 1536, dropout: float = 0.0, drop_path_rate: float = 0.0,
                 attn_scale_by_width: bool = True, act_layer: str | ActLayer = nn.GELU) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.num_classes, self.patch_size, self.num_features = num_classes, patch_size, embed_dim
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Linear(in_chans * patch_size ** 2, embed_dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, embed_dim))
        scale = embed_dim ** -0.5 if attn_scale_by_width else None
        self.blocks = nn.Sequential(*[
            EncoderBlock(embed_dim,
                         Attention(embed_dim, num_heads, proj_drop=dropout, scale=scale),
                         Mlp(embed_dim, mlp_dim, act_layer, drop=dropout, act_out=True),
                         drop_path=dp)
            # float32, the values of timm's torch.linspace idiom
            for dp in drop_path_rates(drop_path_rate, depth, dtype=torch.float32)
        ])
        self.norm = nn.LayerNorm(embed_dim)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        x = self.patch_embed(rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x)[:, 0])

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@register_model
def vision_transformer(num_classes: int = 10, dropout: float = 0.0, drop_path_rate: float = 0.0,
                       attn_scale_by_width: bool = True, **kwargs: Any) -> VisionTransformer:
    """ViT-CIFAR (omihub777): 4x4 patches, 7 layers, width 384, 8 heads, MLP 1536; 12.47M params."""
    return VisionTransformer(num_classes=num_classes, dropout=dropout,
                             drop_path_rate=drop_path_rate,
                             attn_scale_by_width=attn_scale_by_width, **kwargs)
