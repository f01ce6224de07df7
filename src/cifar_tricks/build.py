"""How a config becomes a run: every object of a training run, built from its config in order.

    data -> model -> tricks (weight init, EMA copy) -> augmentations -> loaders
         -> optimizer (wrapped by tricks: SAM) -> training loss (wrapped by tricks: smoothing, KD)
         -> schedule

Components name only their own arguments when they refuse a value (`ValueError("alpha must be
positive")`); `build` knows which config node it is building and turns that into a `ConfigError`
naming the full key (`aug.cutmix.alpha must be positive`), so library code stays free of config
paths and the user still sees the key to change.
"""
from __future__ import annotations

import contextlib
import logging
import random
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from . import distributed
from .augment import BatchAugment, split_stages
from .config import TrainerConfig, resolved
from .data import BatchLoader, ImageData
from .errors import CifarTricksError, ConfigError
from .loggers import Loggers, build_loggers
from .losses import SoftTargetCrossEntropy
from .optim import create_optimizer
from .precision import grad_scaler
from .tricks.base import Tricks

__all__ = ["Loaders", "Run", "build", "build_run", "build_loaders", "build_scheduler",
           "eval_loader", "check_config", "config_errors", "resolve_device", "seed_everything"]

log = logging.getLogger("cifar_tricks")


@dataclass
class Loaders:
    train: BatchLoader
    test: BatchLoader
    val: BatchLoader | None = None


@dataclass
class Run:
    """Everything one training run is made of: its identity and its built objects.

    `config` is the resolved config (a plain dict), which checkpoints record so that a resume
    can check it continues the same run; `overrides` and `choices` are what the summary and the
    report show of it.
    """

    config: dict[str, Any]
    overrides: list[str]
    choices: dict[str, Any]
    settings: TrainerConfig
    device: torch.device
    data: ImageData
    model: nn.Module
    tricks: Tricks
    loaders: Loaders
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # None: lr_find sets the lr
    scaler: torch.amp.GradScaler | None = None  # fp16's loss scaling (precision.py)
    loggers: Loggers = field(default_factory=Loggers)  # TensorBoard + cfg.logger's trackers

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def model_name(self) -> str | None:
        return self.choices.get("model")

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


# ------------------------------------------------------------------------------------ errors

@contextlib.contextmanager
def config_errors(path: str, node: DictConfig | dict | None = None) -> Iterator[None]:
    """Errors raised while building the config node at `path` become `ConfigError`s naming it.

    A component refuses a value with a `ValueError` that starts with its argument's name;
    when that name is a key of `node`, the message becomes `<path>.<message>` (the exact key to
    change), otherwise `<path>: <message>`. Our other errors (a missing dataset or checkpoint)
    already name their fix and pass through unchanged, unwrapped from Hydra's
    InstantiationException.
    """
    try:
        yield
    except InstantiationException as e:
        cause = e.__cause__
        if _names_its_fix(cause):
            raise cause from None
        if isinstance(cause, ValueError):
            raise _named(path, node, cause) from cause
        raise
    except ValueError as e:
        if _names_its_fix(e):
            raise
        raise _named(path, node, e) from e


def _names_its_fix(error: BaseException | None) -> bool:
    """Our errors other than a refused value (a missing or corrupt file) say it all already."""
    return isinstance(error, CifarTricksError) and not isinstance(error, ConfigError)


def _named(path: str, node: DictConfig | dict | None, error: ValueError) -> ConfigError:
    message = str(error)
    if message.startswith(f"{path}.") or message.startswith(f"{path}:"):
        return ConfigError(message)  # already named (a nested build)
    word = re.match(r"[A-Za-z_]\w*", message)
    if word and node is not None and word.group() in node:
        return ConfigError(f"{path}.{message}")
    return ConfigError(f"{path}: {message}")


def build(node: DictConfig, path: str, *args: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate(node)`, with refused values reported under their key `path`."""
    with config_errors(path, node):
        return instantiate(node, *args, **kwargs)


def check_config(cfg: DictConfig) -> None:
    """Cross-field checks that the typed schemas cannot express."""
    if not isinstance(cfg.seed, int):
        raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")
    if cfg.optimized_metric == "val_acc" and not cfg.data.val_size:
        raise ConfigError("optimized_metric=val_acc needs a validation split: set data.val_size "
                          "(e.g. data.val_size=5000)")
    for key in ("epochs", "batch_size", "eval_batch_size", "log_every"):
        if cfg.trainer[key] < 1:
            raise ConfigError(f"trainer.{key} must be at least 1, got {cfg.trainer[key]}")


# ------------------------------------------------------------------------------------ setup

def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = not deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but CUDA is not available here; "
                          f"use trainer.device=cpu (or auto)")
    return device


def build_loaders(data: ImageData, settings: TrainerConfig, seed: int,
                  augments: Sequence[BatchAugment] = ()) -> Loaders:
    """The training loader applies crop/flip and `augments` in their fixed stage order; under
    torchrun each loader serves this process's part of the data."""
    common = dict(num_classes=data.num_classes, mean=data.mean, std=data.std,
                  rank=distributed.rank(), world_size=distributed.world_size())
    uint8_transforms, float_transforms = split_stages(augments)
    train = BatchLoader(data.train, batch_size=settings.batch_size, train=True, seed=seed,
                        crop_padding=data.crop_padding, crop_fill=data.crop_fill,
                        flip=data.flip, flip_mode=data.flip_mode,
                        uint8_transforms=uint8_transforms, float_transforms=float_transforms,
                        limit_batches=settings.limit_train_batches, **common)
    if len(train) == 0:
        raise ConfigError(f"trainer.batch_size={settings.batch_size} is larger than the "
                          f"{len(data.train)} training images: lower it")

    def evaluation(split):
        return None if split is None else eval_loader(
            split, data, settings.eval_batch_size, settings.limit_eval_batches,
            rank=common["rank"], world_size=common["world_size"])

    return Loaders(train=train, test=evaluation(data.test), val=evaluation(data.val))


def eval_loader(split: Any, data: ImageData, batch_size: int, limit_batches: int | None = None,
                rank: int = 0, world_size: int = 1) -> BatchLoader:
    """An evaluation loader of `split`: every image once, in order, normalised as in training
    (under torchrun, this process's part)."""
    return BatchLoader(split, num_classes=data.num_classes, mean=data.mean, std=data.std,
                       batch_size=batch_size, train=False, limit_batches=limit_batches,
                       rank=rank, world_size=world_size)


def build_augments(cfg: DictConfig) -> list[BatchAugment]:
    """The `aug` group's entries, in the order of the list (the loader applies them by stage)."""
    return [build(node, f"aug.{name}") for name, node in cfg.aug.items()]


def build_run(cfg: DictConfig, overrides: Sequence[str] = (),
              choices: dict[str, Any] | None = None, *, schedule: bool = True) -> Run:
    """Build every object of the run `cfg` describes, in order (the schedule last, on the
    optimizer the tricks wrapped; `schedule=False` leaves it out, for the LR finder, which sets
    the lr itself). `overrides` and `choices` are recorded, not interpreted."""
    check_config(cfg)
    settings: TrainerConfig = OmegaConf.to_object(cfg.trainer)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    seed_everything(cfg.seed, settings.deterministic)
    device = distributed.device_for(resolve_device(settings.device))
    distributed.init(device)

    data = build(cfg.data, "data").to(device)
    model = build(cfg.model, "model")
    if settings.sync_bn and distributed.world_size() > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    tricks = Tricks({name: build(node, f"trick.{name}") for name, node in cfg.trick.items()})
    tricks.setup_data(model, data)  # data-dependent init (whitening), before setup_model
    tricks.setup_model(model)  # weight init, the EMA copy
    augments = build_augments(cfg)
    loaders = build_loaders(data, settings, cfg.seed, augments)
    with config_errors("optim", cfg.optim):
        optimizer = tricks.wrap_optimizer(create_optimizer(cfg.optim, model), model)
    criterion = tricks.wrap_criterion(SoftTargetCrossEntropy(), model)
    run = Run(config=resolved(cfg), overrides=list(overrides),
              choices=dict(choices or {}), settings=settings, device=device, data=data,
              model=model, tricks=tricks, loaders=loaders, optimizer=optimizer,
              criterion=criterion, scaler=grad_scaler(device, settings.precision))
    run.loggers = build_loggers(cfg)  # started by fit, on rank 0
    if schedule:
        run.scheduler = build_scheduler(cfg, run)
    log.info("model %s: %.2fM params on %s; data %s: %d train / %s val / %d test",
             run.model_name, run.params / 1e6, device, data.name, len(data.train),
             len(data.val) if data.val is not None else 0, len(data.test))
    if augments:
        log.info("augmentations (in stage order): %s", split_stages(augments))
    if tricks:
        log.info("tricks: %s", tricks)
    return run


def build_scheduler(cfg: DictConfig, run: Run) -> torch.optim.lr_scheduler.LRScheduler:
    """The `sched` node completed with the run's length: lengths in the config are epochs."""
    with config_errors("sched", cfg.sched):
        return build(cfg.sched, "sched")(run.optimizer, steps_per_epoch=len(run.loaders.train),
                                         epochs=run.settings.epochs)
