"""Watch the real training loop with PyTorch's own hooks.

`probed_fit` builds a run from the config as `run.py` does, attaches forward hooks to the model
and the training criterion and step hooks to the optimizer that takes the descent step, and
trains it with `train.fit`. The tests then hold what the loop really did (the images and targets
the model saw, each loss it computed, each gradient and learning rate the optimizer used) against
an option's definition, so an option the loop ignores cannot pass for one it applies.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from cifar_tricks.build import Run, build_run
from cifar_tricks.config import compose
from cifar_tricks.run_folder import RunFolder, Summary
from cifar_tricks.train import fit
from conftest import TINY


@dataclass
class Forward:
    """One training forward of the model: its input and output (detached copies)."""
    images: torch.Tensor
    logits: torch.Tensor
    channels_last: bool  # the input's memory format


@dataclass
class LossCall:
    """One call of the training criterion: logits, targets, images and the loss it returned."""
    logits: torch.Tensor
    targets: torch.Tensor
    images: torch.Tensor
    loss: torch.Tensor


@dataclass
class OptimizerStep:
    """What the descent step used: the lr of each group, the parameters before and after it and
    the gradients it stepped with (read after the step: an optimizer given a closure computes
    them inside `step`)."""
    lrs: list[float]
    before: list[torch.Tensor]
    grads: list[torch.Tensor | None] = field(default_factory=list)
    after: list[torch.Tensor] = field(default_factory=list)
    state_after: dict[str, torch.Tensor] = field(default_factory=dict)  # params and buffers

    @property
    def grad_norm(self) -> float:
        return torch.linalg.vector_norm(
            torch.stack([g.norm() for g in self.grads if g is not None])).item()


class LoopProbe:
    def __init__(self, run: Run, keep_states: bool = False) -> None:
        self.run = run
        self.forwards: list[Forward] = []
        self.losses: list[LossCall] = []
        self.steps: list[OptimizerStep] = []
        self.keep_states = keep_states
        self.descent = getattr(run.optimizer, "base_optimizer", run.optimizer)
        self.params = [p for g in self.descent.param_groups for p in g["params"]]
        run.model.register_forward_hook(self._forward)
        run.criterion.register_forward_hook(self._loss)
        self.descent.register_step_pre_hook(self._before_step)
        self.descent.register_step_post_hook(self._after_step)

    def _forward(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if module.training:
            images = args[0]
            self.forwards.append(Forward(
                images.detach().clone(), output.detach().clone(),
                images.is_contiguous(memory_format=torch.channels_last)
                and not images.is_contiguous()))

    def _loss(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        logits, targets, images = args
        self.losses.append(LossCall(logits.detach().clone(), targets.detach().clone(),
                                    images.detach().clone(), output.detach().clone()))

    def _before_step(self, optimizer, args, kwargs) -> None:
        self.steps.append(OptimizerStep(
            lrs=[g["lr"] for g in optimizer.param_groups],
            before=[p.detach().clone() for p in self.params]))

    def _after_step(self, optimizer, args, kwargs) -> None:
        step = self.steps[-1]
        step.grads = [None if p.grad is None else p.grad.detach().clone() for p in self.params]
        step.after = [p.detach().clone() for p in self.params]
        if self.keep_states:
            step.state_after = {k: v.detach().clone()
                                for k, v in self.run.model.state_dict().items()}


def probed_fit(folder: Path, overrides: list[str], keep_states: bool = False,
               prepare: Callable[[Run], None] | None = None) -> tuple[Run, LoopProbe, Summary]:
    """Train TINY + `overrides` in `folder` through `train.fit`, watched by a LoopProbe;
    `prepare(run)` may attach further hooks first."""
    run = build_run(compose(TINY + overrides), overrides)
    probe = LoopProbe(run, keep_states)
    if prepare is not None:
        prepare(run)
    summary = fit(run, RunFolder(folder))
    return run, probe, summary


def normalised(run: Run, images: torch.Tensor) -> torch.Tensor:
    """The data's definition of a normalised image: (x / 255 - mean) / std per channel."""
    mean = torch.tensor(run.data.mean).view(1, -1, 1, 1)
    std = torch.tensor(run.data.std).view(1, -1, 1, 1)
    return (images.float() / 255 - mean) / std


def stored_train_images(run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split as the model would see it without augmentation, and its labels."""
    return normalised(run, run.data.train.images), run.data.train.labels


def evaluate_by_hand(model: nn.Module, run: Run) -> tuple[float, float]:
    """Plain cross-entropy and accuracy (%) of `model` on the whole test split."""
    model.eval()
    with torch.no_grad():
        logits = model(normalised(run, run.data.test.images))
    labels = run.data.test.labels
    loss = nn.functional.cross_entropy(logits, labels).item()
    return loss, 100 * (logits.argmax(1) == labels).float().mean().item()
