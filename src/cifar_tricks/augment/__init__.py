"""Batch augmentations: each one a small class, all applied per sample on the training device.

Every augmentation is a callable `aug(images, targets, generator) -> (images, targets)` on a
whole batch: `images` is `(B, C, H, W)` (uint8 before normalisation, float after), `targets` are
`(B, num_classes)` probabilities, and every random draw comes from `generator` (the loader's, on
the batch's device), so a run's augmentations depend only on its seed and epoch.

Its class attribute `stage` places it in the one fixed order, whatever the order of `aug=[...]`:

    crop/flip (the loader) -> "policy" (uint8: AutoAugment, RandAugment, TrivialAugment)
      -> normalise -> "erase" (float: Cutout, Random Erasing) -> "mix" (Mixup, CutMix, RICAP)

With several mixing ops selected, each batch uses one of them, drawn uniformly at random.
"""
from __future__ import annotations

from typing import ClassVar, Iterable, Sequence

import torch

__all__ = ["BatchAugment", "RandomChoice", "STAGES", "split_stages"]

STAGES = ("policy", "erase", "mix")


class BatchAugment:
    """Base of the batch augmentations (see the module docstring for the contract)."""

    stage: ClassVar[str]

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def check_image_size(self, size: int) -> None:
        """Refuse settings that make no sense on `size` x `size` images (ValueError naming the
        argument); called before a run starts. Most augmentations are relative: nothing to do."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class RandomChoice(BatchAugment):
    """Applies one of `augments` per batch, each with equal probability."""

    stage = "mix"

    def __init__(self, augments: Sequence[BatchAugment]) -> None:
        self.augments = list(augments)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = int(torch.randint(len(self.augments), (), device=generator.device,
                                  generator=generator))
        return self.augments[index](images, targets, generator)


def split_stages(augments: Iterable[BatchAugment]) -> tuple[list[BatchAugment], list[BatchAugment]]:
    """(uint8 transforms, float transforms) in the fixed stage order; several mixing ops become
    one `RandomChoice`."""
    by_stage: dict[str, list[BatchAugment]] = {stage: [] for stage in STAGES}
    for aug in augments:
        if getattr(aug, "stage", None) not in by_stage:
            raise ValueError(f"{aug!r} has stage {getattr(aug, 'stage', None)!r}; "
                             f"an augmentation's stage is one of {STAGES}")
        by_stage[aug.stage].append(aug)
    mix = by_stage["mix"]
    mixing = [RandomChoice(mix)] if len(mix) > 1 else mix
    return by_stage["policy"], by_stage["erase"] + mixing
