"""The run folder contract: `metrics.csv`, `summary.json`, `checkpoints/last.pt`, TensorBoard events.

Every write is atomic (write a temporary file, then rename), so a run killed at any instant
leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import torch

from .errors import CheckpointError

__all__ = ["RunFolder", "FINISHED", "read_checkpoint"]

# A finished job is skipped when its sweep is rerun; anything else (running, failed) is resumed.
FINISHED = ("completed", "diverged")

# Settings that may change between a run and its resumption without changing its result.
RESUMABLE_KEYS = ("trainer.device", "trainer.progress", "trainer.log_every", "trainer.compile",
                  "trainer.eval_batch_size", "trainer.limit_eval_batches", "data.root",
                  "data.download")


def _atomic_write(path: Path, write: Any, binary: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb" if binary else "w", newline=None if binary else "") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def config_differences(old: dict, new: dict, ignore: Iterable[str] = RESUMABLE_KEYS) -> list[str]:
    """`key: old -> new` for every setting that differs, ignoring the resumable ones."""
    a, b = _flatten(old), _flatten(new)
    skip = tuple(ignore)
    return [f"{k}: {a.get(k, '<unset>')} -> {b.get(k, '<unset>')}" for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k) and not k.startswith(skip)]


def read_checkpoint(path: Path, fix: str) -> Any:
    """Unpickle one of our checkpoints (they hold RNG states, so not `weights_only`); a file that
    cannot be read raises CheckpointError ending with `fix`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"cannot read the checkpoint {path} ({type(e).__name__}: {e}). "
                              f"{fix}") from e


class RunFolder:
    """Reads and writes one run's outputs in `path` (Hydra's output dir of the job)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.checkpoint_path = self.path / "checkpoints" / "last.pt"
        self.summary_path = self.path / "summary.json"
        self.metrics_path = self.path / "metrics.csv"
        self.tensorboard_dir = self.path / "tensorboard"

    # ---------------------------------------------------------------- summary

    def read_summary(self) -> dict | None:
        try:
            return json.loads(self.summary_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write_summary(self, summary: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        clean = {k: _finite_or_none(v) for k, v in summary.items()}
        _atomic_write(self.summary_path, lambda f: json.dump(clean, f, indent=2, sort_keys=False))

    def finished_summary(self, overrides: list[str]) -> dict | None:
        """The summary of this very job if it already finished here, else None."""
        summary = self.read_summary()
        if summary and summary.get("status") in FINISHED and \
                sorted(summary.get("overrides", [])) == sorted(overrides):
            return summary
        return None

    # ---------------------------------------------------------------- metrics

    def write_metrics(self, history: list[dict]) -> None:
        """Rewrite `metrics.csv` from the whole history (kept in the checkpoint), one row per epoch."""
        if not history:
            return
        columns = list(dict.fromkeys(k for row in history for k in row))

        def write(f: io.TextIOBase) -> None:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)

        _atomic_write(self.metrics_path, write)

    # ---------------------------------------------------------------- checkpoint

    def save_checkpoint(self, state: dict) -> None:
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.checkpoint_path, lambda f: torch.save(state, f), binary=True)

    def load_checkpoint(self, config: dict) -> dict | None:
        """The checkpoint to resume from, None if there is none; refuses one that does not fit.

        The file is never modified here: on any problem the error says how to proceed.
        """
        path = self.checkpoint_path
        if not path.exists():
            return None
        fix = (f"It is left untouched. To start afresh, move or delete {path}, or give this run "
               f"another folder (hydra.run.dir=... for a run, hydra.sweep.dir=... for a sweep).")
        state = read_checkpoint(path, fix)
        required = {"model", "optimizer", "scheduler", "epoch", "config", "history", "rng"}
        if not isinstance(state, dict) or not required <= state.keys():
            missing = sorted(required - set(state)) if isinstance(state, dict) else ["everything"]
            raise CheckpointError(f"{path} is not a cifar-tricks checkpoint (missing "
                                  f"{', '.join(missing)}). {fix}")
        diff = config_differences(state["config"], config)
        if diff:
            raise CheckpointError(
                f"{path} was written by a different configuration, so this run cannot resume it:\n  "
                + "\n  ".join(diff[:20]) + f"\nIts overrides were {state.get('overrides')}. {fix}")
        return state
