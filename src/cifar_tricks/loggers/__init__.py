"""Experiment tracking: TensorBoard always, MLflow and Weights & Biases when the `logger` group
selects them (`logger=[mlflow]`, `logger=[wandb]`, `logger=[mlflow,wandb]`).

`fit` calls one `Loggers` collection at each point of a run; each tracker implements

    start(job, folder, resumed_epoch)   the run begins (or continues from a checkpoint)
    log_step(step, metrics)             every `trainer.log_every` steps: step/train_loss, ...
    log_epoch(epoch, row)               every epoch: the metrics.csv row
    finish(summary, folder)             the run completed or diverged: its summary, its files
    close(status)                       it ended otherwise (failed, interrupted)

Only rank 0 logs. The step metrics are the means over the steps since the last log, from the
sums the loop reads on the host anyway (no extra device sync). An epoch's row is logged after
the checkpoint that carries it, and MLflow and W&B receive a step's metrics with its epoch's
row (or with a finished run's summary): an epoch cut short (interrupted, failed), which the
rerun resumes and trains again, leaves nothing to duplicate (TensorBoard drops stale events
on resume, `purge_step`), and a resumed run logs from metrics.csv what its trackers lack.
Ctrl-C does not cut a tracker's write in half (`deferred_interrupts`).
Trackers are options of the `logger` group (conf/logger/*.yaml, built by `build_loggers`);
`logger` is no part of a job's identity (`identity.NON_RESULT_KEYS`).
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from typing import Any, Iterator, Sequence

from .. import distributed
from ..run_folder import RunFolder, Status, Summary
from .base import JobInfo, Logger
from .tensorboard import TensorBoard

__all__ = ["JobInfo", "Logger", "Loggers", "TensorBoard", "build_loggers"]

log = logging.getLogger(__name__)


class Loggers:
    """TensorBoard and the `logger` group's trackers, called by `fit`; only rank 0 logs.

    A tracker that cannot start stops the run (a wrong tracking URI is a config error). One
    that fails later is logged as a warning and left out: tracking never costs a trained run.
    """

    def __init__(self, trackers: Sequence[Logger] = ()) -> None:
        self.loggers: list[Logger] = [TensorBoard(), *trackers]
        self.active: list[Logger] = []
        self._sums = (0.0, 0.0, 0.0)  # loss x images, correct, images at the last step log

    def start(self, run: Any, folder: RunFolder, resumed_epoch: int) -> None:
        """Start every tracker for the `build.Run` `run`; on rank 0 only."""
        if not distributed.is_main():
            return
        job = JobInfo(run.config, dict(run.choices), tuple(run.overrides))
        self._sums = (0.0, 0.0, 0.0)
        for logger in self.loggers:
            self.active.append(logger)
            try:
                with deferred_interrupts():
                    logger.start(job, folder, resumed_epoch)
            except BaseException:  # end those started (as failed, or interrupted), then say why
                self.close()
                raise

    def log_step(self, step: int, *, loss_sum: float, correct: float, seen: float,
                 lr: float) -> None:
        """The epoch's running sums (over all processes) at `step`: each tracker gets the mean
        training loss and accuracy of the steps since the previous log, and the lr."""
        if not self.active:
            return
        last_loss, last_correct, last_seen = self._sums
        self._sums = (loss_sum, correct, seen)
        images = seen - last_seen
        if images <= 0:
            return
        metrics = {"train_loss": (loss_sum - last_loss) / images,
                   "train_acc": 100 * (correct - last_correct) / images, "lr": lr}
        self._each("log_step", step, metrics)

    def log_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        self._sums = (0.0, 0.0, 0.0)  # the next epoch's sums start from zero
        self._each("log_epoch", epoch, row)

    def finish(self, summary: Summary, folder: RunFolder) -> None:
        """The run ended with `summary` (completed or diverged): each tracker records it."""
        self._each("finish", summary, folder)
        self.active.clear()

    def close(self, status: Status | None = None) -> None:
        """End the trackers still open: with `status`, or, called in a `finally:` block, as
        the exception on its way says (interrupted for KeyboardInterrupt, failed otherwise)."""
        if status is None:
            error = sys.exc_info()[1]
            status = Status.interrupted if isinstance(error, KeyboardInterrupt) \
                else Status.failed if error is not None else Status.completed
        self._each("close", status)
        self.active.clear()

    def _each(self, method: str, *args: Any) -> None:
        for logger in list(self.active):
            try:
                with deferred_interrupts():
                    getattr(logger, method)(*args)
            except Exception as e:
                log.warning("%s.%s failed (%s: %s); it logs nothing more for this run",
                            type(logger).__name__, method, type(e).__name__, e)
                self.active.remove(logger)
                if method not in ("finish", "close"):
                    _close_quietly(logger)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM wait for the end of the block, so that Ctrl-C or a preemption does
    not cut a tracker's write in half (an MLflow file store run with an empty metric file can
    no longer be read); then the handler that was in place runs. A second signal during the
    block is not held (a tracker waiting on a slow server can still be stopped). Main thread
    only: elsewhere Python runs no signal handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []

    def hold(number: int, frame: Any) -> None:
        caught.append((number, frame))
        if len(caught) > 1:  # asked again: now
            _deliver(number, previous[number], frame)

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if len(caught) == 1:
            (number, frame), = caught
            _deliver(number, previous[number], frame)


def _deliver(number: int, handler: Any, frame: Any) -> None:
    """Run what signal `number` would have run: a Python handler, or the default action."""
    if callable(handler):
        handler(number, frame)
    elif handler != signal.SIG_IGN:
        signal.signal(number, signal.SIG_DFL)
        signal.raise_signal(number)


def _close_quietly(logger: Logger) -> None:
    try:
        logger.close(Status.failed)
    except Exception:  # it already failed once; the warning above says so
        pass


def build_loggers(cfg: Any) -> Loggers:
    """TensorBoard and one tracker per entry of `cfg.logger` (instantiated from its YAML;
    a key the tracker does not take is refused, naming it)."""
    from ..build import build
    from ..validate import check_arguments

    trackers = []
    for name, node in (cfg.get("logger") or {}).items():
        check_arguments(node, f"logger.{name}")
        trackers.append(build(node, f"logger.{name}"))
    return Loggers(trackers)
