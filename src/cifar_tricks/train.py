"""The training story, top to bottom: one epoch of steps, an evaluation, a log row, a checkpoint.

`fit` knows nothing about a particular model, augmentation or trick: it receives built objects
(`run.py` builds them from the config) and owns only the loop, resumption and the run folder.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .config import Precision, Progress, TrainerConfig
from .data import BatchLoader
from .losses import SoftTargetCrossEntropy, soft_accuracy
from .run_folder import RunFolder
from .tricks.base import Tricks

__all__ = ["fit", "evaluate", "train_one_epoch", "seed_everything", "resolve_device", "Loaders"]

log = logging.getLogger(__name__)


@dataclass
class Loaders:
    train: BatchLoader
    test: BatchLoader
    val: BatchLoader | None = None


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
        from .errors import ConfigError
        raise ConfigError(f"trainer.device={name} but CUDA is not available here; "
                          f"use trainer.device=cpu (or auto)")
    return device


def autocast_for(device: torch.device, precision: Precision) -> Callable[[], Any]:
    bf16 = precision == Precision.bf16 or (precision == Precision.auto and device.type == "cuda")
    if bf16:
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------ steps

class _ProgressBar:
    """tqdm on a terminal; elsewhere nothing per step (the epoch line is logged by `fit`)."""

    def __init__(self, mode: Progress, epochs: int) -> None:
        self.enabled = mode == Progress.bar or (mode == Progress.auto and sys.stderr.isatty())
        self.epochs = epochs

    def wrap(self, loader: Iterable, epoch: int) -> Any:
        return tqdm(loader, desc=f"epoch {epoch}/{self.epochs}", leave=False, dynamic_ncols=True,
                    disable=not self.enabled)


def train_one_epoch(net: nn.Module, model: nn.Module, loader: BatchLoader,
                    optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, criterion: nn.Module,
                    tricks: Tricks, autocast: Callable[[], Any], channels_last: bool, bar: Any,
                    log_every: int) -> dict:
    """One pass over the training set (`net` runs the forward, possibly compiled; `model` is
    the module the tricks see). Sums stay on the device; the host reads them only every
    `log_every` steps (progress and divergence check) and at the end."""
    net.train()
    device = loader.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    start = time.perf_counter()
    for step, (images, targets) in enumerate(bar, 1):
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        first: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            # one forward-backward; SAM calls it twice, at w and at w + e(w)
            with autocast():
                logits = net(images)
                loss = criterion(logits, targets, images)
            loss.backward()
            tricks.after_backward(model)
            if not first:  # report the loss and accuracy at w, as without SAM
                first.update(logits=logits.detach(), loss=loss.detach())
            return loss

        optimizer.zero_grad(set_to_none=True)
        optimizer.step(closure)
        scheduler.step()
        tricks.after_step(model)
        loss_sum += first["loss"] * len(images)
        correct += soft_accuracy(first["logits"], targets)
        seen += len(images)
        if step % log_every == 0:
            mean_loss = loss_sum.item() / seen
            if not math.isfinite(mean_loss):
                break
            bar.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{100 * correct.item() / seen:.1f}",
                            lr=f"{optimizer.param_groups[0]['lr']:.3g}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    seen = max(seen, 1)
    return {"train_loss": loss_sum.item() / seen, "train_acc": 100 * correct.item() / seen,
            "epoch_time_s": elapsed, "img_per_s": seen / elapsed}


@torch.no_grad()
def evaluate(model: nn.Module, loader: BatchLoader, criterion: nn.Module,
             autocast: Callable[[], Any], channels_last: bool) -> tuple[float, float]:
    """Mean loss and accuracy (%) over the loader, one host sync at the end."""
    model.eval()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device)
    seen = 0
    for images, targets in loader:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(images)
        loss_sum += criterion(logits, targets) * len(images)
        correct += soft_accuracy(logits, targets)
        seen += len(images)
    return loss_sum.item() / seen, 100 * correct.item() / seen


# ------------------------------------------------------------------------------------ fit

def fit(model: nn.Module, loaders: Loaders, optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler, criterion: nn.Module, tricks: Tricks,
        settings: TrainerConfig, folder: RunFolder, resume: dict | None,
        run_info: dict) -> dict:
    """Train `model` for `settings.epochs`, resuming from `resume` (a checkpoint) if given.

    `criterion(logits, targets, images)` is the training loss; evaluation always uses the plain
    cross-entropy, on the tricks' evaluation model (the EMA weights) when they provide one, and
    then also reports the trained weights' accuracy as `raw_*`.

    Returns the summary (also written to `summary.json`): status `completed`, or `diverged` when
    the training loss became NaN/inf, in which case the last good checkpoint is kept.
    """
    device = loaders.train.device
    channels_last = settings.channels_last if settings.channels_last is not None \
        else device.type == "cuda"
    averaged = tricks.eval_model()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        averaged = averaged.to(memory_format=torch.channels_last) if averaged else None
    autocast = autocast_for(device, settings.precision)
    net = torch.compile(model) if settings.compile else model
    eval_criterion = SoftTargetCrossEntropy()
    history: list[dict] = []
    start_epoch = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        tricks.load_state_dict(resume.get("tricks", {}))
        _set_rng_state(resume["rng"])
        history, start_epoch = resume["history"], resume["epoch"]
        folder.write_metrics(history)
        log.info("resuming %s from epoch %d/%d", folder.checkpoint_path, start_epoch, settings.epochs)

    from torch.utils.tensorboard import SummaryWriter  # heavy import, only when training
    writer = SummaryWriter(str(folder.tensorboard_dir), purge_step=start_epoch + 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bar = _ProgressBar(settings.progress, settings.epochs)
    status = "completed"
    try:
        for epoch in range(start_epoch + 1, settings.epochs + 1):
            loaders.train.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            row: dict[str, Any] = {"epoch": epoch, "lr": lr}
            stats = train_one_epoch(net, model, loaders.train, optimizer, scheduler, criterion,
                                    tricks, autocast, channels_last,
                                    bar.wrap(loaders.train, epoch), settings.log_every)
            if not math.isfinite(stats["train_loss"]):
                status = "diverged"
                log.warning("epoch %d: training loss is %s; stopping (status: diverged). The last "
                            "good checkpoint is kept.", epoch, stats["train_loss"])
                row.update(stats)
                history.append(row)
                folder.write_metrics(history)
                break
            row["train_loss"], row["train_acc"] = stats["train_loss"], stats["train_acc"]
            evaluated = [("", averaged or net)] + ([("raw_", net)] if averaged else [])
            for prefix, evaluated_net in evaluated:
                for name, loader in (("test", loaders.test), ("val", loaders.val)):
                    if loader is not None:
                        row[f"{prefix}{name}_loss"], row[f"{prefix}{name}_acc"] = evaluate(
                            evaluated_net, loader, eval_criterion, autocast, channels_last)
            row["epoch_time_s"], row["img_per_s"] = stats["epoch_time_s"], stats["img_per_s"]
            history.append(row)
            for key, value in row.items():
                if key != "epoch":
                    writer.add_scalar(key.replace("_", "/", 1), value, epoch)
            log.info("epoch %d/%d " + " ".join(f"{k}=%.4g" for k in row if k != "epoch"),
                     epoch, settings.epochs, *[v for k, v in row.items() if k != "epoch"])
            if settings.checkpoint:  # checkpoint first: it carries the history metrics.csv shows
                folder.save_checkpoint({
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "tricks": tricks.state_dict(),
                    "rng": _rng_state(), "epoch": epoch,
                    "history": history, "config": run_info["config"],
                    "overrides": run_info["overrides"]})
            folder.write_metrics(history)
    finally:
        writer.close()
    return _summary(status, history, settings, device, run_info)


def _summary(status: str, history: list[dict], settings: TrainerConfig, device: torch.device,
             run_info: dict) -> dict:
    good = [r for r in history if "test_acc" in r]
    last = good[-1] if good else {}
    train_time = sum(r["epoch_time_s"] for r in good)
    train_images = sum(r["epoch_time_s"] * r["img_per_s"] for r in good)
    summary = {
        "status": status,
        "model": run_info["model"],
        "params": run_info["params"],
        "epochs": len(good),
        "epochs_planned": settings.epochs,
        "test_acc": last.get("test_acc") if status == "completed" else None,
        "best_test_acc": max((r["test_acc"] for r in good), default=None),
        "val_acc": last.get("val_acc") if status == "completed" else None,
        "best_val_acc": max((r["val_acc"] for r in good if "val_acc" in r), default=None),
        "train_acc": last.get("train_acc"),
        "train_loss": last.get("train_loss"),
        "test_loss": last.get("test_loss"),
        "train_time_s": train_time,
        "img_per_s": train_images / train_time if train_time else None,
        "peak_mem_mb": (torch.cuda.max_memory_allocated(device) / 2**20
                        if device.type == "cuda" else None),
        "device": str(device),
        "seed": run_info["seed"],
        "overrides": run_info["overrides"],
        "choices": run_info["choices"],
    }
    return summary
