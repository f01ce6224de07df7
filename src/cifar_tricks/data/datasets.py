"""Datasets as uint8 tensors: CIFAR-10/100 read from their python-pickle files, and a synthetic set.

Every source returns an `ImageData`: train / val / test splits as `(N, 3, H, W)` uint8 images and
int64 labels, plus what the loader needs to turn them into batches (normalisation statistics, crop
and flip). The whole set lives in one tensor, so the loader never touches PIL or per-image Python.
"""
from __future__ import annotations

import logging
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DatasetError, DatasetNotFoundError

__all__ = ["ImageData", "Split", "cifar10", "cifar100", "synthetic", "stratified_split"]

log = logging.getLogger(__name__)


@dataclass
class Split:
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: torch.Tensor) -> "Split":
        return Split(self.images[index], self.labels[index])

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class ImageData:
    """The splits of one dataset and the recipe of its base augmentation."""

    name: str
    num_classes: int
    train: Split
    test: Split
    val: Split | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_padding: int  # random crop after zero padding (0 = off)
    flip: bool  # random horizontal flip

    def to(self, device: torch.device | str) -> "ImageData":
        moved = {k: (s.to(device) if s is not None else None) for k, s in
                 (("train", self.train), ("val", self.val), ("test", self.test))}
        return ImageData(**{**self.__dict__, **moved})


# --------------------------------------------------------------------------- splits

def stratified_split(labels: torch.Tensor, size: int,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (`size` chosen, rest), keeping each class's share as in `labels`.

    Per-class quotas use largest remainders so they add up to `size` exactly; the choice within a
    class is a seeded permutation, so the same (labels, size, seed) always gives the same split.
    """
    n = len(labels)
    if not 0 <= size <= n:
        raise ValueError(f"cannot choose {size} of {n} samples")
    g = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    exact = counts.double() * size / n
    quota = exact.floor().long()
    short = size - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True, stable=True)[:short]] += 1
    chosen, rest = [], []
    for c, q in zip(classes.tolist(), quota.tolist()):
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        chosen.append(idx[:q])
        rest.append(idx[q:])
    return torch.cat(chosen).sort().values, torch.cat(rest).sort().values


def _make_splits(train: Split, test: Split, num_classes: int, fraction: float, val_size: int,
                 split_seed: int) -> tuple[Split, Split | None, Split]:
    """Hold out `val_size` stratified samples of train, then keep `fraction` of the rest."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction={fraction} is outside (0, 1]: it is the share of the "
                         f"training set to keep, e.g. 0.5 for the seed's half data")
    largest = len(train) - num_classes  # leave at least one training image per class
    if val_size < 0 or val_size > max(largest, 0):
        raise ValueError(f"val_size={val_size} does not fit the {len(train)} training images "
                         f"of this dataset: choose 0 (no validation split) up to {largest}, "
                         f"e.g. 5000 for CIFAR")
    val = None
    if val_size:
        val_idx, train_idx = stratified_split(train.labels, val_size, split_seed)
        train, val = train[train_idx], train[val_idx]
    if fraction < 1.0:
        keep = min(len(train), max(num_classes, round(fraction * len(train))))
        train = train[stratified_split(train.labels, keep, split_seed + 1)[0]]
    return train, val, test


# --------------------------------------------------------------------------- CIFAR

_CIFAR = {
    # name: (folder, train files, test files, label key, torchvision class)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                b"labels", "CIFAR10"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", "CIFAR100"),
}
SIZES = {"train": 50_000, "test": 10_000}  # images of CIFAR-10 and of CIFAR-100


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR-10/100 python batches contain: builtins (dicts, lists,
    bytes, ints) and numpy arrays. Any other global a file asks for is refused before it is
    looked up, so a planted file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which no CIFAR batch "
                                         f"holds")
        return super().find_class(module, name)


def _load_batch(path: Path, label_key: bytes, num_classes: int) -> Split:
    """One CIFAR python batch, checked: a dict with `data` (N x 3072 uint8) and N labels in
    [0, num_classes). Any problem raises DatasetError naming the file and the check."""
    try:
        with open(path, "rb") as f:
            entry = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DatasetError(f"{path} is not a CIFAR batch: {e}. Replace it with the file of the "
                           f"official release (or let data.download=true fetch it).") from None
    if not isinstance(entry, dict) or b"data" not in entry or label_key not in entry:
        raise DatasetError(f"{path} is not a CIFAR batch: it has no {label_key!r} and b'data'")
    data, labels = entry[b"data"], entry[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DatasetError(f"{path}: the images must be an N x 3072 uint8 array (32 x 32 x 3 "
                           f"bytes each), got {type(data).__name__} {shape} "
                           f"{getattr(data, 'dtype', '')}: the file is truncated or corrupt")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(data):
        raise DatasetError(f"{path}: {len(labels)} labels for {len(data)} images: every later "
                           f"label would be shifted; the file is corrupt")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{path}: labels range over [{labels.min()}, {labels.max()}], "
                           f"outside the {num_classes} classes of this dataset (data.num_classes)")
    return Split(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()),
                 torch.from_numpy(labels.astype(np.int64)))


def _read_batches(folder: Path, files: Sequence[str], label_key: bytes, num_classes: int,
                  expected: int) -> Split:
    splits = [_load_batch(folder / name, label_key, num_classes) for name in files]
    split = Split(torch.cat([s.images for s in splits]), torch.cat([s.labels for s in splits]))
    if len(split) != expected:
        raise DatasetError(f"{folder}: {', '.join(files)} hold {len(split)} images, the release "
                           f"has {expected}: a file is truncated or from another dataset")
    return split


def _ensure_cifar(name: str, root: Path, download: bool) -> Path:
    folder_name, train_files, test_files, _, tv_class = _CIFAR[name]
    folder = root / folder_name
    missing = [f for f in train_files + test_files if not (folder / f).is_file()]
    if not missing:
        return folder
    reason = f"missing {', '.join(missing)}"
    if download:
        import torchvision

        log.info("%s not found in %s: downloading with torchvision", name, folder)
        old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)
        try:
            getattr(torchvision.datasets, tv_class)(str(root), train=True, download=True)
            return folder
        except Exception as e:  # offline, proxy, disk full: all end in the same advice
            reason += f"; the download failed ({type(e).__name__}: {e})"
        finally:
            socket.setdefaulttimeout(old_timeout)
    raise DatasetNotFoundError(
        f"{name} is not in {folder} ({reason}). Put the python-pickle files "
        f"({', '.join(train_files + test_files)}) in that folder, or point data.root at the folder "
        f"that contains {folder_name}/ (e.g. data.root=/path/to/datasets).")


def _cifar(name: str, root: str, num_classes: int, mean: Sequence[float], std: Sequence[float],
           fraction: float = 1.0, val_size: int = 0, split_seed: int = 0, crop: bool = True,
           crop_padding: int = 4, flip: bool = True, download: bool = True) -> ImageData:
    # Read the pickles ourselves: torchvision's md5 check would reject a re-encoded local copy.
    folder = _ensure_cifar(name, Path(root).expanduser().resolve(), download)
    _, train_files, test_files, label_key, _ = _CIFAR[name]
    train = _read_batches(folder, train_files, label_key, num_classes, SIZES["train"])
    test = _read_batches(folder, test_files, label_key, num_classes, SIZES["test"])
    train, val, test = _make_splits(train, test, num_classes, fraction, val_size, split_seed)
    return ImageData(name, num_classes, train, test, val, tuple(mean), tuple(std),
                     crop_padding if crop else 0, flip)


def cifar10(root: str, **kwargs) -> ImageData:
    """CIFAR-10 (Krizhevsky 2009) from `root/cifar-10-batches-py`."""
    return _cifar("cifar10", root, **kwargs)


def cifar100(root: str, **kwargs) -> ImageData:
    """CIFAR-100 (fine labels) from `root/cifar-100-python`."""
    return _cifar("cifar100", root, **kwargs)


# --------------------------------------------------------------------------- synthetic

def synthetic(num_classes: int = 10, num_train: int = 1000, num_test: int = 500,
              image_size: int = 32, noise: float = 48.0, generator_seed: int = 0,
              mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25),
              fraction: float = 1.0, val_size: int = 0, split_seed: int = 0,
              crop: bool = True, crop_padding: int = 4, flip: bool = True) -> ImageData:
    """Learnable random images: each class is a smooth colour pattern, each image that pattern
    plus pixel noise.

    Patterns are 4x4 random colours upsampled to the image size, so they survive crops and flips
    (a flipped pattern is another fixed pattern of the same class) and a small CNN separates the
    classes within a few hundred steps: tests use this to check that training learns.
    """
    g = torch.Generator().manual_seed(generator_seed)
    coarse = torch.rand(num_classes, 3, 4, 4, generator=g) * 255
    patterns = torch.nn.functional.interpolate(coarse, size=(image_size, image_size),
                                               mode="bilinear", align_corners=False)

    def draw(n: int) -> Split:
        labels = torch.arange(n) % num_classes
        labels = labels[torch.randperm(n, generator=g)]
        pixels = patterns[labels] + noise * torch.randn(n, 3, image_size, image_size, generator=g)
        return Split(pixels.round().clamp(0, 255).to(torch.uint8), labels)

    train, val, test = _make_splits(draw(num_train), draw(num_test), num_classes, fraction,
                                    val_size, split_seed)
    return ImageData("synthetic", num_classes, train, test, val, tuple(mean), tuple(std),
                     crop_padding if crop else 0, flip)
