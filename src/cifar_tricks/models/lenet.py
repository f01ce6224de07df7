"""LeNet-5 (LeCun et al. 1998, "Gradient-based learning applied to document recognition").

Adapted to 32x32 RGB input with ReLU and max-pooling, as in the usual CIFAR baselines.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import register_model
from .layers import Classifier

__all__ = ["LeNet", "lenet"]


class LeNet(Classifier):
    """Two 5x5 conv + max-pool stages, a 400-120-84 MLP (the features) and a linear head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )  # fmt: skip
        # 32 -> 28 -> 14 -> 10 -> 5, so 16 * 5 * 5 = 400 inputs
        self.fc = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.num_features = 84
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


@register_model
def lenet(num_classes: int = 10, **kwargs: Any) -> LeNet:
    """LeNet-5 for 32x32 RGB images, 62k params."""
    return LeNet(num_classes=num_classes, **kwargs)
