"""The trick interface: a few hooks the training loop calls, each at its one place.

A trick implements only the hooks it needs; the loop knows no trick by name, so any list of
tricks composes (`trick=[sam,label_smooth,ema]`). Hooks, in the order a run meets them:

    setup_model(model)                  once, after the model is built (weight init)
    wrap_criterion(criterion, model)    once: the training loss (label smoothing, distillation)
    wrap_optimizer(optimizer, model)    once, before the scheduler is built (SAM)
    after_backward(model)               every backward pass, before the optimizer uses the
                                        gradients (gradient clipping; twice per SAM step)
    after_step(model)                   every optimizer step (weight averaging)
    eval_model()                        the model to evaluate and report, if not the trained one
    state_dict() / load_state_dict()    what a checkpoint must keep to resume

`order` decides the wrapping order (smaller first): label smoothing changes the loss that
distillation then mixes with the teacher's.
"""
from __future__ import annotations

from typing import Any, Iterable

from torch import nn
from torch.optim import Optimizer

__all__ = ["Trick", "Tricks"]


class Trick:
    order: int = 50

    def setup_model(self, model: nn.Module) -> None:
        pass

    def wrap_criterion(self, criterion: nn.Module, model: nn.Module) -> nn.Module:
        return criterion

    def wrap_optimizer(self, optimizer: Optimizer, model: nn.Module) -> Optimizer:
        return optimizer

    def after_backward(self, model: nn.Module) -> None:
        pass

    def after_step(self, model: nn.Module) -> None:
        pass

    def eval_model(self) -> nn.Module | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items()
                           if not k.startswith("_") and isinstance(v, (int, float, str, bool)))
        return f"{type(self).__name__}({fields})"


class Tricks:
    """The run's tricks in hook order, dispatching each hook to all of them."""

    def __init__(self, tricks: Iterable[Trick]) -> None:
        self.tricks = sorted(tricks, key=lambda t: t.order)

    def setup_model(self, model: nn.Module) -> None:
        for trick in self.tricks:
            trick.setup_model(model)

    def wrap_criterion(self, criterion: nn.Module, model: nn.Module) -> nn.Module:
        for trick in self.tricks:
            criterion = trick.wrap_criterion(criterion, model)
        return criterion

    def wrap_optimizer(self, optimizer: Optimizer, model: nn.Module) -> Optimizer:
        for trick in self.tricks:
            optimizer = trick.wrap_optimizer(optimizer, model)
        return optimizer

    def after_backward(self, model: nn.Module) -> None:
        for trick in self.tricks:
            trick.after_backward(model)

    def after_step(self, model: nn.Module) -> None:
        for trick in self.tricks:
            trick.after_step(model)

    def eval_model(self) -> nn.Module | None:
        models = [m for m in (t.eval_model() for t in self.tricks) if m is not None]
        return models[-1] if models else None

    def state_dict(self) -> dict[str, Any]:
        return {type(t).__name__: t.state_dict() for t in self.tricks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for trick in self.tricks:
            trick.load_state_dict(state.get(type(trick).__name__, {}))

    def __repr__(self) -> str:
        return repr(self.tricks)
