"""Test-time augmentation: a model wrapped so that its logits average those of a few views.

The definition followed is airbench's (Keller Jordan, github.com/KellerJordan/cifar10-airbench,
`infer` in airbench94_muon.py), which averages *logits*, not softmax probabilities:

    flip            (tta_level=1)  0.5 f(x) + 0.5 f(mirror(x))
    flip_translate  (tta_level=2)  0.5 flip(x) + 0.25 flip(shift(x, -1)) + 0.25 flip(shift(x, +1))

where `shift(x, -1)` / `shift(x, +1)` move the image by one pixel up-left / down-right, filling the
border by reflection (`F.pad(x, (1,) * 4, "reflect")` cropped at its two corners): six views in
all. Averaging logits is a geometric mean of the unnormalised probabilities; it is what the
reference measures, and for the top-1 of two views it rarely differs from averaging softmaxes.

The wrappers take what the model takes (normalised float images `(B, C, H, W)`) and return logits,
so any evaluation loop, a training recipe's final evaluation or an export can use them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TTA", "FlipTTA", "FlipTranslateTTA", "with_tta"]


class FlipTTA(nn.Module):
    """The mean of the logits of the image and of its horizontal mirror."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.model(images) + 0.5 * self.model(images.flip(-1))


class FlipTranslateTTA(nn.Module):
    """Flip TTA of the image (weight 1/2) and of its two one-pixel diagonal shifts (1/4 each)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.flip = FlipTTA(model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
        up_left = padded[..., :height, :width]
        down_right = padded[..., 2:height + 2, 2:width + 2]
        return 0.5 * self.flip(images) + 0.25 * self.flip(up_left) + 0.25 * self.flip(down_right)


def _plain(model: nn.Module) -> nn.Module:
    return model


# `eval.tta` option -> the wrapper it puts around the model
TTA = {"none": _plain, "flip": FlipTTA, "flip_translate": FlipTranslateTTA}


def with_tta(model: nn.Module, tta: str) -> nn.Module:
    """`model` behind the test-time augmentation named `tta` (`none` returns it unchanged)."""
    if tta not in TTA:
        raise ValueError(f"tta={tta!r} is not a test-time augmentation; choose one of "
                         f"{', '.join(TTA)}")
    return TTA[tta](model)
