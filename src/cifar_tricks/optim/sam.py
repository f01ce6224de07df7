"""Sharpness-Aware Minimization (Foret et al. 2021, "Sharpness-Aware Minimization for Efficiently
Improving Generalization", https://arxiv.org/abs/2010.01412) and its adaptive variant ASAM (Kwon et
al. 2021, "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning of Deep Neural
Networks", https://arxiv.org/abs/2102.11600).

SAM minimises the loss at the worst point of a rho-ball around the weights, approximated to first
order by one ascent step:

    e(w) = rho * g / ||g||_2,                g = grad L(w)
    w   <- base_step(w, grad L(w + e(w)))    (the base optimizer's update, gradient taken at w + e)

ASAM makes the ball scale-invariant with the element-wise operator T_w = |w| + eta:

    e(w) = rho * T_w^2 g / ||T_w g||_2       (ASAM's usual rho is 0.5, eta 0.01 on CIFAR)

As in the official implementation (SamsungLabs/ASAM, `asam.py`, `ASAM.ascent_step`), T_w = |w| +
eta applies only to the *weights*: parameters whose qualified name in `model.named_parameters()`
contains "weight" (conv, linear and normalisation weights). Every other parameter (biases,
positional embeddings, ...) gets T = 1, i.e. its entries of e(w) are rho * g / ||T g||. The norm
||T g|| runs over all of them together, scaled and unscaled entries alike (the official
`wgrad_norm`). A parameter SAM cannot name (no `model` given, or a parameter the model does not
hold) counts as a weight when it has more than one dimension (`p.ndim > 1`: conv / linear
kernels), which agrees with the name rule except on normalisation weights (1-d, named "weight").

The wrapper follows davda54/sam: it is an `Optimizer` whose `param_groups` *are* the base
optimizer's, so an lr scheduler built on the SAM object drives the base optimizer's lr, and it
keeps no state of its own across steps (checkpoints hold the base optimizer's state only).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

__all__ = ["SAM", "disable_running_stats", "enable_running_stats", "is_weight"]

# Attribute names the BN bypass stores on each BatchNorm module while the stats are frozen.
_MOMENTUM = "_sam_backup_momentum"
_TRACKED = "_sam_backup_num_batches_tracked"


def disable_running_stats(model: nn.Module) -> None:
    """Freeze the BatchNorm running statistics of `model` (davda54/sam's `bypass_bn`).

    The forward still normalises with the batch statistics (training mode); only the running
    averages stop moving: momentum 0 makes `running = (1 - 0) running + 0 batch`. The counter
    `num_batches_tracked` still increments in the forward, so it is saved here and restored by
    `enable_running_stats`: with `momentum=None` (cumulative average) it is the averaging weight.
    """
    for module in model.modules():
        if isinstance(module, _BatchNorm) and not hasattr(module, _MOMENTUM):
            setattr(module, _MOMENTUM, module.momentum)
            module.momentum = 0.0
            if module.num_batches_tracked is not None:
                setattr(module, _TRACKED, module.num_batches_tracked.clone())


def enable_running_stats(model: nn.Module) -> None:
    """Undo `disable_running_stats`: restore each BatchNorm's momentum and batch counter."""
    for module in model.modules():
        if isinstance(module, _BatchNorm) and hasattr(module, _MOMENTUM):
            module.momentum = getattr(module, _MOMENTUM)
            delattr(module, _MOMENTUM)
            if hasattr(module, _TRACKED):
                module.num_batches_tracked.copy_(getattr(module, _TRACKED))
                delattr(module, _TRACKED)


class SAM(Optimizer):
    """SAM / ASAM around a base optimizer; `step(closure)` runs the closure twice.

    Args:
        params: the parameters (or param groups) to optimise. When `base_optimizer` is already
            built they must be its parameters (or None).
        base_optimizer: the optimizer taking the descent step, either built (on `params`) or a
            factory called with the param groups, e.g. `functools.partial(SGD, lr=0.1)` (a Hydra
            `_partial_: true` config).
        rho: radius of the neighbourhood (0.05 for SAM on CIFAR; 0.5 is usual for ASAM).
        adaptive: ASAM's element-wise scaling by `|w| + eta`, applied (as in the official
            code) to weights only: parameters whose name in `model.named_parameters()` contains
            "weight"; the others get T = 1. Without `model` (or for a parameter the model does
            not hold) a parameter counts as a weight when `p.ndim > 1`.
        eta: ASAM's offset, so that zero weights still get perturbed.
        model: the model the closure runs. Its BatchNorm running statistics are frozen during
            the second forward, so they are updated once per step, at w, as without SAM; and its
            parameter names tell ASAM which parameters are weights.

    `rho`, `adaptive` and `eta` are per-group settings, so a param group may override them.
    The closure must run forward and backward without zeroing the gradients (the caller zeroes
    them before `step`) and return the loss; it may use autocast and clip the gradients.
    """

    # the loop runs the closure twice per step; under DDP only the last pass needs the
    # gradients of all processes (the ascent uses each process's own, as distributed SAM does)
    closure_passes = 2

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict] | None,
                 base_optimizer: Callable[..., Optimizer] | Optimizer, rho: float = 0.05,
                 adaptive: bool = False, eta: float = 0.0, model: nn.Module | None = None) -> None:
        check_neighbourhood(rho, eta)
        defaults = dict(rho=rho, adaptive=adaptive, eta=eta)
        if isinstance(base_optimizer, Optimizer):
            base = base_optimizer
            if params is not None:
                _check_same_params(params, base)
            # registers SAM's defaults in the base optimizer's own group dicts (shared below)
            super().__init__(base.param_groups, defaults)
        else:
            super().__init__(params, defaults)
            base = base_optimizer(self.param_groups)
        self.base_optimizer = base
        # One list of group dicts for both: the scheduler writes `lr` where the base step reads it.
        self.param_groups = base.param_groups
        # Schedulers inspect `defaults` (OneCycleLR looks for `momentum` / `betas` there).
        self.defaults.update(base.defaults)
        self.model = model

    # ------------------------------------------------------------------------ the two passes

    @torch.no_grad()
    def perturbation(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`(param, e_w)` for every parameter with a gradient, from the current gradients.

        One norm over all groups (the paper's ||g|| is over the whole weight vector); each
        group scales with its own rho / adaptive / eta. With `adaptive`, T_w = |w| + eta for
        weights (`is_weight`) and T = 1 for the other parameters. The norm stays on the device:
        no sync.
        """
        names = self._parameter_names() if any(g["adaptive"] for g in self.param_groups) else {}
        scaled: list[tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                adaptive = group["adaptive"] and is_weight(p, names.get(id(p)))
                t_w = p.abs().add_(group["eta"]) if adaptive else None
                scaled.append((group, p, p.grad if t_w is None else t_w * p.grad, t_w))
        if not scaled:
            return []
        # fp32 norms: a bf16 model's squared gradients would lose most of their precision
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(tg, dtype=torch.float32)
                         for _, p, tg, _ in scaled]))
        out = []
        for group, p, t_g, t_w in scaled:
            scale = group["rho"] / (norm + 1e-12)
            # e = rho T g / ||T g|| * T  (= rho T^2 g / ||T g||); T = 1 for plain SAM
            e_w = (t_g if t_w is None else t_g * t_w) * scale.to(p.dtype)
            out.append((p, e_w))
        return out

    def _parameter_names(self) -> dict[int, str]:
        """`id(param) -> qualified name` for the model's parameters (empty without a model)."""
        if self.model is None:
            return {}
        return {id(p): name for name, p in self.model.named_parameters()}

    @torch.no_grad()
    def step(self,  # type: ignore[override]
             closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """Ascend to w + e(w), take the gradient there, return to w, take the base step.

        Returns the loss of the first closure call (the loss at w, what a plain step reports).
        """
        if closure is None:
            raise RuntimeError("SAM needs a closure that runs forward and backward and returns "
                               "the loss: optimizer.step(closure)")
        with torch.enable_grad():
            loss = closure()
        saved = []
        for p, e_w in self.perturbation():
            # restore by copying, not by subtracting e_w: exact, and safe if e_w is not finite
            saved.append((p, p.detach().clone()))
            p.add_(e_w)
        self.zero_grad(set_to_none=True)
        if self.model is not None:
            disable_running_stats(self.model)
        try:
            with torch.enable_grad():
                closure()
        finally:
            if self.model is not None:
                enable_running_stats(self.model)
            for p, w in saved:
                p.copy_(w)
        self.base_optimizer.step()
        return loss

    # ------------------------------------------------------------------------ delegation

    def add_param_group(self, param_group: dict) -> None:
        if "base_optimizer" not in self.__dict__:  # during Optimizer.__init__
            super().add_param_group(param_group)
            return
        for name in ("rho", "adaptive", "eta"):
            param_group.setdefault(name, self.defaults[name])
        self.base_optimizer.add_param_group(param_group)  # appends to the shared list

    def state_dict(self) -> dict:
        """The base optimizer's state dict: SAM keeps nothing between steps."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        # load_state_dict replaces the base's group dicts: share the new ones again, and give
        # groups saved by a plain optimizer SAM's settings
        self.param_groups = self.base_optimizer.param_groups
        for group in self.param_groups:
            for name in ("rho", "adaptive", "eta"):
                group.setdefault(name, self.defaults[name])


def is_weight(param: torch.Tensor, name: str | None) -> bool:
    """Whether ASAM scales `param` by |w| + eta: the official rule, "weight" in its qualified
    name; for a parameter without a name (no model given), the fallback `param.ndim > 1`."""
    if name is not None:
        return "weight" in name
    return param.ndim > 1


def check_neighbourhood(rho: float, eta: float) -> None:
    """Refuse a negative radius `rho` or ASAM offset `eta` (ValueError naming the argument)."""
    if rho < 0:
        raise ValueError(f"rho (the neighbourhood radius) must be >= 0, got {rho}")
    if eta < 0:
        raise ValueError(f"eta (ASAM's offset) must be >= 0, got {eta}")


def _check_same_params(params: Iterable[torch.Tensor] | Iterable[dict], base: Optimizer) -> None:
    given: set[int] = set()
    for item in params:
        tensors = item["params"] if isinstance(item, dict) else [item]
        tensors = [tensors] if isinstance(tensors, torch.Tensor) else tensors
        given.update(id(t) for t in tensors)
    held = {id(p) for group in base.param_groups for p in group["params"]}
    if given != held:
        raise ValueError("SAM was given a built base optimizer and different params; pass "
                         "params=None (or the base optimizer's own parameters)")
