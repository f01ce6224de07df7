"""Sweep folder -> paper-style table and plots.

    python -m cifar_tricks.report multirun/<date>/<time>

Every folder below the sweep folder that holds a `summary.json` or a `.hydra/overrides.yaml` is a
job (so a folder of single runs works too). Jobs are grouped into configurations by their
overrides minus `seed`, so replicates over seeds make one row. Written into the sweep folder:

- `report.md`   one row per configuration: the swept axes, final-epoch test accuracy as
                mean ± std over seeds (sample std, n-1) with n, and the other metrics; jobs that
                are not completed (running, diverged, failed) keep their place with their status.
                Also printed to the terminal.
- `report.csv`  one row per job: every override, the status, every metric.
- `curves.png`  test accuracy and train loss against epoch, one line per configuration
                (mean over the seeds that reached each epoch; partial runs included).
- `summary.png` final test accuracy per configuration with std error bars.
- for an Optuna sweep (`optuna.db` in the sweep folder): a trials table and the best parameters
  in `report.md`, and `optuna_history.png` (objective per trial and the running best).

A sweep can be reported while it runs: a job without a summary, or with status `running`, is
listed as running and its partial `metrics.csv` feeds the curves.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

__all__ = ["Job", "Configuration", "collect_jobs", "group_by_configuration", "find_axes",
           "format_table", "write_csv", "plot_curves", "plot_summary", "optuna_section",
           "plot_optuna_history", "write_report", "main"]

SEED_KEY = "seed"
MISSING = "—"
NOT_COMPLETED = ("running", "diverged", "failed")
# Preferred order of the per-job metric columns in report.csv (any other scalar summary key follows).
CSV_METRICS = ("test_acc", "best_test_acc", "val_acc", "best_val_acc", "train_acc", "train_loss",
               "test_loss", "params", "weights_mb", "peak_mem_mb", "epochs", "epochs_planned",
               "time_per_epoch_s", "train_time_s", "img_per_s", "model", "device", "error")


# ---------------------------------------------------------------------------- reading


@dataclass
class Job:
    """One run folder: its overrides, its summary (None while it has none) and its metric rows."""
    path: Path
    overrides: dict[str, str]
    summary: dict[str, Any] | None
    metrics: list[dict[str, float | None]] = field(default_factory=list)

    @property
    def status(self) -> str:
        """`completed`, `diverged`, `failed` or `running` (also for a job without a summary)."""
        return str((self.summary or {}).get("status") or "running")

    @property
    def seed(self) -> str | None:
        if SEED_KEY in self.overrides:
            return self.overrides[SEED_KEY]
        seed = (self.summary or {}).get("seed")
        return None if seed is None else str(seed)

    @property
    def config_key(self) -> tuple[tuple[str, str], ...]:
        """The overrides minus the seed: the jobs of one configuration share it."""
        return tuple(sorted((k, v) for k, v in self.overrides.items() if k != SEED_KEY))

    def get(self, key: str) -> Any:
        """A summary value, None when missing."""
        return (self.summary or {}).get(key)

    @property
    def epochs_done(self) -> int:
        """Epochs with a test accuracy: from the summary when it has them, else metrics.csv."""
        epochs = self.get("epochs")
        if isinstance(epochs, int) and self.status != "running":
            return epochs
        return sum(1 for row in self.metrics if _finite(row.get("test_acc")) is not None)

    @property
    def time_per_epoch(self) -> float | None:
        train_time, epochs = _finite(self.get("train_time_s")), self.get("epochs")
        if train_time is not None and isinstance(epochs, int) and epochs > 0:
            return train_time / epochs
        times = [t for row in self.metrics if (t := _finite(row.get("epoch_time_s"))) is not None]
        return statistics.fmean(times) if times else None

    @property
    def weights_mb(self) -> float | None:
        params = _finite(self.get("params"))
        return None if params is None else params * 4 / 2**20

    def last_metric(self, key: str) -> float | None:
        """The latest finite value of a metrics.csv column (for running jobs)."""
        for row in reversed(self.metrics):
            if (value := _finite(row.get(key))) is not None:
                return value
        return None


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
        return [j for j in self.jobs if j.status == "completed"]

    def label(self, axes: Sequence[str]) -> str:
        """`k=v, k=v` over the swept axes (`all runs` when nothing is swept)."""
        ov = self.overrides
        parts = [f"{k}={_short(ov[k])}" for k in axes if k in ov]
        return ", ".join(parts) or "all runs"


def _finite(value: Any) -> float | None:
    """`value` as a float when it is a finite number, else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _parse_override(text: str) -> tuple[str, str]:
    key, sep, value = str(text).partition("=")
    return key.lstrip("+"), value if sep else ""


def _read_overrides(folder: Path, summary: dict | None) -> dict[str, str]:
    path = folder / ".hydra" / "overrides.yaml"
    items: Iterable[str] = []
    if path.is_file():
        try:
            items = yaml.safe_load(path.read_text()) or []
        except yaml.YAMLError:
            items = []
    elif summary and isinstance(summary.get("overrides"), list):
        items = summary["overrides"]
    return dict(_parse_override(o) for o in items)


def _read_summary(folder: Path) -> dict | None:
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # no summary yet, or caught mid-write by an older writer: still running
    return summary if isinstance(summary, dict) else None


def read_metrics(path: Path) -> list[dict[str, float | None]]:
    """The rows of a metrics.csv as floats (None for empty or non-numeric cells); [] if absent."""
    try:
        with open(path, newline="") as f:
            return [{k: _finite(v) if v not in ("nan", "inf", "-inf") else float(v)
                     for k, v in row.items() if k is not None}
                    for row in csv.DictReader(f)]
    except FileNotFoundError:
        return []


def collect_jobs(sweep_dir: Path) -> list[Job]:
    """Every job below (or at) `sweep_dir`: a folder holding summary.json or .hydra/overrides.yaml."""
    sweep_dir = Path(sweep_dir)
    folders = {p.parent for p in sweep_dir.rglob("summary.json")}
    folders |= {p.parent.parent for p in sweep_dir.rglob("overrides.yaml") if p.parent.name == ".hydra"}
    jobs = []
    for folder in sorted(folders):
        summary = _read_summary(folder)
        jobs.append(Job(path=folder, overrides=_read_overrides(folder, summary), summary=summary,
                        metrics=read_metrics(folder / "metrics.csv")))
    return jobs


# ---------------------------------------------------------------------------- grouping


def _sort_value(value: str | None) -> tuple:
    if value is None:
        return (2, 0.0, "")
    number = _finite(value)
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


# ---------------------------------------------------------------------------- formatting


def _short(value: str) -> str:
    """Long float overrides (Optuna samples) shortened to 4 significant digits for display."""
    number = _finite(value)
    if number is not None and len(value) > 8 and not value.lstrip("-").isdigit():
        return f"{number:.4g}"
    return value


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation (n-1; None below 2 values) of the finite values, and n."""
    xs = [x for v in values if (x := _finite(v)) is not None]
    if not xs:
        return None, None, 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None), len(xs)


def format_mean_std(values: Sequence[float | None], digits: int = 2) -> str:
    """`mean ± std` over the values, just the value for one of them, `—` for none."""
    mean, std, n = mean_std(values)
    if mean is None:
        return MISSING
    if n == 1 or std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _format_plain(values: Sequence[float | None], fmt: str) -> str:
    """The mean of values that normally agree across seeds (params, epochs, memory)."""
    mean, _, _ = mean_std(values)
    return MISSING if mean is None else format(mean, fmt)


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _job_status(job: Job) -> str:
    """A job's status for a table cell: the error of a failed job, the progress of a running one."""
    status = job.status
    if status == "failed":
        error = str(job.get("error") or "no error recorded")
        return f"failed: {error[:120] + '…' if len(error) > 120 else error}"
    if status == "running":
        acc = job.last_metric("test_acc")
        progress = f"epoch {job.epochs_done}" + (f", test acc {acc:.2f}" if acc is not None else "")
        return f"running ({progress})" if job.metrics else "running (no epoch yet)"
    return status


def configuration_status(config: Configuration) -> str:
    """`completed` when every job completed, else each other job's status with its seed."""
    others = [j for j in config.jobs if j.status != "completed"]
    if not others:
        return "completed"
    parts = [f"{len(config.completed)} completed"] if config.completed else []
    for job in others:
        seed = f"seed={job.seed}: " if job.seed is not None else ""
        parts.append(f"{seed}{_job_status(job)}")
    return "; ".join(parts)


def has_val(jobs: Sequence[Job]) -> bool:
    """Whether any job has a validation accuracy (a held-out split was used)."""
    return any(_finite(j.get("val_acc")) is not None or j.last_metric("val_acc") is not None
               for j in jobs)


def table_rows(configurations: Sequence[Configuration], axes: Sequence[str],
               with_val: bool) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the paper table, one row per configuration. Metrics are aggregated
    over the configuration's completed jobs (n counts them); the status column names the rest."""
    header = [*axes, "test acc", "n", "best-epoch test acc (not for reporting)", "train acc"]
    header += ["val acc"] if with_val else []
    header += ["params (M)", "weights (MB)", "peak GPU mem (MB)", "epochs", "time/epoch (s)",
               "status"]
    rows = []
    for config in configurations:
        done = config.completed
        ov = config.overrides
        row = [_short(ov[a]) if a in ov else MISSING for a in axes]
        row += [format_mean_std([j.get("test_acc") for j in done]), str(len(done)),
                format_mean_std([j.get("best_test_acc") for j in done]),
                format_mean_std([j.get("train_acc") for j in done])]
        if with_val:
            row.append(format_mean_std([j.get("val_acc") for j in done]))
        params = [j.get("params") for j in done]
        row += [_format_plain([p / 1e6 if _finite(p) is not None else None for p in params], ".3g"),
                _format_plain([j.weights_mb for j in done], ".3g"),
                _format_plain([j.get("peak_mem_mb") for j in done], ".0f"),
                _format_plain([j.epochs_done for j in done], "g"),
                _format_plain([j.time_per_epoch for j in done], ".3g"),
                configuration_status(config)]
        rows.append(row)
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; numeric columns are right-aligned."""
    def numeric(i: int) -> bool:
        cells = [r[i] for r in rows if r[i] != MISSING]
        return bool(cells) and all(_finite(c.split(" ± ")[0]) is not None for c in cells)

    align = ["---:" if numeric(i) else ":---" for i in range(len(header))]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def format_table(jobs: Sequence[Job], configurations: Sequence[Configuration] | None = None) -> str:
    """The markdown report body: counts, constant overrides, the configuration table and the
    list of jobs that did not complete."""
    configurations = list(configurations or group_by_configuration(jobs))
    axes, constant = find_axes(configurations)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    lines = [f"{len(jobs)} jobs in {len(configurations)} configurations: "
             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "."]
    if constant:
        lines += ["", "Constant overrides: "
                  + ", ".join(f"`{k}={v}`" for k, v in constant.items()) + "."]
    lines += ["", "Test acc is the final-epoch test accuracy (%), mean ± std (sample std, n-1) "
              "over the n completed seeds. Best-epoch test acc picks its epoch on the test set "
              "and is not a number to report.", ""]
    header, rows = table_rows(configurations, axes, has_val(jobs))
    lines.append(markdown_table(header, rows))
    unfinished = [j for j in jobs if j.status != "completed"]
    if unfinished:
        lines += ["", "Jobs not completed:", ""]
        for job in unfinished:
            error = f": {job.get('error')}" if job.status == "failed" and job.get("error") else ""
            lines.append(f"- `{job.path.name}`: {job.status}{_md_cell(error)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- csv


def write_csv(jobs: Sequence[Job], configurations: Sequence[Configuration], path: Path) -> None:
    """One row per job: folder, configuration label, every override, status and every metric."""
    axes, _ = find_axes(configurations)
    override_keys = list(dict.fromkeys([*axes, SEED_KEY,
                                        *(k for j in jobs for k in j.overrides)]))
    extra = list(dict.fromkeys(
        k for j in jobs for k, v in (j.summary or {}).items()
        if k not in CSV_METRICS and k not in ("status", "seed", "overrides", "choices")
        and (v is None or isinstance(v, (int, float, str)))))
    columns = ["job", "configuration", *override_keys, "status", *CSV_METRICS, *extra]
    label = {id(j): c.label(axes) for c in configurations for j in c.jobs}
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for job in jobs:
            row: dict[str, Any] = {"job": job.path.name, "configuration": label.get(id(job), ""),
                                   "status": job.status}
            row.update({k: job.overrides.get(k, "") for k in override_keys})
            if not job.overrides.get(SEED_KEY) and job.seed is not None:
                row[SEED_KEY] = job.seed
            for key in (*CSV_METRICS, *extra):
                value = job.get(key)
                row[key] = "" if value is None else value
            row["weights_mb"] = "" if job.weights_mb is None else job.weights_mb
            row["epochs"] = job.epochs_done
            row["time_per_epoch_s"] = "" if job.time_per_epoch is None else job.time_per_epoch
            if job.status == "running" and job.metrics:  # partial numbers of a running job
                for key in ("train_acc", "train_loss", "test_loss", "best_test_acc"):
                    if row[key] == "":
                        value = (max((v for r in job.metrics if (v := _finite(r.get("test_acc")))
                                      is not None), default=None) if key == "best_test_acc"
                                 else job.last_metric(key))
                        row[key] = "" if value is None else value
            writer.writerow(row)


# ---------------------------------------------------------------------------- plots


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (10, 4)):
    """A figure on the Agg canvas, without pyplot (no global backend state is touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def mean_curve(jobs: Sequence[Job], key: str) -> tuple[list[float], list[float]]:
    """Epochs and the mean of column `key` over the jobs that have a finite value at that epoch."""
    by_epoch: dict[float, list[float]] = {}
    for job in jobs:
        for i, row in enumerate(job.metrics, start=1):
            epoch = _finite(row.get("epoch"))
            value = _finite(row.get(key))
            if value is not None:
                by_epoch.setdefault(epoch if epoch is not None else float(i), []).append(value)
    epochs = sorted(by_epoch)
    return epochs, [statistics.fmean(by_epoch[e]) for e in epochs]


def plot_curves(configurations: Sequence[Configuration], path: Path) -> None:
    """Two panels against epoch, test accuracy and train loss, one line per configuration."""
    from matplotlib.ticker import MaxNLocator

    axes_keys, _ = find_axes(configurations)
    fig, axes = _figure(1, 2, (12, 4.5))
    panels = (("test_acc", "test accuracy (%)"), ("train_loss", "train loss"))
    plotted = False
    for ax, (key, title) in zip(axes[0], panels):
        for config in configurations:
            epochs, values = mean_curve(config.jobs, key)
            if epochs:
                n = sum(1 for j in config.jobs if j.metrics)
                ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, markersize=3,
                        label=f"{config.label(axes_keys)} (n={n})")
                plotted = True
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title + " (mean over seeds)")
        ax.grid(alpha=0.3)
    if plotted:
        axes[0][1].legend(fontsize="small" if len(configurations) < 12 else "x-small",
                          loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        axes[0][0].text(0.5, 0.5, "no epoch finished yet", ha="center", va="center",
                        transform=axes[0][0].transAxes)
    fig.savefig(path, dpi=110)


def plot_summary(configurations: Sequence[Configuration], path: Path) -> None:
    """Final test accuracy per configuration (completed jobs), mean with std error bars."""
    axes_keys, _ = find_axes(configurations)
    labels, means, stds = [], [], []
    for config in configurations:
        mean, std, n = mean_std([j.get("test_acc") for j in config.completed])
        if mean is not None:
            labels.append(f"{config.label(axes_keys)} (n={n})")
            means.append(mean)
            stds.append(std or 0.0)
    fig, axes = _figure(1, 1, (8, max(2.5, 0.4 * len(labels) + 1.2)))
    ax = axes[0][0]
    if labels:
        positions = list(range(len(labels)))
        ax.barh(positions, means, xerr=stds, capsize=4, color="tab:blue", alpha=0.8)
        ax.set_yticks(positions)
        ax.set_yticklabels(labels, fontsize="small")
        ax.invert_yaxis()
        low = min(m - s for m, s in zip(means, stds))
        high = max(m + s for m, s in zip(means, stds))
        margin = max(1.0, 0.1 * (high - low))
        ax.set_xlim(max(0.0, low - margin), min(100.0, high + margin) if high <= 100 else high)
        for y, (m, s) in enumerate(zip(means, stds)):
            ax.text(m, y, f" {m:.2f}" + (f" ± {s:.2f}" if s else ""), va="center",
                    fontsize="small")
    else:
        ax.text(0.5, 0.5, "no completed job yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("final-epoch test accuracy (%), mean ± std over seeds")
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------- optuna


def _load_studies(db: Path) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{db.resolve()}"
    return [optuna.load_study(study_name=s.study_name, storage=storage)
            for s in optuna.get_all_study_summaries(storage)]


def _trial_value(trial: Any) -> float | None:
    values = getattr(trial, "values", None)
    if values:
        return _finite(values[0])
    return _finite(getattr(trial, "value", None))


def _maximize(study: Any) -> bool:
    return str(study.directions[0]).lower().endswith("maximize")


def optuna_section(sweep_dir: Path, history_png: Path | None = None) -> str:
    """For every study in `sweep_dir/optuna.db`: a trials table sorted by objective (best first;
    trials without a value last), the best parameters; plots optuna_history.png if asked.
    Empty string when the folder holds no optuna.db."""
    db = Path(sweep_dir) / "optuna.db"
    if not db.is_file():
        return ""
    studies = _load_studies(db)
    lines = ["## Optuna search", ""]
    if not studies:
        return "\n".join(lines + [f"`{db}` holds no study yet."])
    for study in studies:
        trials = study.get_trials(deepcopy=False)
        maximize = _maximize(study)
        param_names = list(dict.fromkeys(k for t in trials for k in t.params))
        done = [t for t in trials if _trial_value(t) is not None]
        ordered = sorted(done, key=lambda t: _trial_value(t), reverse=maximize)
        ordered += [t for t in trials if _trial_value(t) is None]
        direction = "maximize" if maximize else "minimize"
        lines += [f"### Study `{study.study_name}` ({direction}, {len(trials)} trials)", ""]
        if done:
            best = ordered[0]
            lines.append(f"Best value {_trial_value(best):.4g} (trial {best.number}); best "
                         "parameters: " + ", ".join(f"`{k}={v}`" for k, v in best.params.items()))
            lines.append("")
        header = ["trial", "value", *param_names, "state"]
        rows = [[str(t.number), f"{_trial_value(t):.4g}" if _trial_value(t) is not None
                 else MISSING, *(f"{t.params[p]:.4g}" if isinstance(t.params.get(p), float)
                                 else str(t.params.get(p, MISSING)) for p in param_names),
                 t.state.name] for t in ordered]
        lines += [markdown_table(header, rows), ""]
    if history_png is not None:
        plot_optuna_history(studies, history_png)
    return "\n".join(lines).rstrip()


def plot_optuna_history(studies: Sequence[Any], path: Path) -> None:
    """Objective per trial (dots) and the running best (a step line), one panel per study."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(len(studies), 1, (8, 3.5 * len(studies)))
    for ax, study in zip(axes[:, 0], studies):
        maximize = _maximize(study)
        points = [(t.number, v) for t in study.get_trials(deepcopy=False)
                  if (v := _trial_value(t)) is not None]
        points.sort()
        if points:
            numbers, values = zip(*points)
            best, running = None, []
            for v in values:
                best = v if best is None else (max(best, v) if maximize else min(best, v))
                running.append(best)
            ax.plot(numbers, values, "o", label="objective", alpha=0.8)
            ax.step(numbers, running, where="post", color="tab:red", label="best so far")
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no finished trial yet", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_title(f"study {study.study_name}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial")
        ax.set_ylabel("objective")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------- main


def write_report(sweep_dir: Path) -> str:
    """Write report.md, report.csv, curves.png, summary.png (and the Optuna parts) into
    `sweep_dir`; returns the markdown. Raises FileNotFoundError when there is nothing to report."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a folder: give the sweep folder "
                                f"(hydra.sweep.dir, e.g. multirun/<date>/<time>)")
    jobs = collect_jobs(sweep_dir)
    is_optuna = (sweep_dir / "optuna.db").is_file()
    if not jobs and not is_optuna:
        raise FileNotFoundError(f"no job found under {sweep_dir}: a job is a folder holding "
                                f"summary.json or .hydra/overrides.yaml")
    parts = [f"# Report: {sweep_dir}", ""]
    if jobs:
        configurations = group_by_configuration(jobs)
        parts.append(format_table(jobs, configurations))
        write_csv(jobs, configurations, sweep_dir / "report.csv")
        plot_curves(configurations, sweep_dir / "curves.png")
        plot_summary(configurations, sweep_dir / "summary.png")
    else:
        parts.append("No job folder yet.")
    if is_optuna:
        parts += ["", optuna_section(sweep_dir, sweep_dir / "optuna_history.png")]
    text = "\n".join(parts).rstrip() + "\n"
    (sweep_dir / "report.md").write_text(text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cifar_tricks.report SWEEP_DIR`: write the report files and print report.md."""
    parser = argparse.ArgumentParser(
        prog="python -m cifar_tricks.report",
        description="Turn a sweep folder (or a folder of single runs) into report.md, "
                    "report.csv, curves.png, summary.png (and optuna_history.png).")
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder (hydra.sweep.dir)")
    args = parser.parse_args(argv)
    try:
        text = write_report(args.sweep_dir)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(text, end="")
    written = [p.name for p in (args.sweep_dir / n for n in (
        "report.md", "report.csv", "curves.png", "summary.png", "optuna_history.png")) if p.exists()]
    print(f"\nwrote {', '.join(written)} in {args.sweep_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
