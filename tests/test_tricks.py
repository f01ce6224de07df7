"""Tricks wired into the loop: every option trains, they compose, KD uses a teacher from a run."""
from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F

from cifar_tricks.errors import CheckpointError
from cifar_tricks.losses import SoftTargetCrossEntropy
from cifar_tricks.tricks.base import Stage, TrainState, Tricks
from cifar_tricks.tricks.grad_clip import GradClip
from cifar_tricks.tricks.label_smooth import LabelSmoothing
from conftest import CONF, TINY, compose_config, train_in_process

TRICKS = sorted(p.stem for p in (CONF / "trick").glob("*.yaml"))


def summary_of(folder):
    return json.loads((folder / "summary.json").read_text())


def test_label_smoothing_equals_torch_cross_entropy_with_label_smoothing():
    logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    loss = LabelSmoothing(0.1).wrap_criterion(SoftTargetCrossEntropy(), torch.nn.Linear(1, 1))
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(loss(logits, F.one_hot(labels, 10).float()), expected)


def test_grad_clip_bounds_the_global_gradient_norm():
    model = torch.nn.Linear(20, 5)
    (model(torch.randn(4, 20)) * 1000).sum().backward()
    GradClip(max_norm=2.0).after_backward(model, TrainState(epochs=1, steps_per_epoch=1))
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm == pytest.approx(2.0, rel=1e-4)


def test_tricks_wrap_in_their_order_whatever_the_list_order():
    class Marker(LabelSmoothing):
        stage = Stage.wrap_loss

        def wrap_criterion(self, criterion, model):
            self.seen = criterion
            return criterion

    marker = Marker()
    Tricks([marker, LabelSmoothing(0.2)]).wrap_criterion(SoftTargetCrossEntropy(), None)
    assert marker.seen.label_smoothing == 0.2  # label smoothing (the base loss) wrapped first


@pytest.mark.parametrize("name", TRICKS)
def test_every_trick_option_is_one_entry_named_like_its_file(name):
    # what each option does in the loop: tests/test_option_effects.py
    assert list(compose_config([f"trick=[{name}]"]).trick) == [name]


def test_sam_label_smoothing_ema_and_mixup_together(tmp_path):
    train_in_process(TINY + ["trick=[sam,label_smooth,ema]", "aug=[mixup]", "model=resnet20",
                             "trainer.epochs=2"], tmp_path)
    summary = summary_of(tmp_path)
    assert summary["status"] == "completed"
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    # evaluation reports the EMA weights; the trained weights are logged beside them
    assert {"raw_test_acc", "raw_test_loss"} <= set(rows[0])
    assert summary["test_acc"] == pytest.approx(float(rows[-1]["test_acc"]))
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["tricks"]["ema"]["n_averaged"] > 0  # the average is checkpointed for resuming


def test_a_missing_teacher_checkpoint_stops_the_run_before_training(tmp_path):
    with pytest.raises(CheckpointError, match="no_such_run"):
        train_in_process(TINY + ["trick=[kd]", "trick.kd.teacher=resnet20",
                                 f"trick.kd.checkpoint={tmp_path / 'no_such_run' / 'last.pt'}"],
                         tmp_path / "student")
    assert not (tmp_path / "student" / "metrics.csv").exists()


def test_a_mismatched_teacher_checkpoint_is_refused(tmp_path):
    teacher_run = tmp_path / "teacher"
    train_in_process(TINY + ["model=lenet"], teacher_run)
    with pytest.raises(CheckpointError):
        train_in_process(TINY + ["trick=[kd]", "trick.kd.teacher=resnet20",
                                 f"trick.kd.checkpoint={teacher_run / 'checkpoints' / 'last.pt'}"],
                         tmp_path / "student")
