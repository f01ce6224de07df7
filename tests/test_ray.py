"""Scale-out through Ray (hydra-ray-launcher, subclassed: cifar_tricks/ray_launch.py): a sweep runs
its jobs as Ray tasks in a local cluster that the sweep starts and stops, with every promise of
the other launchers (job folders named by the job_dir resolver, finished jobs skipped on a rerun),
and a request the cluster can never meet fails at once instead of waiting forever in Ray.

One test, as Ray's start-up costs seconds per sweep. The cluster listens on loopback only and is
gone when the test ends."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

# the plugin is part of the test extra (pip install -e ".[test]"): a missing one is a failure
import hydra_plugins.hydra_ray_launcher  # noqa: F401
import optuna
import pytest
from optuna.trial import TrialState

from cifar_tricks.ray_launch import (
    ClusterTooSmallError,
    Node,
    check_fits,
    cpus_per_job,
    job_options,
)
from conftest import run_cli

RAY_PROCESSES = ("ray::", "gcs_server", "raylet", "ray/dashboard/", "ray/_private/",
                 "ray/autoscaler/")


def ray_processes() -> dict[int, str]:
    """Ray's processes on this machine (its servers, agents and workers): {pid: command line}."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    found = (line.strip().split(None, 1) for line in out.splitlines() if line.strip())
    return {int(pid): args for pid, args in (f for f in found if len(f) == 2)
            if any(mark in args for mark in RAY_PROCESSES)}


def processes_using(folder: str) -> list[int]:
    """The pids of the processes whose command line names `folder` or that hold a file in it
    (Ray's agents rename themselves, but keep their logs open)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to look into
            if folder in (proc / "cmdline").read_bytes().decode(errors="replace") or any(
                    os.readlink(fd).startswith(folder) for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_sweep_through_ray_runs_skips_and_refuses_what_the_cluster_lacks(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's single-machine mode: the node keeps 127.0.0.1 (the launcher turns it on too when asked
    # for a loopback _node_ip_address; set here as well, so that no server of this test listens
    # on another address whatever the launcher does)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Ray's files (sessions, sockets, logs) in a folder of this test: it names the test's Ray
    # processes, and it is short (a socket path has at most 107 characters)
    ray_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    before = set(ray_processes())
    sweep, gpu_sweep = tmp_path / "sweep", tmp_path / "gpu"
    ray_cpu = ["hydra/launcher=ray_cpu", "experiment=smoke", "data.num_train=128",
               "data.num_test=64", "data.val_size=32",
               "hydra.launcher.ray.init._node_ip_address=127.0.0.1",
               "hydra.launcher.ray.init.object_store_memory=100000000",
               "hydra.launcher.ray.init.num_gpus=0",  # a cluster without GPUs, on any machine
               f"+hydra.launcher.ray.init._temp_dir={ray_dir}"]
    command = ["-m", *ray_cpu, "seed=0,1"]
    try:
        # (a) both jobs run as Ray tasks on the local cluster, each in its job_dir folder
        proc = run_cli(*command, f"hydra.sweep.dir={sweep}", timeout=180)
        log = proc.stdout + proc.stderr
        assert "Ray launcher is launching 2 jobs" in log, log
        assert "on 127.0.0.1:" in log, log  # the node stayed on loopback
        summaries = {p.parent.name: p.read_bytes() for p in sweep.glob("*/summary.json")}
        parsed = [json.loads(s) for s in summaries.values()]
        assert all(s["status"] == "completed" for s in parsed), parsed
        assert sorted(s["seed"] for s in parsed) == [0, 1]
        # named by the job_dir resolver (seed=0 changes nothing), which ran in the Ray workers
        assert sorted(summaries) == ["data.num_test=64,data.num_train=128,data.val_size=32,"
                                     f"experiment=smoke{extra}" for extra in ("", ",seed=1")]

        # (b) a rerun skips both finished jobs and leaves their summaries as they were
        run_cli(*command, f"hydra.sweep.dir={sweep}", timeout=180)
        for name, summary in summaries.items():
            assert (sweep / name / "summary.json").read_bytes() == summary
            assert "skipping" in (sweep / name / "run.log").read_text(), name

        # (c) a GPU per job on a cluster without GPUs: refused at once, with the fix, no job
        started = time.monotonic()
        proc = run_cli(*command, f"hydra.sweep.dir={gpu_sweep}",
                       "hydra.launcher.ray.remote.num_gpus=1", timeout=120, check=False)
        elapsed = time.monotonic() - started
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert elapsed < 60, elapsed
        assert ("Error (ClusterTooSmallError): hydra.launcher.ray.remote asks for 1 GPU, 1 CPU "
                "per job") in proc.stderr, proc.stderr
        assert "0 GPUs" in proc.stderr and "hydra/launcher=ray_cpu" in proc.stderr
        assert not [p for p in gpu_sweep.iterdir() if p.is_dir()]  # no job folder

        # (d) an Optuna search through the same launcher: two trials at once, each a Ray task,
        # each in its trial folder, both recorded in the study
        search = tmp_path / "search"
        run_cli(*ray_cpu, "hparams_search=lr_wd_optuna", "hydra.sweeper.n_trials=2",
                "hydra.sweeper.n_jobs=2", f"hydra.sweep.dir={search}", timeout=180)
        study = optuna.load_study(study_name="lr_wd", storage=f"sqlite:///{search / 'optuna.db'}")
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
        for trial in study.trials:
            done = json.loads((search / f"trial_{trial.number:04d}" / "summary.json").read_text())
            assert done["status"] == "completed" and done["val_acc"] == trial.value
    finally:
        # Each CLI process stops its local cluster as it exits; what a killed one (a timeout)
        # left behind is stopped here, by pid: the processes that use this test's Ray folder.
        deadline = time.monotonic() + 20
        while set(ray_processes()) - before and time.monotonic() < deadline:
            time.sleep(0.5)
        for sig in (signal.SIGTERM, signal.SIGKILL):  # what SIGTERM leaves after 10 s: SIGKILL
            leftover = processes_using(ray_dir)
            for pid in leftover:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while leftover and processes_using(ray_dir) and time.monotonic() < deadline:
                time.sleep(0.5)
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert not set(ray_processes()) - before, "Ray processes outlived the sweeps that started them"


# ------------------------------------------------ what a job asks of the cluster (no Ray started)

WORKSTATION = [Node("10.0.0.1", {"CPU": 32.0, "GPU": 8.0, "memory": 64e9})]
LAPTOP = [Node("127.0.0.1", {"CPU": 2.0, "memory": 8e9})]


def test_auto_cpus_share_a_gpu_node_among_the_jobs_it_runs_at_once():
    assert cpus_per_job(1, WORKSTATION) == 4     # 32 CPUs / 8 jobs
    assert cpus_per_job(0.5, WORKSTATION) == 2   # 32 CPUs / 16 jobs
    assert cpus_per_job(3, WORKSTATION) == 16    # 8 GPUs take 2 such jobs
    assert cpus_per_job(0, WORKSTATION) == 1     # a CPU job
    mixed = [*LAPTOP, Node("b", {"CPU": 6.0, "GPU": 2.0}), Node("c", {"CPU": 64.0, "GPU": 4.0})]
    assert cpus_per_job(1, mixed) == 3           # the smallest share of the GPU nodes: 6 / 2
    assert cpus_per_job(1, LAPTOP) == 1          # no GPU node: the check refuses it anyway


def test_job_options_leave_null_ones_to_ray_and_fill_in_auto():
    remote = {"num_gpus": 1, "num_cpus": "auto", "memory": None, "max_retries": 3}
    assert job_options(remote, WORKSTATION) == {"num_gpus": 1, "num_cpus": 4, "max_retries": 3}


def test_a_job_that_fits_a_node_passes():
    check_fits({"num_gpus": 1, "num_cpus": 4}, WORKSTATION)
    check_fits({"num_cpus": 2, "memory": 8e9}, LAPTOP)


@pytest.mark.parametrize("remote, fix", [
    ({"num_gpus": 1, "num_cpus": 1}, "no node has a GPU: run the jobs on CPUs with "
                                     "hydra/launcher=ray_cpu"),
    ({"num_cpus": 3}, "hydra.launcher.ray.remote.num_cpus=2 or less (the most any node has)"),
    ({"num_cpus": 1, "memory": 9e9}, "hydra.launcher.ray.remote.memory=8000000000 or less"),
    ({"num_cpus": 1, "resources": {"fast_disk": 1}},
     "no node has fast_disk: leave out hydra.launcher.ray.remote.resources.fast_disk"),
])
def test_a_job_no_node_can_take_is_refused_with_the_override_that_fixes_it(remote, fix):
    with pytest.raises(ClusterTooSmallError) as refused:
        check_fits(remote, LAPTOP)
    assert fix in str(refused.value) and "none was launched" in str(refused.value)


def test_a_job_must_fit_one_node_not_the_cluster_summed():
    """Ray places a task on one node: 2 GPUs on one machine and 4 CPUs on another do not add up."""
    split = [Node("a", {"CPU": 2.0, "GPU": 2.0}), Node("b", {"CPU": 16.0})]
    with pytest.raises(ClusterTooSmallError, match="no node has all of them"):
        check_fits({"num_gpus": 1, "num_cpus": 4}, split)
