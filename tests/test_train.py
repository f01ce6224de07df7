"""One run end to end (in process): the run-folder contract, learning, divergence, bad input."""
from __future__ import annotations

import csv
import hashlib
import json

import pytest
import torch

from cifar_tricks.errors import CheckpointError, ConfigError
from conftest import TINY, train_in_process

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                  "epoch_time_s", "img_per_s", "eval_time_s", "wall_time_s"]


def read_metrics(folder):
    with open(folder / "metrics.csv") as f:
        return list(csv.DictReader(f))


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_folder_contract(tmp_path):
    overrides = TINY + ["trainer.epochs=2", "data.val_size=32", "optimized_metric=val_acc"]
    value = train_in_process(overrides, tmp_path, {"model": "lenet", "aug": [], "trick": []})

    rows = read_metrics(tmp_path)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(rows[0]) == set(METRIC_COLUMNS) | {"val_loss", "val_acc"}
    for row in rows:
        for key in METRIC_COLUMNS[1:] + ["val_loss", "val_acc"]:
            assert float(row[key]) == float(row[key])  # a finite number, not empty

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["model"] == "lenet" and summary["params"] == 62_006
    assert summary["epochs"] == 2
    assert summary["test_acc"] == pytest.approx(float(rows[-1]["test_acc"]))
    assert summary["best_test_acc"] == pytest.approx(max(float(r["test_acc"]) for r in rows))
    assert summary["val_acc"] == pytest.approx(float(rows[-1]["val_acc"]))
    assert value == pytest.approx(summary["val_acc"])  # the objective a sweeper sees
    assert summary["train_time_s"] == pytest.approx(sum(float(r["epoch_time_s"]) for r in rows))
    assert summary["img_per_s"] > 0
    assert summary["peak_mem_mb"] is None  # no accelerator in this run
    assert summary["overrides"] == overrides
    assert summary["choices"] == {"model": "lenet", "aug": [], "trick": []}
    for key in ("test_acc", "best_test_acc", "val_acc", "train_acc"):
        assert 0 <= summary[key] <= 100

    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "rng", "epoch", "history", "config"} <= set(state)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.slow
def test_training_learns_the_synthetic_classes(tmp_path):
    train_in_process(TINY + ["trainer.epochs=4", "data.num_train=512", "model=resnet20",
                             "optim.lr=0.05", "data.num_test=200"], tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_acc"] > 60, summary  # chance is 10%


def test_a_finished_run_is_skipped_when_rerun_in_its_folder(tmp_path):
    overrides = TINY + ["optimized_metric=test_acc"]
    first = train_in_process(overrides, tmp_path)
    before = digest(tmp_path / "summary.json")
    assert train_in_process(overrides, tmp_path) == first
    assert digest(tmp_path / "summary.json") == before


def test_huge_lr_is_recorded_as_diverged_with_a_finite_objective(tmp_path):
    value = train_in_process(TINY + ["optim.lr=1e12", "optimized_metric=test_acc"], tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert summary["test_acc"] is None
    assert value == 0.0


def test_corrupt_checkpoint_is_refused_and_left_untouched(tmp_path):
    ckpt = tmp_path / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read the checkpoint"):
        train_in_process(TINY, tmp_path)
    assert ckpt.read_bytes() == b"not a checkpoint"


def test_checkpoint_of_another_configuration_is_refused_and_left_untouched(tmp_path):
    train_in_process(TINY, tmp_path)
    (tmp_path / "summary.json").unlink()  # as if the run had been killed before it finished
    ckpt = tmp_path / "checkpoints" / "last.pt"
    before = digest(ckpt)
    with pytest.raises(CheckpointError, match=r"model._target_: .*lenet -> .*resnet20"):
        train_in_process(TINY + ["model=resnet20"], tmp_path)
    assert digest(ckpt) == before


def test_a_folder_with_another_finished_run_is_not_overwritten(tmp_path):
    train_in_process(TINY, tmp_path)
    before = digest(tmp_path / "summary.json")
    with pytest.raises(ConfigError, match="already holds a finished run"):
        train_in_process(TINY + ["seed=1"], tmp_path)
    assert digest(tmp_path / "summary.json") == before


@pytest.mark.parametrize("override, message", [
    ("data.fraction=1.5", "data.fraction=1.5 is not allowed: it must be in (0, 1]"),
    ("data.fraction=0", "data.fraction=0.0 is not allowed: it must be in (0, 1]"),
    ("trainer.epochs=0", "trainer.epochs=0 is not allowed: it must be >= 1"),
])
def test_a_bad_setting_is_refused_before_anything_is_written(tmp_path, override, message):
    folder = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        train_in_process(TINY + [override], folder)
    assert message in str(err.value)
    assert not folder.exists()  # no failed run left for a report to show


@pytest.mark.parametrize("override, message", [
    # these depend on the data, known only once it is loaded: the run fails and says so
    ("data.val_size=100000", "data.val_size=100000 does not fit"),
    ("trainer.batch_size=100000", "larger than the"),
])
def test_a_setting_the_data_refuses_fails_the_run_with_a_message_naming_the_fix(
        tmp_path, override, message):
    with pytest.raises(ConfigError) as err:
        train_in_process(TINY + [override], tmp_path)
    assert message in str(err.value)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and message in summary["error"]


def test_val_objective_without_a_val_split_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="needs a validation split"):
        train_in_process(TINY + ["optimized_metric=val_acc"], tmp_path)
