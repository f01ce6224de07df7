"""The on-device batch loader: index a uint8 tensor, crop and flip per sample, normalise.

The dataset is padded (and, with flips, stored a second time mirrored) once, up front. A random
crop of a padded image is then a window of it, and `unfold` exposes every window as a view, so
one advanced-indexing gather draws each image's own crop offset and flip in a single copy of
uint8 data. No PIL, no per-image Python, no host-device traffic after the first copy.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from .datasets import Split

__all__ = ["BatchLoader"]

BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Generator],
                          tuple[torch.Tensor, torch.Tensor]]


class BatchLoader:
    """Yields `(images, targets)`: normalised float images `(B, 3, H, W)` and soft targets `(B, C)`.

    Args:
        split: images (uint8) and labels, already on the training device.
        num_classes: width of the one-hot targets.
        batch_size: images per batch (per rank).
        mean, std: per-channel statistics in [0, 1] units.
        train: shuffle, drop the last partial batch and apply crop / flip / transforms.
        crop_padding: zero padding of the random crop (0 = no crop).
        flip: random horizontal flip with probability 0.5.
        uint8_transforms: batch transforms applied before normalisation (policies such as
            AutoAugment), each `f(images, targets, generator) -> (images, targets)`.
        float_transforms: batch transforms applied after normalisation (erasing, mixing).
        seed: the data order and augmentation of epoch `e` depend only on (seed, e), so a
            resumed run sees exactly the batches an uninterrupted one would.
        rank, world_size: this process's shard of every epoch's permutation (data parallel).
        limit_batches: stop after this many batches per epoch (quick runs).
    """

    def __init__(self, split: Split, num_classes: int, batch_size: int,
                 mean: Sequence[float], std: Sequence[float], *, train: bool,
                 crop_padding: int = 0, flip: bool = False,
                 uint8_transforms: Sequence[BatchTransform] = (),
                 float_transforms: Sequence[BatchTransform] = (),
                 seed: int = 0, rank: int = 0, world_size: int = 1,
                 limit_batches: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.split, self.num_classes, self.batch_size = split, num_classes, batch_size
        self.train, self.seed, self.rank, self.world_size = train, seed, rank, world_size
        self.limit_batches = limit_batches
        self.uint8_transforms = list(uint8_transforms)
        self.float_transforms = list(float_transforms)
        self.device = split.images.device
        self.epoch = 0
        # (x/255 - mean)/std == (x - 255*mean) * 1/(255*std): one subtract and one multiply.
        self._offset = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255
        self._scale = 1 / (torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255)
        self.crop_padding = crop_padding if train else 0
        self.flip = flip and train
        if train:
            padded = F.pad(split.images, [self.crop_padding] * 4)
            self._source = torch.cat([padded, padded.flip(3)]) if self.flip else padded

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.split) // self.world_size
        batches = n // self.batch_size if self.train else math.ceil(n / self.batch_size)
        return min(batches, self.limit_batches) if self.limit_batches else batches

    def _indices(self, generator: torch.Generator) -> torch.Tensor:
        n = len(self.split)
        order = (torch.randperm(n, device=self.device, generator=generator) if self.train
                 else torch.arange(n, device=self.device))
        per_rank = n // self.world_size
        return order[self.rank * per_rank:(self.rank + 1) * per_rank]

    def _crop_flip(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        h, w = self.split.images.shape[-2:]
        b, p = len(index), self.crop_padding
        dy = torch.randint(0, 2 * p + 1, (b,), device=self.device, generator=generator)
        dx = torch.randint(0, 2 * p + 1, (b,), device=self.device, generator=generator)
        if self.flip:  # the mirrored copy sits behind the originals in `_source`
            index = index + len(self.split) * torch.randint(0, 2, (b,), device=self.device,
                                                            generator=generator)
        windows = self._source.unfold(2, h, 1).unfold(3, w, 1)  # (2N, C, 2p+1, 2p+1, H, W), a view
        return windows[index, :, dy, dx]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator(self.device).manual_seed(self.seed * 100_003 + self.epoch)
        order = self._indices(generator)
        labels = self.split.labels
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            targets = F.one_hot(labels[index], self.num_classes).float()
            if self.train:
                images = self._crop_flip(index, generator)
                for t in self.uint8_transforms:
                    images, targets = t(images, targets, generator)
            else:
                images = self.split.images[index]
            images = images.float().sub_(self._offset).mul_(self._scale)
            if self.train:
                for t in self.float_transforms:
                    images, targets = t(images, targets, generator)
            yield images, targets
