"""The report's columns: ONE list, `COLUMNS`, lays out both tables.

report.md has a row per configuration: a column's cell aggregates the values of the
configuration's completed seeds (mean ± std by default). report.csv has a row per job: a column's
cell is that job's value. Adding a column is one line, a `Column` in `COLUMNS`, saying how a job's
value is obtained (a summary field by default, a derived number, a partial number from metrics.csv
while the job runs) and how report.md aggregates it.

The rows' identity (swept axes or overrides, job, configuration, status) frames both tables and
is laid out by tables.py, around these columns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..run_folder import Status
from .runs import Configuration, Job
from .stats import finite, format_mean_std, format_plain

__all__ = ["COLUMNS", "Column", "any_job_has", "best_so_far", "count", "latest", "plain",
           "report_columns"]

JobValue = Callable[[Job], Any]
Aggregate = Callable[[Sequence[Any]], str]


@dataclass(frozen=True)
class Column:
    """One column of report.md and report.csv.

    key: report.csv's header, and the summary field read unless `value` is given.
    title: report.md's header (default: `key`).
    value: a job's value (default: its summary field `key`; None when absent).
    while_running: a running job's value while its summary has none (from its metrics.csv).
    aggregate: report.md's cell from the values of a configuration's completed seeds.
    md: whether report.md shows it: always, never, or when this holds for the sweep's jobs.
    csv: whether report.csv shows it.
    """

    key: str
    title: str | None = None
    value: JobValue | None = None
    while_running: JobValue | None = None
    aggregate: Aggregate = format_mean_std
    md: bool | Callable[[Sequence[Job]], bool] = True
    csv: bool = True

    @property
    def md_header(self) -> str:
        return self.title or self.key

    def job_value(self, job: Job) -> Any:
        """The job's value: report.csv's cell, and one input of report.md's."""
        value = job.get(self.key) if self.value is None else self.value(job)
        if value is None and self.while_running is not None and job.status is Status.running:
            value = self.while_running(job)
        return value

    def md_cell(self, configuration: Configuration) -> str:
        """Aggregated over the completed seeds only: a partial or failed run would bias it."""
        return self.aggregate([self.job_value(job) for job in configuration.completed])

    def in_md(self, jobs: Sequence[Job]) -> bool:
        return self.md(jobs) if callable(self.md) else self.md


# ---------------------------------------------------------------------------- building blocks


def count(values: Sequence[Any]) -> str:
    """How many completed seeds the configuration has."""
    return str(len(values))


def plain(fmt: str, unit: float = 1) -> Aggregate:
    """The mean in multiples of `unit` (1e6: millions), formatted with `fmt`, without a std: for
    values that agree across seeds (params, epochs, memory)."""
    def aggregate(values: Sequence[Any]) -> str:
        return format_plain([x / unit if (x := finite(v)) is not None else None for v in values],
                            fmt)
    return aggregate


def latest(metric: str) -> JobValue:
    """A job's latest finite value of metrics.csv column `metric`."""
    return lambda job: job.last_metric(metric)


def best_so_far(metric: str) -> JobValue:
    """A job's largest finite value of metrics.csv column `metric`."""
    return lambda job: job.best_metric(metric)


def any_job_has(key: str) -> Callable[[Sequence[Job]], bool]:
    """Whether some job has a finite `key`, in its summary or its metrics.csv."""
    def holds(jobs: Sequence[Job]) -> bool:
        return any(finite(j.get(key)) is not None or j.last_metric(key) is not None for j in jobs)
    return holds


# ---------------------------------------------------------------------------- the list

# In this order in both tables; report.csv then adds a column per summary key no column shows.
COLUMNS: list[Column] = [
    Column("test_acc", "test acc"),  # the final epoch's: the number to report
    Column("n", "n", value=lambda job: 1, aggregate=count, csv=False),  # each completed seed is 1
    Column("best_test_acc", "best-epoch test acc (not for reporting)",
           while_running=best_so_far("test_acc")),
    Column("train_acc", "train acc", while_running=latest("train_acc")),
    Column("val_acc", "val acc", md=any_job_has("val_acc")),  # only with a held-out split
    Column("best_val_acc", md=False),
    Column("train_loss", md=False, while_running=latest("train_loss")),
    Column("test_loss", md=False, while_running=latest("test_loss")),
    Column("params", "params (M)", aggregate=plain(".3g", unit=1e6)),
    Column("weights_mb", "weights (MB)", value=lambda job: job.weights_mb, aggregate=plain(".3g")),
    Column("peak_mem_mb", "peak GPU mem (MB)", aggregate=plain(".0f")),
    Column("epochs", "epochs", value=lambda job: job.epochs_done, aggregate=plain("g")),
    Column("epochs_planned", md=False),
    Column("time_per_epoch_s", "time/epoch (s)", value=lambda job: job.time_per_epoch,
           aggregate=plain(".3g")),
    Column("train_time_s", md=False),
    Column("img_per_s", md=False),
    Column("model", md=False),
    Column("device", md=False),
    # processes of a data-parallel run: shown when the sweep mixes them
    Column("world_size", "processes", aggregate=plain("g"),
           md=lambda jobs: len({j.get("world_size") or 1 for j in jobs}) > 1),
    Column("error", md=False),
    Column("job_key", md=False),  # the job's identity: equal keys are the same job
]


def report_columns() -> list[Column]:
    """`COLUMNS` as it is when a report is written (so a script or a test may extend it)."""
    return list(COLUMNS)
