"""Learning-rate schedules, stepped once per optimizer update.

Configs give schedule lengths in epochs, the unit papers use; each builder receives the run's
`steps_per_epoch` and `epochs` at run time (`_partial_: true` configs), converts epochs to
iterations, and returns a `torch.optim.lr_scheduler` object (built from torch's pieces), so
checkpoints save and restore it like any other.
"""
from __future__ import annotations

import logging
from typing import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    LambdaLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    SequentialLR,
    StepLR,
)

log = logging.getLogger(__name__)

__all__ = ["constant", "multistep", "step", "cosine", "warmup", "warmcosine", "cosine_restarts",
           "onecycle", "warmlinear"]


def multistep(optimizer: Optimizer, *, steps_per_epoch: int, epochs: int,
              milestones: Sequence[int], gamma: float) -> LRScheduler:
    """Multiply the lr by `gamma` at the start of each milestone epoch."""
    _check_milestones(milestones, epochs)
    _check_gamma(gamma)
    return MultiStepLR(optimizer, [m * steps_per_epoch for m in milestones], gamma)


def constant(optimizer: Optimizer, *, steps_per_epoch: int, epochs: int) -> LRScheduler:
    """Keep the optimizer's lr for the whole run."""
    return LambdaLR(optimizer, lambda step: 1.0)


def step(optimizer: Optimizer, *, steps_per_epoch: int, epochs: int, step_size: int = 30,
         gamma: float = 0.1) -> LRScheduler:
    """Multiply the lr by `gamma` every `step_size` epochs (the step decay of He et al. 2016,
    "Deep Residual Learning for Image Recognition", on ImageNet: x0.1 every 30 epochs)."""
    _check_positive("step_size", step_size)
    _check_gamma(gamma)
    return StepLR(optimizer, step_size * steps_per_epoch, gamma)


def cosine(optimizer: Optimizer, *, steps_per_epoch: int, epochs: int,
           eta_min: float = 0.0) -> LRScheduler:
    """Cosine decay from the lr to `eta_min` over the whole run, without restarts (Loshchilov &
    Hutter 2017, "SGDR: Stochastic Gradient Descent with Warm Restarts")."""
    _check_eta_min(eta_min)
    return CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch, eta_min=eta_min)


def warmup(optimizer: Optimizer, *, steps_per_epoch: int, epochs: int, warmup_epochs: int,
           start_factor: float, milestones: Sequence[int], gamma: float) -> LRScheduler:
    """Linear warmup from `start_factor` x lr to lr over `warmup_epochs`, then x`gamma` at each
    milestone epoch (Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in
    1 Hour"; the seed's Detectron-style WarmupMultiStepLR). Milestones count from the start of
    the run, as in `multistep`, and must not fall inside the warmup."""
    _check_warmup(warmup_epochs, epochs)
    _check_milestones(milestones, epochs)
    _check_gamma(gamma)
    if any(m < warmup_epochs for m in milestones):
        raise ValueError(f"milestones {list(milestones)} must not precede the end of the warmup "
                         f"(warmup_epochs={warmup_epochs})")
    warmup_iters = warmup_epochs * steps_per_epoch
    # The multistep part starts counting at the end of the warmup (SequentialLR restarts it).
    after = MultiStepLR(optimizer, [m * steps_per_epoch - warmup_iters for m in milestones], gamma)
    return _after_warmup(optimizer, warmup_iters, start_factor, after)


def warmcosine(optimizer: Optimizer, *, steps_per_epoch: int, epochs: int, warmup_epochs: int,
               start_factor: float, eta_min: float = 0.0) -> LRScheduler:
    """Linear warmup over `warmup_epochs`, then cosine decay to `eta_min` at the last iteration
    (the warmup of Goyal et al. 2017 before the cosine of Loshchilov & Hutter 2017). The seed's
    original "warmcosine" ran the cosine over all `epochs` after the warmup, so its lr never
    reached 0; here the cosine lasts `epochs - warmup_epochs`."""
    _check_warmup(warmup_epochs, epochs)
    _check_eta_min(eta_min)
    warmup_iters = warmup_epochs * steps_per_epoch
    after = CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch - warmup_iters,
                              eta_min=eta_min)
    return _after_warmup(optimizer, warmup_iters, start_factor, after)


def cosine_restarts(optimizer: Optimizer, *, steps_per_epoch: int, epochs: int, T_0: int,
                    T_mult: int = 1, eta_min: float = 0.0) -> LRScheduler:
    """SGDR (Loshchilov & Hutter 2017, "SGDR: Stochastic Gradient Descent with Warm Restarts"):
    cosine decay to `eta_min` over `T_0` epochs, then back to the lr, each cycle `T_mult` times
    longer than the last. Restarts are at iteration boundaries of whole epochs."""
    _check_positive("T_0", T_0)
    _check_eta_min(eta_min)
    return CosineAnnealingWarmRestarts(optimizer, T_0=T_0 * steps_per_epoch, T_mult=T_mult,
                                       eta_min=eta_min)


def onecycle(optimizer: Optimizer, *, steps_per_epoch: int, epochs: int, pct_start: float = 0.3,
             div_factor: float = 25.0, final_div_factor: float = 1e4,
             anneal_strategy: str = "cos", cycle_momentum: bool = True,
             base_momentum: float = 0.85, max_momentum: float = 0.95) -> LRScheduler:
    """The 1cycle policy (Smith & Topin 2019, "Super-Convergence: Very Fast Training of Neural
    Networks Using Large Learning Rates"): from lr/`div_factor` up to the optimizer's lr at
    `pct_start` of the run, then down to lr/(`div_factor` x `final_div_factor`); the momentum
    (Adam's beta1) moves the opposite way when `cycle_momentum`."""
    for name, factor in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
        if factor <= 0:
            raise ValueError(f"{name} must be positive (the lr is divided by it), got {factor}")
    # The peak is the lr of the optimizer config, so `optim.lr` keeps its meaning.
    max_lr = [group["lr"] for group in optimizer.param_groups]
    return OneCycleLR(optimizer, max_lr=max_lr, total_steps=epochs * steps_per_epoch,
                      pct_start=pct_start, anneal_strategy=anneal_strategy,
                      cycle_momentum=cycle_momentum, base_momentum=base_momentum,
                      max_momentum=max_momentum, div_factor=div_factor,
                      final_div_factor=final_div_factor)


def warmlinear(optimizer: Optimizer, *, steps_per_epoch: int, epochs: int,
               warmup_fraction: float = 0.23, start_factor: float = 0.2,
               end_factor: float = 0.07) -> LRScheduler:
    """airbench's schedule (Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU";
    `get_lr` in airbench94.py): with T the run's steps and w = int(T x `warmup_fraction`), the
    lr factor after s scheduler steps is

        start_factor + (1 - start_factor) x s / w             for s < w
        1 + (end_factor - 1) x (s - w) / (T - w)               for w <= s <= T

    so it rises linearly to 1 over the first w steps and falls linearly to `end_factor`, reached
    once the last update is done (update i, 0-based, runs at the factor of s = i). The warmup is a
    share of the run, as `onecycle`'s pct_start, since airbench's (23% of ~10 epochs) is not
    whole epochs. Built as `warmcosine`: LinearLR up, then LinearLR down."""
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction={warmup_fraction} must be in [0, 1): the share of the "
                         f"run's steps spent warming up (airbench 0.23)")
    if not 0 < start_factor <= 1:
        raise ValueError(f"start_factor={start_factor} must be in (0, 1]")
    if not 0 <= end_factor <= 1:
        raise ValueError(f"end_factor={end_factor} must be in [0, 1]: the lr ends at "
                         f"end_factor x lr")
    total = epochs * steps_per_epoch
    warmup_iters = int(total * warmup_fraction)  # airbench's int(total_train_steps * 0.23)
    after = LinearLR(optimizer, start_factor=1.0, end_factor=end_factor,
                     total_iters=total - warmup_iters)
    return _after_warmup(optimizer, warmup_iters, start_factor, after)


def _after_warmup(optimizer: Optimizer, warmup_iters: int, start_factor: float,
                  after: LRScheduler) -> LRScheduler:
    """`after`, preceded by a linear ramp from `start_factor` x lr to lr over `warmup_iters`."""
    if warmup_iters == 0:
        return after
    if not 0 < start_factor <= 1:
        raise ValueError(f"start_factor={start_factor} must be in (0, 1]")
    ramp = LinearLR(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup_iters)
    return SequentialLR(optimizer, [ramp, after], milestones=[warmup_iters])


def _check_positive(key: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{key} must be at least 1 epoch, got {value}")


def _check_warmup(warmup_epochs: int, epochs: int) -> None:
    if not 0 <= warmup_epochs < epochs:
        raise ValueError(f"warmup_epochs={warmup_epochs} must be at least 0 and less than the "
                         f"run's epochs (trainer.epochs={epochs}), or the lr never reaches "
                         f"optim.lr")


def _check_gamma(gamma: float) -> None:
    if gamma <= 0:
        raise ValueError(f"gamma={gamma} must be positive: it multiplies the lr (a negative lr "
                         f"ascends the loss), e.g. 0.1 or 0.2")


def _check_eta_min(eta_min: float) -> None:
    if eta_min < 0:
        raise ValueError(f"eta_min={eta_min} must be at least 0: it is the lowest lr")


def _check_milestones(milestones: Sequence[int], epochs: int) -> None:
    if any(isinstance(m, bool) or not isinstance(m, int) or m < 0 for m in milestones):
        raise ValueError(f"milestones {list(milestones)} must be epochs (whole numbers >= 0)")
    late = [m for m in milestones if m >= epochs]
    if late:  # allowed (a recipe shortened for a quick run), but never silent
        log.warning("sched.milestones %s: %s fall at or after the last epoch (%d) and never "
                    "apply", list(milestones), late, epochs)
