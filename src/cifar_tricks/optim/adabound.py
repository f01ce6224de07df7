"""AdaBound and AdaBoundW (Luo et al. 2019, "Adaptive Gradient Methods with Dynamic Bound of
Learning Rate", ICLR).

Adam whose per-element step size lr / (sqrt(v_t) + eps) is clipped into [eta_l(t), eta_u(t)],

    eta_l(t) = final_lr * (1 - 1 / (gamma * t + 1)),   eta_u(t) = final_lr * (1 + 1 / (gamma * t)),

two bounds that start at 0 and infinity (Adam) and both converge to `final_lr` (SGD), so the method
moves smoothly from Adam to SGD. This follows the authors' reference implementation (the
`adabound` package, github.com/Luolc/AdaBound), including `final_lr` scaled by lr / base_lr so that
a learning-rate schedule moves the bounds too, and the AMSBound variant (`amsbound=True`).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT

__all__ = ["AdaBound", "AdaBoundW", "step_size_bounds"]


def step_size_bounds(final_lr: float, gamma: float, step: int) -> tuple[float, float]:
    """The paper's bounds (eta_l, eta_u) on the per-element step size at step `step` >= 1."""
    return final_lr * (1 - 1 / (gamma * step + 1)), final_lr * (1 + 1 / (gamma * step))


class AdaBound(Optimizer):
    """AdaBound (Luo et al. 2019) with L2 weight decay: `weight_decay * p` is added to the gradient,
    as in the reference implementation and the paper's CIFAR experiments (wd 5e-4).

    Args:
        lr: Adam's step size, and the reference `base_lr` against which `final_lr` is scaled.
        final_lr: the SGD step size both bounds converge to (at the initial lr).
        gamma: convergence speed of the bounds; they are within ~1/(gamma*t) of final_lr.
        amsbound: keep the running maximum of the second moment (AMSGrad-style).
    """

    # AdaBoundW flips this: decay the weights directly instead of through the gradient.
    decoupled_weight_decay = False

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 final_lr: float = 0.1, gamma: float = 1e-3, eps: float = 1e-8,
                 weight_decay: float = 0.0, amsbound: bool = False) -> None:
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"Invalid beta parameters: {betas}")
        if final_lr < 0:
            raise ValueError(f"Invalid final learning rate: {final_lr}")
        if not 0 <= gamma < 1:
            raise ValueError(f"Invalid gamma parameter: {gamma}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), final_lr=final_lr, gamma=gamma, eps=eps,
                        weight_decay=weight_decay, amsbound=amsbound)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Remember each group's lr at creation as `base_lr`. It lives in the group (the reference
        keeps a separate list) so that it is saved with `state_dict` and a resumed run scales
        `final_lr` against the same lr as the original one."""
        param_group.setdefault("base_lr", param_group.get("lr", self.defaults["lr"]))
        super().add_param_group(param_group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsbound", False)
            group.setdefault("base_lr", group["lr"])

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter that has a gradient; `closure` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # A scheduler changes `lr` only; moving final_lr (and the decoupled decay) with it
            # by the same factor is the reference's way to let schedules act on the SGD phase.
            lr_scale = group["lr"] / group["base_lr"] if group["base_lr"] > 0 else 0.0
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group, lr_scale)
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any], lr_scale: float) -> None:
        grad = p.grad
        if grad.is_sparse:
            raise RuntimeError("AdaBound does not support sparse gradients")
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["amsbound"]:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        step = state["step"]
        beta1, beta2 = group["betas"]
        weight_decay = group["weight_decay"]
        if weight_decay and not self.decoupled_weight_decay:
            grad = grad.add(p, alpha=weight_decay)  # L2 penalty: part of the gradient

        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if group["amsbound"]:
            torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            denom = state["max_exp_avg_sq"].sqrt().add_(group["eps"])
        else:
            denom = exp_avg_sq.sqrt().add_(group["eps"])

        # Adam's bias-corrected step size, per element, clipped into the dynamic bounds.
        adam_step = group["lr"] * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
        lower, upper = step_size_bounds(group["final_lr"] * lr_scale, group["gamma"], step)
        step_size = torch.full_like(denom, adam_step).div_(denom).clamp_(lower, upper)

        if weight_decay and self.decoupled_weight_decay:
            # p <- p - wd * p - update, with the decay taken from p before the update, as the
            # reference does; scaled by the schedule factor (Loshchilov & Hutter's eta_t).
            p.mul_(1 - weight_decay * lr_scale)
        p.sub_(step_size.mul_(exp_avg))


class AdaBoundW(AdaBound):
    """AdaBound (Luo et al. 2019) with decoupled weight decay (Loshchilov & Hutter 2019,
    "Decoupled Weight Decay Regularization"), as the reference `AdaBoundW`.

    Each step shrinks the weights by `weight_decay * p`, independently of the gradient statistics,
    times lr / base_lr: at the initial lr this is exactly the reference's `p -= weight_decay * p`,
    and a schedule anneals the decay together with the update, as in Loshchilov & Hutter's
    eta_t (the reference keeps the decay constant while the schedule drives the update to zero).
    Note the decay is not multiplied by lr itself, unlike torch.optim.AdamW.
    """

    decoupled_weight_decay = True
