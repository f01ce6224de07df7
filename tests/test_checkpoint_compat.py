"""A checkpoint resumes only the job that wrote it (DESIGN.md, run-folder contract).

A change to any setting that can change the result (model, data, aug, optim, sched, trick,
trainer, seed) is refused with an error naming the setting, and the checkpoint is left as it
was; a change to a setting that cannot (`identity.NON_RESULT_KEYS`: where the data lies, the
device, threads, logging, ...) is accepted, and the run resumes from the checkpoint instead of
training again.
"""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from cifar_tricks.errors import CheckpointError
from cifar_tricks.identity import NON_RESULT_KEYS
from conftest import TINY, train_in_process, write_fake_cifar

JOB = TINY + ["trainer.epochs=2", "trainer.limit_train_batches=2", "data.val_size=32"]
CIFAR_JOB = ["data=cifar10", "trainer.epochs=1", "trainer.limit_train_batches=1",
             "trainer.limit_eval_batches=1", "trainer.batch_size=16",
             "trainer.eval_batch_size=16", "model=lenet", "optim.lr=0.02"]

# one change per group and per data/trainer flag that changes a result: (override, the key the
# error names)
REFUSED = [
    ("model=resnet20", "model._target_"),
    ("data.fraction=0.5", "data.fraction"),
    ("data.crop=false", "data.crop"),
    ("data.flip_mode=alternating", "data.flip_mode"),
    ("data.val_size=64", "data.val_size"),
    ("aug=[cutout]", "aug.cutout"),
    ("optim.lr=0.05", "optim.lr"),
    ("optim=adam", "optim._target_"),
    ("sched=cosine", "sched._target_"),
    ("trick=[label_smooth]", "trick.label_smooth"),
    ("trainer.batch_size=16", "trainer.batch_size"),
    ("trainer.epochs=3", "trainer.epochs"),
    ("trainer.precision=bf16", "trainer.precision"),
    ("seed=1", "seed"),
]

# one change per setting that changes no result (each entry of NON_RESULT_KEYS)
ACCEPTED = {
    "trainer.device": "trainer.device=cpu",
    "trainer.num_threads": "trainer.num_threads=1",
    "trainer.compile": "trainer.compile=true",  # resumed at its end: nothing is compiled
    "trainer.channels_last": "trainer.channels_last=true",
    "trainer.eval_batch_size": "trainer.eval_batch_size=64",
    "trainer.progress": "trainer.progress=log",
    "trainer.log_every": "trainer.log_every=7",
    "trainer.checkpoint": "trainer.checkpoint=false",
    "trainer.save_best": "trainer.save_best=true",
    "optimized_metric": "optimized_metric=test_acc",
    "lr_find": "lr_find.num_iter=10",
    "logger": "logger.mlflow.experiment_name=elsewhere",  # (set below: a file store in tmp)
    "eval": "eval.tta=flip",
    "data.root": None,  # a CIFAR setting: test_a_moved_dataset_resumes below
    "data.download": None,  # likewise
}


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run whose summary is gone, as if it was killed after writing its last checkpoint."""
    folder = tmp_path_factory.mktemp("stopped") / "run"
    train_in_process(JOB, folder)
    (folder / "summary.json").unlink()
    return folder


def copy_of(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize("change, key", REFUSED, ids=[c for c, _ in REFUSED])
def test_a_change_that_changes_the_result_is_refused_naming_the_setting(
        stopped_run, tmp_path, change, key):
    folder = copy_of(stopped_run, tmp_path)
    checkpoint = folder / "checkpoints" / "last.pt"
    before = digest(checkpoint)
    with pytest.raises(CheckpointError, match=rf"(?m)^  {key.replace('.', '[.]')}[.:]"):
        train_in_process(JOB + [change], folder)
    assert digest(checkpoint) == before
    assert not (folder / "summary.json").exists() or \
        json.loads((folder / "summary.json").read_text())["status"] != "completed"


def test_every_setting_that_changes_no_result_has_an_acceptance_case():
    assert set(ACCEPTED) == set(NON_RESULT_KEYS)


@pytest.mark.parametrize("change", [c for c in ACCEPTED.values() if c])
def test_a_change_that_changes_no_result_resumes_the_checkpoint(stopped_run, tmp_path, change):
    folder = copy_of(stopped_run, tmp_path)
    metrics = (folder / "metrics.csv").read_text()
    if change.startswith("logger."):  # a tracker added on resume, writing to a file store here
        change = ["logger=[mlflow]", f"logger.mlflow.tracking_uri={tmp_path / 'mlruns'}", change]
    train_in_process(JOB + ([change] if isinstance(change, str) else change), folder)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2
    # resumed at its last epoch: nothing was trained again, the history is the checkpoint's
    assert (folder / "metrics.csv").read_text() == metrics


def test_a_moved_dataset_resumes_and_a_changed_download_setting_too(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_fake_cifar(first)
    write_fake_cifar(second)  # the same files elsewhere
    folder = tmp_path / "run"
    train_in_process(CIFAR_JOB + [f"data.root={first}"], folder)
    (folder / "summary.json").unlink()
    metrics = (folder / "metrics.csv").read_text()
    train_in_process(CIFAR_JOB + [f"data.root={second}", "data.download=false"], folder)
    assert json.loads((folder / "summary.json").read_text())["status"] == "completed"
    assert (folder / "metrics.csv").read_text() == metrics
