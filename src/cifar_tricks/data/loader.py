"""The on-device batch loader: index a uint8 tensor, crop and flip per sample, normalise.

The dataset is padded (and, with flips, stored a second time mirrored) once, up front. A random
crop of a padded image is then a window of it, and `unfold` exposes every window as a view, so
one advanced-indexing gather draws each image's own crop offset and flip in a single copy of
uint8 data. No PIL, no per-image Python, no host-device traffic after the first copy.

The padding is zeros (torchvision's RandomCrop) or a reflection of the image (airbench's
"translate", `F.pad(images, (p,)*4, 'reflect')`). A flip is random (each image, each epoch, a
coin) or alternating (airbench's "alternating flip", Jordan 2024, arXiv 2404.00498):
each image draws one flip bit from the seed, once for the run; in epoch e (counting from 1) it
is mirrored iff bit XOR (e is even), so over any two consecutive epochs it is seen once in each
orientation. Either way the flip only picks the original or the mirrored copy in the gather.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from .datasets import Split

__all__ = ["BatchLoader", "CROP_FILLS", "FLIP_MODES", "normalisation"]

BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Generator],
                          tuple[torch.Tensor, torch.Tensor]]


def normalisation(mean: Sequence[float], std: Sequence[float],
                  device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`(offset, scale)`, float32 `(1, C, 1, 1)`, with (x/255 - mean)/std == (x - offset) * scale
    for pixels x in 0..255: one subtract and one multiply, the same numbers wherever a model's
    input is made (the loader, `inference.Preprocess`, `whiten_init`)."""
    offset = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
    scale = 1 / (torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255)
    return offset, scale


def _reflect_index(size: int, padding: int, device: torch.device) -> torch.Tensor:
    """Source rows of a reflect-padded axis: -p..size+p-1 folded back into 0..size-1 without
    repeating the edge (`F.pad(mode='reflect')`: for p=2, a b c d ... -> c b a b c d ...)."""
    i = torch.arange(-padding, size + padding, device=device).abs()
    return (size - 1) - ((size - 1) - i).abs()


def _pad_zeros(images: torch.Tensor, padding: int) -> torch.Tensor:
    return F.pad(images, [padding] * 4)


def _pad_reflect(images: torch.Tensor, padding: int) -> torch.Tensor:
    # Two index_selects rather than F.pad(mode='reflect'): the same values for every dtype and
    # device (uint8 included), done once per run.
    h, w = images.shape[-2:]
    if padding >= min(h, w):
        raise ValueError(f"crop_padding={padding} with crop_fill=reflect must be below the image "
                         f"size {min(h, w)}: a reflection repeats no edge pixel (use a smaller "
                         f"crop_padding, or crop_fill=zeros)")
    rows = _reflect_index(h, padding, images.device)
    cols = _reflect_index(w, padding, images.device)
    return images.index_select(2, rows).index_select(3, cols)


# data.crop_fill -> padded(images, padding)
CROP_FILLS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "zeros": _pad_zeros,
    "reflect": _pad_reflect,
}


def _random_flips(loader: "BatchLoader", batch: torch.Tensor,
                  generator: torch.Generator) -> torch.Tensor:
    """A fresh coin per image per epoch (the one draw per batch the loader always made)."""
    return len(loader.split) * torch.randint(0, 2, (len(batch),), device=loader.device,
                                             generator=generator)


def _alternating_flips(loader: "BatchLoader", batch: torch.Tensor,
                       generator: torch.Generator) -> torch.Tensor:
    """Each image's bit from the seed, inverted in even epochs: one gather, nothing drawn."""
    return loader._alternating[loader.epoch % 2][batch]


# data.flip_mode -> (loader, global batch indices, generator) -> where each image's source is:
# 0 (as it is) or len(split) (its mirror, stored behind the originals)
FLIP_MODES: dict[str, Callable[["BatchLoader", torch.Tensor, torch.Generator], torch.Tensor]] = {
    "random": _random_flips,
    "alternating": _alternating_flips,
}


def _choice(table: dict[str, Any], value: Any, name: str) -> Any:
    key = getattr(value, "value", value)  # a config Enum or its string
    if key not in table:
        raise ValueError(f"{name}={key!r} is not one of {', '.join(table)}")
    return table[key]


class BatchLoader:
    """Yields `(images, targets)`: normalised float images `(B, 3, H, W)` and soft targets `(B, C)`.

    Args:
        split: images (uint8) and labels, already on the training device.
        num_classes: width of the one-hot targets.
        batch_size: images per batch: the global batch, over all ranks, when training (each of
            `world_size` ranks takes `batch_size / world_size` of it); per rank when evaluating.
        mean, std: per-channel statistics in [0, 1] units.
        train: shuffle, drop the last partial batch and apply crop / flip / transforms.
        crop_padding: padding of the random crop (0 = no crop).
        crop_fill: what the padding holds: `zeros`, or `reflect` (the image mirrored at its
            border, without repeating the edge; needs crop_padding below the image size).
        flip: horizontal flip with probability 0.5.
        flip_mode: `random` (a new coin per image per epoch) or `alternating` (airbench: image
            i's bit is element i of `randint(0, 2, (N,))` from a generator seeded
            `seed * 100003 - 1`, drawn once; in epoch e it is mirrored iff bit XOR (e is even),
            so epoch 1 shows the bits); nothing without `flip`.
        uint8_transforms: batch transforms applied before normalisation (policies such as
            AutoAugment), each `f(images, targets, generator) -> (images, targets)`.
        float_transforms: batch transforms applied after normalisation (erasing, mixing).
        seed: the data order and augmentation of epoch `e` depend only on (seed, e), so a
            resumed run sees exactly the batches an uninterrupted one would (alternating flip
            bits: on the seed alone).
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
                 crop_padding: int = 0, crop_fill: str = "zeros", flip: bool = False,
                 flip_mode: str = "random",
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
        self._offset, self._scale = normalisation(mean, std, self.device)
        pad = _choice(CROP_FILLS, crop_fill, "crop_fill")
        self._flips = _choice(FLIP_MODES, flip_mode, "flip_mode")
        self.crop_padding = crop_padding if train else 0
        self.flip = flip and train
        if train:
            padded = pad(split.images, self.crop_padding)
            self._source = torch.cat([padded, padded.flip(3)]) if self.flip else padded
        if self.flip and self._flips is _alternating_flips:
            # one bit per image from the seed alone (the generator key of "epoch -1", which no
            # epoch uses), so the same on every rank and in every epoch whatever the batch size;
            # kept as source offsets (0: as it is, N: mirrored) for even epochs (the bits
            # inverted) and odd ones (the bits)
            key = torch.Generator(self.device).manual_seed(seed * 100_003 - 1)
            bits = torch.randint(0, 2, (len(split),), device=self.device, generator=key)
            self._alternating = (len(split) * (1 - bits), len(split) * bits)

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
            index = index + self._flips(self, index, generator)
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
