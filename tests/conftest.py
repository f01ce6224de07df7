"""Shared fixtures: compose the real configs, write tiny CIFAR folders, run the real CLI."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar_tricks import jobs
from cifar_tricks.config import CONFIG_DIR, compose

ROOT = Path(__file__).resolve().parents[1]
CONF = CONFIG_DIR

# Small and fast: synthetic data, LeNet, a few batches; each test adds what it checks.
TINY = ["experiment=smoke", "data.num_train=256", "data.num_test=128", "data.val_size=0",
        "trainer.batch_size=32", "trainer.eval_batch_size=128"]


def compose_config(overrides: list[str]):
    return compose(overrides)


def train_in_process(overrides: list[str], output_dir: Path, choices: dict | None = None):
    """What `python run.py <overrides>` does for one job, without a subprocess."""
    cfg = compose_config(overrides)
    return jobs.train(cfg, jobs.Job(Path(output_dir), overrides, choices or {"model": "lenet"}))


def run_cli(*args: str, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"run.py {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def write_fake_cifar(root: Path, name: str = "cifar10", n_train: int = 50, n_test: int = 20,
                     num_classes: int = 10, seed: int = 0) -> dict:
    """A CIFAR folder in the official python-pickle layout, with random pixels."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, train_files, test_files, key = "cifar-10-batches-py", \
            [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"
    else:
        folder, train_files, test_files, key = \
            "cifar-100-python", ["train"], ["test"], b"fine_labels"
    out = root / folder
    out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for files, n in ((train_files, n_train), (test_files, n_test)):
        per_file = n // len(files)
        for f in files:
            data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
            labels = [int(x) for x in rng.integers(0, num_classes, per_file)]
            with open(out / f, "wb") as fh:
                pickle.dump({b"data": data, key: labels}, fh)
            arrays[f] = (data, labels)
    return arrays


@pytest.fixture
def one_thread():
    """Model tests run batch-2 32px convs: too small to parallelise, and OpenMP's thread sync
    makes 2 threads slower than 1 on small CPUs, so those modules use one torch thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fake_cifar(tmp_path: Path) -> Path:
    write_fake_cifar(tmp_path, "cifar10")
    write_fake_cifar(tmp_path, "cifar100", n_train=300, num_classes=100)
    return tmp_path


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_report_header(config):
    found = "available: gpu tests run" if _cuda_available() else "none: gpu tests deselected"
    return f"cuda: {found}"


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run wherever a CUDA device is present; elsewhere they are deselected (they
    cannot run, so they are not reported as skipped)."""
    if _cuda_available():
        return
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]
