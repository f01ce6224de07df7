"""What one job of `python run.py` does in its folder, for each `mode`.

    train     skip it if it already finished there, resume it from its checkpoint, or train it;
              the folder's summary.json says `running`, then `completed`/`diverged`/`failed`
    lr_find   the learning-rate range test on the job's model, data, optimizer and tricks
    eval      evaluate a trained run (or every completed job of a sweep) from its checkpoint:
              eval.json, confusion.png, test-time augmentation (evaluation.py)

`run.py` is a thin `@hydra.main` shim over `main`; tests and other entry points call `train` or
`lr_find` with a `Job` of their own.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from omegaconf import DictConfig

from . import distributed
from .build import build_run
from .config import check_multi_select, resolved
from .errors import CifarTricksError, ConfigError
from .evaluation import evaluate_mode
from .identity import MULTI_SELECT_GROUPS, job_key, job_overrides
from .optim.lr_finder import find_lr, write_lr_find
from .progress import end_of_run_block
from .run_folder import RunFolder, Status, Summary, claimed
from .train import autocast_for, fit
from .validate import validate

__all__ = ["Job", "MODES", "main", "train", "lr_find", "objective", "command_line", "exit_with"]

log = logging.getLogger("cifar_tricks")


@dataclass(frozen=True)
class Job:
    """Where a job runs and how it was asked for: its folder, its command-line overrides and the
    chosen option of each config group (multi-select groups as sorted lists)."""

    output_dir: Path
    overrides: list[str] = field(default_factory=list)
    choices: dict[str, Any] = field(default_factory=dict)
    # an Optuna trial: never skipped (each one is new), and a refused configuration is recorded
    # in its folder as a failed trial (Hydra made the folder; the search reads it)
    trial: bool = False

    @classmethod
    def from_hydra(cls, cfg: DictConfig) -> Job:
        """The job Hydra is running now (inside `@hydra.main`)."""
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        choices = {k: v for k, v in hc.runtime.choices.items()
                   if not k.startswith(("hydra/", "schema/")) and k != "local" and v is not None}
        for group in MULTI_SELECT_GROUPS:  # absent from Hydra's choices
            choices[group] = sorted(cfg.get(group) or {})
        is_trial = "optuna" in str(hc.sweeper.get("_target_", "")).lower()
        return cls(Path(hc.runtime.output_dir), list(hc.overrides.task), choices,
                   trial=is_trial)


def objective(summary: Summary, metric: str | None) -> float | None:
    """The value a sweeper optimises; 0.0 for a run that produced none (diverged, failed)."""
    if metric is None:
        return None
    value = summary.get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def train(cfg: DictConfig, job: Job) -> float | None:
    """Run one training job into `job.output_dir`: skip it if it already finished there, resume
    it if it has a checkpoint, train it otherwise. Returns the sweeper's objective.

    The job holds the folder's lock throughout (a second writer is refused before anything is
    read or written); a folder holding another job's finished run or checkpoint is refused and
    left untouched. SIGINT (Ctrl-C) and SIGTERM (a scheduler's preemption) stop it with status
    `interrupted`, the last checkpoint kept for a rerun to resume; the exception is re-raised.
    """
    _validate(cfg, job)
    folder = RunFolder(job.output_dir, writer=distributed.is_main())
    config = resolved(cfg)
    key = job_key(config)
    with claimed(folder.path) if folder.writer else contextlib.nullcontext():
        previous = folder.read_summary()
        if previous and previous.status.finished:
            if _same_job(previous, key, job.overrides) and not job.trial:
                metric = cfg.optimized_metric or "test_acc"
                log.info("%s already %s (%s=%s): skipping. Delete its summary.json to train it "
                         "again.", job.output_dir, previous.status, metric, previous.get(metric))
                return objective(previous, cfg.optimized_metric)
            raise ConfigError(
                f"{job.output_dir} already holds a finished run of another job "
                f"({previous.job_overrides or previous.overrides}); it is left untouched. Give "
                f"this run another folder (hydra.run.dir=... or hydra.sweep.dir=...).")
        # refuse a checkpoint of another configuration before writing or building anything
        resume = folder.load_checkpoint(config)
        started = Summary(status=Status.running, model=job.choices.get("model"), seed=cfg.seed,
                          overrides=job.overrides, job_key=key,
                          job_overrides=job_overrides(job.overrides), choices=job.choices)
        folder.write_summary(started)
        try:
            with _sigterm_interrupts():
                summary = fit(build_run(cfg, job.overrides, job.choices), folder, resume)
        except KeyboardInterrupt as stop:  # SIGINT or SIGTERM: say so, keep the checkpoint
            reached = getattr(stop, "summary", None) or started
            reached.status = Status.interrupted
            folder.write_summary(dataclasses.replace(reached, job_key=key,
                                                     job_overrides=started.job_overrides))
            log.warning("%s: interrupted after %s epochs; rerun the same command to resume "
                        "from its last checkpoint", job.output_dir, reached.epochs or 0)
            raise
        except Exception as e:  # recorded for the report, then raised: a sweep goes on
            started.status, started.error = Status.failed, f"{type(e).__name__}: {e}"
            folder.write_summary(started)
            raise
        finally:
            if torch.cuda.is_available():  # jobs of a basic-launcher sweep share this process
                torch.cuda.empty_cache()
        summary.job_key, summary.job_overrides = key, started.job_overrides
        folder.write_summary(summary)
    if folder.writer:
        log.info("\n%s", end_of_run_block(summary, job.output_dir))
    return objective(summary, cfg.optimized_metric)


def _validate(cfg: DictConfig, job: Job) -> None:
    """Refuse a bad setting before anything is written; a trial records the refusal in the
    folder Hydra made for it, so the search sees a failed trial with its error."""
    try:
        validate(cfg)
    except ConfigError as e:
        if job.trial:
            RunFolder(job.output_dir).write_summary(Summary(
                status=Status.failed, error=f"ConfigError: {e}", model=job.choices.get("model"),
                seed=cfg.get("seed"), overrides=job.overrides, choices=job.choices))
        raise


def _same_job(summary: Summary, key: str, overrides: list[str]) -> bool:
    """Whether a folder's summary is of this job: the same identity, or, for summaries written
    before jobs had identities, the same command-line overrides."""
    if summary.job_key is not None:
        return summary.job_key == key
    return sorted(summary.overrides) == sorted(overrides)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the main thread for the block, as SIGINT does, so a
    preempted job records where it stopped; elsewhere (a worker thread) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def lr_find(cfg: DictConfig, job: Job) -> float:
    """`mode=lr_find`: the learning-rate range test on this config's model, data, optimizer and
    tricks; writes lr_find.csv / lr_find.png and returns the suggested lr."""
    _validate(cfg, job)
    run = build_run(cfg, job.overrides, job.choices, schedule=False)
    result = find_lr(run.model, run.loaders.train, run.optimizer, run.criterion,
                     autocast=autocast_for(run.device, run.settings.precision), **cfg.lr_find)
    table, picture = write_lr_find(result, job.output_dir)
    stop = "stopped when the loss exploded" if result.stopped_early else "ran to the end"
    log.info("lr finder %s after %d steps; suggested lr %.3g (%s, %s)", stop, len(result.lrs),
             result.suggestion, table, picture)
    print(f"suggested lr: {result.suggestion:.3g}  (optim.lr={result.suggestion:.2g})")
    return result.suggestion


MODES: dict[str, Callable[[DictConfig, Job], float | None]] = {"train": train, "lr_find": lr_find,
                                                               "eval": evaluate_mode}


def main(cfg: DictConfig) -> float | None:
    """The body of `python run.py`: run the Hydra job `cfg` in the mode it asks for.

    A single run that fails with one of our errors (which say what to fix) ends with that one
    message and exit status 1, not a traceback (`HYDRA_FULL_ERROR=1` shows it); a sweep job
    raises, so Hydra records it as failed and the sweep goes on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    distributed.adopt_scheduler_environment()  # a SLURM job of several tasks: its ranks
    distributed.quiet_other_ranks()
    try:
        if cfg.mode not in MODES:
            raise ConfigError(f"mode={cfg.mode} is not a mode; choose one of {sorted(MODES)}")
        if distributed.from_torchrun() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise ConfigError("torchrun trains one run over several processes; a sweep (-m) "
                              "under it would run every job in every process. Sweep with a "
                              "launcher instead (hydra/launcher=slurm with "
                              "hydra.launcher.tasks_per_node=N runs each job over N processes)")
        return MODES[cfg.mode](cfg, Job.from_hydra(cfg))
    except CifarTricksError as e:
        if HydraConfig.get().mode != RunMode.RUN:
            raise
        exit_with(e)
    finally:
        distributed.shutdown()


def command_line(arguments: list[str]) -> list[str]:
    """The command line run.py hands Hydra. Checked first for what Hydra cannot say well (an
    unknown option of a multi-select group, `aug=[cutot]`, ends with the list of options);
    under torchrun every rank gets the same run folder and only rank 0 writes there."""
    try:
        check_multi_select(arguments)
        return distributed.hydra_arguments(arguments)
    except ConfigError as e:
        exit_with(e)


def exit_with(error: Exception) -> None:
    """End the process with our error's message as its last line, and status 1 (the traceback
    before it only with HYDRA_FULL_ERROR=1)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        traceback.print_exception(error)
    print(f"\nError ({type(error).__name__}): {error}", file=sys.stderr)
    raise SystemExit(1)
