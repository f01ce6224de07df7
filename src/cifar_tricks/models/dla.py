"""Deep Layer Aggregation (Yu et al. 2018, "Deep Layer Aggregation"), the full DLA of
kuangliu/pytorch-cifar (``models/dla.py``).

Three 3x3 conv-BN-ReLU layers (16, 16, 32 channels) then four aggregation trees of ResNet basic
blocks (levels 1, 2, 2, 1; 64/128/256/512 channels; strides 1/2/2/2). A tree of level L chains
trees of levels L-1, ..., 1 and two basic blocks, and a root (1x1 conv-BN-ReLU over the
concatenation) merges the output of every chained stage; a tree of level L > 1 also feeds the root
one more basic block applied to the tree's own input (the reference's ``prev_root``).

For levels above 2 the reference built each sub-tree from the tree's input width while chaining
them in forward (so it could not run); here the first sub-tree takes the input and the others its
output. Levels 1 and 2, the only ones DLA uses, are unchanged.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct
from .resnet import BasicBlock

__all__ = ["Tree", "DLA", "dla"]


class Tree(nn.Module):
    """Aggregation tree of ``level``; only its first node (sub-tree or block) has ``stride``."""

    def __init__(self, in_channels: int, out_channels: int, level: int = 1,
                 stride: int = 1) -> None:
        super().__init__()
        # a shortcut from the tree's input straight to its root, from level 2 up
        self.prev_root = BasicBlock(in_channels, out_channels, stride) if level > 1 else None
        self.subtrees = nn.ModuleList()
        for sub_level in range(level - 1, 0, -1):
            self.subtrees.append(Tree(in_channels, out_channels, sub_level, stride))
            in_channels, stride = out_channels, 1
        self.left = BasicBlock(in_channels, out_channels, stride)
        self.right = BasicBlock(out_channels, out_channels)
        num_inputs = level + 1 + (self.prev_root is not None)
        self.root = ConvBnAct(num_inputs * out_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = [] if self.prev_root is None else [self.prev_root(x)]
        for node in (*self.subtrees, self.left, self.right):
            x = node(x)
            xs.append(x)
        return self.root(torch.cat(xs, dim=1))


class DLA(Classifier):
    """Conv stem of ``channels[:3]``, one tree per entry of ``levels`` with ``channels[3:]``.

    Args:
        levels: level of each tree (strides 1, 2, 2, ...).
        channels: widths of the three stem convs followed by one width per tree.
    """

    def __init__(self, levels: Sequence[int] = (1, 2, 2, 1),
                 channels: Sequence[int] = (16, 16, 32, 64, 128, 256, 512),
                 num_classes: int = 10) -> None:
        super().__init__()
        if len(channels) != len(levels) + 3:
            raise ValueError(f"need 3 stem widths plus one per tree, got {len(channels)} widths "
                             f"for {len(levels)} trees")
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            ConvBnAct(3, channels[0]), ConvBnAct(channels[0], channels[1]),
            ConvBnAct(channels[1], channels[2]),
        )
        trees, in_channels = [], channels[2]
        for i, (level, width) in enumerate(zip(levels, channels[3:])):
            trees.append(Tree(in_channels, width, level, stride=1 if i == 0 else 2))
            in_channels = width
        self.layers = nn.Sequential(*trees)
        self.num_features = in_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)


@register_model
def dla(num_classes: int = 10, **kwargs: Any) -> DLA:
    """DLA (levels 1, 2, 2, 1; 16-512 channels), 16.3M params."""
    return DLA((1, 2, 2, 1), (16, 16, 32, 64, 128, 256, 512), num_classes=num_classes, **kwargs)
