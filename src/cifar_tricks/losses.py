"""Losses on soft targets: every label is a probability vector, so mixing and smoothing compose."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SoftTargetCrossEntropy", "soft_accuracy"]


class SoftTargetCrossEntropy(nn.Module):
    """Mean over the batch of `-sum_c q_c log softmax(z)_c` for target distributions `q`.

    Args:
        label_smoothing: mixes the targets with the uniform distribution,
            `q <- (1 - eps) q + eps / C` (Szegedy et al. 2016), as torch's `cross_entropy` does.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                images: torch.Tensor | None = None) -> torch.Tensor:
        # `images` is part of the training-loss interface (distillation needs them); unused here
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)


def soft_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of the target mass on the predicted class (a tensor, no host sync).

    For one-hot targets this counts correct predictions; under mixing it is the target-weighted
    accuracy, e.g. a prediction of either source class of a 0.7/0.3 mixup counts 0.7 or 0.3.
    """
    return targets.gather(1, logits.argmax(1, keepdim=True)).sum()
