"""Random Erasing (Zhong et al., AAAI 2020, "Random Erasing Data Augmentation",
https://arxiv.org/abs/1708.04896).

Each image is erased with probability `p`: a box whose area is a uniform fraction of the image in
`scale` and whose aspect ratio (height / width) is log-uniform in `ratio`, placed uniformly where
it fits, and filled with random normal values per pixel (after normalisation) or a constant.
Paper defaults: p = 0.5, scale = (0.02, 0.4), ratio = (0.3, 1/0.3), random values.

The box is drawn as in torchvision: up to `attempts` candidates, the first one that fits inside
the image is used, and an image with none that fits is left as it is. Here all candidates of all
images are drawn at once. (The seed erased with probability 1 - p and filled with black.)
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from . import BatchAugment
from .cutout import box_mask

__all__ = ["RandomErasing", "erase"]


def erase(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor,
          width: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Replace each image's box `[top, top + height) x [left, left + width)` (all `(B,)`; an
    empty box leaves the image as it is) with `fill`, a tensor broadcastable to `images`."""
    mask = box_mask(top, left, top + height, left + width, *images.shape[-2:])
    return torch.where(mask, fill.to(images.dtype), images)


class RandomErasing(BatchAugment):
    """Erase one random box per image with probability `p`.

    Args:
        p: probability that an image is erased.
        scale: range of the box area as a fraction of the image area.
        ratio: range of the box aspect ratio (height / width), sampled log-uniformly.
        value: "random" (a standard normal value per pixel and channel) or a constant fill.
        attempts: candidate boxes per image; the first that fits inside the image is used.
    """

    stage = "erase"

    def __init__(self, p: float = 0.5, scale: Sequence[float] = (0.02, 0.4),
                 ratio: Sequence[float] = (0.3, 1 / 0.3), value: float | str = "random",
                 attempts: int = 10) -> None:
        scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be [low, high] with "
                             f"0 < low <= high <= 1, got {list(scale)}")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be [low, high] with "
                             f"0 < low <= high, got {list(ratio)}")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"value must be 'random' or a number, got {value!r}")
        if attempts < 1:
            raise ValueError(f"attempts must be positive, got {attempts}")
        self.p, self.scale, self.ratio, self.attempts = float(p), scale, ratio, int(attempts)
        self.value = value if isinstance(value, str) else float(value)

    def make_params(self, images: torch.Tensor, generator: torch.Generator
                    ) -> tuple[torch.Tensor, ...]:
        """Per-image boxes `(top, left, height, width)`, each `(B,)` (height and width 0 where the
        image is not erased), and the fill."""
        batch, img_h, img_w = images.shape[0], images.shape[-2], images.shape[-1]
        device, tries = images.device, (images.shape[0], self.attempts)
        area = torch.empty(tries, device=device).uniform_(*self.scale, generator=generator)
        area = area * (img_h * img_w)
        log_ratio = torch.empty(tries, device=device).uniform_(
            math.log(self.ratio[0]), math.log(self.ratio[1]), generator=generator)
        aspect = log_ratio.exp()
        height = (area * aspect).sqrt().round().long()
        width = (area / aspect).sqrt().round().long()
        fits = (height < img_h) & (width < img_w)
        first = fits.int().argmax(1, keepdim=True)  # the first candidate that fits (0 if none)
        erased = (torch.rand(batch, device=device, generator=generator) < self.p) & fits.any(1)
        height = height.gather(1, first).squeeze(1) * erased
        width = width.gather(1, first).squeeze(1) * erased
        top = (torch.rand(batch, device=device, generator=generator) * (img_h - height + 1)).long()
        left = (torch.rand(batch, device=device, generator=generator) * (img_w - width + 1)).long()
        if self.value == "random":
            fill = torch.randn(images.shape, device=device, dtype=images.dtype, generator=generator)
        else:
            fill = torch.full((), self.value, device=device, dtype=images.dtype)
        return top, left, height, width, fill

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return erase(images, *self.make_params(images, generator)), targets
