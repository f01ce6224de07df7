"""RICAP, random image cropping and patching (Takahashi et al., ACML 2018 / IEEE TCSVT 2019,
"Data Augmentation using Random Image Cropping and Patching for Deep CNNs",
https://arxiv.org/abs/1811.09030).

Per batch, a boundary (w, h) with w = round(W * Beta(beta, beta)) and h likewise splits the image
into four regions of sizes (w, h), (W - w, h), (w, H - h), (W - w, H - h) (width, height; top-left,
top-right, bottom-left, bottom-right). Region k of image b is a crop of that size, at a random
position, of image `perm_k[b]` of the batch, for four independent permutations. The target is the
four partners' targets weighted by their regions' areas / (W * H). Paper default: beta = 0.3.

The official code draws one crop position per region for the whole batch; here each image draws
its own (the same distribution per image, more variety per batch, and free with a gather).
"""
from __future__ import annotations

import torch

from . import BatchAugment
from .mixup import sample_beta

__all__ = ["RICAP", "ricap"]


def _region_sizes(w: torch.Tensor, h: torch.Tensor, height: int,
                  width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Heights and widths `(4,)` of the regions top-left, top-right, bottom-left, bottom-right."""
    heights = torch.stack([h, h, height - h, height - h])
    widths = torch.stack([w, width - w, w, width - w])
    return heights, widths


def ricap(images: torch.Tensor, targets: torch.Tensor, perms: torch.Tensor, w: torch.Tensor,
          h: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stitch four crops per image, 2 x 2, by one gather.

    Args:
        images, targets: the batch, `(B, C, H, W)` and `(B, num_classes)`.
        perms: `(4, B)`: region k of image b comes from image `perms[k, b]`.
        w, h: 0-d integer tensors, the width of the left regions and height of the top ones.
        tops, lefts: `(B, 4)`: the top-left corner, in the source image, of each region's crop;
            a crop must fit (`0 <= tops[:, k] <= H - height_k`, likewise `lefts`).
    """
    batch, channels, height, width = images.shape
    rows = torch.arange(height, device=images.device).view(height, 1)
    cols = torch.arange(width, device=images.device).view(1, width)
    below, right = rows >= h, cols >= w
    region = 2 * below + right                                 # (H, W): 0..3 per output pixel
    src_b = perms.t()[:, region]                               # (B, H, W)
    src_y = rows - h * below + tops[:, region]                 # (B, H, W)
    src_x = cols - w * right + lefts[:, region]                # (B, H, W)
    c = torch.arange(channels, device=images.device).view(1, channels, 1, 1)
    images = images[src_b.unsqueeze(1), c, src_y.unsqueeze(1), src_x.unsqueeze(1)]
    heights, widths = _region_sizes(w, h, height, width)
    areas = (heights * widths).to(targets.dtype) / (height * width)
    return images, torch.einsum("k,kbn->bn", areas, targets[perms])


class RICAP(BatchAugment):
    """Random image cropping and patching: four crops from four permutations, stitched 2 x 2.

    Args:
        beta: concentration of the symmetric Beta distribution of the boundary position.
    """

    stage = "mix"

    def __init__(self, beta: float = 0.3) -> None:
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        self.beta = float(beta)

    def make_params(self, images: torch.Tensor, generator: torch.Generator
                    ) -> tuple[torch.Tensor, ...]:
        """Four permutations `(4, B)`, the boundary `w, h` (0-d) and per-image crop corners
        `(B, 4)`, uniform over the positions where each crop fits."""
        batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
        device = images.device
        perms = torch.stack([torch.randperm(batch, device=device, generator=generator)
                             for _ in range(4)])
        w = (width * sample_beta(self.beta, device)).round().long()
        h = (height * sample_beta(self.beta, device)).round().long()
        heights, widths = _region_sizes(w, h, height, width)
        tops = torch.rand(batch, 4, device=device, generator=generator) * (height - heights + 1)
        lefts = torch.rand(batch, 4, device=device, generator=generator) * (width - widths + 1)
        return perms, w, h, tops.long(), lefts.long()

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return ricap(images, targets, *self.make_params(images, generator))
