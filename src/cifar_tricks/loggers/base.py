"""What every tracker shares: the job as trackers record it, the summary's numbers, the run
folder's files, the tracker's run id kept in the run folder."""
from __future__ import annotations

import csv
import dataclasses
import functools
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError
from ..identity import (
    flatten,
    folder_name,
    identity,
    is_result_key,
    job_key,
    job_overrides,
    render_value,
)
from ..run_folder import RunFolder, Status, Summary, write_text

__all__ = ["JobInfo", "Logger", "SUMMARY_METRICS", "UNTRACKED", "flatten", "import_for",
           "summary_metrics", "run_files", "artifact_dir", "recorded_rows", "stored_id",
           "store_id"]

# summary.json's numbers, logged as the run's final metrics (`summary/<key>`)
SUMMARY_METRICS = ("test_acc", "best_test_acc", "val_acc", "best_val_acc", "train_acc",
                   "train_loss", "test_loss", "train_time_s", "img_per_s", "peak_mem_mb",
                   "params", "epochs", "best_val_epoch", "wall_time_s")
# the config keys a tracker never records as the run's settings
UNTRACKED = ("logger",)


def import_for(option: str, module: str, extra: str) -> Any:
    """Import a tracker's package, or say which install command provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"logger={option} needs the {module} package, which cannot be imported "
                          f"({e}): pip install -e \".[{extra}]\" (or drop {option} from "
                          f"logger=[...])") from None


@dataclass(frozen=True)
class JobInfo:
    """What trackers record of a job: its resolved config, its group choices, its overrides."""

    config: dict[str, Any]
    choices: dict[str, Any] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()

    @property
    def tracked_config(self) -> dict[str, Any]:
        """The resolved config minus the trackers' own settings."""
        return {k: v for k, v in self.config.items() if k not in UNTRACKED}

    @property
    def params(self) -> dict[str, str]:
        """The tracked config as dotted keys, each value spelled as on the command line."""
        return {k: render_value(v) for k, v in flatten(self.tracked_config).items()}

    @property
    def group_choices(self) -> dict[str, Any]:
        """The chosen option of each group that can change a result (the model, aug list, ...)."""
        return {g: v for g, v in self.choices.items() if is_result_key(g)}

    @property
    def hparams(self) -> dict[str, bool | int | float | str]:
        """TensorBoard's hparams: the job's identity (`identity.identity`), the settings added
        later at their defaults too (so every job of a sweep has the same columns), and its
        choices, each a bool, number or string."""
        values = dict(identity(self.config))
        values.update({k: v for k, v in flatten(self.config).items()
                       if is_result_key(k) and k not in values})
        values.update({g: v for g, v in self.group_choices.items() if g not in values})
        return {k: v if isinstance(v, (bool, int, float, str)) else render_value(v)
                for k, v in values.items()}

    @property
    def key(self) -> str:
        return job_key(self.config)

    @functools.cached_property
    def job_overrides(self) -> list[str]:
        return job_overrides(list(self.overrides))

    @property
    def name(self) -> str:
        """The job's name: its folder's name in a sweep (the canonical overrides)."""
        return folder_name(self.job_overrides)

    def final_summary(self, summary: Summary) -> dict[str, Any]:
        """`summary` as the job's summary.json holds it (with its identity)."""
        return dataclasses.replace(summary, job_key=self.key,
                                   job_overrides=self.job_overrides).to_dict()


class Logger(Protocol):
    def start(self, job: JobInfo, folder: RunFolder, resumed_epoch: int) -> None: ...
    def log_step(self, step: int, metrics: dict[str, float]) -> None: ...
    def log_epoch(self, epoch: int, row: dict[str, Any]) -> None: ...
    def finish(self, summary: Summary, folder: RunFolder) -> None: ...
    def close(self, status: Status) -> None: ...


def summary_metrics(summary: Summary) -> dict[str, float]:
    """The summary's finite numbers (`SUMMARY_METRICS`)."""
    values = {k: summary.get(k) for k in SUMMARY_METRICS}
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
            and abs(v) != float("inf")}


def run_files(folder: RunFolder, checkpoints: bool) -> list[Path]:
    """The run folder's files a tracker keeps: metrics.csv, Hydra's .hydra/*.yaml (the
    composed config, its Hydra settings and overrides) and, when asked, the checkpoints."""
    files = [folder.metrics_path, *sorted((folder.path / ".hydra").glob("*.yaml"))]
    if checkpoints:
        files += sorted((folder.path / "checkpoints").glob("*.pt"))
    return [f for f in files if f.is_file()]


def artifact_dir(folder: RunFolder, path: Path) -> str:
    """Where a run file goes among a tracker's files: its folder relative to the run folder
    (`.hydra` as `hydra`: a leading dot hides it in the trackers' file browsers)."""
    parent = path.parent.relative_to(folder.path).as_posix()
    return "" if parent == "." else parent.lstrip(".")


def recorded_rows(folder: RunFolder, last_epoch: int) -> list[dict[str, Any]]:
    """The rows of metrics.csv up to `last_epoch` (a resumed run's, rewritten from its
    checkpoint before the trackers start), values as numbers, empty cells left out."""
    if last_epoch < 1 or not folder.metrics_path.is_file():
        return []
    with open(folder.metrics_path, newline="") as f:
        rows = [{k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v != ""}
                for row in csv.DictReader(f)]
    return [row for row in rows if row.get("epoch", 0) <= last_epoch]


def stored_id(folder: RunFolder, name: str, resumed_epoch: int) -> str | None:
    """The tracker run id kept in `<run>/<name>` when this run continues from a checkpoint."""
    path = folder.path / name
    if resumed_epoch < 1 or not path.is_file():
        return None
    return path.read_text().strip() or None


def store_id(folder: RunFolder, name: str, run_id: str) -> None:
    """Keep a tracker's run id in `<run>/<name>` (written atomically)."""
    write_text(folder.path / name, run_id + "\n")
