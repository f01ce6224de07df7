"""The trick interface in a real loop: hooks see where training stands, trick state is keyed by
config entry name, at most one trick offers the evaluation model, and the weights a run reports
are the weights its checkpoint gives every reader."""
from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

import pytest
import torch

from cifar_tricks.build import build_run
from cifar_tricks.checkpoint import evaluation_weights
from cifar_tricks.errors import ConfigError
from cifar_tricks.losses import SoftTargetCrossEntropy
from cifar_tricks.models import create_model
from cifar_tricks.run_folder import RunFolder
from cifar_tricks.train import evaluate, fit
from cifar_tricks.tricks.base import TrainState, Trick, Tricks
from cifar_tricks.tricks.ema import EMA
from cifar_tricks.tricks.kd import load_teacher
from conftest import TINY, compose_config, train_in_process

EPOCHS, STEPS = 3, 4  # TINY: 256 images / batch 32 = 8 batches; limited to 4


class Recorder(Trick):
    """Writes down every time-aware hook call and logs one metric of its own."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_epoch_start(self, model, state):
        self.calls.append(("start", state.epoch, state.step))

    def after_backward(self, model, state):
        self.calls.append(("backward", state.epoch, state.step))

    def after_step(self, model, state):
        self.calls.append(("step", state.epoch, state.step))

    def on_epoch_end(self, model, state, row):
        self.calls.append(("end", state.epoch, state.step))
        row["recorder_progress"] = state.progress

    def on_fit_end(self, model, state):
        self.calls.append(("fit_end", state.epoch, state.step))


def run_with(tricks: dict[str, Trick], folder: Path, extra: list[str] = ()):
    cfg = compose_config(TINY + [f"trainer.epochs={EPOCHS}",
                                 f"trainer.limit_train_batches={STEPS}", *extra])
    run = build_run(cfg)  # no trick: the optimizer and the loss are the plain ones
    run.tricks = Tricks(tricks)
    return run, cfg


def test_hooks_see_epoch_and_step_and_can_log(tmp_path):
    recorder = Recorder()
    run, _ = run_with({"recorder": recorder}, tmp_path)
    fit(run, RunFolder(tmp_path))

    expected = []
    for epoch in range(1, EPOCHS + 1):
        expected.append(("start", epoch, (epoch - 1) * STEPS))
        for step in range((epoch - 1) * STEPS + 1, epoch * STEPS + 1):
            # the backward of step s runs before the step is counted
            expected += [("backward", epoch, step - 1), ("step", epoch, step)]
        expected.append(("end", epoch, epoch * STEPS))
    expected.append(("fit_end", EPOCHS, EPOCHS * STEPS))
    assert recorder.calls == expected

    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [float(r["recorder_progress"]) for r in rows] == \
        pytest.approx([e / EPOCHS for e in range(1, EPOCHS + 1)])


def test_a_resumed_run_continues_the_step_count(tmp_path):
    run, _ = run_with({"recorder": Recorder()}, tmp_path, ["trainer.epochs=1"])
    fit(run, RunFolder(tmp_path))
    after_one_epoch = torch.load(RunFolder(tmp_path).checkpoint_path, weights_only=True)
    second = Recorder()
    run, _ = run_with({"recorder": second}, tmp_path)
    fit(run, RunFolder(tmp_path), after_one_epoch)
    assert second.calls[0] == ("start", 2, STEPS)  # epoch 1 is done: 4 steps counted
    assert second.calls[-1] == ("fit_end", EPOCHS, EPOCHS * STEPS)


def test_two_tricks_offering_the_evaluation_model_are_refused():
    with pytest.raises(ConfigError, match="ema and ema_slow each offer the model to evaluate"):
        Tricks({"ema": EMA(0.9), "ema_slow": EMA(0.999)})


def test_trick_state_is_keyed_by_config_name_and_old_class_keys_still_load():
    model = torch.nn.Linear(3, 2)
    tricks = Tricks({"ema": EMA(0.5)})
    tricks.setup_model(model)
    with torch.no_grad():
        model.weight.fill_(2.0)
    tricks.after_step(model, TrainState(epochs=1, steps_per_epoch=1))
    state = tricks.state_dict()
    assert list(state) == ["ema"]

    for saved in (state, {"EMA": state["ema"]}):  # today's key, and the class name of old files
        restored = Tricks({"ema": EMA(0.5)})
        restored.setup_model(torch.nn.Linear(3, 2))
        restored.load_state_dict(saved)
        assert torch.equal(restored.eval_model().weight, torch.full((2, 3), 2.0))


def test_tricks_run_in_stage_order_then_list_order():
    from cifar_tricks.tricks.init import KaimingInit
    from cifar_tricks.tricks.label_smooth import LabelSmoothing

    tricks = Tricks({"ema": EMA(), "label_smooth": LabelSmoothing(), "kaiming_init": KaimingInit()})
    assert list(tricks.named) == ["kaiming_init", "label_smooth", "ema"]


# ------------------------------------------------------------------------------------ weights

def accuracy_of(weights: dict, cfg) -> float:
    """Test accuracy of `weights` in a fresh model, evaluated as the loop evaluates."""
    run = build_run(cfg)
    run.model.load_state_dict(weights)
    return evaluate(run.model, run.loaders.test, SoftTargetCrossEntropy(), contextlib.nullcontext,
                    channels_last=False)[1]


@pytest.mark.parametrize("tricks", [[], ["ema"]])
def test_the_checkpoint_holds_the_weights_behind_the_reported_accuracy(tmp_path, tricks):
    overrides = TINY + ["model=resnet20", "trainer.limit_train_batches=4",
                        f"trick=[{','.join(tricks)}]"]
    train_in_process(overrides, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    cfg = compose_config(overrides)
    assert accuracy_of(state["eval_model"], cfg) == pytest.approx(summary["test_acc"])
    if tricks:  # the EMA was reported, and it is not the trained weights
        raw = list(csv.DictReader(open(tmp_path / "metrics.csv")))[-1]["raw_test_acc"]
        assert accuracy_of(state["model"], cfg) == pytest.approx(float(raw))
        assert any(not torch.equal(state["eval_model"][k], state["model"][k])
                   for k in state["model"])


def test_a_teacher_from_an_ema_run_gets_the_averaged_weights(tmp_path):
    train_in_process(TINY + ["model=resnet20", "trainer.limit_train_batches=4", "trick=[ema]"],
                     tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    teacher = load_teacher(create_model("resnet20", num_classes=10), tmp_path)
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, state["eval_model"][key]), key
    # ... which are the average, not the last trained weights
    assert any(not torch.equal(value, state["model"][key])
               for key, value in teacher.state_dict().items())


def test_checkpoints_from_before_eval_model_give_their_ema_weights():
    weights = {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}
    old = {"model": {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)},
           "tricks": {"EMA": {"module.weight": weights["weight"], "module.bias": weights["bias"],
                              "n_averaged": torch.tensor(5)}}}
    assert evaluation_weights(old).keys() == weights.keys()
    assert all(torch.equal(evaluation_weights(old)[k], weights[k]) for k in weights)
    assert evaluation_weights({"model": weights}) is weights  # no averaging: the trained weights
