"""Lookahead against its definition (Zhang et al. 2019, in airbench94.py's form): every k steps
slow <- lerp(slow, fast, 1 - decay_t), fast <- slow, with decay_t = decay (t/T)^exponent, and
after the last step T once more with decay 1 (fast <- slow); parameters and BatchNorm statistics.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from cifar_tricks.build import build_run
from cifar_tricks.run_folder import RunFolder
from cifar_tricks.train import fit
from cifar_tricks.tricks.base import TrainState, Trick, Tricks
from cifar_tricks.tricks.ema import EMA
from cifar_tricks.tricks.lookahead import Lookahead
from conftest import TINY, compose_config, train_in_process

pytestmark = pytest.mark.usefixtures("one_thread")

AIRBENCH_DECAY = 0.95 ** 5


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def float_entries(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


def set_all(model: nn.Module, value: float) -> None:
    """Every float parameter and buffer to `value`: a fake optimizer step."""
    with torch.no_grad():
        for t in float_entries(model).values():
            t.fill_(value)


def hand_computed(values: list[float], start: float, k: int, decay: float,
                  exponent: float) -> list[tuple[float, float]]:
    """(fast, slow) after each step t = 1..T, the fast weights set to values[t - 1] by the step:
    airbench's loop with its alpha_schedule[t] = decay * (t / T) ** exponent."""
    total, slow, out = len(values), start, []
    for t, fast in enumerate(values, 1):
        if t % k == 0:
            d = decay * (t / total) ** exponent
            slow = slow + (1 - d) * (fast - slow)  # ema_param.lerp_(net_param, 1 - decay)
            fast = slow  # net_param.copy_(ema_param)
        if t >= total:
            fast = slow  # update(decay=1.0): the slow weights stay, the fast take them
        out.append((fast, slow))
    return out


@pytest.mark.parametrize("total", [10, 12])  # the last step a sync step, and between syncs
@pytest.mark.parametrize("decay, exponent", [(AIRBENCH_DECAY, 3), (0.5, 0)],
                         ids=["airbench_cubic", "classic_constant"])
def test_weights_follow_the_hand_computed_lerp_sequence(total, decay, exponent):
    model = net()
    set_all(model, 1.0)
    trick = Lookahead(k=5, decay=decay, exponent=exponent)
    trick.setup_model(model)
    values = [2.0 + 3.0 * ((-1) ** t) * t for t in range(1, total + 1)]
    expected = hand_computed(values, 1.0, 5, decay, exponent)
    for t, (value, (fast, slow)) in enumerate(zip(values, expected), 1):
        set_all(model, value)
        trick.after_step(model, TrainState(epochs=total, steps_per_epoch=1, epoch=t, step=t))
        entries = float_entries(model)
        assert len(entries) == 4 + 2  # Linear w, b; BN w, b, running_mean, running_var
        for name, tensor in entries.items():
            assert torch.allclose(tensor, torch.full_like(tensor, fast), atol=1e-5), (t, name)
            assert torch.allclose(trick.state_dict()[name], torch.full_like(tensor, slow),
                                  atol=1e-5), (t, name)
        if t % 5 and t < total:  # between syncs the trained weights are left alone
            assert fast == value
    assert model[1].num_batches_tracked.item() == 0  # integer state is not averaged
    assert expected[-1][0] == expected[-1][1]  # the run ends on the slow weights


def test_the_first_syncs_of_the_cubic_schedule_nearly_copy_the_fast_weights():
    """decay_t = 0.95^5 (t/T)^3 is ~0 early on (airbench's alpha_schedule), 0.95^5 at the end."""
    model = net()
    set_all(model, 0.0)
    trick = Lookahead()
    trick.setup_model(model)
    set_all(model, 1.0)
    trick.after_step(model, TrainState(epochs=100, steps_per_epoch=10, step=5))
    slow = trick.state_dict()["0.weight"]
    assert torch.allclose(slow, torch.full_like(slow, 1 - AIRBENCH_DECAY * (5 / 1000) ** 3))


def test_a_resumed_trick_continues_bit_identically():
    total = 23

    def run(trick: Lookahead, model: nn.Module, steps: range) -> None:
        for t in steps:
            with torch.no_grad():  # a deterministic fake step
                for p in float_entries(model).values():
                    p.mul_(0.9).add_(torch.sin(torch.full_like(p, float(t))))
            trick.after_step(model, TrainState(epochs=total, steps_per_epoch=1, step=t))

    straight_model, straight = net(), Lookahead()
    straight.setup_model(straight_model)
    run(straight, straight_model, range(1, total + 1))

    model, first = net(), Lookahead()
    first.setup_model(model)
    run(first, model, range(1, 8))  # stopped between syncs: slow != fast
    saved_model, saved = copy.deepcopy(model.state_dict()), copy.deepcopy(first.state_dict())
    resumed_model, resumed = net(), Lookahead()
    resumed.setup_model(resumed_model)  # a fresh copy of the initial weights, then the checkpoint
    resumed_model.load_state_dict(saved_model)
    resumed.load_state_dict(saved)
    run(resumed, resumed_model, range(8, total + 1))
    for name, tensor in straight_model.state_dict().items():
        assert torch.equal(tensor, resumed_model.state_dict()[name]), name
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


@pytest.mark.parametrize("kwargs, message", [
    (dict(k=0), "^k must be"), (dict(decay=1.5), "^decay must be in"),
    (dict(exponent=-1), "^exponent must be"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Lookahead(**kwargs)


def test_lookahead_syncs_before_an_ema_averages():
    """Stage order: lookahead (optimize) before ema (average), whatever the list order, so the
    EMA folds in the weights training continues from."""
    tricks = Tricks({"ema": EMA(decay=0.5, warmup=False),
                     "lookahead": Lookahead(k=1, decay=0.5, exponent=0)})
    assert list(tricks.named) == ["lookahead", "ema"]
    model = net()
    set_all(model, 0.0)
    tricks.setup_model(model)
    set_all(model, 4.0)
    tricks.after_step(model, TrainState(epochs=10, steps_per_epoch=1, step=1))
    ema = tricks.eval_model()  # its first update copies: the synced weights, 0 + 0.5 * 4
    assert all(torch.equal(t, torch.full_like(t, 2.0)) for t in float_entries(ema).values())


# ------------------------------------------------------------------------------ real runs

EPOCHS, STEPS = 3, 4  # 12 steps: syncs at 5 and 10, the final one at 12


def overrides(tricks: str) -> list[str]:
    return TINY + [f"trainer.epochs={EPOCHS}", f"trainer.limit_train_batches={STEPS}",
                   f"trick=[{tricks}]"]


def test_a_run_ends_on_the_slow_weights_and_differs_from_one_without(tmp_path):
    train_in_process(overrides("lookahead"), tmp_path / "lookahead")
    train_in_process(overrides(""), tmp_path / "plain")
    with_it = torch.load(tmp_path / "lookahead/checkpoints/last.pt", weights_only=True)
    without = torch.load(tmp_path / "plain/checkpoints/last.pt", weights_only=True)
    slow = with_it["tricks"]["lookahead"]
    assert slow.keys() == {k for k, v in with_it["model"].items() if v.is_floating_point()}
    assert all(torch.equal(with_it["model"][k], v) for k, v in slow.items())
    assert any(not torch.equal(with_it["model"][k], without["model"][k]) for k in slow)
    summary = json.loads((tmp_path / "lookahead/summary.json").read_text())
    assert summary["status"] == "completed"


class StopAt(Trick):
    """Interrupts the run at the start of `epoch`, after the previous epoch's checkpoint."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, model, state):
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


def fit_with(folder, extra: dict[str, Trick], resume: dict | None = None) -> None:
    run = build_run(compose_config(overrides("lookahead")))
    run.tricks = Tricks({**run.tricks.named, **extra})
    fit(run, RunFolder(folder), resume)


def test_a_run_resumed_between_syncs_ends_bit_identically(tmp_path):
    fit_with(tmp_path / "straight", {})
    with pytest.raises(KeyboardInterrupt):
        fit_with(tmp_path / "resumed", {"stop": StopAt(3)})  # checkpoint at step 8
    checkpoint = torch.load(tmp_path / "resumed/checkpoints/last.pt", weights_only=True)
    assert checkpoint["epoch"] == 2
    slow = checkpoint["tricks"]["lookahead"]  # the sync at step 5, since trained 3 steps
    assert any(not torch.equal(v, checkpoint["model"][k]) for k, v in slow.items())
    fit_with(tmp_path / "resumed", {}, checkpoint)
    straight = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed/checkpoints/last.pt", weights_only=True)
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    for name, tensor in straight["tricks"]["lookahead"].items():
        assert torch.equal(tensor, resumed["tricks"]["lookahead"][name]), name


def test_slow_weights_of_another_model_are_refused_naming_the_entries():
    trick = Lookahead()
    trick.setup_model(nn.Linear(2, 2))
    other = {"weight": torch.zeros(2, 2), "extra.bias": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"^the checkpoint's Lookahead slow weights have entries "
                                         r"\['bias', 'extra.bias'\] that do not match"):
        trick.load_state_dict(other)
