"""No file we read can run code, and no dataset file can be silently wrong: planted payloads
(a `__reduce__` that would create a marker file) are refused naming the file, before any of
their code runs; corrupt, truncated and mislabeled CIFAR files are refused naming the check."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_tricks.checkpoint import upgrade
from cifar_tricks.config import Precision
from cifar_tricks.data import cifar10
from cifar_tricks.errors import CheckpointError, DatasetError
from conftest import TINY, train_in_process, write_fake_cifar

STATS = dict(mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))


class Payload:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_the_payload_really_runs_when_unpickled_unsafely(tmp_path):
    """The marker is a real signal: a plain pickle.load of the payload creates it."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


def test_a_planted_checkpoint_is_refused_before_its_code_runs(tmp_path):
    run, marker = tmp_path / "run", tmp_path / "marker"
    checkpoint = run / "checkpoints" / "last.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"model": Payload(marker), "epoch": 1}, checkpoint)
    with pytest.raises(CheckpointError) as err:
        train_in_process(TINY, run)
    assert str(checkpoint) in str(err.value) and "posix.system" in str(err.value)
    assert "could run code" in str(err.value)
    assert not marker.exists()


def test_a_planted_teacher_is_refused_before_its_code_runs(tmp_path):
    teacher, marker = tmp_path / "teacher.pt", tmp_path / "marker"
    torch.save({"model": Payload(marker)}, teacher)
    with pytest.raises(CheckpointError) as err:
        train_in_process(TINY + ["trick=[kd]", "trick.kd.teacher=lenet",
                                 f"trick.kd.checkpoint={teacher}"], tmp_path / "student")
    assert str(teacher) in str(err.value) and not marker.exists()


def replace(folder: Path, name: str, content: object) -> Path:
    """Put `content` (pickled) in place of one file of a fake CIFAR folder (not through its
    link: the linked files are shared by the session)."""
    path = folder / name
    path.unlink()
    with open(path, "wb") as f:
        pickle.dump(content, f)
    return path


def test_a_planted_dataset_batch_is_refused_before_its_code_runs(tmp_path):
    write_fake_cifar(tmp_path)
    marker = tmp_path / "marker"
    planted = replace(tmp_path / "cifar-10-batches-py", "data_batch_1",
                      {b"data": Payload(marker), b"labels": []})
    with pytest.raises(DatasetError) as err:
        cifar10(str(tmp_path), num_classes=10, **STATS)
    assert str(planted) in str(err.value) and "posix.system" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("name, content, check", [
    ("data_batch_2", lambda data, labels: {b"data": data, b"labels": labels[:-1]},
     "9999 labels for 10000 images"),
    ("data_batch_3", lambda data, labels: {b"data": data, b"labels": [*labels[:-1], 10]},
     "labels range over [0, 10], outside the 10 classes"),
    ("data_batch_4", lambda data, labels: {b"data": data[:, :3000], b"labels": labels},
     "N x 3072 uint8 array"),
    ("test_batch", lambda data, labels: {b"data": data[:5000], b"labels": labels[:5000]},
     "hold 5000 images, the release has 10000"),
    ("data_batch_5", lambda data, labels: {b"labels": labels}, "no b'labels' and b'data'"),
])
def test_a_mislabeled_or_truncated_batch_is_refused_naming_the_file_and_the_check(
        tmp_path, name, content, check):
    arrays = write_fake_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    bad = replace(folder, name, content(*arrays[name]))
    with pytest.raises(DatasetError) as err:
        cifar10(str(tmp_path), num_classes=10, **STATS)
    assert check in str(err.value)
    assert str(bad if name != "test_batch" else folder) in str(err.value)


def test_a_file_cut_short_is_refused_naming_it(tmp_path):
    write_fake_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    whole = path.read_bytes()
    path.unlink()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatasetError, match="data_batch_1 is not a CIFAR batch"):
        cifar10(str(tmp_path), num_classes=10, **STATS)


def test_an_older_checkpoint_is_refused_with_the_way_to_convert_it_and_then_resumes(tmp_path):
    run = tmp_path / "run"
    train_in_process(TINY + ["trainer.epochs=2"], run)
    checkpoint = run / "checkpoints" / "last.pt"
    state = torch.load(checkpoint, weights_only=True)
    # the format before this version: numpy's RNG state as a tuple with an array, enum values
    state["rng"]["numpy"] = np.random.get_state()
    state["config"]["trainer"]["precision"] = Precision.auto
    state["epoch"], state["history"] = 1, state["history"][:1]
    del state["eval_model"]
    torch.save(state, checkpoint)
    summary = run / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "running"}))

    with pytest.raises(CheckpointError) as err:
        train_in_process(TINY + ["trainer.epochs=2"], run)
    assert f"python -m cifar_tricks.checkpoint upgrade {checkpoint}" in str(err.value)

    backup = upgrade(checkpoint)  # the user trusts their own file
    assert backup.exists()
    converted = torch.load(checkpoint, weights_only=True)
    assert converted["config"]["trainer"]["precision"] == "auto"
    train_in_process(TINY + ["trainer.epochs=2"], run)
    assert json.loads(summary.read_text())["status"] == "completed"
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 2
