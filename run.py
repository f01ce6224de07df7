"""cifar-tricks entry point: compose the config, build its objects, train, return the objective.

    python run.py                                   # WRN-28-10 on CIFAR-10, the seed's recipe
    python run.py experiment=smoke                  # offline check in seconds
    python run.py -m optim.lr=0.05,0.1 seed=0,1     # a grid, one folder per job under multirun/
    python run.py hparams_search=lr_wd_optuna       # Optuna search on validation accuracy
"""
from __future__ import annotations

import contextlib
import logging
import math
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
from cifar_tricks.run_folder import FINISHED, RunFolder
from cifar_tricks.train import Loaders, fit, resolve_device, seed_everything
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


def build_and_fit(cfg: DictConfig, folder: RunFolder, info: dict) -> dict:
    """Build the run's objects from the config, in order, and train them."""
    check_config(cfg)
    resume = folder.load_checkpoint(info["config"])  # refuses a checkpoint that does not fit
    settings: TrainerConfig = OmegaConf.to_object(cfg.trainer)
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
    scheduler = build(cfg.sched)(optimizer, steps_per_epoch=len(loaders.train),
                                 epochs=settings.epochs)
    criterion = tricks.wrap_criterion(SoftTargetCrossEntropy(), model)
    return fit(model, loaders, optimizer, scheduler, criterion, tricks, settings, folder, resume,
               info)


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
    return train(cfg, hc.runtime.output_dir, list(hc.overrides.task), choices,
                 skip_finished=not is_trial)


if __name__ == "__main__":
    main()
