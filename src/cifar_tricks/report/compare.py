"""Comparisons a reviewer would accept: a configuration against a baseline configuration
(Welch's t-test over seeds, with the 95% confidence interval of the difference), and an ablation
sweep against the seed repository's published table (conf/seed_tables/<ablation>.yaml).

    python -m cifar_tricks.report SWEEP --baseline 'aug=[]'    # "does trick X help?"

- `welch(ours, baseline)`: the difference of means, its 95% CI and the two-sided p-value of
  Welch's t-test (scipy.stats.ttest_ind, unequal variances), and a verdict: `better` / `worse`
  (p < 0.05), `within noise` (p >= 0.05), or, below two seeds on either side, `n=1: no claim`.
- `SeedTable`: the seed's table as data (rows in its order, its numbers, the tick columns, the
  README section, the deviations of our recipe); `seed_section` renders it beside our numbers.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..config import CONFIG_DIR
from .runs import Configuration, Job
from .stats import MISSING, finite, format_mean_std, mean_std
from .tables import markdown_table

__all__ = ["COMPARISON_HEADER", "Comparison", "SeedRow", "SeedTable", "baseline_columns",
           "find_baseline", "load_seed_table", "parse_baseline", "seed_section",
           "seed_table_rows", "welch"]

ALPHA = 0.05  # two-sided: a 95% confidence interval
SEED_TABLES = CONFIG_DIR / "seed_tables"


@dataclass(frozen=True)
class Comparison:
    """Ours minus the baseline, over seeds."""

    difference: float | None
    low: float | None  # 95% confidence interval of the difference
    high: float | None
    p: float | None
    verdict: str


def welch(values: Sequence[Any], baseline: Sequence[Any]) -> Comparison:
    """Welch's two-sample t-test of `values` against `baseline` (finite values only)."""
    from scipy import stats

    a = [x for v in values if (x := finite(v)) is not None]
    b = [x for v in baseline if (x := finite(v)) is not None]
    if not a or not b:
        return Comparison(None, None, None, None, "no completed seed")
    difference = sum(a) / len(a) - sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return Comparison(difference, None, None, None, "n=1: no claim")
    if max(a) == min(a) and max(b) == min(b):  # no spread on either side: no test applies
        return Comparison(difference, None, None, None, "no variance: no test")
    with warnings.catch_warnings():  # scipy warns when one side is nearly constant: fine here
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_ind(a, b, equal_var=False)
    interval = test.confidence_interval(1 - ALPHA)
    p = float(test.pvalue)
    verdict = "within noise" if p >= ALPHA else ("better" if difference > 0 else "worse")
    return Comparison(difference, float(interval.low), float(interval.high), p, verdict)


def _signed(value: float | None, digits: int = 2) -> str:
    return MISSING if value is None else f"{value:+.{digits}f}"


def comparison_cells(comparison: Comparison) -> list[str]:
    """`Δ`, `95% CI`, `p`, `verdict` cells."""
    interval = MISSING if comparison.low is None else \
        f"[{comparison.low:+.2f}, {comparison.high:+.2f}]"
    p = MISSING if comparison.p is None else (f"{comparison.p:.3f}" if comparison.p >= 0.001
                                              else f"{comparison.p:.1e}")
    return [_signed(comparison.difference), interval, p, comparison.verdict]


COMPARISON_HEADER = ["Δ vs baseline", "95% CI", "p (Welch)", "verdict"]


# ---------------------------------------------------------------------------- --baseline

def parse_baseline(text: str) -> dict[str, str]:
    """`'aug=[] optim.lr=0.1'` -> {"aug": "[]", "optim.lr": "0.1"}."""
    pairs = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--baseline takes key=value pairs, got {item!r}")
        pairs[key.lstrip("+")] = value
    return pairs


def _holds(job: Job, settings: dict[str, str]) -> bool:
    return all(_same_value(job.setting(k), v) for k, v in settings.items())


def _same_value(ours: str | None, wanted: str) -> bool:
    if ours is None:
        return False
    a, b = finite(ours), finite(wanted)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9)
    return ours.replace(" ", "") == wanted.replace(" ", "")


def find_baseline(configurations: Sequence[Configuration],
                  settings: dict[str, str]) -> Configuration:
    """The one configuration whose jobs have all these settings; ValueError otherwise."""
    matches = [c for c in configurations if c.jobs and _holds(c.jobs[0], settings)]
    if len(matches) != 1:
        wanted = " ".join(f"{k}={v}" for k, v in settings.items())
        found = "none does" if not matches else f"{len(matches)} do"
        raise ValueError(f"--baseline '{wanted}' must name one configuration of the sweep; "
                         f"{found}. Name more settings to single one out.")
    return matches[0]


def baseline_columns(configuration: Configuration, baseline: Configuration,
                     metric: str = "test_acc") -> list[str]:
    """The comparison cells of one configuration's `metric` against the baseline's."""
    if configuration is baseline:
        return ["baseline", MISSING, MISSING, MISSING]
    return comparison_cells(welch([j.get(metric) for j in configuration.completed],
                                  [j.get(metric) for j in baseline.completed]))


# ---------------------------------------------------------------------------- the seed's tables

@dataclass
class SeedRow:
    name: str
    match: dict[str, str]  # settings of our jobs that make this row (Job.setting)
    ticks: list[str] = field(default_factory=list)
    seed: dict[str, float | None] = field(default_factory=dict)  # our metric key -> its number
    note: str | None = None  # what the seed wrote instead of a number ("out of mem")


@dataclass
class SeedTable:
    ablation: str
    section: str  # of the seed's README
    title: str
    setting: str  # what the seed trained, in words
    metrics: dict[str, str]  # our summary key -> the seed's column header; the first is primary
    rows: list[SeedRow]
    ticks: list[str] = field(default_factory=list)  # the seed's tick columns, in its order
    baseline: str | None = None  # the name of the row the others are tested against
    deviations: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row_for(self, job: Job) -> SeedRow | None:
        for row in self.rows:
            if _holds(job, row.match):
                return row
        return None


def load_seed_table(ablation: str, folder: Path = SEED_TABLES) -> SeedTable | None:
    """The seed's table of a stored ablation, None when it has none."""
    path = folder / f"{ablation}.yaml"
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text())
    rows = [SeedRow(name=str(r["name"]), match={k: str(v) for k, v in r["match"].items()},
                    ticks=list(r.get("ticks", [])), seed=dict(r.get("seed", {})),
                    note=r.get("note")) for r in data["rows"]]
    common = yaml.safe_load((folder / "_common.yaml").read_text()) \
        if (folder / "_common.yaml").is_file() else {}
    return SeedTable(ablation=ablation, section=str(data["section"]), title=data["title"],
                     setting=data["setting"], metrics=dict(data["metrics"]), rows=rows,
                     ticks=list(data.get("ticks", [])), baseline=data.get("baseline"),
                     deviations=list(data.get("deviations", []))
                     + list(common.get("deviations", [])),
                     notes=list(data.get("notes", [])))


def seed_table_rows(table: SeedTable, jobs: Sequence[Job]
                    ) -> tuple[list[str], list[list[str]], list[Job]]:
    """Header and cells of the seed's table beside ours, and the jobs that are no row of it:
    its rows in its order, a tick column per toggled option, for each metric the seed's number,
    ours (mean ± std over the completed seeds, n) and the difference; each row's primary metric
    tested against the baseline row."""
    by_row: dict[str, list[Job]] = {row.name: [] for row in table.rows}
    unmatched = []
    for job in jobs:
        row = table.row_for(job)
        (by_row[row.name] if row else unmatched).append(job)
    completed = {name: [j for j in js if j.status.value == "completed"]
                 for name, js in by_row.items()}
    primary = next(iter(table.metrics))
    header = ["row", *table.ticks]
    for key, title in table.metrics.items():
        header += [f"seed: {title}", f"ours: {key} (n)", "ours − seed"]
    if table.baseline:
        header += [h.replace("baseline", table.baseline) for h in COMPARISON_HEADER]
    cells = []
    for row in table.rows:
        done = completed[row.name]
        line = [row.name, *("√" if t in row.ticks else "" for t in table.ticks)]
        for key in table.metrics:
            ours = [j.weights_mb if key == "weights_mb" else j.get(key) for j in done]
            seed_value = row.seed.get(key)
            mean, _, n = mean_std(ours)
            line += [f"{seed_value:.2f}" if seed_value is not None else (row.note or MISSING),
                     f"{format_mean_std(ours)} ({n})" if n else MISSING,
                     _signed(mean - seed_value) if mean is not None and seed_value is not None
                     else MISSING]
        if table.baseline:
            line += ["baseline", MISSING, MISSING, MISSING] if row.name == table.baseline else \
                comparison_cells(welch([j.get(primary) for j in done],
                                       [j.get(primary) for j in completed[table.baseline]]))
        cells.append(line)
    return header, cells, unmatched


def seed_section(table: SeedTable, jobs: Sequence[Job]) -> str:
    """The seed's table beside ours (`seed_table_rows`) with what it compares and the
    deviations of our recipe from what the seed's code ran."""
    header, cells, unmatched = seed_table_rows(table, jobs)
    lines = [f"## The seed's table: README §{table.section} {table.title}", "",
             f"The seed trained: {table.setting}. "
             + ("Its numbers are single runs; " if any(r.seed for r in table.rows) else
                "It published no numbers for this table; ")
             + "ours are the final epoch, mean ± std (sample std) over the n seeds. "
             + (f"Each row is tested against the row `{table.baseline}` with Welch's t-test "
                f"over seeds (95% confidence interval of the difference)." if table.baseline
                else "The rows are different models: no row is a baseline for the others."),
             "", markdown_table(header, cells)]
    if unmatched:
        lines += ["", "Jobs of this sweep that are no row of the seed's table: "
                  + ", ".join(f"`{j.name}`" for j in unmatched) + "."]
    for note in table.notes:
        lines += ["", note]
    if table.deviations:
        lines += ["", "Where this recipe departs from what the seed's code ran:", "",
                  markdown_table(["what", "the seed", "here", "why"],
                                 [[d["what"], d["seed"], d["ours"], d["why"]]
                                  for d in table.deviations])]
    return "\n".join(lines)
