"""Shared fixtures: compose the real configs, write tiny CIFAR folders, run the real CLI."""
from __future__ import annotations

import atexit
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
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


def options(group: str) -> list[str]:
    """The options of a config group: its conf/<group>/*.yaml files."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


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


CIFAR_LAYOUT = {  # name: (folder, train files, test files, label key, classes)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                b"labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", 100),
}
_FAKE_CIFAR: dict[tuple[str, int], tuple[Path, dict]] = {}  # written once per test session


def write_fake_cifar(root: Path, name: str = "cifar10", seed: int = 0) -> dict:
    """A CIFAR folder in the official python-pickle layout, as big as the release (50,000 train
    and 10,000 test images) with random pixels and labels. The files are written once per session
    and linked into `root/<folder>/`: a test that alters one must replace its link, not write
    through it. Returns {file name: (data, labels)}."""
    folder, train_files, test_files, key, num_classes = CIFAR_LAYOUT[name]
    if (name, seed) not in _FAKE_CIFAR:
        rng = np.random.default_rng(seed)
        source = Path(tempfile.mkdtemp(prefix=f"fake_{name}_")) / folder
        atexit.register(shutil.rmtree, source.parent, True)
        source.mkdir()
        arrays = {}
        for files, n in ((train_files, 50_000), (test_files, 10_000)):
            for f in files:
                data = rng.integers(0, 256, (n // len(files), 3072), dtype=np.uint8)
                labels = [int(x) for x in rng.integers(0, num_classes, len(data))]
                entry = {b"data": data, key: labels}
                if name == "cifar100":  # and its 20 superclasses (data=cifar100_coarse)
                    entry[b"coarse_labels"] = [label % 20 for label in labels]
                with open(source / f, "wb") as fh:
                    pickle.dump(entry, fh)
                arrays[f] = (data, labels)
        _FAKE_CIFAR[name, seed] = source, arrays
    source, arrays = _FAKE_CIFAR[name, seed]
    out = root / folder
    out.mkdir(parents=True, exist_ok=True)
    for f in train_files + test_files:
        (out / f).symlink_to(source / f)
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
    write_fake_cifar(tmp_path, "cifar100")
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
