"""One run over several processes on CPU (gloo), through the real CLI: torchrun, and a SLURM job
of two tasks through submitit's local executor. The processes meet through files and gloo binds
the loopback interface: nothing listens on any other address."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cifar_tricks import distributed
from cifar_tricks.errors import ConfigError
from conftest import ROOT, run_cli

# LeNet has no BatchNorm: data-parallel training is then the same maths as one process
RUN = ["experiment=smoke", "trainer.batch_size=64", "trainer.num_threads=1", "optim.lr=0.05"]


def loopback_env(meeting: Path) -> dict[str, str]:
    return {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
            "CIFAR_TRICKS_DIST_INIT": f"file://{meeting}", "PYTHONWARNINGS": "ignore"}


def torchrun_command(tmp: Path, name: str, *overrides: str) -> tuple[list[str], dict]:
    """`torchrun --nproc_per_node=2 run.py ...` meeting through files under `tmp`."""
    rendezvous = tmp / f"{name}.rdzv"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--rdzv-backend=c10d", f"--rdzv-endpoint={rendezvous}",
               "--rdzv-conf=store_type=file", str(ROOT / "run.py"), *overrides]
    return command, loopback_env(tmp / f"{name}.pg")


def torchrun(tmp: Path, name: str, *overrides: str) -> subprocess.CompletedProcess:
    command, env = torchrun_command(tmp, name, *overrides)
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def weights(folder: Path, key: str = "model") -> dict[str, torch.Tensor]:
    return torch.load(folder / "checkpoints" / "last.pt", weights_only=True)[key]


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid`, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


@pytest.mark.slow
def test_two_processes_train_what_one_process_trains(tmp_path):
    steps = ["trainer.epochs=2", "trainer.limit_train_batches=4"]
    run_cli(*RUN, *steps, f"hydra.run.dir={tmp_path / 'one'}")
    torchrun(tmp_path, "two", *RUN, *steps, f"hydra.run.dir={tmp_path / 'two'}")

    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    for name, tensor in one.items():  # 8 steps on the same global batches
        torch.testing.assert_close(two[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    a, b = summary(tmp_path / "one"), summary(tmp_path / "two")
    assert (a["world_size"], b["world_size"]) == (1, 2) and b["status"] == "completed"
    # metrics are sums over both processes: the whole test set, the same numbers
    assert b["test_acc"] == pytest.approx(a["test_acc"], abs=1e-6)
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    # rank 0 alone wrote: one folder, each log line once
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["one", "two"]
    log = (tmp_path / "two" / "run.log").read_text()
    assert log.count("epoch 2/2 lr=") == 1 and log.count(": completed after") == 1


@pytest.mark.slow
def test_a_killed_data_parallel_run_resumes_to_the_same_weights(tmp_path):
    run = [*RUN, "model=resnet20", "trainer.epochs=3", "data.num_train=384", "trick=[ema]"]
    torchrun(tmp_path, "straight", *run, f"hydra.run.dir={tmp_path / 'straight'}")

    killed = tmp_path / "killed"
    command, env = torchrun_command(tmp_path, "killed", *run, f"hydra.run.dir={killed}")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    # a lost node: torchrun and both workers die at once (torchrun starts each worker in a
    # session of its own, so the workers are killed by pid, not through torchrun's group)
    for pid in [*children(proc.pid), proc.pid]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert summary(killed)["status"] == "running"
    assert torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["epoch"] < 3

    resumed = torchrun(tmp_path, "resumed", *run, f"hydra.run.dir={killed}")
    assert "resuming" in resumed.stdout + resumed.stderr
    for key in ("model", "eval_model"):
        a, b = weights(tmp_path / "straight", key), weights(killed, key)
        for name, tensor in a.items():
            assert torch.equal(tensor, b[name]), (key, name)
    assert summary(killed)["status"] == "completed"


@pytest.mark.slow
def test_a_slurm_job_of_two_tasks_is_one_run_over_two_processes(tmp_path):
    """hydra/launcher=slurm_local with tasks_per_node=2: submitit starts two processes of the
    job; they take their ranks from submitit and train one run."""
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", "hydra/launcher=slurm_local",
         "hydra.launcher.tasks_per_node=2", *RUN, "trainer.epochs=1",
         f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, env=loopback_env(tmp_path / "slurm.pg"), capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    (job,) = [p.parent for p in sweep.glob("*/summary.json")]
    assert summary(job)["status"] == "completed" and summary(job)["world_size"] == 2
    assert (job / "run.log").read_text().count(": completed after") == 1


@pytest.mark.slow
def test_a_sweep_under_torchrun_is_refused(tmp_path):
    command, env = torchrun_command(tmp_path, "sweep", "-m", *RUN, "seed=0,1",
                                    f"hydra.sweep.dir={tmp_path / 'sweep'}")
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "torchrun trains one run over several processes" in proc.stdout + proc.stderr


def torchrun_environment(monkeypatch, rank: int, world: int, local_world: int) -> None:
    for key, value in {"RANK": rank, "WORLD_SIZE": world, "LOCAL_WORLD_SIZE": local_world}.items():
        monkeypatch.setenv(key, str(value))


def test_every_rank_gets_one_run_folder_and_only_rank_0_writes_there(monkeypatch):
    torchrun_environment(monkeypatch, rank=1, world=2, local_world=2)
    arguments = distributed.hydra_arguments(["model=resnet20"])
    (folder,) = [a for a in arguments if a.startswith("hydra.run.dir=")]
    assert folder.endswith("-torchrun")  # named by torchrun's start, the same for both ranks
    assert {"hydra.output_subdir=null", "hydra/job_logging=disabled"} <= set(arguments)
    torchrun_environment(monkeypatch, rank=0, world=2, local_world=2)
    main = distributed.hydra_arguments(["model=resnet20"])
    assert folder in main and "hydra.output_subdir=null" not in main


def test_several_machines_need_one_named_run_folder(monkeypatch):
    """Each machine's torchrun starts at its own time: a folder named by it would differ."""
    torchrun_environment(monkeypatch, rank=2, world=4, local_world=2)
    with pytest.raises(ConfigError, match=r"--nnodes.*hydra.run.dir="):
        distributed.hydra_arguments(["model=resnet20"])
    named = distributed.hydra_arguments(["model=resnet20", "hydra.run.dir=/shared/run"])
    assert [a for a in named if a.startswith("hydra.run.dir=")] == ["hydra.run.dir=/shared/run"]
