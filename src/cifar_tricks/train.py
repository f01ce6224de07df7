"""The training story, top to bottom: one epoch of steps, an evaluation, a log row, a checkpoint.

`fit` knows nothing about a particular model, augmentation or trick: it receives a built `Run`
(`build.build_run` makes one from the config) and owns only the loop, resumption and the run
folder; the tricks act through their hooks, which see the `TrainState`.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from . import distributed
from .build import Run
from .checkpoint import make_checkpoint, restore
from .config import TTAMode
from .data import BatchLoader
from .losses import SoftTargetCrossEntropy, soft_accuracy
from .precision import autocast_for, uses_channels_last
from .progress import RunProgress
from .run_folder import RunFolder, Status, Summary
from .tricks.base import TrainState
from .tta import with_tta

__all__ = ["fit", "evaluate", "train_one_epoch", "autocast_for"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ steps

def train_one_epoch(run: Run, net: nn.Module, state: TrainState, autocast: Callable[[], Any],
                    channels_last: bool, bar: Iterable,
                    progress: RunProgress | None = None, time_compile: bool = False) -> dict:
    """One pass over the training set (`net` runs the forward, possibly compiled; `run.model` is
    the module the tricks see). Sums stay on the device; the host reads them only every
    `log_every` steps (progress and divergence check) and at the end.

    With fp16 (`run.scaler`) the loss is scaled before backward and the gradients unscaled
    before the tricks see them (gradient clipping bounds the true norm); the scaler skips a
    step whose gradients overflowed.

    `time_compile`: the first step (where `torch.compile` compiles the training graph) is timed
    apart as `compile_time_s` and left out of `epoch_time_s` and `img_per_s`."""
    model, optimizer, criterion, tricks = run.model, run.optimizer, run.criterion, run.tricks
    scaler = run.scaler
    net.train()
    device = run.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    # an optimizer that runs the closure several times per step (SAM: at w, then at w + e(w))
    # needs the gradients of all processes only in the last pass
    passes = getattr(optimizer, "closure_passes", 1)
    ddp = net if isinstance(net, DDP) else getattr(net, "_orig_mod", None)  # compiled DDP
    ddp = ddp if isinstance(ddp, DDP) else None
    start = time.perf_counter()
    compile_time, untimed = None, 0
    for step, (images, targets) in enumerate(bar, 1):
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        first: dict[str, Any] = {}

        def closure(images=images, targets=targets, first=first) -> torch.Tensor:
            first["calls"] = first.get("calls", 0) + 1
            local = ddp is not None and first["calls"] < passes
            with ddp.no_sync() if local else contextlib.nullcontext():
                with autocast():
                    logits = net(images)
                    loss = criterion(logits, targets, images)
                (scaler.scale(loss) if scaler is not None else loss).backward()
            if scaler is not None:
                scaler.unscale_(optimizer)
            tricks.after_backward(model, state)
            if "loss" not in first:  # report the loss and accuracy at w, as without SAM
                first.update(logits=logits.detach(), loss=loss.detach())
            return loss

        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            optimizer.step(closure)
        else:  # one closure pass (validate refuses fp16 with SAM's two)
            closure()
            scaler.step(optimizer)
            scaler.update()
        run.scheduler.step()
        state.step += 1
        tricks.after_step(model, state)
        loss_sum += first["loss"] * len(images)
        correct += soft_accuracy(first["logits"], targets)
        seen += len(images)
        if time_compile and step == 1:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            now = time.perf_counter()
            compile_time, start, untimed = now - start, now, len(images)
        if step % run.settings.log_every == 0:
            total_loss, total_correct, total_seen = _over_ranks(loss_sum, correct, seen)
            mean_loss = total_loss / total_seen
            if not math.isfinite(mean_loss):  # every rank sees the same sums: all stop
                break
            if progress is not None:
                progress.update(bar, state.epoch, step, state.step, mean_loss,
                                100 * total_correct / total_seen,
                                optimizer.param_groups[0]["lr"],
                                total_seen / (time.perf_counter() - start))
            run.loggers.log_step(state.step, loss_sum=total_loss, correct=total_correct,
                                 seen=total_seen, lr=optimizer.param_groups[0]["lr"])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    total_loss, total_correct, total_seen = _over_ranks(loss_sum, correct, seen)
    total_seen = max(total_seen, 1)
    timed = total_seen - untimed * distributed.world_size()
    stats = {"train_loss": total_loss / total_seen, "train_acc": 100 * total_correct / total_seen,
             "epoch_time_s": elapsed, "img_per_s": timed / elapsed if elapsed > 0 else 0.0}
    if compile_time is not None:
        stats["compile_time_s"] = compile_time
    return stats


def _over_ranks(loss_sum: torch.Tensor, correct: torch.Tensor,
                seen: int) -> tuple[float, float, float]:
    """Sums over all processes (one host read): loss x images, correct, images."""
    totals = distributed.all_reduce_sum(
        torch.stack([loss_sum.float(), correct.float(),
                     torch.tensor(float(seen), device=loss_sum.device)]))
    loss, right, count = totals.tolist()
    return loss, right, count


@torch.no_grad()
def evaluate(model: nn.Module, loader: BatchLoader, criterion: nn.Module,
             autocast: Callable[[], Any], channels_last: bool,
             batches: Iterable | None = None) -> tuple[float, float]:
    """Mean loss and accuracy (%) over the loader (over all processes' parts of the data under
    torchrun), one host sync at the end. `batches`: the loader behind a progress bar."""
    model.eval()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device)
    seen = 0
    for images, targets in batches if batches is not None else loader:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(images)
        loss_sum += criterion(logits, targets) * len(images)
        correct += soft_accuracy(logits, targets)
        seen += len(images)
    total_loss, total_correct, total_seen = _over_ranks(loss_sum, correct, seen)
    return total_loss / total_seen, 100 * total_correct / total_seen


# ------------------------------------------------------------------------------------ fit

def fit(run: Run, folder: RunFolder, resume: dict | None = None) -> Summary:
    """Train `run` for `run.settings.epochs`, resuming from `resume` (a checkpoint) if given.

    `run.criterion(logits, targets, images)` is the training loss; evaluation always uses the
    plain cross-entropy, on the tricks' evaluation model (the EMA weights) when they provide one,
    and then also reports the trained weights' accuracy as `raw_*`.

    With `trainer.save_best` the epoch of highest validation accuracy is also kept as
    `checkpoints/best.pt` (selected on val, never on test).

    Returns the summary (the caller writes it): status `completed`, or `diverged` when the
    training loss became NaN/inf, in which case the last good checkpoint is kept.
    """
    settings, device, loaders = run.settings, run.device, run.loaders
    channels_last = uses_channels_last(settings.channels_last, device)
    averaged = run.tricks.eval_model()
    if channels_last:
        run.model = run.model.to(memory_format=torch.channels_last)
        averaged = averaged.to(memory_format=torch.channels_last) if averaged else None
    autocast = autocast_for(device, settings.precision)
    main = distributed.is_main()  # the one process that writes the run folder
    parallel = distributed.world_size() > 1
    net = DDP(run.model, device_ids=[device.index] if device.type == "cuda" else None) \
        if parallel else run.model
    net = torch.compile(net) if settings.compile else net
    # evaluation runs on each process's share without collectives: not through the DDP wrapper
    unwrapped_net = run.model if parallel else net
    eval_criterion = SoftTargetCrossEntropy()
    history: list[dict] = []
    start_epoch = 0
    if resume is not None:
        history, start_epoch = restore(run, resume)
        if main:
            folder.write_metrics(history)
        log.info("resuming %s from epoch %d/%d", folder.checkpoint_path, start_epoch,
                 settings.epochs)
    state = TrainState(epochs=settings.epochs, steps_per_epoch=len(loaders.train),
                       epoch=start_epoch, step=start_epoch * len(loaders.train))

    run.loggers.start(run, folder, start_epoch)  # TensorBoard and cfg.logger's, on rank 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    progress = RunProgress(settings.progress, settings.epochs, len(loaders.train), start_epoch,
                           enabled=main)
    best_val = max((r["val_acc"] for r in history if r.get("val_acc") is not None),
                   default=-math.inf)
    status = Status.completed
    try:
        for epoch in range(start_epoch + 1, settings.epochs + 1):
            epoch_start = time.perf_counter()
            state.epoch = epoch
            loaders.train.set_epoch(epoch)
            run.tricks.on_epoch_start(run.model, state)
            row: dict[str, Any] = {"epoch": epoch, "lr": run.optimizer.param_groups[0]["lr"]}
            stats = train_one_epoch(run, net, state, autocast, channels_last,
                                    progress.epoch(loaders.train, epoch), progress,
                                    time_compile=settings.compile and epoch == start_epoch + 1)
            if not math.isfinite(stats["train_loss"]):
                status = Status.diverged
                log.warning("epoch %d: training loss is %s; stopping (status: diverged). The last "
                            "good checkpoint is kept.", epoch, stats["train_loss"])
                row.update(stats)
                history.append(row)
                if main:
                    folder.write_metrics(history)
                break
            row["train_loss"], row["train_acc"] = stats["train_loss"], stats["train_acc"]
            eval_start = time.perf_counter()
            # the reported weights; the trained ones too (raw_*) when a trick averages them; the
            # test-time augmented reported weights (tta_*) after the last epoch
            evaluated = {"": averaged or unwrapped_net, "raw_": unwrapped_net if averaged else None,
                         "tta_": with_tta(averaged or unwrapped_net, settings.eval_tta.value)
                         if epoch == settings.epochs and settings.eval_tta != TTAMode.none
                         else None}
            for prefix, evaluated_net in evaluated.items():
                for name, loader in (("test", loaders.test), ("val", loaders.val)):
                    if evaluated_net is not None and loader is not None:
                        row[f"{prefix}{name}_loss"], row[f"{prefix}{name}_acc"] = evaluate(
                            evaluated_net, loader, eval_criterion, autocast, channels_last,
                            progress.evaluation(loader, f"{prefix}{name}"))
            # epoch_time_s: the training steps only; wall_time_s adds evaluation and the hooks
            row["epoch_time_s"], row["img_per_s"] = stats["epoch_time_s"], stats["img_per_s"]
            if "compile_time_s" in stats:  # the first step of a compiled run, timed apart
                row["compile_time_s"] = stats["compile_time_s"]
            row["eval_time_s"] = time.perf_counter() - eval_start
            run.tricks.on_epoch_end(run.model, state, row)
            row["wall_time_s"] = time.perf_counter() - epoch_start
            history.append(row)
            if not main:
                continue
            log.info("epoch %d/%d " + " ".join(f"{k}=%.4g" for k in row if k != "epoch"),
                     epoch, settings.epochs, *[v for k, v in row.items() if k != "epoch"])
            checkpoint = make_checkpoint(run, epoch, history) \
                if settings.checkpoint or settings.save_best else None
            if settings.save_best and row.get("val_acc", -math.inf) > best_val:
                best_val = row["val_acc"]
                folder.save_checkpoint(checkpoint, best=True)
            if settings.checkpoint:  # checkpoint first: it carries the history metrics.csv shows
                folder.save_checkpoint(checkpoint)
            folder.write_metrics(history)
            run.loggers.log_epoch(epoch, row)  # after the checkpoint that carries the row
        run.tricks.on_fit_end(run.model, state)
        summary = _summary(status, history, run)
        run.loggers.finish(summary, folder)
    except KeyboardInterrupt as stop:  # the caller records where it stopped
        stop.summary = _summary(Status.interrupted, history, run)
        raise
    finally:
        run.loggers.close()  # those still open end as failed or interrupted
    return summary


def _summary(status: Status, history: list[dict], run: Run) -> Summary:
    good = [r for r in history if "test_acc" in r]
    last = good[-1] if good else {}
    completed = status == Status.completed
    train_time = sum(r["epoch_time_s"] for r in good)
    train_images = sum(r["epoch_time_s"] * r["img_per_s"] for r in good)
    validated = [r for r in good if r.get("val_acc") is not None]
    best_val = max(validated, key=lambda r: r["val_acc"], default=None)
    device = run.device
    return Summary(
        status=status,
        model=run.model_name,
        params=run.params,
        epochs=len(good),
        epochs_planned=run.settings.epochs,
        test_acc=last.get("test_acc") if completed else None,
        best_test_acc=max((r["test_acc"] for r in good), default=None),
        val_acc=last.get("val_acc") if completed else None,
        tta_test_acc=last.get("tta_test_acc") if completed else None,
        tta_val_acc=last.get("tta_val_acc") if completed else None,
        best_val_acc=best_val["val_acc"] if best_val else None,
        best_val_epoch=best_val["epoch"] if best_val else None,
        eval_weights=run.tricks.eval_model_name or "model",
        train_acc=last.get("train_acc"),
        train_loss=last.get("train_loss"),
        test_loss=last.get("test_loss"),
        train_time_s=train_time,
        # rows from before wall_time_s existed count their training time only
        wall_time_s=sum(r.get("wall_time_s", r["epoch_time_s"]) for r in good),
        compile_time_s=sum(r["compile_time_s"] for r in good if "compile_time_s" in r) or None,
        img_per_s=train_images / train_time if train_time else None,
        peak_mem_mb=(torch.cuda.max_memory_allocated(device) / 2**20
                     if device.type == "cuda" else None),
        device=str(device),
        world_size=distributed.world_size(),
        seed=run.seed,
        overrides=run.overrides,
        choices=run.choices,
    )
