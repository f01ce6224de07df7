"""Datasets as uint8 tensors: CIFAR-10/100 read from their python-pickle files, and a synthetic set.

Every source returns an `ImageData`: train / val / test splits as `(N, 3, H, W)` uint8 images and
int64 labels, plus what the loader needs to turn them into batches (normalisation statistics, crop
and flip). The whole set lives in one tensor, so the loader never touches PIL or per-image Python.
"""
from __future__ import annotations

import logging
import pickle
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DatasetError, DatasetNotFoundError

__all__ = ["ImageData", "Split", "LabelSet", "CIFAR_LABELS", "cifar10", "cifar100", "synthetic",
           "stratified_split", "check_labels", "cifar_class_names", "generic_class_names"]

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
    crop_padding: int  # random crop after padding (0 = off)
    flip: bool  # random horizontal flip
    # class names by label ("airplane", ...; "class 0", ... where the dataset names none), e.g.
    # to label a confusion matrix
    classes: list[str] = field(default_factory=list)
    crop_fill: str = "zeros"  # what the crop's padding holds: zeros, reflect
    flip_mode: str = "random"  # random: a coin per image per epoch; alternating (airbench)

    def __post_init__(self) -> None:
        self.classes = list(self.classes) or generic_class_names(self.num_classes)
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{len(self.classes)} class names for {self.num_classes} classes")

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

@dataclass(frozen=True)
class LabelSet:
    """One labelling of a CIFAR release: where the batches keep the labels, where its meta file
    keeps the class names, how many classes, and the `data=` option that selects it."""

    key: bytes  # label list in each batch
    names_key: bytes  # class-name list in the meta file
    num_classes: int
    option: str  # the config option that reads these labels


@dataclass(frozen=True)
class _Release:
    folder: str
    train_files: list[str]
    test_files: list[str]
    meta_file: str  # class names (optional: without it, classes are "class 0", ...)
    torchvision: str  # the torchvision dataset class that downloads it


_CIFAR = {
    "cifar10": _Release("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                        ["test_batch"], "batches.meta", "CIFAR10"),
    "cifar100": _Release("cifar-100-python", ["train"], ["test"], "meta", "CIFAR100"),
}
# data.labels -> LabelSet, per dataset: CIFAR-100's images carry a fine label (100 classes) and
# a coarse one (its 20 superclasses); CIFAR-10 has one labelling.
CIFAR_LABELS = {
    "cifar10": {"fine": LabelSet(b"labels", b"label_names", 10, "data=cifar10")},
    "cifar100": {"fine": LabelSet(b"fine_labels", b"fine_label_names", 100, "data=cifar100"),
                 "coarse": LabelSet(b"coarse_labels", b"coarse_label_names", 20,
                                    "data=cifar100_coarse")},
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


def _unpickle(path: Path, what: str):
    try:
        with open(path, "rb") as f:
            return _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DatasetError(f"{path} is not a {what}: {e}. Replace it with the file of the "
                           f"official release (or let data.download=true fetch it).") from None


def _load_batch(path: Path, label_key: bytes, num_classes: int) -> Split:
    """One CIFAR python batch, checked: a dict with `data` (N x 3072 uint8) and N labels in
    [0, num_classes). Any problem raises DatasetError naming the file and the check."""
    entry = _unpickle(path, "CIFAR batch")
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


def _read_class_names(path: Path, labels: LabelSet) -> list[str]:
    """The class names of a label set from the release's meta file (checked: a list of one
    name per class); generic names, with a warning, when the file is missing."""
    if not path.is_file():
        log.warning("%s is missing: classes are named 'class 0' to 'class %d' (the official "
                    "release has this file)", path, labels.num_classes - 1)
        return generic_class_names(labels.num_classes)
    entry = _unpickle(path, "CIFAR meta file")
    names = entry.get(labels.names_key) if isinstance(entry, dict) else None
    if not isinstance(names, list) or len(names) != labels.num_classes \
            or not all(isinstance(n, bytes) for n in names):
        raise DatasetError(f"{path}: no list of {labels.num_classes} class names under "
                           f"{labels.names_key!r}: the file is corrupt or from another dataset; "
                           f"replace it with the official release's")
    return [n.decode("utf-8", "replace") for n in names]


def cifar_class_names(dataset: str, root: str, labels: str = "fine") -> list[str]:
    """The class names of `dataset`'s `labels` (what `ImageData.classes` holds) from its meta
    file under `root`, without reading the images: for labelling a trained run's outputs."""
    label_set = CIFAR_LABELS[dataset][labels]
    release = _CIFAR[dataset]
    return _read_class_names(Path(root).expanduser().resolve() / release.folder /
                             release.meta_file, label_set)


def check_labels(dataset: str, labels: str, num_classes: int) -> LabelSet:
    """The LabelSet that `data.labels` names for `dataset` (cifar10, cifar100), whose number of
    classes `data.num_classes` must equal; ConfigError naming the fix otherwise."""
    offered = CIFAR_LABELS[dataset]
    if labels not in offered:
        elsewhere = [s.option for sets in CIFAR_LABELS.values() for k, s in sets.items()
                     if k == labels]
        fix = f"; {labels} labels are read by {' or '.join(elsewhere)}" if elsewhere else \
            f": set data.labels to one of {', '.join(offered)}"
        raise ConfigError(
            f"data.labels={labels} is not a labelling of {dataset}, which has "
            f"{', '.join(f'{k} ({s.num_classes} classes)' for k, s in offered.items())}"
            f"{fix}")
    chosen = offered[labels]
    if num_classes != chosen.num_classes:
        raise ConfigError(
            f"data.num_classes={num_classes} does not match the {chosen.num_classes} classes of "
            f"{dataset}'s {labels} labels (data.labels={labels}): set "
            f"data.num_classes={chosen.num_classes} ({chosen.option} sets both)")
    return chosen


def _ensure_cifar(name: str, root: Path, download: bool) -> Path:
    release = _CIFAR[name]
    folder = root / release.folder
    files = release.train_files + release.test_files
    missing = [f for f in files if not (folder / f).is_file()]
    if not missing:
        return folder
    reason = f"missing {', '.join(missing)}"
    if download:
        import torchvision

        log.info("%s not found in %s: downloading with torchvision", name, folder)
        old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)
        try:
            getattr(torchvision.datasets, release.torchvision)(str(root), train=True,
                                                               download=True)
            return folder
        except Exception as e:  # offline, proxy, disk full: all end in the same advice
            reason += f"; the download failed ({type(e).__name__}: {e})"
        finally:
            socket.setdefaulttimeout(old_timeout)
    raise DatasetNotFoundError(
        f"{name} is not in {folder} ({reason}). Put the python-pickle files "
        f"({', '.join(files)}) in that folder, or point data.root at the folder "
        f"that contains {release.folder}/ (e.g. data.root=/path/to/datasets).")


def _cifar(name: str, root: str, num_classes: int, mean: Sequence[float], std: Sequence[float],
           labels: str = "fine", fraction: float = 1.0, val_size: int = 0, split_seed: int = 0,
           crop: bool = True, crop_padding: int = 4, crop_fill: str = "zeros", flip: bool = True,
           flip_mode: str = "random", download: bool = True) -> ImageData:
    label_set = check_labels(name, labels, num_classes)
    # Read the pickles ourselves: torchvision's md5 check would reject a re-encoded local copy.
    folder = _ensure_cifar(name, Path(root).expanduser().resolve(), download)
    release = _CIFAR[name]
    classes = _read_class_names(folder / release.meta_file, label_set)
    train = _read_batches(folder, release.train_files, label_set.key, num_classes,
                          SIZES["train"])
    test = _read_batches(folder, release.test_files, label_set.key, num_classes, SIZES["test"])
    train, val, test = _make_splits(train, test, num_classes, fraction, val_size, split_seed)
    return ImageData(name, num_classes, train, test, val, tuple(mean), tuple(std),
                     crop_padding if crop else 0, flip, classes, _value(crop_fill),
                     _value(flip_mode))


def cifar10(root: str, **kwargs) -> ImageData:
    """CIFAR-10 (Krizhevsky 2009) from `root/cifar-10-batches-py`."""
    return _cifar("cifar10", root, **kwargs)


def cifar100(root: str, **kwargs) -> ImageData:
    """CIFAR-100 from `root/cifar-100-python`: its 100 fine labels, or with `labels="coarse"`
    (and `num_classes=20`) its 20 superclasses."""
    return _cifar("cifar100", root, **kwargs)


def generic_class_names(num_classes: int) -> list[str]:
    """"class 0", "class 1", ...: the names of classes a dataset does not name."""
    return [f"class {i}" for i in range(num_classes)]


# --------------------------------------------------------------------------- synthetic

def synthetic(num_classes: int = 10, num_train: int = 1000, num_test: int = 500,
              image_size: int = 32, noise: float = 48.0, generator_seed: int = 0,
              mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25),
              fraction: float = 1.0, val_size: int = 0, split_seed: int = 0,
              crop: bool = True, crop_padding: int = 4, crop_fill: str = "zeros",
              flip: bool = True, flip_mode: str = "random") -> ImageData:
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
                     crop_padding if crop else 0, flip, crop_fill=_value(crop_fill),
                     flip_mode=_value(flip_mode))


def _value(option: Any) -> str:
    """A config Enum (`CropFill.reflect`) as its plain string, so ImageData holds strings."""
    return getattr(option, "value", option)
