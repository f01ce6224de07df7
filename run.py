"""cifar-tricks entry point: compose the config, build its objects, train, return the objective.

    python run.py                                   # WRN-28-10 on CIFAR-10, the seed's recipe
    python run.py experiment=smoke                  # offline check in seconds
    python run.py -m optim.lr=0.05,0.1 seed=0,1     # a grid, one folder per job under multirun/
    python run.py hparams_search=lr_wd_optuna       # Optuna search on validation accuracy
    python run.py mode=lr_find model=resnet20       # learning-rate range test
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cifar_tricks.augment import BatchAugment, split_stages
from cifar_tricks.config import TrainerConfig, register_schemas
from cifar_tricks.data import BatchLoader, ImageData
from cifar_tricks.errors import CifarTricksError, ConfigError
from cifar_tricks.losses import SoftTargetCrossEntropy
from cifar_tricks.optim import create_optimizer
from cifar_tricks.optim.lr_finder import find_lr, write_lr_find
from cifar_tricks.run_folder import FINISHED, RunFolder
from cifar_tricks.train import Loaders, autocast_for, fit, resolve_device, seed_everything
from cifar_tricks.tricks.base import Tricks

log = logging.getLogger("cifar_tricks")
register_schemas()


@contextlib.contextmanager
def errors_that_name_their_fix():
    """Let our own errors (which say how to fix them) through Hydra's instantiate wrapper."""
    try:
        yield
    except InstantiationException as e:
        if isinstance(e.__cause__, CifarTricksError):
            raise e.__cause__ from None
        raise


def build(node: DictConfig, *args, **kwargs):
    """`instantiate` with errors that name their fix unwrapped."""
    with errors_that_name_their_fix():
        return instantiate(node, *args, **kwargs)


def build_loaders(data: ImageData, settings: TrainerConfig, seed: int,
                  augments: Sequence[BatchAugment] = ()) -> Loaders:
    """The training loader applies crop/flip and `augments` in their fixed stage order."""
    common = dict(num_classes=data.num_classes, mean=data.mean, std=data.std)
    uint8_transforms, float_transforms = split_stages(augments)
    train = BatchLoader(data.train, batch_size=settings.batch_size, train=True, seed=seed,
                        crop_padding=data.crop_padding, flip=data.flip,
                        uint8_transforms=uint8_transforms, float_transforms=float_transforms,
                        limit_batches=settings.limit_train_batches, **common)
    if len(train) == 0:
        raise ConfigError(f"trainer.batch_size={settings.batch_size} is larger than the "
                          f"{len(data.train)} training images: lower it")

    def evaluation(split):
        return None if split is None else BatchLoader(
            split, batch_size=settings.eval_batch_size, train=False,
            limit_batches=settings.limit_eval_batches, **common)

    return Loaders(train=train, test=evaluation(data.test), val=evaluation(data.val))


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


def objective(summary: dict, metric: str | None) -> float | None:
    """The value a sweeper optimises; 0.0 for a run that produced none (diverged, failed)."""
    if metric is None:
        return None
    value = summary.get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def train(cfg: DictConfig, output_dir: str, overrides: list[str], choices: dict,
          skip_finished: bool = True) -> float | None:
    """Run one job into `output_dir`: skip it if it already finished there, resume it if it has
    a checkpoint, train it otherwise. Returns `objective(summary, cfg.optimized_metric)`."""
    folder = RunFolder(output_dir)
    if skip_finished and (done := folder.finished_summary(overrides)):
        metric = cfg.optimized_metric or "test_acc"
        log.info("%s already %s (%s=%s): skipping. Delete its summary.json to train it again.",
                 output_dir, done["status"], metric, done.get(metric))
        return objective(done, cfg.optimized_metric)
    previous = folder.read_summary()
    if previous and previous.get("status") in FINISHED:
        raise ConfigError(f"{output_dir} already holds a finished run with other overrides "
                          f"({previous.get('overrides')}); it is left untouched. Give this run "
                          f"another folder (hydra.run.dir=... or hydra.sweep.dir=...).")
    info = {"model": choices.get("model"), "params": None, "seed": cfg.seed,
            "overrides": overrides, "choices": choices,
            "config": OmegaConf.to_container(cfg, resolve=True)}
    folder.write_summary({"status": "running", **_public(info)})
    try:
        summary = build_and_fit(cfg, folder, info)
    except Exception as e:  # recorded for the report, then raised: Hydra shows it, the sweep goes on
        folder.write_summary({"status": "failed", "error": f"{type(e).__name__}: {e}",
                              **_public(info)})
        raise
    finally:
        if torch.cuda.is_available():  # jobs of a basic-launcher sweep share this process
            torch.cuda.empty_cache()
    folder.write_summary(summary)
    log.info("%s: test_acc=%s val_acc=%s (%s)", summary["status"], summary["test_acc"],
             summary["val_acc"], output_dir)
    return objective(summary, cfg.optimized_metric)


@dataclass
class Built:
    """The run's objects, built from the config in this order."""
    device: torch.device
    model: torch.nn.Module
    tricks: Tricks
    loaders: Loaders
    optimizer: torch.optim.Optimizer
    criterion: torch.nn.Module


def build_objects(cfg: DictConfig, settings: TrainerConfig, info: dict) -> Built:
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    seed_everything(cfg.seed, settings.deterministic)
    device = resolve_device(settings.device)

    data = build(cfg.data).to(device)
    model = build(cfg.model).to(device)
    tricks = Tricks(build(node) for node in cfg.trick.values())
    tricks.setup_model(model)  # weight init, the EMA copy
    info["params"] = sum(p.numel() for p in model.parameters())
    log.info("model %s: %.2fM params on %s; data %s: %d train / %s val / %d test",
             info["model"], info["params"] / 1e6, device, data.name, len(data.train),
             len(data.val) if data.val is not None else 0, len(data.test))
    augments = [build(node) for node in cfg.aug.values()]
    if augments:
        log.info("augmentations (in stage order): %s", split_stages(augments))
    loaders = build_loaders(data, settings, cfg.seed, augments)
    if tricks.tricks:
        log.info("tricks: %s", tricks)
    with errors_that_name_their_fix():
        optimizer = tricks.wrap_optimizer(create_optimizer(cfg.optim, model), model)
    criterion = tricks.wrap_criterion(SoftTargetCrossEntropy(), model)
    return Built(device, model, tricks, loaders, optimizer, criterion)


def build_and_fit(cfg: DictConfig, folder: RunFolder, info: dict) -> dict:
    """Build the run's objects from the config, in order, and train them."""
    check_config(cfg)
    resume = folder.load_checkpoint(info["config"])  # refuses a checkpoint that does not fit
    settings: TrainerConfig = OmegaConf.to_object(cfg.trainer)
    run = build_objects(cfg, settings, info)
    scheduler = build(cfg.sched)(run.optimizer, steps_per_epoch=len(run.loaders.train),
                                 epochs=settings.epochs)
    return fit(run.model, run.loaders, run.optimizer, scheduler, run.criterion, run.tricks,
               settings, folder, resume, info)


def lr_find(cfg: DictConfig, output_dir: str, overrides: list[str], choices: dict,
            skip_finished: bool = True) -> float:
    """`mode=lr_find`: the learning-rate range test on this config's model, data, optimizer and
    tricks; writes lr_find.csv / lr_find.png and returns the suggested lr."""
    settings: TrainerConfig = OmegaConf.to_object(cfg.trainer)
    run = build_objects(cfg, settings, {"model": choices.get("model")})
    result = find_lr(run.model, run.loaders.train, run.optimizer, run.criterion,
                     autocast=autocast_for(run.device, settings.precision), **cfg.lr_find)
    table, picture = write_lr_find(result, Path(output_dir))
    stop = "stopped when the loss exploded" if result.stopped_early else "ran to the end"
    log.info("lr finder %s after %d steps; suggested lr %.3g (%s, %s)", stop, len(result.lrs),
             result.suggestion, table, picture)
    print(f"suggested lr: {result.suggestion:.3g}  (optim.lr={result.suggestion:.2g})")
    return result.suggestion


MODES = {"train": train, "lr_find": lr_find}


def _public(info: dict) -> dict:
    return {k: v for k, v in info.items() if k != "config"}


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    choices = {k: v for k, v in hc.runtime.choices.items()
               if not k.startswith(("hydra/", "schema/")) and k != "local" and v is not None}
    for group in ("aug", "trick"):  # multi-select groups are absent from Hydra's choices
        choices[group] = sorted(cfg.get(group) or {})
    is_trial = "optuna" in str(hc.sweeper.get("_target_", ""))
    if cfg.mode not in MODES:
        raise ConfigError(f"mode={cfg.mode} is not a mode; choose one of {sorted(MODES)}")
    return MODES[cfg.mode](cfg, hc.runtime.output_dir, list(hc.overrides.task), choices,
                           skip_finished=not is_trial)


if __name__ == "__main__":
    main()
