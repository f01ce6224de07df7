"""SAM and ASAM as tricks: wrap the configured optimizer so each step first climbs to the
sharpest nearby weights, then descends with the gradient taken there (Foret et al. 2021;
Kwon et al. 2021 for the adaptive, scale-invariant neighbourhood)."""
from __future__ import annotations

from torch import nn
from torch.optim import Optimizer

from ..optim.sam import SAM, check_neighbourhood
from .base import Stage, Trick

__all__ = ["SharpnessAware"]


class SharpnessAware(Trick):
    """`trick=[sam]` (rho 0.05) or `trick=[asam]` (adaptive, rho 0.5, eta 0.01: the neighbourhood
    scaled by |w| + eta on weight tensors, 1 on biases, as SamsungLabs/ASAM does).

    The scheduler is built on the wrapper, whose param groups are the base optimizer's, so the
    schedule drives the base lr; BatchNorm statistics update in the first forward only.
    """

    stage = Stage.optimize
    exclusive = "sharpness-aware minimisation"

    def __init__(self, rho: float = 0.05, adaptive: bool = False, eta: float = 0.0) -> None:
        check_neighbourhood(rho, eta)  # at build time, so the error names trick.sam.rho
        self.rho, self.adaptive, self.eta = rho, adaptive, eta

    def wrap_optimizer(self, optimizer: Optimizer, model: nn.Module) -> Optimizer:
        return SAM(None, optimizer, rho=self.rho, adaptive=self.adaptive, eta=self.eta,
                   model=model)
