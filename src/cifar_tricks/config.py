"""Typed schemas of the config groups whose values users type on the command line.

Hydra checks overrides against these at compose time, so `trainer.epochs=abc` or
`trainer.precision=fp61` fails before anything runs, with the key and the accepted values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

from hydra.core.config_store import ConfigStore

__all__ = ["TrainerConfig", "Precision", "Progress", "register_schemas"]


class Precision(str, Enum):
    auto = "auto"  # bf16 autocast on CUDA, fp32 elsewhere
    bf16 = "bf16"
    fp32 = "fp32"


class Progress(str, Enum):
    auto = "auto"  # a bar on a terminal, one log line per epoch otherwise (SLURM, joblib, CI)
    bar = "bar"
    log = "log"


@dataclass
class TrainerConfig:
    epochs: int = 200
    batch_size: int = 128
    eval_batch_size: int = 500
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    precision: Precision = Precision.auto
    channels_last: Optional[bool] = None  # null: on for CUDA, off for CPU
    compile: bool = False  # torch.compile the model
    deterministic: bool = False  # deterministic kernels (slower on GPU)
    num_threads: Optional[int] = None  # CPU threads of torch (null: torch's default)
    limit_train_batches: Optional[int] = None  # cap batches per epoch, for quick runs
    limit_eval_batches: Optional[int] = None
    progress: Progress = Progress.auto
    log_every: int = 50  # steps between progress refreshes (each one waits for the device)
    checkpoint: bool = True  # write checkpoints/last.pt every epoch


@dataclass
class ImageDataConfig:
    """What every dataset config shares: classes, statistics, splits and base augmentation."""
    num_classes: int = 10
    mean: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: List[float] = field(default_factory=lambda: [0.25, 0.25, 0.25])
    fraction: float = 1.0  # share of the training set kept, stratified
    val_size: int = 0  # stratified validation images held out of train
    split_seed: int = 0
    crop: bool = True  # random crop of the zero-padded image
    crop_padding: int = 4
    flip: bool = True  # random horizontal flip


@dataclass
class CifarConfig(ImageDataConfig):
    _target_: str = "cifar_tricks.data.cifar10"
    root: str = "data"
    download: bool = True


@dataclass
class SyntheticConfig(ImageDataConfig):
    _target_: str = "cifar_tricks.data.synthetic"
    num_train: int = 1000
    num_test: int = 500
    image_size: int = 32
    noise: float = 48.0
    generator_seed: int = 0


def register_schemas() -> None:
    cs = ConfigStore.instance()
    # Outside the user-facing groups, so `data=...` / `trainer=...` list only real options.
    cs.store(group="schema/trainer", name="default", node=TrainerConfig)
    cs.store(group="schema/data", name="cifar", node=CifarConfig)
    cs.store(group="schema/data", name="synthetic", node=SyntheticConfig)
