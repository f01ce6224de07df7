"""ModelEMA against the closed form of the exponential moving average.

AveragedModel's first `update_parameters` call *copies* the model (n_averaged is 0 then), whatever
the copy made at construction holds; every later call does p_ema <- decay p_ema + (1 - decay) p.
So after updates with values v_1..v_k:  ema_k = decay^(k-1) v_1 + sum_{t=2..k} (1-decay)
decay^(k-t) v_t.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cifar_tricks.tricks.ema import ModelEMA

pytestmark = pytest.mark.usefixtures("one_thread")

DECAY = 0.9


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def set_all(model: nn.Module, value: float) -> None:
    """Every float parameter and float buffer of `model` to `value`."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.fill_(value)


def closed_form(values: list[float], decay: float) -> float:
    ema = values[0]  # the first update copies
    for v in values[1:]:
        ema = decay * ema + (1 - decay) * v
    return ema


def float_tensors(model: nn.Module) -> list[torch.Tensor]:
    return [t for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()]


def test_ema_after_k_updates_equals_the_closed_form_for_weights_and_bn_buffers():
    model = net()
    ema = ModelEMA(model, decay=DECAY)
    values = [1.0, 3.0, -2.0, 0.5, 4.0]
    for v in values:
        set_all(model, v)
        ema.update(model)
    expected = closed_form(values, DECAY)
    # the closed form written out, as a check of the helper itself
    k = len(values)
    assert expected == pytest.approx(DECAY ** (k - 1) * values[0] + sum(
        (1 - DECAY) * DECAY ** (k - t) * values[t - 1] for t in range(2, k + 1)))
    tensors = float_tensors(ema.module)
    assert len(tensors) == 6  # weight, bias, BN weight, bias, running_mean, running_var
    for t in tensors:
        assert torch.allclose(t, torch.full_like(t, expected), atol=1e-6)
    assert ema.n_averaged.item() == k


def test_the_first_update_copies_instead_of_averaging_with_the_initial_copy():
    model = net()
    set_all(model, 10.0)
    ema = ModelEMA(model, decay=DECAY)  # its copy holds 10
    set_all(model, 2.0)
    ema.update(model)
    for t in float_tensors(ema.module):
        assert torch.equal(t, torch.full_like(t, 2.0))


def test_the_average_is_a_separate_frozen_copy_that_evaluates_like_a_model():
    model = net()
    ema = ModelEMA(model, decay=DECAY)
    ema.update(model)
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert all(p is not q for p, q in zip(ema.module.parameters(), model.parameters()))
    x = torch.randn(4, 3)
    model.eval()
    ema.eval()
    assert torch.allclose(ema(x), model(x)) and torch.allclose(ema.module(x), model(x))


def test_state_dict_round_trip_keeps_the_count_so_the_next_update_averages():
    model = net()
    ema = ModelEMA(model, decay=DECAY)
    for v in (1.0, 2.0):
        set_all(model, v)
        ema.update(model)
    saved = copy.deepcopy(ema.state_dict())
    assert "n_averaged" in saved

    resumed = ModelEMA(net(), decay=DECAY)
    resumed.load_state_dict(saved)
    assert resumed.n_averaged.item() == 2
    set_all(model, 5.0)
    ema.update(model)
    resumed.update(model)
    for p, q in zip(float_tensors(ema.module), float_tensors(resumed.module)):
        assert torch.equal(p, q)
    expected = closed_form([1.0, 2.0, 5.0], DECAY)
    assert torch.allclose(float_tensors(resumed.module)[0], torch.tensor(expected))


@pytest.mark.parametrize("decay", [-0.1, 1.5])
def test_a_decay_outside_0_1_is_refused(decay: float):
    with pytest.raises(ValueError, match="^decay must"):
        ModelEMA(net(), decay=decay)


@pytest.mark.parametrize("decay", [0.5, 0.999])
def test_warmup_decay_grows_with_the_update_count_up_to_its_cap(decay):
    """The warm-up decay is min(decay, (1 + n) / (10 + n)) after n updates (timm's ModelEmaV2
    warm-up): with decay 0.5 the cap is reached at n = 8, so both branches of the min run."""
    model = torch.nn.Linear(1, 1, bias=False)
    ema = ModelEMA(model, decay=decay, warmup=True)
    values = [1.0, 3.0, -2.0, 5.0, 0.5, -1.0, 2.0, 4.0, -3.0, 1.5, 6.0, -0.5, 2.5]
    expected, used = None, []
    for n, value in enumerate(values):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update(model)
        if expected is None:
            expected = value  # the first update copies
        else:
            d = min(decay, (1 + n) / (10 + n))  # n updates were folded in before this one
            used.append(d)
            expected = d * expected + (1 - d) * value
        assert ema.module.weight.item() == pytest.approx(expected, rel=1e-6, abs=1e-6)
    capped = [d == decay for d in used]
    assert (any(capped) and not all(capped)) if decay == 0.5 else not any(capped)
