"""Learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks";
the fastai form): train with a learning rate growing exponentially from `start_lr` to `end_lr`
over `num_iter` steps, record the loss, stop when it explodes, and suggest the lr where the
smoothed loss falls fastest.

    python run.py mode=lr_find model=resnet20 optim=sgd

writes `lr_find.csv` (lr, loss, smoothed loss) and `lr_find.png` (loss against log lr) into the
run folder and prints the suggestion. The model's weights are spent by the sweep; nothing is
checkpointed.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.optim import Optimizer

from ..errors import LRFinderError

__all__ = ["LRFinderResult", "find_lr", "write_lr_find"]

MIN_FINITE_STEPS = 5  # fewer finite losses than this suggest nothing


@dataclass
class LRFinderResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    stopped_early: bool


def find_lr(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
            optimizer: Optimizer, criterion: Callable[..., torch.Tensor], *,
            start_lr: float = 1e-7, end_lr: float = 10.0, num_iter: int = 100,
            smoothing: float = 0.98, diverge_factor: float = 4.0,
            autocast: Callable[[], Any] | None = None) -> LRFinderResult:
    """The range test over the first `num_iter` batches of `batches` (cycled if shorter).

    The loss is smoothed exponentially (bias-corrected, weight `smoothing`); the test stops once
    the smoothed loss exceeds `diverge_factor` times its minimum or is not finite. The suggestion
    is the lr of the steepest descent of the smoothed loss against log lr, from the points
    before the minimum (a robust choice when the curve is noisy).
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    gamma = (end_lr / start_lr) ** (1 / max(num_iter - 1, 1))
    lrs, losses, smoothed = [], [], []
    average, best, stopped_early = 0.0, math.inf, False
    model.train()
    iterator = iter(batches)
    for step in range(num_iter):
        try:
            images, targets = next(iterator)
        except StopIteration:
            iterator = iter(batches)
            images, targets = next(iterator)
        lr = start_lr * gamma ** step
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast() if autocast else torch.enable_grad():
            loss = criterion(model(images), targets, images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()  # one sync per step: the test must see each loss to stop in time
        average = smoothing * average + (1 - smoothing) * value
        debiased = average / (1 - smoothing ** (step + 1))
        lrs.append(lr)
        losses.append(value)
        smoothed.append(debiased)
        if not math.isfinite(debiased) or debiased > diverge_factor * best:
            stopped_early = True
            break
        best = min(best, debiased)
    finite = sum(math.isfinite(v) for v in smoothed)
    if finite <= MIN_FINITE_STEPS:
        raise LRFinderError(
            f"the training loss was finite for only {finite} of {len(smoothed)} steps (from "
            f"lr {start_lr:g}): too few to suggest a learning rate. A loss that is NaN from the "
            f"first step points at the data or the model (try mode=train for a few steps); "
            f"else lower lr_find.start_lr")
    return LRFinderResult(lrs, losses, smoothed, _suggest(lrs, smoothed), stopped_early)


def _suggest(lrs: list[float], smoothed: list[float], skip_start: int = 10,
             span: int = 5) -> float:
    """The lr in the middle of the steepest `span`-step descent of the smoothed loss before its
    minimum, ignoring the first `skip_start` points (bias correction makes them jumpy)."""
    finite = [(lr, s) for lr, s in zip(lrs, smoothed) if math.isfinite(s)]
    lowest = min(range(len(finite)), key=lambda i: finite[i][1]) if finite else 0
    starts = range(min(skip_start, max(lowest - span, 0)), lowest - span + 1)
    if not starts:
        return finite[lowest][0] / 10 if finite else lrs[0]  # too short: a tenth of the best lr

    def slope(i: int) -> float:
        return (finite[i + span][1] - finite[i][1]) / math.log(finite[i + span][0] / finite[i][0])

    steepest = min(starts, key=slope)
    return finite[steepest + span // 2][0]


def write_lr_find(result: LRFinderResult, folder: Path) -> tuple[Path, Path]:
    """`lr_find.csv` and `lr_find.png` (loss against log lr, the suggestion marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "lr_find.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["lr", "loss", "smoothed_loss"])
        writer.writerows(zip(result.lrs, result.losses, result.smoothed))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, alpha=0.3, label="loss")
    ax.plot(result.lrs, result.smoothed, label="smoothed loss")
    ax.axvline(result.suggestion, color="red", linestyle="--",
               label=f"suggested lr {result.suggestion:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    finite = [s for s in result.smoothed if math.isfinite(s)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.1)
    ax.legend()
    fig.tight_layout()
    picture = folder / "lr_find.png"
    fig.savefig(picture, dpi=100)
    plt.close(fig)
    return table, picture
