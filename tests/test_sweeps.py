"""The real CLI in subprocesses: grids, reruns, parallel jobs, Optuna studies, kill and resume."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cifar_tricks.run_folder import TIMING_COLUMNS
from conftest import ROOT, run_cli

SMOKE = ["experiment=smoke", "data.num_train=256", "data.num_test=128", "data.val_size=32"]


def summaries(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")}


@pytest.mark.slow
def test_grid_with_a_diverging_job_finishes_and_its_rerun_skips_every_job(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *SMOKE, "optim.lr=0.02,1e12", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    run_cli(*args)
    jobs = summaries(sweep)
    assert len(jobs) == 4, sorted(jobs)
    def swept(s):
        return dict(o.split("=") for o in s["overrides"] if o.startswith(("optim", "seed")))

    status = {(float(swept(s)["optim.lr"]), int(swept(s)["seed"])): s["status"]
              for s in jobs.values()}
    assert status == {(0.02, 0): "completed", (0.02, 1): "completed",
                      (1e12, 0): "diverged", (1e12, 1): "diverged"}
    # one folder per job, named by the overrides that change it: lr 0.02 is what smoke sets
    # anyway and seed 0 the default, so neither is in a name; 1e12 is spelled as the config holds it
    common = "data.num_test=128,data.num_train=256,data.val_size=32,experiment=smoke"
    assert sorted(jobs) == sorted([common, f"{common},seed=1",
                                   f"{common},optim.lr=1000000000000.0",
                                   f"{common},optim.lr=1000000000000.0,seed=1"])

    # a job killed before it finished leaves status "running": the rerun resumes that one only
    unfinished = sweep / f"{common},seed=1"
    (unfinished / "summary.json").write_text(
        json.dumps({**jobs[unfinished.name], "status": "running"}))
    finished = [p for p in sweep.glob("*/summary.json") if p.parent != unfinished]
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    ckpts = {p: p.stat().st_mtime_ns for p in sweep.glob("*/checkpoints/last.pt")}
    rerun = run_cli(*args)
    log = rerun.stdout + rerun.stderr
    assert log.count("skipping") == 3 and log.count("resuming") == 1
    assert {p: p.stat().st_mtime_ns for p in finished} == stamps
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("*/checkpoints/last.pt")} == ckpts
    assert summaries(sweep)[unfinished.name]["status"] == "completed"
    assert summaries(sweep)[unfinished.name]["test_acc"] == jobs[unfinished.name]["test_acc"]


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", *SMOKE, "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                   "trainer.num_threads=1", f"hydra.sweep.dir={sweep}")
    assert "Joblib.Parallel" in proc.stdout + proc.stderr
    jobs = summaries(sweep)
    assert sorted(s["seed"] for s in jobs.values()) == [0, 1]
    assert all(s["status"] == "completed" for s in jobs.values())


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path):
    args = [*SMOKE, "model=resnet20", "trainer.epochs=2", "optim.lr=0.05",
            "aug=[autoaugment,cutout,mixup]", "trick=[sam,ema,label_smooth]",
            "trainer.num_threads=2"]
    run_cli(*args, f"hydra.run.dir={tmp_path / 'straight'}")

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args,
                             f"hydra.run.dir={killed}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = json.loads((killed / "summary.json").read_text())
    assert interrupted["status"] == "running"  # killed in the middle, not after the end
    assert torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1

    # the kernel dropped the killed run's folder lock: the rerun may claim the folder
    resumed = run_cli(*args, f"hydra.run.dir={killed}")
    assert "resuming" in resumed.stdout + resumed.stderr
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    drop_times = lambda h: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS}  # noqa: E731
                            for r in h]
    assert drop_times(a["history"]) == drop_times(b["history"])
    assert json.loads((killed / "summary.json").read_text())["status"] == "completed"


def test_smoke_experiment_runs_offline_in_well_under_a_minute(tmp_path):
    start = time.time()
    run_cli("experiment=smoke", f"hydra.run.dir={tmp_path}")
    assert time.time() - start < 45
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["model"] == "lenet"
    for name in ("metrics.csv", "checkpoints/last.pt", ".hydra/config.yaml",
                 ".hydra/overrides.yaml"):
        assert (tmp_path / name).exists(), name


def test_a_run_without_a_folder_writes_outputs_date_time_in_the_current_directory(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *SMOKE], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (summary,) = tmp_path.glob("outputs/*/*/summary.json")
    date, time_of_day = summary.parent.parent.name, summary.parent.name
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)
    assert re.fullmatch(r"\d{2}-\d{2}-\d{2}", time_of_day)
    assert json.loads(summary.read_text())["status"] == "completed"


def test_cfg_job_prints_every_knob():
    proc = run_cli("--cfg", "job", "model=resnet18", "data=cifar100", "trainer.epochs=30",
                   "trainer.batch_size=256")
    for line in ("epochs: 30", "batch_size: 256", "num_classes: 100", "resnet.resnet18",
                 "lr: 0.1", "milestones:"):
        assert line in proc.stdout, line


def test_unknown_option_on_the_command_line_lists_the_options():
    proc = run_cli("model=resnet1", check=False)
    assert proc.returncode != 0
    assert "Could not find 'model/resnet1'" in proc.stderr and "resnet20" in proc.stderr
