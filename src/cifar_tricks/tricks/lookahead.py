"""Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back"), in the form
of airbench (Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU"; `LookaheadState`
in airbench94.py).

A slow copy phi of the weights is kept beside the trained (fast) weights theta. Every `k`
optimizer steps, at step t (counted over the run, t = k, 2k, ...):

    phi   <- lerp(phi, theta, 1 - decay_t) = decay_t * phi + (1 - decay_t) * theta
    theta <- phi

and after the run's last step T, once more with decay 1 (phi unchanged, theta <- phi), so the
run ends on the slow weights (Lookahead's Algorithm 1 returns phi). The decay follows

    decay_t = decay * (t / T) ** exponent

airbench's `alpha_schedule = 0.95**5 * (arange(T + 1) / T)**3`: decay 0.95**5 (0.95 per step
over k = 5 steps), exponent 3, so the syncs copy the fast weights early on (decay ~ 0) and pull
them back ever harder towards the end. `exponent=0` is the classic Lookahead of the paper, a
constant decay = 1 - alpha (alpha = 0.5, k = 5 in its experiments).

As airbench does over `net.state_dict()`, every floating-point entry of the model's state is
averaged: the parameters and the BatchNorm running statistics (the integer
`num_batches_tracked` is left alone; airbench's test is `dtype in (half, float)`, the dtypes
its model has). The optimizer's momentum buffers are kept through a sync, as airbench keeps them.
The decay is computed in Python floats (airbench: a float32 tensor), a difference of ~1e-8.

Composition (base.Stage): Lookahead sits at `Stage.optimize`, being part of the optimization
(the paper wraps the inner optimizer): its copy is taken in `setup_model` after the weight-init
tricks ran, and its `after_step` runs before the averaging stage, so an EMA
(`trick=[lookahead,ema]`) averages the weights training continues from, after the sync.
`whiten_init` shares the stage, so the list order decides: `trick=[whiten_init,lookahead]`
copies the whitened layer; `[lookahead,whiten_init]` copies it before, as airbench does (it
builds LookaheadState before init_whitening_conv), and the first sync then leaves the frozen
whitening weights off by decay_5 ~ 1e-6 of the difference, as in airbench. With SAM the sync
acts after each complete SAM step (both passes), i.e. Lookahead(SAM(SGD)). Under DDP the hook
runs on every rank with the same weights, step and schedule, so every rank does the same update
with no communication (BatchNorm statistics are broadcast from rank 0 by DDP at each forward, as
without Lookahead).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Stage, TrainState, Trick

__all__ = ["Lookahead", "lookahead_decay"]


def lookahead_decay(step: int, total_steps: int, decay: float, exponent: float) -> float:
    """The decay of the sync at `step` of `total_steps`: decay * (step / total_steps)**exponent
    (airbench's alpha_schedule[step] with decay 0.95**5, exponent 3)."""
    return decay * (step / max(total_steps, 1)) ** exponent


class Lookahead(Trick):
    """`trick=[lookahead]`: every `k` steps the slow weights move towards the fast ones by
    1 - decay_t and the fast weights restart from them; the run ends on the slow weights.

    Args:
        k: optimizer steps between syncs (the paper's k; airbench 5).
        decay: the largest decay, reached at the last step (airbench 0.95**5 = 0.77378...).
        exponent: decay_t = decay * (t / T)**exponent; 3 in airbench, 0 for a constant decay
            (classic Lookahead with alpha = 1 - decay).
    """

    stage = Stage.optimize
    exclusive = "lookahead"  # two slow copies would each reset the weights

    def __init__(self, k: int = 5, decay: float = 0.95 ** 5, exponent: float = 3.0) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a whole number of steps >= 1, got {k}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        if exponent < 0:
            raise ValueError(f"exponent must be >= 0 (0: a constant decay), got {exponent}")
        self.k, self.decay, self.exponent = k, decay, exponent
        self._slow: dict[str, torch.Tensor] = {}

    def setup_model(self, model: nn.Module) -> None:
        self._slow = {name: value.detach().clone() for name, value in model.state_dict().items()
                      if value.is_floating_point()}

    @torch.no_grad()
    def sync(self, model: nn.Module, decay: float) -> None:
        """phi <- lerp(phi, theta, 1 - decay); theta <- phi (airbench's LookaheadState.update)."""
        state = model.state_dict()
        slow = list(self._slow.values())
        fast = [state[name] for name in self._slow]
        torch._foreach_lerp_(slow, fast, 1.0 - decay)
        torch._foreach_copy_(fast, slow)

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        if state.step % self.k == 0:
            self.sync(model, lookahead_decay(state.step, state.total_steps, self.decay,
                                             self.exponent))
        if state.step >= state.total_steps:  # the run ends on the slow weights
            self.sync(model, 1.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._slow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            return
        if state.keys() != self._slow.keys():
            raise ValueError(f"the checkpoint's Lookahead slow weights have entries "
                             f"{sorted(state.keys() ^ self._slow.keys())[:5]} that do not match "
                             f"the model's")
        with torch.no_grad():
            for name, value in state.items():
                self._slow[name].copy_(value)
