"""Gradient-norm clipping (Pascanu et al. 2013): rescale all gradients together so their global
L2 norm is at most `max_norm`, after every backward pass (both passes of a SAM step)."""
from __future__ import annotations

import torch
from torch import nn

from .base import Stage, TrainState, Trick

__all__ = ["GradClip"]


class GradClip(Trick):
    """`trick=[grad_clip]`: clip the global gradient norm to `max_norm` before every step."""

    stage = Stage.optimize

    def __init__(self, max_norm: float = 2.0) -> None:
        if max_norm <= 0:
            raise ValueError(f"max_norm must be positive, got {max_norm}")
        self.max_norm = max_norm

    def after_backward(self, model: nn.Module, state: TrainState) -> None:
        # foreach keeps it a few fused kernels; no host sync (the norm stays on the device)
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.max_norm, foreach=True)
