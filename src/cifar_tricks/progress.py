"""What the terminal shows of a run: where it is, how fast it goes, when it will end.

On a terminal a tqdm bar per epoch (and per evaluation) with loss, accuracy, lr, img/s and the
ETA of the whole run; elsewhere (a log file, `| tee`, SLURM's output, CI) no bar, but one log line
every `trainer.log_every` steps with the same numbers, so a log always says where a run is. The
numbers come from the host reads the loop already does every `log_every` steps: showing progress
adds no device synchronisation.

The ETA of the whole run is the wall time per step so far in this process (evaluations and
checkpoints included) times the steps left, so it settles after the first epoch's evaluation.
"""
from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta
from typing import Any, Iterable

from tqdm import tqdm

from .config import Progress

__all__ = ["RunProgress", "duration", "end_of_run_block", "shows_bar"]

log = logging.getLogger("cifar_tricks")


def duration(seconds: float | None) -> str:
    """`7.4 s` under a minute, else `1:02:03` (h:mm:ss); `?` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return str(timedelta(seconds=round(seconds)))


def shows_bar(mode: Progress) -> bool:
    """`auto` draws bars only on a terminal; elsewhere log lines stand in for them."""
    return mode == Progress.bar or (mode == Progress.auto and sys.stderr.isatty())


class RunProgress:
    """The progress of one `fit`: `epoch()` wraps the training loader, `update()` is called
    every `log_every` steps with the host-side numbers, `evaluation()` wraps an eval loader."""

    def __init__(self, mode: Progress, epochs: int, steps_per_epoch: int, start_epoch: int,
                 enabled: bool = True) -> None:
        self.bar = enabled and shows_bar(mode)
        self.lines = enabled and not self.bar
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = epochs * steps_per_epoch
        self.first_step = start_epoch * steps_per_epoch  # steps done before this process
        self.started = time.perf_counter()

    def epoch(self, loader: Iterable, epoch: int) -> Any:
        """The training loader of `epoch`, behind a bar on a terminal."""
        return tqdm(loader, desc=f"epoch {epoch}/{self.epochs}", leave=False, dynamic_ncols=True,
                    disable=not self.bar, unit="batch")

    def evaluation(self, loader: Iterable, name: str) -> Any:
        return tqdm(loader, desc=f"eval {name}", leave=False, dynamic_ncols=True,
                    disable=not self.bar, unit="batch")

    def eta(self, global_step: int) -> float | None:
        """Seconds until the last step of the run, at this process's pace so far."""
        done = global_step - self.first_step
        if done <= 0:
            return None
        return (time.perf_counter() - self.started) / done * (self.total_steps - global_step)

    def update(self, bar: Any, epoch: int, step: int, global_step: int, loss: float, acc: float,
               lr: float, img_per_s: float) -> None:
        eta = duration(self.eta(global_step))
        if self.bar:
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.1f}", lr=f"{lr:.3g}",
                            img_s=f"{img_per_s:.0f}", eta=eta)
        elif self.lines:
            log.info("epoch %d/%d step %d/%d loss %.4f acc %.2f lr %.4g img/s %.0f eta %s",
                     epoch, self.epochs, step, self.steps_per_epoch, loss, acc, lr, img_per_s,
                     eta)


def end_of_run_block(summary: Any, folder: Any) -> str:
    """The few lines a finished run prints: what it reached, how long it took, where it is."""
    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}%"

    lines = [f"── {summary.model or 'run'}: {summary.status} after {summary.epochs or 0}/"
             f"{summary.epochs_planned or '?'} epochs ──"]
    result = f"test acc   {pct(summary.test_acc)}"
    if summary.tta_test_acc is not None:  # trainer.eval_tta: airbench's reported number
        result += f" ({pct(summary.tta_test_acc)} with TTA)"
    if summary.val_acc is not None or summary.best_val_acc is not None:
        result += f"   val acc {pct(summary.val_acc)}"
        if summary.best_val_epoch is not None:
            result += f" (best {pct(summary.best_val_acc)} at epoch {summary.best_val_epoch})"
    lines.append(result)
    lines.append(f"time       {duration(summary.train_time_s)} training, "
                 f"{duration(summary.wall_time_s)} wall (training and evaluation)")
    speed = f"speed      {summary.img_per_s:,.0f} img/s" if summary.img_per_s else "speed      —"
    if summary.peak_mem_mb is not None:
        speed += f", peak memory {summary.peak_mem_mb:,.0f} MB"
    lines.append(speed)
    lines.append(f"folder     {folder}")
    return "\n".join(lines)
