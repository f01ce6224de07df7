"""Sweep folder -> paper-style table and plots.

    python -m cifar_tricks.report multirun/<date>/<time>

Every folder below the sweep folder that holds a `summary.json` or a `.hydra/overrides.yaml` is a
job (so a folder of single runs works too). Jobs are grouped into configurations by their
overrides minus `seed` and minus the settings that cannot change a result (data location,
device, threads, logging, ...: identity.NON_RESULT_KEYS), so replicates over seeds make one row
and the axes are the settings whose values differ. Written into the sweep folder:

- `report.md`   one row per configuration: the swept axes (long values shortened: `0.01235`,
                `[autoaugment,…,mixup]`, `/data/…/cifar10/x`), final-epoch test accuracy as
                mean ± std over seeds (sample std, n-1) with n, and the other metrics; jobs that
                are not completed (running, diverged, failed) keep their place with their status.
                Also printed to the terminal.
- `report.csv`  one row per job: every override and metric written whole, each column once.
- `curves.png`  test accuracy and train loss against epoch, one line per configuration
                (mean over the seeds that reached each epoch; partial runs included).
- `summary.png` final test accuracy per configuration: mean with std error bars, the value
                above each point; the axis spans the data (and says so when it does not
                start at 0).
- for an Optuna sweep (`optuna.db` in the sweep folder): a trials table and the best parameters
  in `report.md`, and `optuna_history.png` (objective per trial and the running best).

A sweep can be reported while it runs: a job without a summary, or with status `running`, is
listed as running and its partial `metrics.csv` feeds the curves.

The package, by concern: runs (reading jobs, grouping them), stats (mean ± std), display (how
settings' values are shortened for reading), columns (the one column list both tables follow),
tables (report.md's and report.csv's writers), plots, optuna_study, compare; this module writes
the whole report and is the command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .columns import COLUMNS, Column, report_columns
from .compare import (
    COMPARISON_HEADER,
    baseline_columns,
    find_baseline,
    load_seed_table,
    parse_baseline,
    seed_section,
    seed_table_rows,
)
from .optuna_study import optuna_section, plot_optuna_history
from .plots import curves_figure, mean_curve, plot_curves, plot_summary, summary_figure
from .runs import Configuration, Job, collect_jobs, find_axes, group_by_configuration, read_metrics
from .stats import format_mean_std, mean_std
from .tables import (
    configuration_status,
    format_table,
    latex_table,
    markdown_table,
    table_rows,
    write_csv,
)

__all__ = ["COLUMNS", "Column", "Configuration", "Job", "collect_jobs", "configuration_status",
           "curves_figure", "find_axes", "format_mean_std", "format_table",
           "group_by_configuration", "main", "markdown_table", "mean_curve", "mean_std",
           "optuna_section", "plot_curves", "plot_optuna_history", "plot_summary", "read_metrics",
           "summary_figure", "write_csv", "write_report"]

OUTPUT_FILES = ("report.md", "report.csv", "report.tex", "curves.png", "summary.png",
                "optuna_history.png")


def write_report(sweep_dir: Path, baseline: str | None = None, latex: bool = False) -> str:
    """Write report.md, report.csv, curves.png, summary.png (and the Optuna parts) into
    `sweep_dir`; returns the markdown. `baseline` ('aug=[]') adds a comparison of every
    configuration with the one it names; an ablation sweep gets the seed's table beside ours;
    `latex` also writes report.tex. Raises FileNotFoundError when there is nothing to report,
    ValueError when the baseline names no single configuration."""
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
    tex: list[str] = []
    if jobs:
        configurations = group_by_configuration(jobs)
        extra = None
        if baseline is not None:
            base = find_baseline(configurations, parse_baseline(baseline))
            extra = (COMPARISON_HEADER, lambda c: baseline_columns(c, base))
            parts += [f"Each configuration's test acc against the baseline `{baseline}`: the "
                      f"difference of means, its 95% confidence interval and the p-value of "
                      f"Welch's t-test over seeds; `within noise` when p >= 0.05.", ""]
        parts.append(format_table(jobs, configurations, extra=extra))
        if latex:
            axes, _ = find_axes(configurations)
            counted = [j for c in configurations for j in c.jobs]
            tex.append(latex_table(*table_rows(
                configurations, axes, [c for c in report_columns() if c.in_md(counted)],
                extra)))
        table = load_seed_table(ablation) if (ablation := _ablation_of(jobs)) else None
        if table is not None:
            counted = [j for c in configurations for j in c.jobs]
            parts += ["", seed_section(table, counted)]
            if latex:
                header, cells, _ = seed_table_rows(table, counted)
                tex.append(latex_table(header, cells))
        write_csv(jobs, configurations, sweep_dir / "report.csv")
        plot_curves(configurations, sweep_dir / "curves.png")
        plot_summary(configurations, sweep_dir / "summary.png")
    else:
        parts.append("No job folder yet.")
    if is_optuna:
        parts += ["", optuna_section(sweep_dir, sweep_dir / "optuna_history.png")]
    text = "\n".join(parts).rstrip() + "\n"
    (sweep_dir / "report.md").write_text(text)
    if latex:
        (sweep_dir / "report.tex").write_text("\n\n".join(tex) + "\n")
    return text


def _ablation_of(jobs: Sequence[Job]) -> str | None:
    """The stored ablation the sweep ran (its jobs' `ablation` choice), if any."""
    names = {(j.get("choices") or {}).get("ablation") for j in jobs if j.summary is not None}
    names.discard(None)
    return names.pop() if len(names) == 1 else None


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cifar_tricks.report SWEEP_DIR`: write the report files and print report.md."""
    parser = argparse.ArgumentParser(
        prog="python -m cifar_tricks.report",
        description="Turn a sweep folder (or a folder of single runs) into report.md, "
                    "report.csv, curves.png, summary.png (and optuna_history.png).")
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder (hydra.sweep.dir)")
    parser.add_argument("--baseline", metavar="'KEY=VALUE ...'",
                        help="compare every configuration with this one: Welch's t-test over "
                             "seeds, 95%% CI of the difference (e.g. --baseline 'aug=[]')")
    parser.add_argument("--format", choices=("md", "latex"), default="md",
                        help="latex: also write report.tex, the tables as booktabs tabulars")
    args = parser.parse_args(argv)
    try:
        text = write_report(args.sweep_dir, args.baseline, latex=args.format == "latex")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(text, end="")
    written = [name for name in OUTPUT_FILES if (args.sweep_dir / name).exists()]
    print(f"\nwrote {', '.join(written)} in {args.sweep_dir}")
    return 0
