"""The run folder contract: `metrics.csv`, `summary.json`, `checkpoints/last.pt`, TensorBoard.

`Status` and `Summary` are the schema of `summary.json`: the trainer writes a `Summary`, the
report reads one back (`Summary.from_dict`), so a field or a status exists in exactly one place.

One writer per folder: a run holds an exclusive OS lock (`flock` on `<folder>/.lock`) for its
whole life (`claim`); the kernel releases it when the process dies, so a SIGKILL leaves no stale
lock, and a second process is refused at once, naming the holder.

Every write is atomic (a temporary file of this process, then a rename), so a run killed at any
instant leaves either the old file or the new one, never half of one; a write that fails (a full
disk) removes its temporary file and leaves the old file intact.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import fcntl
import io
import json
import math
import os
import secrets
import socket
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterator

from .errors import DiskFullError, FolderBusyError

__all__ = ["RunFolder", "Status", "Summary", "TIMING_COLUMNS", "claim", "claimed", "release",
           "save_tensors", "write_text"]


class Status(str, Enum):
    """Where a job stands. A finished job is skipped when its sweep is rerun; others resume."""

    running = "running"  # started (or killed by SIGKILL before it could say otherwise)
    completed = "completed"  # trained every epoch
    diverged = "diverged"  # the training loss became NaN/inf; the last good checkpoint is kept
    interrupted = "interrupted"  # stopped by SIGINT/SIGTERM; resumes from its last checkpoint
    failed = "failed"  # raised an error, recorded in `Summary.error`

    @property
    def finished(self) -> bool:
        """A rerun of the same job would change nothing: it is skipped."""
        return self in (Status.completed, Status.diverged)

    def __str__(self) -> str:
        return self.value


@dataclass
class Summary:
    """`summary.json`: one job's identity, its outcome and its headline numbers.

    Accuracies are percentages; `test_acc` is the final epoch's (the number to report),
    `best_test_acc` picks its epoch on the test set and is labelled as not for reporting.
    `extra` keeps keys this version does not know (a newer writer's), so nothing read is lost.
    """

    status: Status = Status.running
    model: str | None = None
    params: int | None = None
    epochs: int | None = None  # epochs with a test evaluation
    epochs_planned: int | None = None
    test_acc: float | None = None
    best_test_acc: float | None = None
    val_acc: float | None = None
    best_val_acc: float | None = None
    # trainer.eval_tta: the last epoch's test-time augmented accuracies (tta.py)
    tta_test_acc: float | None = None
    tta_val_acc: float | None = None
    train_acc: float | None = None
    train_loss: float | None = None
    test_loss: float | None = None
    best_val_epoch: int | None = None  # the epoch of best_val_acc (best.pt's, with save_best)
    # the weights evaluated and reported: "model" (the trained ones) or a trick's average ("ema")
    eval_weights: str | None = None
    train_time_s: float | None = None  # the training steps only (metrics.csv's epoch_time_s)
    wall_time_s: float | None = None  # the whole fit: training, evaluation, checkpoints
    # trainer.compile: the first training step of each process start (torch.compile compiles
    # there), kept out of train_time_s and img_per_s
    compile_time_s: float | None = None
    img_per_s: float | None = None  # training images per second of train_time_s
    peak_mem_mb: float | None = None  # accelerator memory; None on a CPU
    device: str | None = None
    world_size: int = 1  # processes of one data-parallel run (torchrun)
    seed: int | None = None
    overrides: list[str] = field(default_factory=list)  # the job's command-line overrides
    # what makes the job (identity.py): a digest of its identity, and the overrides that change
    # it, spelled one way; None / [] in summaries written before jobs had identities
    job_key: str | None = None
    job_overrides: list[str] = field(default_factory=list)
    choices: dict[str, Any] = field(default_factory=dict)  # chosen option of each group
    error: str | None = None  # `Type: message` of a failed job
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: known fields in order (no `error` unless failed), then `extra`;
        non-finite numbers become null."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("extra", "error")}
        out["status"] = self.status.value
        if self.error is not None:
            out["error"] = self.error
        out.update(self.extra)
        return {k: _finite_or_none(v) for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        """Read a `summary.json` object, tolerating missing keys (older files, hand-written ones)
        and keeping unknown ones in `extra`; a missing status means the job is still running."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        status = values.pop("status", None)
        try:
            values["status"] = Status(status) if status is not None else Status.running
        except ValueError:  # a status this version does not know: say so instead of guessing
            values["status"] = Status.failed
            values["error"] = values.get("error") or f"unknown status {status!r}"
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def get(self, key: str) -> Any:
        """A field, or an `extra` key, by name; None when absent."""
        if key != "extra" and key in self.__dataclass_fields__:
            value = getattr(self, key)
            return value.value if isinstance(value, Status) else value
        return self.extra.get(key)


# metrics.csv columns that measure speed, not results: they differ between identical runs
TIMING_COLUMNS = ("epoch_time_s", "img_per_s", "eval_time_s", "wall_time_s", "compile_time_s")


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: a reader sees the old file or the new one."""
    _atomic_write(Path(path), lambda f: f.write(text))


def save_tensors(path: Path, state: Any) -> None:
    """`torch.save(state)` to `path`, atomically."""
    import torch  # here, not at the top: reading a folder (the report) needs no torch

    _atomic_write(Path(path), lambda f: torch.save(state, f), binary=True)


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _no_space(error: BaseException) -> OSError | None:
    """The out-of-space OSError behind `error`, if any (torch.save wraps it in a RuntimeError)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _NO_SPACE:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _atomic_write(path: Path, write: Any, binary: bool = False) -> None:
    """Write through `write(file)` into a temporary file of this process, then rename it over
    `path`; on any failure the temporary file is removed and `path` is left as it was."""
    # unique to this process and call, so concurrent writers never share one; created with the
    # permissions of any other file (mkstemp's would be private)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb" if binary else "w", newline=None if binary else "") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if (full := _no_space(e)) is not None:
            raise DiskFullError(full.errno, f"cannot write {path}: {full.strerror} (the disk "
                                f"holding {path.parent} is full, or a file-size limit is "
                                f"reached); the previous {path.name} is intact") from e
        raise


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunFolder:
    """Reads and writes one run's outputs in `path` (Hydra's output dir of the job).

    `writer=False` makes every write a no-op: the processes of a data-parallel run other than
    rank 0 read the folder (to resume) and never write it."""

    def __init__(self, path: str | Path, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer
        self.checkpoint_path = self.path / "checkpoints" / "last.pt"
        self.best_path = self.path / "checkpoints" / "best.pt"  # trainer.save_best
        self.summary_path = self.path / "summary.json"
        self.metrics_path = self.path / "metrics.csv"
        self.tensorboard_dir = self.path / "tensorboard"

    # ---------------------------------------------------------------- summary

    def read_summary(self) -> Summary | None:
        """The folder's summary; None when there is none yet (or it is not a JSON object)."""
        try:
            data = json.loads(self.summary_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return Summary.from_dict(data) if isinstance(data, dict) else None

    def write_summary(self, summary: Summary) -> None:
        if not self.writer:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        data = summary.to_dict()
        _atomic_write(self.summary_path, lambda f: json.dump(data, f, indent=2, sort_keys=False))

    # ---------------------------------------------------------------- metrics

    def write_metrics(self, history: list[dict]) -> None:
        """Rewrite `metrics.csv` from the whole history (kept in the checkpoint), a row an epoch."""
        if not history or not self.writer:
            return
        columns = list(dict.fromkeys(k for row in history for k in row))

        def write(f: io.TextIOBase) -> None:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)

        _atomic_write(self.metrics_path, write)

    # ---------------------------------------------------------------- checkpoint

    def save_checkpoint(self, state: dict, best: bool = False) -> None:
        """Write `state` (`checkpoint.make_checkpoint`) atomically as checkpoints/last.pt, or
        as checkpoints/best.pt."""
        if not self.writer:
            return
        path = self.best_path if best else self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, state)

    def load_checkpoint(self, config: dict) -> dict | None:
        """The checkpoint to resume from, None if there is none; refuses one that does not fit.

        The file is never modified here: on any problem the error says how to proceed.
        """
        path = self.checkpoint_path
        if not path.exists():
            return None
        fix = (f"It is left untouched. To start afresh, move or delete {path}, or give this run "
               f"another folder (hydra.run.dir=... for a run, hydra.sweep.dir=... for a sweep).")
        from .checkpoint import check_resumable, read_checkpoint

        return check_resumable(read_checkpoint(path, fix), path, config, fix)


# ------------------------------------------------------------------------------------ one writer

_HELD: dict[Path, int] = {}  # folder -> the open lock file of this process


def claim(folder: str | Path) -> Path:
    """Take the folder's exclusive lock for this process (creating the folder), or raise
    FolderBusyError naming the live process that holds it. Claiming a folder this process
    already holds does nothing; the lock lasts until `release` or the process's end."""
    folder = Path(folder).resolve()
    if folder in _HELD:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise FolderBusyError(
            f"{folder} is being written by another process ({holder}); this run was refused and "
            f"touched nothing there. Wait for it to finish, or give this run another folder "
            f"(hydra.run.dir=... for a run, hydra.sweep.dir=... for a sweep).") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _HELD[folder] = fd
    return folder


def release(folder: str | Path) -> None:
    """Give the folder's lock back (the lock file stays: removing it would race a claimer)."""
    fd = _HELD.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def claimed(folder: str | Path) -> Iterator[Path]:
    """The folder, claimed for the block."""
    path = claim(folder)
    try:
        yield path
    finally:
        release(path)
