"""Cutout (DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural Networks with
Cutout", https://arxiv.org/abs/1708.04552).

One square hole per image: its centre is uniform over the image (drawn per image), the square is
clipped at the border, and it is filled with 0 after normalisation, i.e. with the mean pixel.
Defaults as in the paper: size 16 on CIFAR-10 (8 on CIFAR-100), applied to every image.
"""
from __future__ import annotations

import torch

from . import BatchAugment

__all__ = ["Cutout", "box_mask", "cutout"]


def box_mask(top: torch.Tensor, left: torch.Tensor, bottom: torch.Tensor, right: torch.Tensor,
             height: int, width: int) -> torch.Tensor:
    """Boolean mask `(B, 1, H, W)` (or `(1, 1, H, W)` for 0-d bounds) of the half-open boxes
    `[top, bottom) x [left, right)`, which may reach past the border: the mask is clipped.

    Built by comparing `arange` grids with the bounds, so nothing is read back to the host.
    """
    rows = torch.arange(height, device=top.device).view(1, 1, height, 1)
    cols = torch.arange(width, device=top.device).view(1, 1, 1, width)
    top, left, bottom, right = (t.reshape(-1, 1, 1, 1) for t in (top, left, bottom, right))
    return (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)


def cutout(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Zero the `size x size` square at (`top`, `left`) (per image, `(B,)`) of each image."""
    height, width = images.shape[-2:]
    return images.masked_fill(box_mask(top, left, top + size, left + size, height, width), 0)


class Cutout(BatchAugment):
    """Zero one `size x size` square per image, centred uniformly over the image.

    Args:
        size: side of the square in pixels (16 for CIFAR-10, 8 is common for CIFAR-100).
    """

    stage = "erase"

    def __init__(self, size: int = 16) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive whole number of pixels, got {size!r}")
        self.size = size

    def check_image_size(self, size: int) -> None:
        if self.size > size:
            raise ValueError(f"size={self.size} is larger than the {size}x{size} images: every "
                             f"image would be blanked; use at most {size} (16 is the paper's "
                             f"for CIFAR)")

    def make_params(self, images: torch.Tensor,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image top-left corners `(B,)`, from centres uniform over the image."""
        batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
        centre_y = torch.randint(height, (batch,), device=images.device, generator=generator)
        centre_x = torch.randint(width, (batch,), device=images.device, generator=generator)
        return centre_y - self.size // 2, centre_x - self.size // 2

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return cutout(images, *self.make_params(images, generator), self.size), targets
