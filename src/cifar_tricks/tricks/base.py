"""The trick interface: a few hooks the training loop calls, each at its one place.

A trick implements only the hooks it needs; the loop knows no trick by name, so any list of
tricks composes (`trick=[sam,label_smooth,ema]`). Hooks, in the order a run meets them (the
shape of Lightning's `Callback`, kept few):

    setup_data(model, data)             once, after the data and the model are built and
                                        before setup_model (build.build_run): the training
                                        data (`ImageData`: uint8 images on the device, mean,
                                        std), for data-dependent initialisation (whiten_init)
    setup_model(model)                  once, after the model is built
    wrap_criterion(criterion, model)    once: the training loss
    wrap_optimizer(optimizer, model)    once, before the scheduler is built
    on_epoch_start(model, state)        every epoch, before its first step
    after_backward(model, state)        every backward pass (twice per SAM step)
    after_step(model, state)            every optimizer step
    on_epoch_end(model, state, row)     every epoch, after evaluation, with its metrics row
    on_fit_end(model, state)            once, when training stops (completed or diverged)
    eval_model()                        the model to evaluate and report, if not the trained one
    state_dict() / load_state_dict()    what a checkpoint must keep to resume

`state` is the `TrainState`: the step hooks can see where training stands ("from epoch N",
"for the last k epochs", a schedule over steps).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Iterable, Iterator, Mapping

from torch import nn
from torch.optim import Optimizer

from ..data import ImageData
from ..errors import ConfigError

__all__ = ["Stage", "TrainState", "Trick", "Tricks"]


class Stage(IntEnum):
    """Where a trick sits in the hook order (earlier stages wrap and see things first); tricks
    of one stage keep the order of the `trick` list."""

    init_weights = 0  # rewrites the weights, before anything copies them (kaiming_init)
    base_loss = 1  # replaces the plain cross-entropy (label_smooth)
    wrap_loss = 2  # wraps the loss it is given (kd mixes the smoothed loss with the teacher's)
    optimize = 3  # wraps the optimizer or acts on gradients (sam, grad_clip)
    average = 4  # copies the weights after they were initialised (ema)


@dataclass
class TrainState:
    """Where training stands. `epoch` counts from 1; `step` counts optimizer steps over the
    whole run (a resumed run continues the count)."""

    epochs: int
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def progress(self) -> float:
        """The share of the run's optimizer steps done, in [0, 1]."""
        return self.step / max(self.total_steps, 1)


class Trick:
    """Base of the tricks: every hook does nothing. Subclasses set `stage` and override the
    hooks they need."""

    stage: Stage = Stage.optimize
    # what the trick does that no second trick may also do (two SAMs would nest, two inits
    # overwrite each other); None: composes with anything
    exclusive: str | None = None

    def setup_data(self, model: nn.Module, data: ImageData) -> None:
        """See the training data before `setup_model`: `data.train.images` are uint8 (N, C, H, W)
        on the model's device, normalised for the model as (x / 255 - data.mean) / data.std."""

    def setup_model(self, model: nn.Module) -> None:
        """Change or copy the freshly built model (weight init, the EMA copy)."""

    def wrap_criterion(self, criterion: nn.Module, model: nn.Module) -> nn.Module:
        """Return the training loss `criterion(logits, targets, images)` to use instead."""
        return criterion

    def wrap_optimizer(self, optimizer: Optimizer, model: nn.Module) -> Optimizer:
        """Return the optimizer to use instead; the scheduler is built on it."""
        return optimizer

    def on_epoch_start(self, model: nn.Module, state: TrainState) -> None:
        """Called before the first step of epoch `state.epoch`."""

    def after_backward(self, model: nn.Module, state: TrainState) -> None:
        """Called after every backward pass, before the optimizer reads the gradients."""

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        """Called after every optimizer step (`state.step` already counts it)."""

    def on_epoch_end(self, model: nn.Module, state: TrainState, row: dict[str, Any]) -> None:
        """Called after evaluation with the epoch's metrics row; keys added to it are logged."""

    def on_fit_end(self, model: nn.Module, state: TrainState) -> None:
        """Called once when training stops, completed or diverged."""

    def eval_model(self) -> nn.Module | None:
        """The model to evaluate and report instead of the trained one (at most one trick)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold for this trick to resume exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`'s output."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items()
                           if not k.startswith("_") and isinstance(v, (int, float, str, bool)))
        return f"{type(self).__name__}({fields})"


def _offers_eval_model(trick: Trick) -> bool:
    return type(trick).eval_model is not Trick.eval_model


class Tricks:
    """The run's tricks in stage order, each under its config entry name (`sam`, `ema`, ...),
    dispatching every hook to all of them."""

    def __init__(self, tricks: Mapping[str, Trick] | Iterable[Trick] = ()) -> None:
        named = dict(tricks) if isinstance(tricks, Mapping) else \
            {type(t).__name__: t for t in tricks}
        self.named = dict(sorted(named.items(), key=lambda item: item[1].stage))  # stable sort
        averagers = [name for name, t in self.named.items() if _offers_eval_model(t)]
        if len(averagers) > 1:
            raise ConfigError(f"trick={list(self.named)}: {' and '.join(averagers)} each offer "
                              f"the model to evaluate; keep one of them")
        roles: dict[str, list[str]] = {}
        for name, trick in self.named.items():
            if trick.exclusive is not None:
                roles.setdefault(trick.exclusive, []).append(name)
        for role, names in roles.items():
            if len(names) > 1:
                raise ConfigError(f"trick={list(self.named)}: {' and '.join(names)} exclude each "
                                  f"other (both are {role}); keep one of them")

    @property
    def tricks(self) -> list[Trick]:
        return list(self.named.values())

    def __iter__(self) -> Iterator[Trick]:
        return iter(self.named.values())

    def __len__(self) -> int:
        return len(self.named)

    def setup_data(self, model: nn.Module, data: ImageData) -> None:
        for trick in self:
            trick.setup_data(model, data)

    def setup_model(self, model: nn.Module) -> None:
        for trick in self:
            trick.setup_model(model)

    def wrap_criterion(self, criterion: nn.Module, model: nn.Module) -> nn.Module:
        for trick in self:
            criterion = trick.wrap_criterion(criterion, model)
        return criterion

    def wrap_optimizer(self, optimizer: Optimizer, model: nn.Module) -> Optimizer:
        for trick in self:
            optimizer = trick.wrap_optimizer(optimizer, model)
        return optimizer

    def on_epoch_start(self, model: nn.Module, state: TrainState) -> None:
        for trick in self:
            trick.on_epoch_start(model, state)

    def after_backward(self, model: nn.Module, state: TrainState) -> None:
        for trick in self:
            trick.after_backward(model, state)

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        for trick in self:
            trick.after_step(model, state)

    def on_epoch_end(self, model: nn.Module, state: TrainState, row: dict[str, Any]) -> None:
        for trick in self:
            trick.on_epoch_end(model, state, row)

    def on_fit_end(self, model: nn.Module, state: TrainState) -> None:
        for trick in self:
            trick.on_fit_end(model, state)

    @property
    def eval_model_name(self) -> str | None:
        """The config name of the trick whose model is evaluated (`ema`), or None."""
        return next((name for name, t in self.named.items() if _offers_eval_model(t)), None)

    def eval_model(self) -> nn.Module | None:
        """The one trick's evaluation model (EMA), or None: the trained model is evaluated."""
        for trick in self:
            if (model := trick.eval_model()) is not None:
                return model
        return None

    def state_dict(self) -> dict[str, Any]:
        return {name: trick.state_dict() for name, trick in self.named.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore each trick from its entry; checkpoints written before entries were keyed by
        config name keyed them by class name (`EMA`, `SharpnessAware`), which is read too."""
        for name, trick in self.named.items():
            if name in state:
                trick.load_state_dict(state[name])
            elif type(trick).__name__ in state:
                trick.load_state_dict(state[type(trick).__name__])

    def __repr__(self) -> str:
        return repr(self.tricks)
