"""Reading a sweep: a `Job` per run folder (its overrides, its `Summary`, its metrics.csv rows),
`Configuration`s (the jobs that differ only in their seed) and the swept axes.

A folder is a job when it holds a `summary.json` or a `.hydra/overrides.yaml`; one without a
summary yet (or with an unreadable one) is a running job, so a sweep can be reported while it runs.
A job's overrides are the ones that make it (`Summary.job_overrides`, spelled one way), so
`data.root=...` is no axis and a default `seed=0` no configuration of its own; a job read from
Hydra's record of its command line (no summary yet, or one written before jobs had identities)
drops the settings that cannot change a result (`identity.NON_RESULT_KEYS`) likewise. A
configuration counts each seed once, however many folders hold it.
"""
from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from ..identity import MULTI_SELECT_GROUPS, is_result_key, render_value
from ..run_folder import RunFolder, Status, Summary
from .stats import finite

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
    name: str = ""  # the folder relative to the reported one (`2026-01-01/12-00-00`)

    def __post_init__(self) -> None:
        self.name = self.name or self.path.name

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

    def setting(self, key: str) -> str | None:
        """The job's value of a setting it did not override (a value its experiment sets, or
        the default): a group's choice (`model` -> `lenet`, not the model's config) from its
        summary or Hydra's record, any other setting from its .hydra/config.yaml."""
        if key in self.overrides:
            return self.overrides[key]
        if key == SEED_KEY:
            return self.seed
        choices = self._choices()
        if key in choices and key not in MULTI_SELECT_GROUPS:
            return render_value(choices[key])
        node: Any = self._hydra_file("config.yaml")
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            node = choices.get(key)
        if key in MULTI_SELECT_GROUPS and isinstance(node, dict):
            node = list(node)  # a multi-select group is chosen as the list of its entries
        return None if node is None else render_value(node)

    def _choices(self) -> dict[str, Any]:
        """The chosen option of each config group: the summary's, else Hydra's record (a job
        without a summary yet)."""
        choices = self.get("choices")
        if isinstance(choices, dict) and choices:
            return choices
        runtime = (self._hydra_file("hydra.yaml").get("hydra") or {}).get("runtime") or {}
        recorded = runtime.get("choices") if isinstance(runtime, dict) else None
        return recorded if isinstance(recorded, dict) else {}

    def _hydra_file(self, name: str) -> dict:
        """A YAML file of the job's .hydra folder ({} when absent or unreadable), read once."""
        cache = self.__dict__.setdefault("_hydra_cache", {})
        if name not in cache:
            try:
                loaded = yaml.safe_load((self.path / ".hydra" / name).read_text())
            except (OSError, yaml.YAMLError):
                loaded = None
            cache[name] = loaded if isinstance(loaded, dict) else {}
        return cache[name]

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
    jobs: list[Job]  # one per seed
    duplicates: list[Job] = field(default_factory=list)  # other folders of the same seeds
    # values of settings other configurations override and this one does not (so the table
    # shows lr 0.02 where an experiment sets it, not a gap)
    filled: dict[str, str] = field(default_factory=dict)

    @property
    def overrides(self) -> dict[str, str]:
        return {**dict(self.key), **self.filled}

    @property
    def completed(self) -> list[Job]:
        return [j for j in self.jobs if j.status is Status.completed]

    def label(self, axes: Sequence[str],
              shown: Mapping[str, Mapping[str, str]] | None = None) -> str:
        """`k=v, k=v` over the swept axes (`all runs` when nothing is swept); each value as
        `shown[k]` writes it (display.readable_axes), else whole."""
        ov = self.overrides
        parts = [f"{k}={shown[k].get(ov[k], ov[k]) if shown and k in shown else ov[k]}"
                 for k in axes if k in ov]
        return ", ".join(parts) or "all runs"


def _parse_override(text: str) -> tuple[str, str]:
    key, sep, value = str(text).partition("=")
    return key.lstrip("+"), value if sep else ""


def _read_overrides(folder: Path, summary: Summary | None) -> dict[str, str]:
    """The overrides that make the job (summaries since jobs have identities), else Hydra's
    record of the command line, else the summary's copy of it (a folder without .hydra)."""
    path = folder / ".hydra" / "overrides.yaml"
    items: Iterable[str] = []
    if summary is not None and summary.job_key is not None:
        items = summary.job_overrides
    elif path.is_file():
        try:
            items = yaml.safe_load(path.read_text()) or []
        except yaml.YAMLError:
            items = []
    elif summary is not None and isinstance(summary.overrides, list):
        items = summary.overrides
    return {k: v for k, v in map(_parse_override, items) if is_result_key(k)}


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
    # a job holds no job: a summary.json below one (a tracker's copy, e.g. wandb/*/files/) is
    # an artefact of that job
    folders = {f for f in folders if not any(parent in folders for parent in f.parents)}
    jobs = []
    for folder in sorted(folders):
        run = RunFolder(folder)
        summary = run.read_summary()
        name = folder.relative_to(sweep_dir).as_posix() if folder != sweep_dir else folder.name
        jobs.append(Job(path=folder, overrides=_read_overrides(folder, summary), summary=summary,
                        metrics=read_metrics(run.metrics_path), name=name))
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


# which folder stands for a seed held by several: a finished run before an unfinished one
_STATUS_RANK = {Status.completed: 0, Status.diverged: 1, Status.interrupted: 2,
                Status.running: 3, Status.failed: 4}


def _one_per_seed(jobs: Sequence[Job]) -> tuple[list[Job], list[Job]]:
    """(one job per seed, the other folders of those seeds): jobs of one configuration with the
    same seed are the same job; the most finished one counts, the newest among equals."""
    by_seed: dict[str | None, list[Job]] = {}
    for job in jobs:
        by_seed.setdefault(job.seed, []).append(job)
    kept, duplicates = [], []
    for same in by_seed.values():
        same.sort(key=lambda j: (_STATUS_RANK[j.status], -_modified(j)))
        kept.append(same[0])
        duplicates += same[1:]
    return kept, duplicates


def _modified(job: Job) -> float:
    try:
        return (job.path / "summary.json").stat().st_mtime
    except FileNotFoundError:
        return 0.0


def group_by_configuration(jobs: Sequence[Job]) -> list[Configuration]:
    """One Configuration per distinct override set minus the seed, sorted by the swept axes
    (numbers numerically); within one, one job per seed, sorted by seed."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.config_key, []).append(job)
    configurations = []
    for key, same_configuration in groups.items():
        kept, duplicates = _one_per_seed(same_configuration)
        configurations.append(Configuration(key, sorted(kept, key=lambda j: _sort_value(j.seed)),
                                            duplicates))
    keys = list(dict.fromkeys(k for c in configurations for k, _ in c.key))
    for c in configurations:
        c.filled = {k: v for k in keys if k not in dict(c.key)
                    if (v := c.jobs[0].setting(k)) is not None}
    axes, _ = find_axes(configurations)
    configurations.sort(key=lambda c: [_sort_value(c.overrides.get(a)) for a in axes])
    return configurations
