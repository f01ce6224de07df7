"""Learning-rate schedules, stepped once per optimizer update.

Configs give schedule lengths in epochs, the unit papers use; each builder receives the run's
`steps_per_epoch` and `epochs` at run time (`_partial_: true` configs) and returns a
`torch.optim.lr_scheduler` object, so checkpoints save and restore it like any other.
"""
from __future__ import annotations

from typing import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, MultiStepLR

__all__ = ["constant", "multistep"]


def multistep(optimizer: Optimizer, *, steps_per_epoch: int, epochs: int,
              milestones: Sequence[int], gamma: float) -> LRScheduler:
    """Multiply the lr by `gamma` at the start of each milestone epoch."""
    return MultiStepLR(optimizer, [m * steps_per_epoch for m in milestones], gamma)


def constant(optimizer: Optimizer, *, steps_per_epoch: int, epochs: int) -> LRScheduler:
    """Keep the optimizer's lr for the whole run."""
    return LambdaLR(optimizer, lambda step: 1.0)
