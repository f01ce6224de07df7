"""Label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture"): train on
q = (1 - eps) y + eps / K instead of the one-hot (or mixed) target y; evaluation is unchanged."""
from __future__ import annotations

from torch import nn

from ..losses import SoftTargetCrossEntropy
from .base import Stage, Trick

__all__ = ["LabelSmoothing"]


class LabelSmoothing(Trick):
    """`trick=[label_smooth]`: the training loss on smoothed targets; evaluation is unchanged."""

    stage = Stage.base_loss  # distillation wraps the smoothed loss

    def __init__(self, eps: float = 0.1) -> None:
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"eps must be in [0, 1), got {eps}")
        self.eps = eps

    def wrap_criterion(self, criterion: nn.Module, model: nn.Module) -> nn.Module:
        if not isinstance(criterion, SoftTargetCrossEntropy):
            raise TypeError(f"label smoothing replaces the plain cross-entropy, but was given "
                            f"{type(criterion).__name__}: its stage must come first")
        return SoftTargetCrossEntropy(label_smoothing=self.eps)
