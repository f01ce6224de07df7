"""Runs the way researchers really run them: several processes on one folder, Ctrl-C and
preemption, a full disk, reruns spelled differently. Real processes, signals, locks and files."""
from __future__ import annotations

import hashlib
import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_cli, write_fake_cifar

SMOKE = ["experiment=smoke", "data.num_train=256", "data.num_test=128", "data.val_size=32",
         "trainer.limit_eval_batches=1"]
# long enough to be caught mid-run: ~1 s per epoch of resnet20 on 2 cores
SLOW = [*SMOKE, "model=resnet20", "trainer.epochs=4", "data.num_train=384", "optim.lr=0.05",
        "aug=[cutout,mixup]", "trick=[ema]", "trainer.num_threads=2"]


def start(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def wait_for(condition, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise TimeoutError("the run never got there")
        time.sleep(0.02)


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def summaries(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}


def has_checkpoint(folder: Path) -> bool:
    return (folder / "checkpoints" / "last.pt").exists()


# ------------------------------------------------------------------------------------ one writer

@pytest.mark.slow
def test_a_second_process_into_a_live_run_folder_is_refused_and_touches_nothing(tmp_path):
    folder = tmp_path / "run"
    # 12 epochs: still running while the two refused processes start (~5 s each)
    first = start(*SLOW, "trainer.epochs=12", f"hydra.run.dir={folder}")
    wait_for(lambda: has_checkpoint(folder))
    files = {p: (p.stat().st_mtime_ns, digest(p)) for p in folder.rglob("*") if p.is_file()
             and p.name not in ("metrics.csv", "last.pt", "run.log", "summary.json")
             and "tensorboard" not in p.parts}
    for other in (["seed=1"], []):  # another job, and the same job again
        started = time.time()
        second = subprocess.run([sys.executable, str(ROOT / "run.py"), *SLOW, "trainer.epochs=12",
                                 *other, f"hydra.run.dir={folder}"], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert time.time() - started < 60 and first.poll() is None  # refused while A runs
        message = second.stdout + second.stderr
        assert str(folder) in message and f"pid {first.pid}" in message, message[-2000:]
    assert first.wait(timeout=240) == 0, first.stdout.read()[-3000:]
    assert summary(folder)["status"] == "completed" and summary(folder)["seed"] == 0
    overrides = (folder / ".hydra" / "overrides.yaml").read_text()
    assert "seed=1" not in overrides  # Hydra's record is still the first run's
    assert {p: (p.stat().st_mtime_ns, digest(p)) for p in files} == files
    assert not list(folder.rglob("*.tmp"))


@pytest.mark.slow
def test_a_second_sweep_reaching_a_job_another_sweep_runs_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    grid = ["-m", *SLOW, "seed=0,1", f"hydra.sweep.dir={sweep}"]
    first = start(*grid)
    wait_for(lambda: any(has_checkpoint(p) for p in sweep.glob("*")))
    second = subprocess.run([sys.executable, str(ROOT / "run.py"), *grid], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode != 0 and first.poll() is None
    message = second.stdout + second.stderr
    assert "is being written by another process" in message and f"pid {first.pid}" in message
    assert first.wait(timeout=300) == 0
    jobs = summaries(sweep)
    assert len(jobs) == 2 and all(s["status"] == "completed" for s in jobs.values())
    assert sorted(s["seed"] for s in jobs.values()) == [0, 1]


# ------------------------------------------------------------------------------------ signals

@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    """The checkpoint of the uninterrupted run the interrupted ones must reproduce."""
    folder = tmp_path_factory.mktemp("straight")
    run_cli(*SLOW, f"hydra.run.dir={folder}")
    return torch.load(folder / "checkpoints" / "last.pt", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_leave_status_interrupted_and_resume_bit_identically(
        tmp_path, straight, signum):
    folder = tmp_path / "run"
    proc = start(*SLOW, f"hydra.run.dir={folder}")
    wait_for(lambda: has_checkpoint(folder))
    proc.send_signal(signum)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, output[-2000:]
    stopped = summary(folder)
    reached = torch.load(folder / "checkpoints" / "last.pt", weights_only=True)["epoch"]
    assert stopped["status"] == "interrupted", output[-2000:]
    assert 1 <= stopped["epochs"] == reached < 4  # the epoch reached, its checkpoint kept
    assert "interrupted after" in output and not list(folder.rglob("*.tmp"))

    resumed = run_cli(*SLOW, f"hydra.run.dir={folder}")
    assert "resuming" in resumed.stdout + resumed.stderr
    final = torch.load(folder / "checkpoints" / "last.pt", weights_only=True)
    assert final["epoch"] == straight["epoch"] == 4
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, final["model"][name]), name
    for name, tensor in straight["eval_model"].items():
        assert torch.equal(tensor, final["eval_model"][name]), name
    assert summary(folder)["status"] == "completed"


@pytest.mark.slow
def test_a_full_disk_while_checkpointing_fails_cleanly_and_keeps_the_last_checkpoint(tmp_path):
    folder = tmp_path / "run"
    proc = start(*SLOW, f"hydra.run.dir={folder}")
    wait_for(lambda: has_checkpoint(folder))
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    checkpoint = folder / "checkpoints" / "last.pt"
    before = digest(checkpoint)
    size = checkpoint.stat().st_size

    def small_disk() -> None:  # in the child: files may not grow past half a checkpoint
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killing signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    full = subprocess.run([sys.executable, str(ROOT / "run.py"), *SLOW,
                           f"hydra.run.dir={folder}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, preexec_fn=small_disk)
    assert full.returncode != 0
    failed = summary(folder)
    assert failed["status"] == "failed"
    assert "DiskFullError" in failed["error"] and str(checkpoint) in failed["error"]
    assert "full" in failed["error"] and "intact" in failed["error"]
    assert digest(checkpoint) == before  # the previous checkpoint, untouched
    assert not list(folder.rglob("*.tmp"))  # the partial file is gone


# ------------------------------------------------------------------------------------ sweeps

@pytest.mark.slow
def test_adding_seeds_to_a_sweep_trains_only_the_new_ones_and_counts_each_once(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("-m", *SMOKE, "aug=[],[cutout]", f"hydra.sweep.dir={sweep}")
    first = {name: (sweep / name / "summary.json").stat().st_mtime_ns for name in summaries(sweep)}
    assert len(first) == 2

    again = run_cli("-m", *SMOKE, "aug=[],[cutout]", "seed=0,1", f"hydra.sweep.dir={sweep}")
    log = again.stdout + again.stderr
    assert log.count("skipping") == 2  # seed 0 is the default: those jobs are done
    jobs = summaries(sweep)
    assert len(jobs) == 4 and sorted(s["seed"] for s in jobs.values()) == [0, 0, 1, 1]
    assert {n: (sweep / n / "summary.json").stat().st_mtime_ns for n in first} == first

    report = subprocess.run([sys.executable, "-m", "cifar_tricks.report", str(sweep)],
                            capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [line for line in report.splitlines() if line.startswith(("| [] |", "| [cutout] |"))]
    n = report.splitlines()[[i for i, line in enumerate(report.splitlines())
                             if line.startswith("| aug |")][0]].split(" | ").index("n")
    assert len(rows) == 2 and all(row.split(" | ")[n] == "2" for row in rows), report


@pytest.mark.slow
def test_moving_the_data_or_changing_threads_and_eval_batch_retrains_nothing(tmp_path):
    first_root, second_root = tmp_path / "data_a", tmp_path / "data_b"
    write_fake_cifar(first_root)
    write_fake_cifar(second_root)  # the same files, elsewhere
    sweep = tmp_path / "sweep"
    common = ["-m", "model=lenet", "trainer.epochs=1", "trainer.limit_train_batches=3",
              "trainer.limit_eval_batches=1", "sched=constant", "optim.lr=0.01,0.02",
              f"hydra.sweep.dir={sweep}"]
    run_cli(*common, f"data.root={first_root}")
    done = {n: (sweep / n / "summary.json").stat().st_mtime_ns for n in summaries(sweep)}
    assert len(done) == 2 and not any("data.root" in name for name in done)

    again = run_cli(*common, f"data.root={second_root}", "trainer.num_threads=1",
                    "trainer.eval_batch_size=7")
    assert (again.stdout + again.stderr).count("skipping") == 2
    assert {n: (sweep / n / "summary.json").stat().st_mtime_ns for n in summaries(sweep)} == done
    report = subprocess.run([sys.executable, "-m", "cifar_tricks.report", str(sweep)],
                            capture_output=True, text=True, timeout=120, check=True).stdout
    assert "data.root" not in report and "2 jobs in 2 configurations" in report
