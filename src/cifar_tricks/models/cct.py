"""Compact Convolutional Transformer (Hassani et al. 2021, "Escaping the Big Data Paradigm with
Compact Transformers"), following SHI-Labs/Compact-Transformers ``cct_7_3x1_32``, which the seed
vendored.

A convolutional tokenizer (3x3 conv, stride 1, no bias -> ReLU -> 3x3 max-pool, stride 2) turns a
32x32 image into 16x16 = 256 tokens of width 256, so no patch grid is needed. A learned position
embedding is added and 7 transformer layers (4 heads, MLP ratio 2, bias-free qkv, attention
dropout 0.1, stochastic depth rising linearly 0 -> 0.1) follow. Sequence pooling replaces the cls
token: a Linear scores every token, and the softmax of the scores weights the tokens' average.
The encoder layer is SHI-Labs', whose second LayerNorm normalises the residual stream itself
(`EncoderBlock(norm_residual=True)`). Initialisation as the original: trunc-normal(0.02) linears
with zero bias, Kaiming-normal tokenizer conv, trunc-normal(0.2) position embedding.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from einops import rearrange
from torch import nn

from . import register_model
from .layers import HE_NORMAL, Classifier, ParamInit, drop_path_rates, init_weights
from .vit import Attention, EncoderBlock, Mlp

__all__ = ["ConvTokenizer", "SeqPool", "CCT", "cct_7_3x1"]


class ConvTokenizer(nn.Sequential):
    """`num_layers` x (conv k x k, no bias -> ReLU -> 3x3/2 max-pool); the last gives `embed_dim`
    channels, the others `hidden_channels`."""

    def __init__(self, embed_dim: int, num_layers: int = 1, kernel_size: int = 3,
                 in_chans: int = 3, hidden_channels: int = 64) -> None:
        widths = [in_chans] + [hidden_channels] * (num_layers - 1) + [embed_dim]
        super().__init__(*[
            nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size, stride=max(1, kernel_size // 2 - 1),
                          padding=max(1, kernel_size // 2), bias=False),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
            for c_in, c_out in zip(widths[:-1], widths[1:])
        ])


class SeqPool(nn.Module):
    """Attention pooling over tokens: softmax of a learned score per token, then a weighted sum."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.score(x).softmax(dim=1)  # (B, N, 1)
        return (weights * x).sum(dim=1)


class CCT(Classifier):
    """Conv tokenizer, learned position embedding, encoder, LayerNorm, sequence pooling, Linear.

    `forward_features` returns the pooled (B, embed_dim) embedding; `forward_head` is `fc`.
    """

    def __init__(self, num_classes: int = 10, img_size: int = 32, embed_dim: int = 256,
                 depth: int = 7, num_heads: int = 4, mlp_ratio: float = 2.0,
                 tokenizer_layers: int = 1, kernel_size: int = 3, dropout: float = 0.0,
                 attn_drop: float = 0.1, drop_path_rate: float = 0.1) -> None:
        super().__init__()
        self.num_classes, self.num_features = num_classes, embed_dim
        self.tokenizer = ConvTokenizer(embed_dim, tokenizer_layers, kernel_size)
        with torch.no_grad():
            num_tokens = self.tokenizer(torch.zeros(1, 3, img_size, img_size))[0, 0].numel()
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[
            EncoderBlock(embed_dim,
                         Attention(embed_dim, num_heads, qkv_bias=False, attn_drop=attn_drop,
                                   proj_drop=dropout),
                         Mlp(embed_dim, int(embed_dim * mlp_ratio), drop=dropout),
                         drop_path=dp, norm_residual=True)
            # float32, the values of SHI-Labs' torch.linspace
            for dp in drop_path_rates(drop_path_rate, depth, dtype=torch.float32)
        ])
        self.norm = nn.LayerNorm(embed_dim)
        self.pool = SeqPool(embed_dim)
        self.fc = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        init_weights(self, conv=HE_NORMAL,
                     linear=ParamInit(partial(nn.init.trunc_normal_, std=0.02), nn.init.zeros_))
        nn.init.trunc_normal_(self.pos_embed, std=0.2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(self.tokenizer(x), "b c h w -> b (h w) c")
        x = self.blocks(self.pos_drop(x + self.pos_embed))
        return self.pool(self.norm(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@register_model
def cct_7_3x1(num_classes: int = 10, dropout: float = 0.0, attn_drop: float = 0.1,
              drop_path_rate: float = 0.1, **kwargs: Any) -> CCT:
    """CCT-7/3x1 (SHI-Labs cct_7_3x1_32): one 3x3 conv tokenizer layer, 7 layers of width 256,
    4 heads, MLP ratio 2; 3.76M params."""
    return CCT(num_classes, embed_dim=256, depth=7, num_heads=4, mlp_ratio=2.0, tokenizer_layers=1,
               kernel_size=3, dropout=dropout, attn_drop=attn_drop, drop_path_rate=drop_path_rate,
               **kwargs)
