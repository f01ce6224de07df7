"""The report command: sweep folders written by hand (numbers checked against hand-computed mean
± std), then the real CLI on a real 2x2 grid and a real Optuna study."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_tricks.report import collect_jobs, group_by_configuration, main, mean_std
from conftest import ROOT, run_cli

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "val_loss",
                  "val_acc", "epoch_time_s", "img_per_s"]


def make_job(sweep: Path, overrides: list[str], summary: dict | None,
             metrics: list[dict] | None = None) -> Path:
    """A job folder as run.py leaves it: .hydra/overrides.yaml, summary.json, metrics.csv."""
    folder = sweep / ",".join(sorted(overrides))
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps({**summary, "overrides": overrides}))
    if metrics:
        with open(folder / "metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(metrics)
    return folder


def epochs(test_accs: list[float], losses: list[float]) -> list[dict]:
    return [{"epoch": i + 1, "lr": 0.1, "train_loss": loss, "train_acc": 50.0, "test_loss": 1.0,
             "test_acc": acc, "val_loss": 1.0, "val_acc": 40.0, "epoch_time_s": 2.0,
             "img_per_s": 1000.0} for i, (acc, loss) in enumerate(zip(test_accs, losses))]


def completed(test_acc: float, best: float, train_acc: float, val_acc: float, seed: int) -> dict:
    return {"status": "completed", "model": "resnet20", "params": 1_000_000, "epochs": 2,
            "epochs_planned": 2, "test_acc": test_acc, "best_test_acc": best,
            "val_acc": val_acc, "train_acc": train_acc, "train_time_s": 8.0, "img_per_s": 1000.0,
            "peak_mem_mb": 512.0, "seed": seed}


@pytest.fixture
def fake_sweep(tmp_path: Path) -> Path:
    """lr=0.1 x seeds 0,1 and lr=0.2 x seeds 0,1 completed, lr=0.2 seed 2 diverged, lr=0.4
    failed, lr=0.3 running (partial metrics), lr=0.5 started without a summary yet."""
    sweep = tmp_path / "sweep"
    base = ["experiment=smoke", "model=resnet20"]
    make_job(sweep, [*base, "optim.lr=0.1", "seed=0"], completed(90.0, 91.0, 99.0, 88.0, 0),
             epochs([80.0, 90.0], [1.0, 0.5]))
    make_job(sweep, [*base, "optim.lr=0.1", "seed=1"], completed(92.0, 93.0, 97.0, 90.0, 1),
             epochs([82.0, 92.0], [1.2, 0.7]))
    make_job(sweep, [*base, "optim.lr=0.2", "seed=0"], completed(80.0, 80.0, 90.0, 70.0, 0),
             epochs([70.0, 80.0], [1.5, 1.0]))
    make_job(sweep, [*base, "optim.lr=0.2", "seed=1"], completed(86.0, 87.0, 94.0, 76.0, 1),
             epochs([75.0, 86.0], [1.4, 0.9]))
    make_job(sweep, [*base, "optim.lr=0.2", "seed=2"],
             {"status": "diverged", "params": 1_000_000, "epochs": 1, "test_acc": None,
              "best_test_acc": 10.0, "seed": 2}, epochs([10.0], [float("nan")]))
    make_job(sweep, [*base, "optim.lr=0.4", "seed=0"],
             {"status": "failed", "error": "RuntimeError: CUDA out of memory", "params": None,
              "seed": 0})
    make_job(sweep, [*base, "optim.lr=0.3", "seed=0"], {"status": "running", "seed": 0},
             epochs([60.0], [2.0]))
    make_job(sweep, [*base, "optim.lr=0.5", "seed=0"], None)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    return sweep


def table(markdown: str, first_header: str) -> tuple[list[str], dict[str, list[str]]]:
    """The markdown table whose header starts with `first_header`: header, rows by first cell."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    split = lambda line: [c.strip() for c in line.strip().strip("|").split(" | ")]  # noqa: E731
    header = split(lines[start])
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = split(line)
        rows[cells[0]] = cells
    return header, rows


def test_report_table_has_one_row_per_configuration_with_mean_std_over_seeds(fake_sweep, capsys):
    assert main([str(fake_sweep)]) == 0
    text = (fake_sweep / "report.md").read_text()
    assert text in capsys.readouterr().out  # printed to the terminal as well
    header, rows = table(text, "optim.lr")
    # the swept axis is a column; constant overrides are listed once above the table
    assert header[:4] == ["optim.lr", "test acc", "n", "best-epoch test acc (not for reporting)"]
    for column in ("train acc", "val acc", "params (M)", "weights (MB)", "peak GPU mem (MB)",
                   "epochs", "time/epoch (s)", "status"):
        assert column in header
    assert "model=resnet20" not in header and "seed" not in header
    assert "`experiment=smoke`" in text and "`model=resnet20`" in text
    assert list(rows) == ["0.1", "0.2", "0.3", "0.4", "0.5"]  # numeric order
    col = {name: header.index(name) for name in header}

    a, b = rows["0.1"], rows["0.2"]
    # 90, 92: mean 91, sample std sqrt(2) = 1.414; 80, 86: mean 83, std sqrt(18) = 4.243
    assert a[col["test acc"]] == "91.00 ± 1.41" and a[col["n"]] == "2"
    # the diverged seed is not in n
    assert b[col["test acc"]] == "83.00 ± 4.24" and b[col["n"]] == "2"
    assert a[col["best-epoch test acc (not for reporting)"]] == "92.00 ± 1.41"
    assert a[col["train acc"]] == "98.00 ± 1.41"
    assert a[col["val acc"]] == "89.00 ± 1.41"
    assert a[col["params (M)"]] == "1"
    assert a[col["weights (MB)"]] == f"{1e6 * 4 / 2**20:.3g}" == "3.81"
    assert a[col["peak GPU mem (MB)"]] == "512"
    assert a[col["epochs"]] == "2" and a[col["time/epoch (s)"]] == "4"
    assert a[col["status"]] == "completed"
    assert b[col["status"]] == "2 completed; seed=2: diverged"
    # jobs that did not complete keep a row with their status (and the error of a failed one)
    assert rows["0.4"][col["test acc"]] == "—" and rows["0.4"][col["n"]] == "0"
    assert rows["0.4"][col["status"]] == "seed=0: failed: RuntimeError: CUDA out of memory"
    assert rows["0.3"][col["status"]] == "seed=0: running (epoch 1, test acc 60.00)"
    assert rows["0.5"][col["status"]] == "seed=0: running (no epoch yet)"
    assert "8 jobs in 5 configurations" in text


def test_report_csv_has_one_row_per_job_and_pngs_are_written(fake_sweep):
    assert main([str(fake_sweep)]) == 0
    with open(fake_sweep / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    by = {(r["optim.lr"], r["seed"]): r for r in rows}
    assert by[("0.1", "1")]["test_acc"] == "92.0" and by[("0.1", "1")]["status"] == "completed"
    assert float(by[("0.1", "1")]["weights_mb"]) == pytest.approx(1e6 * 4 / 2**20)
    assert by[("0.2", "2")]["status"] == "diverged"
    assert by[("0.4", "0")]["error"] == "RuntimeError: CUDA out of memory"
    assert by[("0.3", "0")]["status"] == "running" and by[("0.3", "0")]["epochs"] == "1"
    assert by[("0.5", "0")]["status"] == "running"
    assert {"experiment", "model", "val_acc", "peak_mem_mb", "time_per_epoch_s"} <= set(rows[0])
    for name in ("curves.png", "summary.png"):
        path = fake_sweep / name
        assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
    assert not (fake_sweep / "optuna_history.png").exists()


def test_grouping_ignores_seed_and_curves_average_over_seeds(fake_sweep):
    configs = group_by_configuration(collect_jobs(fake_sweep))
    assert [len(c.jobs) for c in configs] == [2, 3, 1, 1, 1]
    from cifar_tricks.report import mean_curve
    assert mean_curve(configs[0].jobs, "test_acc") == ([1.0, 2.0], [81.0, 91.0])
    # the diverged seed's NaN loss is left out of the mean at epoch 1
    assert mean_curve(configs[1].jobs, "train_loss") == ([1.0, 2.0], [1.45, 0.95])
    mean, std, n = mean_std([90.0, 92.0, None, float("nan")])
    assert (mean, n) == (91.0, 2) and math.isclose(std, math.sqrt(2))


def test_a_folder_of_single_runs_and_a_missing_folder(tmp_path, capsys):
    runs = tmp_path / "outputs"
    make_job(runs / "2026-01-01", ["seed=3"], completed(70.0, 71.0, 80.0, 60.0, 3))
    assert main([str(runs)]) == 0
    header, rows = table((runs / "report.md").read_text(), "test acc")
    assert list(rows.values())[0][:2] == ["70.00", "1"]  # n=1: just the value
    assert "val acc" in header
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "not a folder" in capsys.readouterr().err


def report_cli(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "cifar_tricks.report", str(folder)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


SMOKE = ["experiment=smoke", "data.num_train=128", "data.num_test=64", "data.val_size=32"]


@pytest.mark.slow
def test_end_to_end_report_of_a_real_2x2_grid(tmp_path):
    sweep = tmp_path / "grid"
    run_cli("-m", *SMOKE, "trainer.limit_eval_batches=1", "optim.lr=0.01,0.02", "seed=0,1",
            f"hydra.sweep.dir={sweep}")
    proc = report_cli(sweep)
    text = (sweep / "report.md").read_text()
    assert text in proc.stdout
    header, rows = table(text, "optim.lr")
    assert list(rows) == ["0.01", "0.02"]
    n = header.index("n")
    assert [r[n] for r in rows.values()] == ["2", "2"]
    assert all(r[header.index("status")] == "completed" for r in rows.values())
    # mean ± std recomputed from the jobs' own summary.json files
    accs: dict[str, list[float]] = {}
    for path in sweep.glob("*/summary.json"):
        summary = json.loads(path.read_text())
        lr = next(o.split("=")[1] for o in summary["overrides"] if o.startswith("optim.lr="))
        accs.setdefault(lr, []).append(summary["test_acc"])
    for lr, values in accs.items():
        mean, std = sum(values) / 2, math.sqrt(sum((v - sum(values) / 2) ** 2 for v in values))
        assert rows[lr][header.index("test acc")] == f"{mean:.2f} ± {std:.2f}"
    with open(sweep / "report.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4
    for name in ("report.csv", "curves.png", "summary.png"):
        assert (sweep / name).stat().st_size > 0


@pytest.mark.slow
def test_end_to_end_report_of_an_optuna_study_run_twice(tmp_path):
    sweep = tmp_path / "search"
    args = ["hparams_search=lr_wd_optuna", *SMOKE, "hydra.sweeper.n_trials=3",
            "hydra.sweeper.sampler.n_startup_trials=2", f"hydra.sweep.dir={sweep}"]
    run_cli(*args)
    run_cli(*args)  # the same study: 3 more trials
    proc = report_cli(sweep)
    text = (sweep / "report.md").read_text()
    assert "## Optuna search" in proc.stdout
    header, rows = table(text, "trial")
    assert header == ["trial", "value", "optim.lr", "optim.weight_decay", "state"]
    assert sorted(rows, key=int) == [str(i) for i in range(6)]
    values = [float(r[1]) for r in rows.values()]
    assert values == sorted(values, reverse=True)  # maximised: best first
    assert "best parameters: `optim.lr=" in text
    assert (sweep / "optuna_history.png").stat().st_size > 0
    # the trial folders are jobs too: 6 configurations of one trial each
    assert "6 jobs in 6 configurations" in text


def read_csv(path: Path) -> tuple[list[str], dict[tuple[str, str], dict[str, str]]]:
    """report.csv's header and its rows by (optim.lr, seed)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = {(r["optim.lr"], r["seed"]): r for r in reader}
        return list(reader.fieldnames or []), rows


def test_a_column_is_one_line_that_both_report_md_and_report_csv_follow(fake_sweep, monkeypatch):
    from cifar_tricks.report import columns

    def gap(job):
        train, test = job.get("train_acc"), job.get("test_acc")
        return None if train is None or test is None else train - test

    monkeypatch.setattr(columns, "COLUMNS", [*columns.COLUMNS,
                                             columns.Column("gap", "train-test gap", value=gap)])
    assert main([str(fake_sweep)]) == 0
    header, rows = table((fake_sweep / "report.md").read_text(), "optim.lr")
    assert header[-2:] == ["train-test gap", "status"]  # after the other columns, before status
    # train - test acc per seed: lr=0.1: 99-90=9, 97-92=5: mean 7, sample std sqrt(8) = 2.828;
    # lr=0.2: 90-80=10, 94-86=8: mean 9, std sqrt(2) = 1.414 (the diverged seed is not completed)
    assert rows["0.1"][-2] == "7.00 ± 2.83" and rows["0.2"][-2] == "9.00 ± 1.41"
    assert rows["0.3"][-2] == rows["0.4"][-2] == rows["0.5"][-2] == "—"  # no completed seed
    csv_header, by = read_csv(fake_sweep / "report.csv")
    assert csv_header[-1] == "gap"
    assert {k: r["gap"] for k, r in by.items()} == {
        ("0.1", "0"): "9.0", ("0.1", "1"): "5.0", ("0.2", "0"): "10.0", ("0.2", "1"): "8.0",
        ("0.2", "2"): "", ("0.4", "0"): "", ("0.3", "0"): "", ("0.5", "0"): ""}
    # the running job's csv row carries its partial numbers from metrics.csv (epoch 1 of 1)
    running = by[("0.3", "0")]
    assert (running["train_acc"], running["best_test_acc"], running["train_loss"]) == \
        ("50.0", "60.0", "2.0")


def test_unknown_summary_keys_get_a_csv_column_until_a_column_shows_them(fake_sweep, monkeypatch):
    from cifar_tricks.report import columns

    for seed, lr_found in (("0", 0.03), ("1", 0.05)):  # a key a newer trainer might write
        path = fake_sweep / f"experiment=smoke,model=resnet20,optim.lr=0.1,seed={seed}"
        summary = json.loads((path / "summary.json").read_text())
        (path / "summary.json").write_text(json.dumps({**summary, "lr_found": lr_found}))
    assert main([str(fake_sweep)]) == 0
    csv_header, by = read_csv(fake_sweep / "report.csv")
    assert csv_header[-1] == "lr_found"
    assert (by[("0.1", "0")]["lr_found"], by[("0.1", "1")]["lr_found"]) == ("0.03", "0.05")
    assert by[("0.2", "0")]["lr_found"] == ""
    header, _ = table((fake_sweep / "report.md").read_text(), "optim.lr")
    assert "lr_found" not in header

    shown = columns.Column("lr_found", "found lr", aggregate=columns.plain(".3f"))
    monkeypatch.setattr(columns, "COLUMNS", [*columns.COLUMNS, shown])
    assert main([str(fake_sweep)]) == 0
    csv_header, by = read_csv(fake_sweep / "report.csv")
    assert csv_header.count("lr_found") == 1 and by[("0.1", "1")]["lr_found"] == "0.05"
    header, rows = table((fake_sweep / "report.md").read_text(), "optim.lr")
    found = header.index("found lr")
    assert rows["0.1"][found] == "0.040" and rows["0.2"][found] == "—"  # (0.03 + 0.05) / 2


def test_a_status_this_version_does_not_know_is_reported_as_failed(tmp_path):
    runs = tmp_path / "outputs"
    make_job(runs, ["seed=0"], completed(70.0, 71.0, 80.0, 60.0, 0))
    make_job(runs, ["seed=1"], {**completed(72.0, 73.0, 80.0, 60.0, 1), "status": "exploded"})
    assert main([str(runs)]) == 0
    text = (runs / "report.md").read_text()
    header, rows = table(text, "test acc")
    (row,) = rows.values()
    assert row[:2] == ["70.00", "1"]  # only the completed seed
    assert row[header.index("status")] == "1 completed; seed=1: failed: unknown status 'exploded'"
    with open(runs / "report.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["completed", "failed"]


def test_a_seed_held_by_two_folders_is_counted_once(tmp_path, capsys):
    """An older sweep run once without seeds and once with `seed=0,1`: the default-seed job and
    its `seed=0` twin are one job; n counts distinct seeds, the mean uses each seed once."""
    sweep = tmp_path / "sweep"
    base = ["experiment=smoke", "optim.lr=0.1"]
    make_job(sweep, base, completed(70.0, 70.0, 90.0, 60.0, 0))  # no seed override: seed 0
    make_job(sweep, [*base, "seed=0"], completed(70.0, 70.0, 90.0, 60.0, 0))
    make_job(sweep, [*base, "seed=1"], completed(80.0, 80.0, 90.0, 60.0, 1))
    make_job(sweep, ["experiment=smoke", "optim.lr=0.2"], completed(50.0, 50.0, 90.0, 60.0, 0))
    assert main([str(sweep)]) == 0
    text = (sweep / "report.md").read_text()
    header, rows = table(text, "optim.lr")
    assert rows["0.1"][header.index("n")] == "2"
    assert rows["0.1"][header.index("test acc")] == "75.00 ± 7.07"  # (70, 80), not (70, 70, 80)
    assert "3 jobs in 2 configurations: 3 completed." in text
    assert "counted once already" in text and "`experiment=smoke,optim.lr=0.1,seed=0`" in text
    with open(sweep / "report.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3


def test_report_axes_show_values_a_job_did_not_have_to_override(tmp_path):
    """Canonical job overrides leave out what an experiment sets anyway (lr 0.02 of smoke):
    the table shows the job's value from its .hydra/config.yaml, not a gap."""
    sweep = tmp_path / "sweep"
    explicit = make_job(sweep, ["experiment=smoke", "optim.lr=0.01"],
                        {**completed(60.0, 60.0, 90.0, 50.0, 0), "job_key": "a",
                         "job_overrides": ["experiment=smoke", "optim.lr=0.01"]})
    implicit = make_job(sweep, ["experiment=smoke", "optim.lr=0.02"],
                        {**completed(65.0, 65.0, 90.0, 50.0, 0), "job_key": "b",
                         "job_overrides": ["experiment=smoke"]})
    for folder, lr in ((explicit, 0.01), (implicit, 0.02)):
        (folder / ".hydra" / "config.yaml").write_text(f"optim:\n  lr: {lr}\n")
    assert main([str(sweep)]) == 0
    header, rows = table((sweep / "report.md").read_text(), "optim.lr")
    assert sorted(rows) == ["0.01", "0.02"]
    assert rows["0.02"][header.index("test acc")] == "65.00"


def test_the_process_count_is_a_column_only_when_the_sweep_mixes_counts(tmp_path, capsys):
    """summary.json's world_size: 1 for a plain run, N under torchrun; a sweep whose runs all
    used one count does not spend a column on it (older summaries, without the key, count 1)."""
    sweep = tmp_path / "sweep"
    make_job(sweep, ["optim.lr=0.1"], completed(90.0, 91.0, 99.0, 88.0, 0))
    make_job(sweep, ["optim.lr=0.2"], {**completed(80.0, 80.0, 90.0, 70.0, 0), "world_size": 1})
    assert main([str(sweep)]) == 0
    header, _ = table((sweep / "report.md").read_text(), "optim.lr")
    assert "processes" not in header

    make_job(sweep, ["optim.lr=0.4"], {**completed(85.0, 85.0, 95.0, 75.0, 0), "world_size": 4})
    assert main([str(sweep)]) == 0
    header, rows = table((sweep / "report.md").read_text(), "optim.lr")
    processes = header.index("processes")
    assert {lr: cells[processes] for lr, cells in rows.items()} == {"0.1": "1", "0.2": "1",
                                                                    "0.4": "4"}


def test_a_summary_copied_inside_a_job_folder_is_not_another_job(tmp_path):
    # logger=[wandb] copies summary.json into <job>/wandb/offline-run-*/files/: still one job
    sweep = tmp_path / "sweep"
    jobs = [make_job(sweep, ["experiment=smoke", f"seed={s}"], completed(90.0, 90.0, 99.0, 88.0, s))
            for s in (0, 1)]
    for job in jobs:
        copy = job / "wandb" / "offline-run-1" / "files"
        copy.mkdir(parents=True)
        (copy / "summary.json").write_text((job / "summary.json").read_text())
    assert sorted(j.path for j in collect_jobs(sweep)) == sorted(jobs)
