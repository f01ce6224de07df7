"""The two tables, both laid out by the column list (columns.py) inside the rows' identity:

- report.md's, a row per configuration: swept axes | columns | status of the configuration's jobs;
- report.csv's, a row per job: job | configuration | overrides | status | columns | a column per
  summary key no column shows. Each header appears once: a column named like an override (the
  summary's `model` beside `model=...`) is the override's column, holding the job's value.

report.md shortens long values of settings (display.py); report.csv keeps them whole.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable, Sequence

from ..run_folder import Status
from .columns import Column, report_columns
from .display import readable_axes, readable_value
from .runs import SEED_KEY, Configuration, Job, find_axes, group_by_configuration
from .stats import MISSING, finite

__all__ = ["configuration_status", "csv_extra_keys", "csv_header", "format_table",
           "job_status_text", "markdown_table", "table_rows", "write_csv"]

# Summary keys report.csv shows as identity columns (status, seed) or cannot show (not scalar).
NOT_EXTRA = ("status", "seed", "overrides", "choices")
ERROR_CHARS = 120  # a failed job's error is cut there in the status cell (the csv has it whole)


def md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def job_status_text(job: Job) -> str:
    """A job's status for a table cell: the error of a failed job, the progress of a running one."""
    status = job.status
    if status is Status.failed:
        error = str(job.get("error") or "no error recorded")
        cut = error[:ERROR_CHARS] + "…" if len(error) > ERROR_CHARS else error
        return f"{status.value}: {cut}"
    if status is Status.running:
        if not job.metrics:
            return f"{status.value} (no epoch yet)"
        acc = job.last_metric("test_acc")
        progress = f"epoch {job.epochs_done}" + (f", test acc {acc:.2f}" if acc is not None else "")
        return f"{status.value} ({progress})"
    return status.value


def configuration_status(config: Configuration) -> str:
    """`completed` when every job completed, else each other job's status with its seed."""
    others = [j for j in config.jobs if j.status is not Status.completed]
    if not others:
        return Status.completed.value
    parts = [f"{len(config.completed)} {Status.completed.value}"] if config.completed else []
    for job in others:
        seed = f"seed={job.seed}: " if job.seed is not None else ""
        parts.append(f"{seed}{job_status_text(job)}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------- report.md


# extra cells after the columns: (their headers, a configuration's cells)
Extra = tuple[Sequence[str], Callable[[Configuration], Sequence[str]]]


def table_rows(configurations: Sequence[Configuration], axes: Sequence[str],
               columns: Sequence[Column],
               extra: Extra | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the paper table, one row per configuration: its values on the swept
    axes, each column's cell (aggregated over the completed jobs), `extra` cells (a comparison
    with a baseline), the status of the others."""
    header = [*axes, *(c.md_header for c in columns), *(extra[0] if extra else ()), "status"]
    shown = readable_axes([c.overrides for c in configurations], axes)
    rows = []
    for config in configurations:
        ov = config.overrides
        row = [shown[a][ov[a]] if a in ov else MISSING for a in axes]
        row += [c.md_cell(config) for c in columns]
        row += list(extra[1](config)) if extra else []
        row.append(configuration_status(config))
        rows.append(row)
    return header, rows


LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
         "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
         "^": r"\textasciicircum{}", "±": r"$\pm$", "√": r"\checkmark", "—": "--",
         "−": "$-$", "Δ": r"$\Delta$"}


def latex_cell(text: Any) -> str:
    return "".join(LATEX.get(ch, ch) for ch in str(text))


def latex_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A booktabs LaTeX tabular of the same cells (`\\usepackage{booktabs,amssymb}`)."""
    align = "".join("r" if _numeric(rows, i) else "l" for i in range(len(header)))
    lines = [f"\\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(latex_cell(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_cell(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _numeric(rows: Sequence[Sequence[str]], i: int) -> bool:
    cells = [r[i] for r in rows if r[i] != MISSING]
    return bool(cells) and all(finite(c.split(" ")[0]) is not None for c in cells)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; numeric columns are right-aligned."""
    def numeric(i: int) -> bool:
        cells = [r[i] for r in rows if r[i] != MISSING]
        return bool(cells) and all(finite(c.split(" ± ")[0]) is not None for c in cells)

    align = ["---:" if numeric(i) else ":---" for i in range(len(header))]
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def format_table(jobs: Sequence[Job], configurations: Sequence[Configuration] | None = None,
                 columns: Sequence[Column] | None = None, extra: Extra | None = None) -> str:
    """The markdown report body: counts, constant overrides, the configuration table and the
    list of jobs that did not complete. `columns` defaults to the report's column list; `extra`
    adds cells after them (a comparison with a baseline)."""
    configurations = list(configurations or group_by_configuration(jobs))
    columns = report_columns() if columns is None else list(columns)
    axes, constant = find_axes(configurations)
    duplicates = [(d, c) for c in configurations for d in c.duplicates]
    jobs = [j for c in configurations for j in c.jobs]  # each job once
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status.value] = counts.get(job.status.value, 0) + 1
    lines = [f"{len(jobs)} jobs in {len(configurations)} configurations: "
             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "."]
    if constant:
        lines += ["", "Constant overrides: "
                  + ", ".join(f"`{k}={readable_value(str(v))}`" for k, v in constant.items())
                  + "."]
    lines += ["", "Test acc is the final-epoch test accuracy (%), mean ± std (sample std, n-1) "
              "over the n completed seeds. Best-epoch test acc picks its epoch on the test set "
              "and is not a number to report.", ""]
    header, rows = table_rows(configurations, axes, [c for c in columns if c.in_md(jobs)], extra)
    lines.append(markdown_table(header, rows))
    unfinished = [j for j in jobs if j.status is not Status.completed]
    if unfinished:
        lines += ["", "Jobs not completed:", ""]
        for job in unfinished:
            error = job.get("error") if job.status is Status.failed else None
            lines.append(f"- `{job.name}`: {job.status.value}"
                         + (md_cell(f": {error}") if error else ""))
    if duplicates:
        lines += ["", "Folders holding a job counted once already (same configuration and seed; "
                  "the most finished, newest one is reported):", ""]
        for job, configuration in duplicates:
            counted = next(j for j in configuration.jobs if j.seed == job.seed)
            lines.append(f"- `{job.name}` ({job.status.value}): the job of `{counted.name}`")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- report.csv


def csv_extra_keys(jobs: Sequence[Job], columns: Sequence[Column]) -> list[str]:
    """The scalar summary keys no column shows (a newer trainer's, or a field without a column)
    that some job has a value for, in order of appearance: each gets a report.csv column, so
    nothing a job recorded is lost (and no column is empty in every row)."""
    shown = {c.key for c in columns}.union(NOT_EXTRA)
    return list(dict.fromkeys(
        k for j in jobs if j.summary is not None for k, v in j.summary.to_dict().items()
        if k not in shown and isinstance(v, (int, float, str))))


def csv_header(override_keys: Sequence[str], columns: Sequence[Column],
               extra: Sequence[str]) -> list[str]:
    """report.csv's header: job, configuration, overrides, status, columns, extra keys; a name
    already there (an override `model` and the summary's `model`) is not repeated."""
    return list(dict.fromkeys(["job", "configuration", *override_keys, "status",
                               *(c.key for c in columns), *extra]))


def write_csv(jobs: Sequence[Job], configurations: Sequence[Configuration], path: Path,
              columns: Sequence[Column] | None = None) -> None:
    """One row per job (each counted once): folder, configuration label, every override,
    status, each column's value and every other scalar summary key, all written whole.
    `columns` defaults to the report's column list."""
    columns = [c for c in (report_columns() if columns is None else columns) if c.csv]
    axes, _ = find_axes(configurations)
    configuration_of = {id(j): c for c in configurations for j in c.jobs}
    jobs = [j for j in jobs if id(j) in configuration_of]  # a repeat of a counted job: left out
    override_keys = list(dict.fromkeys([*axes, SEED_KEY,
                                        *(k for j in jobs for k in j.overrides)]))
    extra = csv_extra_keys(jobs, columns)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=csv_header(override_keys, columns, extra))
        writer.writeheader()
        for job in jobs:
            configuration = configuration_of[id(job)]
            # the configuration's values: an axis it did not override shows the value it had
            settings = {**configuration.overrides, **job.overrides}
            row: dict[str, Any] = {"job": job.name, "configuration": configuration.label(axes),
                                   "status": job.status.value}
            row.update({k: settings.get(k, "") for k in override_keys})
            if not job.overrides.get(SEED_KEY) and job.seed is not None:
                row[SEED_KEY] = job.seed
            # a column named like an override shows the job's recorded value when it has one
            values = {c.key: c.job_value(job) for c in columns} | {k: job.get(k) for k in extra}
            row.update({k: v for k, v in values.items() if v is not None})
            row.update({k: "" for k, v in values.items() if v is None and k not in row})
            writer.writerow(row)
