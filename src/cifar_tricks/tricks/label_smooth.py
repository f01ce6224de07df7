"""Label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture"): train on
q = (1 - eps) y + eps / K instead of the one-hot (or mixed) target y; evaluation is unchanged."""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..losses import SoftTargetCrossEntropy
from .base import Trick

__all__ = ["LabelSmoothing"]


class LabelSmoothing(Trick):
    order = 0  # the base loss: distillation wraps the smoothed one

    def __init__(self, eps: float = 0.1) -> None:
        if not 0.0 <= eps < 1.0:
            raise ConfigError(f"trick.label_smooth.eps must be in [0, 1), got {eps}")
        self.eps = eps

    def wrap_criterion(self, criterion: nn.Module, model: nn.Module) -> nn.Module:
        if not isinstance(criterion, SoftTargetCrossEntropy):
            raise ConfigError("label_smooth must act on the cross-entropy loss; list it before "
                              "tricks that replace the loss")
        return SoftTargetCrossEntropy(label_smoothing=self.eps)
