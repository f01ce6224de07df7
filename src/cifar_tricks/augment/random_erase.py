"""Random Erasing (Zhong et al., AAAI 2020, "Random Erasing Data Augmentation",
https://arxiv.org/abs/1708.04896).

Each image is erased with probability `p`: a box whose area is a uniform fraction of the image in
`scale` and whose aspect ratio (height / width) is log-uniform in `ratio`, placed uniformly where
it fits, and filled with random normal values per pixel (after normalisation) or a constant.
Paper defaults: p = 0.5, scale = (0.02, 0.4), ratio = (0.3, 1/0.3), random values.

The box is drawn as in torchvision: up to `attempts` candidates, the first one that fits inside
the image is used, and an image with none that fits is left as it is. Here all candidates of all
images are drawn at once.

The seed's variant (`aug=[random_erase_seed]`): its code filled the box with black, pixel value 0
before normalisation (`value="black"`, which needs the normalisation's `mean` and `std`: the fill
is (0 - mean_c) / std_c in channel c), and drew the aspect ratio uniformly in [r, 1/r]
(`aspect="uniform"`). It also erased with probability 1 - p, the same as p at its 0.5.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from . import BatchAugment
from .cutout import box_mask

__all__ = ["RandomErasing", "erase"]

ASPECTS = ("log_uniform", "uniform")


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
        ratio: range of the box aspect ratio (height / width).
        value: "random" (a standard normal value per pixel and channel), "black" (every erased
            pixel becomes a black pixel after normalisation: (0 - mean_c) / std_c in channel c;
            needs `mean` and `std`), or a constant fill.
        attempts: candidate boxes per image; the first that fits inside the image is used.
        aspect: how the aspect ratio is drawn in `ratio`: "log_uniform" (Zhong et al., and
            torchvision: log r uniform) or "uniform" (r uniform, the seed's code).
        mean, std: the per-channel normalisation statistics in [0, 1] units (the data's `mean`
            and `std`); used only by `value="black"`.
    """

    stage = "erase"

    def __init__(self, p: float = 0.5, scale: Sequence[float] = (0.02, 0.4),
                 ratio: Sequence[float] = (0.3, 1 / 0.3), value: float | str = "random",
                 attempts: int = 10, aspect: str = "log_uniform",
                 mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be [low, high] with "
                             f"0 < low <= high <= 1, got {list(scale)}")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be [low, high] with "
                             f"0 < low <= high, got {list(ratio)}")
        if isinstance(value, str) and value not in ("random", "black"):
            raise ValueError(f"value must be 'random', 'black' or a number, got {value!r}")
        if attempts < 1:
            raise ValueError(f"attempts must be positive, got {attempts}")
        if aspect not in ASPECTS:
            raise ValueError(f"aspect must be one of {list(ASPECTS)}, got {aspect!r}")
        mean = None if mean is None else tuple(float(m) for m in mean)
        std = None if std is None else tuple(float(s) for s in std)
        if value == "black" and mean is None:
            raise ValueError("mean must be given (the normalisation's per-channel mean, with "
                             "std) when value is 'black': the fill is (0 - mean) / std")
        if value == "black" and std is None:
            raise ValueError("std must be given (the normalisation's per-channel std, with "
                             "mean) when value is 'black': the fill is (0 - mean) / std")
        if mean is not None and not mean:
            raise ValueError("mean must have one value per channel, got none")
        if std is not None and (not std or min(std) <= 0):
            raise ValueError(f"std must be positive values, one per channel, got {list(std)}")
        if mean is not None and std is not None and len(mean) != len(std):
            raise ValueError(f"std must have as many values as mean ({len(mean)}), "
                             f"got {len(std)}")
        self.p, self.scale, self.ratio, self.attempts = float(p), scale, ratio, int(attempts)
        self.value = value if isinstance(value, str) else float(value)
        self.aspect, self.mean, self.std = aspect, mean, std

    def make_params(self, images: torch.Tensor, generator: torch.Generator
                    ) -> tuple[torch.Tensor, ...]:
        """Per-image boxes `(top, left, height, width)`, each `(B,)` (height and width 0 where the
        image is not erased), and the fill."""
        batch, img_h, img_w = images.shape[0], images.shape[-2], images.shape[-1]
        device, tries = images.device, (images.shape[0], self.attempts)
        area = torch.empty(tries, device=device).uniform_(*self.scale, generator=generator)
        area = area * (img_h * img_w)
        if self.aspect == "uniform":
            aspect = torch.empty(tries, device=device).uniform_(*self.ratio, generator=generator)
        else:
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
        elif self.value == "black":
            fill = self.black(images)
        else:
            fill = torch.full((), self.value, device=device, dtype=images.dtype)
        return top, left, height, width, fill

    def black(self, images: torch.Tensor) -> torch.Tensor:
        """A black pixel after normalisation, (0 - mean_c) / std_c, shaped (C, 1, 1)."""
        assert self.mean is not None and self.std is not None
        if len(self.mean) != images.shape[-3]:
            raise ValueError(f"mean must have one value per image channel "
                             f"({images.shape[-3]}), got {len(self.mean)}")
        mean = torch.tensor(self.mean, device=images.device, dtype=torch.float32)
        std = torch.tensor(self.std, device=images.device, dtype=torch.float32)
        return (-mean / std).to(images.dtype).view(-1, 1, 1)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return erase(images, *self.make_params(images, generator)), targets
