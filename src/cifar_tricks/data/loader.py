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
        batch_size: images per batch: the global batch, over all ranks, when training (each of
            `world_size` ranks takes `batch_size / world_size` of it); per rank when evaluating.
        mean, std: per-channel statistics in [0, 1] units.
        train: shuffle, drop the last partial batch and apply crop / flip / transforms.
        crop_padding: zero padding of the random crop (0 = no crop).
        flip: random horizontal flip with probability 0.5.
        uint8_transforms: batch transforms applied before normalisation (policies such as
            AutoAugment), each `f(images, targets, generator) -> (images, targets)`.
        float_transforms: batch transforms applied after normalisation (erasing, mixing).
        seed: the data order and augmentation of epoch `e` depend only on (seed, e), so a
            resumed run sees exactly the batches an uninterrupted one would.
        rank, world_size: this process's part of the data (data parallel). Training: every rank
            draws the same permutation and the same crops and flips for each global batch and
            keeps its contiguous slice, so the ranks together see exactly the batches of one
            process; the other transforms draw from a generator of the rank's own (seeded by
            seed, epoch and rank: reproducible, not correlated across ranks). Evaluation: rank r
            takes images r, r + world_size, ... (all of them over the ranks).
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
        if train and batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} must be divisible by world_size="
                             f"{world_size}: it is the global batch, split evenly over the ranks")
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
        n = len(self.split)
        if self.train:  # global batches, the same number on every rank
            batches = n // self.batch_size
        else:
            batches = math.ceil(len(range(self.rank, n, self.world_size)) / self.batch_size)
        return min(batches, self.limit_batches) if self.limit_batches else batches

    def _crop_flip(self, index: torch.Tensor, generator: torch.Generator,
                   keep: slice = slice(None)) -> torch.Tensor:
        """Crops and flips drawn for all of `index` (a global batch), gathered for `keep`."""
        h, w = self.split.images.shape[-2:]
        b, p = len(index), self.crop_padding
        dy = torch.randint(0, 2 * p + 1, (b,), device=self.device, generator=generator)
        dx = torch.randint(0, 2 * p + 1, (b,), device=self.device, generator=generator)
        if self.flip:  # the mirrored copy sits behind the originals in `_source`
            index = index + len(self.split) * torch.randint(0, 2, (b,), device=self.device,
                                                            generator=generator)
        windows = self._source.unfold(2, h, 1).unfold(3, w, 1)  # (2N, C, 2p+1, 2p+1, H, W), a view
        return windows[index[keep], :, dy[keep], dx[keep]]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        key = self.seed * 100_003 + self.epoch
        generator = torch.Generator(self.device).manual_seed(key)  # the same on every rank
        labels = self.split.labels
        if not self.train:
            order = torch.arange(self.rank, len(self.split), self.world_size, device=self.device)
            for i in range(len(self)):
                index = order[i * self.batch_size:(i + 1) * self.batch_size]
                targets = F.one_hot(labels[index], self.num_classes).float()
                images = self.split.images[index].float().sub_(self._offset).mul_(self._scale)
                yield images, targets
            return
        order = torch.randperm(len(self.split), device=self.device, generator=generator)
        share = self.batch_size // self.world_size
        keep = slice(self.rank * share, (self.rank + 1) * share)
        # one process: its generator goes on to the transforms, as it always did
        own = generator if self.world_size == 1 else \
            torch.Generator(self.device).manual_seed(key * 1_000_003 + self.rank + 1)
        for i in range(len(self)):
            batch = order[i * self.batch_size:(i + 1) * self.batch_size]
            index = batch[keep]
            targets = F.one_hot(labels[index], self.num_classes).float()
            images = self._crop_flip(batch, generator, keep)
            for t in self.uint8_transforms:
                images, targets = t(images, targets, own)
            images = images.float().sub_(self._offset).mul_(self._scale)
            for t in self.float_transforms:
                images, targets = t(images, targets, own)
            yield images, targets
