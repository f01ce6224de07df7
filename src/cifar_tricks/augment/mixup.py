"""Mixup (Zhang et al., ICLR 2018, "mixup: Beyond Empirical Risk Minimization",
https://arxiv.org/abs/1710.09412).

One lambda ~ Beta(alpha, alpha) per batch; each image is mixed with its partner in a random
permutation of the batch, `lambda * x + (1 - lambda) * x[perm]`, and the targets likewise with
the same lambda. Paper default on CIFAR: alpha = 1 (lambda uniform in [0, 1]).
"""
from __future__ import annotations

import torch

from . import BatchAugment

__all__ = ["Mixup", "mixup", "sample_beta"]


def sample_beta(alpha: float, device: torch.device) -> torch.Tensor:
    """One draw of Beta(alpha, alpha) as a 0-d float tensor on `device`, without a host sync.

    torch has no `generator` argument for Beta or Gamma sampling, so this draw comes from the
    device's global RNG (which the run's checkpoint saves and restores), not from the loader's.
    """
    concentration = torch.full((), float(alpha), device=device)
    # validate_args=False: validation would read the concentration back to the host
    return torch.distributions.Beta(concentration, concentration, validate_args=False).sample()


def mixup(images: torch.Tensor, targets: torch.Tensor, perm: torch.Tensor,
          lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`lam * x + (1 - lam) * x[perm]` for the images and the targets alike (`lam` 0-d)."""
    images = torch.lerp(images[perm], images, lam.to(images.dtype))
    targets = torch.lerp(targets[perm], targets, lam.to(targets.dtype))
    return images, targets


class Mixup(BatchAugment):
    """Mix the batch with a permutation of itself, one Beta(alpha, alpha) weight per batch.

    Args:
        alpha: concentration of the symmetric Beta distribution of lambda (1 = uniform).
    """

    stage = "mix"

    def __init__(self, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.alpha = float(alpha)

    def make_params(self, images: torch.Tensor,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The partner permutation `(B,)` and lambda (0-d)."""
        perm = torch.randperm(images.shape[0], device=images.device, generator=generator)
        return perm, sample_beta(self.alpha, images.device)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return mixup(images, targets, *self.make_params(images, generator))
