"""CutMix (Yun et al., ICCV 2019, "CutMix: Regularization Strategy to Train Strong Classifiers
with Localizable Features", https://arxiv.org/abs/1905.04899).

With probability `prob` per batch: lambda ~ Beta(alpha, alpha), one box for the whole batch with
sides `sqrt(1 - lambda)` times the image's, centred uniformly and clipped at the border, is pasted
from a random permutation of the batch; lambda is then recomputed from the clipped box's exact
area and the targets are mixed with it. Defaults of the official CIFAR recipe: alpha = 1
(`--beta 1.0`), prob = 0.5 (`--cutmix_prob 0.5`), which the seed ignored.
"""
from __future__ import annotations

import torch

from . import BatchAugment
from .cutout import box_mask
from .mixup import sample_beta

__all__ = ["CutMix", "cutmix"]


def cutmix(images: torch.Tensor, targets: torch.Tensor, perm: torch.Tensor, top: torch.Tensor,
           left: torch.Tensor, bottom: torch.Tensor, right: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste the box `[top, bottom) x [left, right)` (0-d bounds, clipped to the image) of
    `images[perm]` into `images`; targets get weight 1 - (clipped box area / image area) and
    their partners the rest. An empty box leaves the batch as it is."""
    height, width = images.shape[-2:]
    mask = box_mask(top, left, bottom, right, height, width)
    lam = 1 - mask.sum() / (height * width)
    images = torch.where(mask, images[perm], images)
    return images, torch.lerp(targets[perm], targets, lam.to(targets.dtype))


class CutMix(BatchAugment):
    """Paste a random box from a permutation of the batch, with probability `prob` per batch.

    Args:
        alpha: concentration of the symmetric Beta distribution of lambda.
        prob: probability that a batch is mixed at all.
    """

    stage = "mix"

    def __init__(self, alpha: float = 1.0, prob: float = 0.5) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.alpha, self.prob = float(alpha), float(prob)

    def make_params(self, images: torch.Tensor, generator: torch.Generator
                    ) -> tuple[torch.Tensor, ...]:
        """The permutation `(B,)` and the box `(top, left, bottom, right)`, 0-d tensors and
        unclipped; a batch that is not mixed gets an empty box (no host-side branch)."""
        batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
        device = images.device
        perm = torch.randperm(batch, device=device, generator=generator)
        mixed = torch.rand((), device=device, generator=generator) < self.prob
        cut = (1 - sample_beta(self.alpha, device)).sqrt() * mixed
        cut_h, cut_w = (height * cut).round().long(), (width * cut).round().long()
        centre_y = torch.randint(height, (), device=device, generator=generator)
        centre_x = torch.randint(width, (), device=device, generator=generator)
        top, left = centre_y - cut_h // 2, centre_x - cut_w // 2
        return perm, top, left, top + cut_h, left + cut_w

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return cutmix(images, targets, *self.make_params(images, generator))
