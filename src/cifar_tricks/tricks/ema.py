"""Exponential moving average of the weights (Polyak & Juditsky 1992, "Acceleration of Stochastic
Approximation by Averaging"; the EMA form used by e.g. Tan & Le 2019, EfficientNet):

    W_1^ema = W_1                                        (the first update copies)
    W_t^ema = decay * W_{t-1}^ema + (1 - decay) * W_t     (every later update)

Built on `torch.optim.swa_utils.AveragedModel` with `get_ema_multi_avg_fn`, so the update is one
fused `_foreach_lerp_` per device and dtype. `use_buffers=True` averages the buffers too: the
BatchNorm running statistics of the EMA are the EMA of the model's, which fit the averaged
weights better than the last model's statistics would, and no BN re-estimation pass is needed.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .base import Stage, TrainState, Trick

__all__ = ["EMA", "ModelEMA"]


def _warmup_ema_multi_avg_fn(decay: float):
    """EMA whose decay grows as min(decay, (1 + n) / (10 + n)) with the update count n (the
    `num_updates` form of TensorFlow's ExponentialMovingAverage), so a short run's average is
    not dominated by its first weights. The weight stays a device tensor: no host sync."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor],
               num_averaged: torch.Tensor) -> None:
        n = num_averaged.to(averaged[0].device, torch.float32)
        step_decay = torch.clamp((1 + n) / (10 + n), max=decay)
        if averaged[0].is_floating_point():
            torch._foreach_lerp_(averaged, current, (1 - step_decay).to(averaged[0].dtype))
        else:  # integer buffers (BatchNorm's num_batches_tracked), as get_ema_multi_avg_fn does
            for a, c in zip(averaged, current):
                a.copy_(a * step_decay + c * (1 - step_decay))

    return update


def check_decay(decay: float) -> None:
    """Refuse a decay outside [0, 1] (ValueError naming the argument)."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay}")


class ModelEMA(AveragedModel):
    """An EMA copy of `model`, updated by `update(model)` after each optimizer step.

    Args:
        model: the trained model; it is deep-copied (on its device) and never modified.
        decay: weight of the old average per update; 0.999 averages over about 1000 steps.

    `module` is the averaged network to evaluate (`ema.module(images)`, or `ema(images)`);
    `state_dict()` / `load_state_dict()` hold it and the update count `n_averaged`, which a
    resumed run needs so its next update averages rather than copies.

    Integer buffers (BatchNorm's `num_batches_tracked`) are "averaged" as well and truncated to
    integers by AveragedModel; they only weigh the statistics under `momentum=None`.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = False) -> None:
        check_decay(decay)
        average = _warmup_ema_multi_avg_fn(decay) if warmup else get_ema_multi_avg_fn(decay)
        super().__init__(model, multi_avg_fn=average, use_buffers=True)
        self.decay, self.warmup = decay, warmup
        # the average is never trained: no gradients, and an optimizer cannot pick it up
        self.module.requires_grad_(False)

    def update(self, model: nn.Module) -> None:
        """Fold the current weights and buffers of `model` into the average."""
        self.update_parameters(model)

    def extra_repr(self) -> str:
        return f"decay={self.decay}, warmup={self.warmup}"


class EMA(Trick):
    """`trick=[ema]`: evaluate (and report) an exponential moving average of the weights,
    updated after every optimizer step; the trained weights are logged as `raw_*`."""

    stage = Stage.average  # copy the model after weight-init tricks ran

    def __init__(self, decay: float = 0.999, warmup: bool = True) -> None:
        check_decay(decay)  # at build time, so the error names trick.ema.decay
        self.decay, self.warmup = decay, warmup
        self._ema: ModelEMA | None = None

    def setup_model(self, model: nn.Module) -> None:
        self._ema = ModelEMA(model, decay=self.decay, warmup=self.warmup)

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        self._ema.update(model)

    def eval_model(self) -> nn.Module:
        return self._ema.module

    def state_dict(self) -> dict:
        return self._ema.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self._ema.load_state_dict(state)
