"""Comparisons in the report: Welch's t-test against its closed form, `--baseline` on a sweep,
and every stored ablation's seed table paired row for row with the jobs of its sweep."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from cifar_tricks.report import main
from cifar_tricks.report.compare import SEED_TABLES, load_seed_table, welch
from cifar_tricks.report.runs import Job, _parse_override
from conftest import CONF
from test_ablations import compose_with_hydra
from test_report import completed, make_job, table


def student_t4_cdf(t: float) -> float:
    """The CDF of Student's t with 4 degrees of freedom, in closed form."""
    u = t / math.sqrt(4 + t * t)
    return 0.5 + 0.75 * u * (1 - u * u / 3)


def student_t4_quantile(p: float) -> float:
    low, high = 0.0, 50.0
    for _ in range(200):  # bisection on the closed-form CDF
        middle = (low + high) / 2
        low, high = (middle, high) if student_t4_cdf(middle) < p else (low, middle)
    return low


def test_welch_matches_its_closed_form_for_equal_sizes():
    # [1,2,3] vs [4,5,6]: both variances 1, se = sqrt(1/3 + 1/3), Welch's df = 4 exactly
    result = welch([1, 2, 3], [4, 5, 6])
    se = math.sqrt(2 / 3)
    t = -3 / se
    assert result.difference == pytest.approx(-3)
    assert result.p == pytest.approx(2 * student_t4_cdf(t), rel=1e-9)  # 0.0213
    half = student_t4_quantile(0.975) * se  # 2.776 x 0.816
    assert (result.low, result.high) == pytest.approx((-3 - half, -3 + half), rel=1e-9)
    assert result.verdict == "worse"  # p < 0.05 and ours is lower


@pytest.mark.parametrize("ours, baseline, verdict", [
    ([90.0], [91.0, 92.0], "n=1: no claim"),
    ([91.0, 92.0], [90.0], "n=1: no claim"),
    ([90.0, 90.0], [91.0, 91.0], "no variance: no test"),
    ([90.0, 92.0], [91.0, 91.5], "within noise"),
    ([96.0, 96.2, 96.1], [95.0, 95.1, 95.2], "better"),
    ([], [95.0, 95.1], "no completed seed"),
])
def test_welch_verdicts(ours, baseline, verdict):
    result = welch(ours, baseline)
    assert result.verdict == verdict
    if result.p is not None:  # the CI excludes 0 exactly when the test rejects
        assert (result.p < 0.05) == (not result.low <= 0 <= result.high)


def test_baseline_option_compares_every_configuration_with_the_one_named(tmp_path):
    from scipy import stats

    sweep = tmp_path / "sweep"
    for lr, accs in (("0.1", (90.0, 92.0)), ("0.2", (80.0, 86.0)), ("0.3", (70.0,))):
        for seed, acc in enumerate(accs):
            make_job(sweep, ["experiment=smoke", f"optim.lr={lr}", f"seed={seed}"],
                     completed(acc, acc, 95.0, 50.0, seed))
    assert main([str(sweep), "--baseline", "optim.lr=0.1"]) == 0
    header, rows = table((sweep / "report.md").read_text(), "optim.lr")
    delta, interval, p, verdict = (header.index(h) for h in
                                   ("Δ vs baseline", "95% CI", "p (Welch)", "verdict"))
    assert rows["0.1"][delta] == "baseline"
    assert rows["0.2"][delta] == "-8.00"  # 83 - 91
    reference = stats.ttest_ind([80.0, 86.0], [90.0, 92.0], equal_var=False)  # the library's
    assert rows["0.2"][p] == f"{reference.pvalue:.3f}"
    ci = reference.confidence_interval(0.95)
    assert rows["0.2"][interval] == f"[{ci.low:+.2f}, {ci.high:+.2f}]"
    assert rows["0.3"][delta] == "-21.00" and rows["0.3"][verdict] == "n=1: no claim"


def test_a_baseline_that_names_no_single_configuration_is_refused(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for lr in ("0.1", "0.2"):
        make_job(sweep, ["experiment=smoke", f"optim.lr={lr}"], completed(90, 90, 95, 50, 0))
    assert main([str(sweep), "--baseline", "optim.lr=0.5"]) == 1
    assert "must name one configuration of the sweep; none does" in capsys.readouterr().err


def test_latex_format_writes_the_tables_as_booktabs(tmp_path):
    sweep = tmp_path / "sweep"
    make_job(sweep, ["experiment=smoke", "aug=[cutout]"], completed(90.5, 91, 95, 50, 0))
    assert main([str(sweep), "--format", "latex"]) == 0
    tex = (sweep / "report.tex").read_text()
    assert tex.startswith("\\begin{tabular}") and "\\toprule" in tex and "90.50" in tex


# ------------------------------------------------------------------------------ seed tables

def sweep_jobs(ablation: str) -> list[Job]:
    """The jobs `python run.py ablation=<name>` launches, as the report sees them (overrides)."""
    cfg = compose_with_hydra([f"ablation={ablation}"])
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)
    return [Job(path=Path(ablation) / str(i), overrides=dict(_parse_override(o) for o in job),
                summary=None) for i, job in enumerate(j for batch in batches for j in batch)]


TABLES = sorted(p.stem for p in SEED_TABLES.glob("*.yaml") if not p.stem.startswith("_"))


def test_every_ablation_has_a_seed_table_and_every_table_an_ablation():
    assert TABLES == sorted(p.stem for p in (CONF / "ablation").glob("*.yaml"))


@pytest.mark.parametrize("ablation", TABLES)
def test_each_seed_table_row_is_one_job_of_its_sweep(ablation):
    table = load_seed_table(ablation)
    assert table.section and table.metrics and table.rows
    jobs = sweep_jobs(ablation)
    rows_of = {id(j): [r.name for r in table.rows if all(
        j.overrides.get(k) == v for k, v in r.match.items())] for j in jobs}
    if ablation == "divide_co_train":  # one row, the recipe, over its seeds
        assert all(names == ["divide-co-train"] for names in rows_of.values())
        return
    assert all(len(names) == 1 for names in rows_of.values()), rows_of  # each job, one row
    assert sorted(n for names in rows_of.values() for n in names) == \
        sorted(r.name for r in table.rows)  # each row, one job
    assert table.baseline is None or table.baseline in [r.name for r in table.rows]
    for row in table.rows:
        assert set(row.seed) <= set(table.metrics) and set(row.ticks) <= set(table.ticks)
