"""Reading a sweep: a `Job` per run folder (its overrides, its `Summary`, its metrics.csv rows),
`Configuration`s (the jobs that differ only in their seed) and the swept axes.

A folder is a job when it holds a `summary.json` or a `.hydra/overrides.yaml`; one without a
summary yet (or with an unreadable one) is a running job, so a sweep can be reported while it runs.
"""
from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from ..run_folder import RunFolder, Status, Summary
from .stats import finite, short_value

__all__ = ["SEED_KEY", "Configuration", "Job", "collect_jobs", "find_axes",
           "group_by_configuration", "read_metrics"]

SEED_KEY = "seed"


@dataclass
class Job:
    """One run folder: its overrides, its summary (None while it has none) and its metric rows."""

    path: Path
    overrides: dict[str, str]
    summary: Summary | None
    metrics: list[dict[str, float | None]] = field(default_factory=list)

    @property
    def status(self) -> Status:
        """The summary's status; `Status.running` for a job without a summary."""
        return self.summary.status if self.summary is not None else Status.running

    @property
    def seed(self) -> str | None:
        if SEED_KEY in self.overrides:
            return self.overrides[SEED_KEY]
        seed = self.get("seed")
        return None if seed is None else str(seed)

    @property
    def config_key(self) -> tuple[tuple[str, str], ...]:
        """The overrides minus the seed: the jobs of one configuration share it."""
        return tuple(sorted((k, v) for k, v in self.overrides.items() if k != SEED_KEY))

    def get(self, key: str) -> Any:
        """A summary value by name (known field or unknown key), None when missing."""
        return self.summary.get(key) if self.summary is not None else None

    @property
    def epochs_done(self) -> int:
        """Epochs with a test accuracy: from the summary when it has them, else metrics.csv."""
        epochs = self.get("epochs")
        if isinstance(epochs, int) and self.status is not Status.running:
            return epochs
        return sum(1 for row in self.metrics if finite(row.get("test_acc")) is not None)

    @property
    def time_per_epoch(self) -> float | None:
        """Training time over epochs from the summary, else the mean epoch time of metrics.csv."""
        train_time, epochs = finite(self.get("train_time_s")), self.get("epochs")
        if train_time is not None and isinstance(epochs, int) and epochs > 0:
            return train_time / epochs
        times = [t for row in self.metrics if (t := finite(row.get("epoch_time_s"))) is not None]
        return statistics.fmean(times) if times else None

    @property
    def weights_mb(self) -> float | None:
        """Size of the float32 weights."""
        params = finite(self.get("params"))
        return None if params is None else params * 4 / 2**20

    def last_metric(self, key: str) -> float | None:
        """The latest finite value of a metrics.csv column (for running jobs)."""
        for row in reversed(self.metrics):
            if (value := finite(row.get(key))) is not None:
                return value
        return None

    def best_metric(self, key: str) -> float | None:
        """The largest finite value of a metrics.csv column so far (for running jobs)."""
        return max((v for row in self.metrics if (v := finite(row.get(key))) is not None),
                   default=None)


@dataclass
class Configuration:
    """The jobs that differ only in their seed."""

    key: tuple[tuple[str, str], ...]
    jobs: list[Job]

    @property
    def overrides(self) -> dict[str, str]:
        return dict(self.key)

    @property
    def completed(self) -> list[Job]:
        return [j for j in self.jobs if j.status is Status.completed]

    def label(self, axes: Sequence[str]) -> str:
        """`k=v, k=v` over the swept axes (`all runs` when nothing is swept)."""
        ov = self.overrides
        parts = [f"{k}={short_value(ov[k])}" for k in axes if k in ov]
        return ", ".join(parts) or "all runs"


def _parse_override(text: str) -> tuple[str, str]:
    key, sep, value = str(text).partition("=")
    return key.lstrip("+"), value if sep else ""


def _read_overrides(folder: Path, summary: Summary | None) -> dict[str, str]:
    """Hydra's record of the job's overrides, else the summary's copy (a folder without .hydra)."""
    path = folder / ".hydra" / "overrides.yaml"
    items: Iterable[str] = []
    if path.is_file():
        try:
            items = yaml.safe_load(path.read_text()) or []
        except yaml.YAMLError:
            items = []
    elif summary is not None and isinstance(summary.overrides, list):
        items = summary.overrides
    return dict(_parse_override(o) for o in items)


def read_metrics(path: Path) -> list[dict[str, float | None]]:
    """The rows of a metrics.csv as floats (None for empty or non-numeric cells); [] if absent."""
    try:
        with open(path, newline="") as f:
            return [{k: finite(v) if v not in ("nan", "inf", "-inf") else float(v)
                     for k, v in row.items() if k is not None}
                    for row in csv.DictReader(f)]
    except FileNotFoundError:
        return []


def collect_jobs(sweep_dir: Path) -> list[Job]:
    """Every job below (or at) `sweep_dir`: a folder with summary.json or .hydra/overrides.yaml."""
    sweep_dir = Path(sweep_dir)
    folders = {p.parent for p in sweep_dir.rglob("summary.json")}
    folders |= {p.parent.parent for p in sweep_dir.rglob("overrides.yaml")
                if p.parent.name == ".hydra"}
    jobs = []
    for folder in sorted(folders):
        run = RunFolder(folder)
        summary = run.read_summary()
        jobs.append(Job(path=folder, overrides=_read_overrides(folder, summary), summary=summary,
                        metrics=read_metrics(run.metrics_path)))
    return jobs


def _sort_value(value: str | None) -> tuple:
    """Numbers first, numerically; then text; a missing value last."""
    if value is None:
        return (2, 0.0, "")
    number = finite(value)
    return (0, number, value) if number is not None else (1, 0.0, value)


def find_axes(configurations: Sequence[Configuration]) -> tuple[list[str], dict[str, str]]:
    """The swept axes (override keys whose value differs between configurations, in the order
    they first appear) and the constant overrides (same value in every configuration)."""
    keys = list(dict.fromkeys(k for c in configurations for k, _ in c.key))
    axes, constant = [], {}
    for key in keys:
        values = {c.overrides.get(key) for c in configurations}
        if len(values) > 1:
            axes.append(key)
        else:
            constant[key] = values.pop()
    return axes, constant


def group_by_configuration(jobs: Sequence[Job]) -> list[Configuration]:
    """One Configuration per distinct override set minus the seed, sorted by the swept axes
    (numbers numerically); within one, jobs are sorted by seed."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.config_key, []).append(job)
    configurations = [Configuration(key, sorted(js, key=lambda j: _sort_value(j.seed)))
                      for key, js in groups.items()]
    axes, _ = find_axes(configurations)
    configurations.sort(key=lambda c: [_sort_value(c.overrides.get(a)) for a in axes])
    return configurations
