"""ToyNet: a plain VGG-like stack whose depth is a knob, for the seed's CPU/GPU-utilisation study
(seed README §3.4, which compared ToyNet and LeNet as depth and batch size grow; no numbers were
published).

In the spirit of the seed's `ToyNet_S` (`lib/models/toymodel.py`: 3x3 conv-BN-ReLU layers, a few
2x2 max-pools, global average pooling, one linear layer), but with a single width so that depth is
the only thing that changes the cost per layer:

    stem:  3x3 conv-BN-ReLU, 3 -> width
    body:  `depth` 3x3 conv-BN-ReLU layers, width -> width, with a 2x2 max-pool after layers 3, 6
           and 9 (after every third layer, at most three pools: a 32x32 map goes 32 -> 16 -> 8 ->
           4 and then stays 4x4, so any depth is valid on CIFAR)
    head:  global average pooling, Linear(width, num_classes)

The convs have no bias (BatchNorm's shift makes it redundant; the seed's kept one). Parameters:
27 w + 2 w (stem) + depth (9 w^2 + 2 w) (body) + (w + 1) num_classes (head), 150,474 at the
defaults (depth 4, width 64, 10 classes).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from . import register_model
from .layers import Classifier, ConvBnAct

__all__ = ["ToyNet", "toynet", "POOL_EVERY", "MAX_POOLS"]

POOL_EVERY = 3  # a 2x2 max-pool after every third body layer ...
MAX_POOLS = 3  # ... at most three times: 32x32 inputs end at 4x4


class ToyNet(Classifier):
    """Stem conv-BN-ReLU to `width`, `depth` conv-BN-ReLU layers at `width` (max-pool after
    every third, at most three), global average pooling and a linear head.

    Args:
        depth: number of conv-BN-ReLU layers after the stem (>= 1).
        width: channels of every conv layer (>= 1).
        num_classes: outputs of the linear head.
    """

    def __init__(self, depth: int = 4, width: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an integer >= 1, got {width!r}")
        self.num_classes = num_classes
        self.stem = ConvBnAct(3, width)
        layers: list[nn.Module] = []
        for i in range(1, depth + 1):
            layers.append(ConvBnAct(width, width))
            if i % POOL_EVERY == 0 and i // POOL_EVERY <= MAX_POOLS:
                layers.append(nn.MaxPool2d(2))
        self.layers = nn.Sequential(*layers)
        self.num_features = width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)


@register_model
def toynet(num_classes: int = 10, depth: int = 4, width: int = 64, **kwargs: Any) -> ToyNet:
    """ToyNet: stem + `depth` 3x3 conv-BN-ReLU layers of `width` channels; 0.15M params at the
    defaults (depth 4, width 64)."""
    return ToyNet(depth=depth, width=width, num_classes=num_classes, **kwargs)
