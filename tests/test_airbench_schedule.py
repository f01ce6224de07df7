"""airbench94's schedule and optimizer as options, against airbench's own code (Jordan 2024,
legacy/airbench94.py): `sched=warmlinear` steps the lr through `get_lr`, and `optim=airbench_sgd`
with our mean loss takes the steps airbench's SGD takes with its summed loss."""
from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torch.nn import functional as F

from cifar_tricks.losses import SoftTargetCrossEntropy
from cifar_tricks.optim import create_optimizer, schedules
from conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_thread")

LR = 0.1


def airbench_get_lr(step: int, total_train_steps: int) -> float:
    """airbench94.py's get_lr, verbatim but for total_train_steps as an argument."""
    warmup_steps = int(total_train_steps * 0.23)
    warmdown_steps = total_train_steps - warmup_steps
    if step < warmup_steps:
        frac = step / warmup_steps
        return 0.2 * (1 - frac) + 1.0 * frac
    else:
        frac = (step - warmup_steps) / warmdown_steps
        return 1.0 * (1 - frac) + 0.07 * frac


@pytest.mark.parametrize("steps_per_epoch, epochs", [(49, 10), (7, 3), (1, 3), (1, 1)])
def test_warmlinear_lr_at_every_step_is_airbenchs_get_lr(steps_per_epoch, epochs):
    """From the config as run.py builds it; lrs[s] is the lr after s scheduler steps, the lr of
    update s (0-based): the start, the junction at int(0.23 T), the last update (T - 1) and the
    factor reached after it (T) included. (1, 3) and (1, 1): no warmup step at all."""
    cfg = compose_config(["sched=warmlinear"])
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR, momentum=0.9)
    scheduler = instantiate(cfg.sched)(optimizer, steps_per_epoch=steps_per_epoch, epochs=epochs)
    total = steps_per_epoch * epochs
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(total):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    expected = [LR * airbench_get_lr(s, total) for s in range(total + 1)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    junction = int(total * 0.23)
    assert lrs[junction] == pytest.approx(LR)  # the peak, where the warmup hands over
    assert lrs[0] == pytest.approx(LR * (0.2 if junction else 1.0))
    assert lrs[total] == pytest.approx(LR * 0.07)


@pytest.mark.parametrize("kwargs, message", [
    (dict(warmup_fraction=1.0), "^warmup_fraction=1.0 must be in"),
    (dict(start_factor=0.0), "^start_factor=0.0 must be in"),
    (dict(end_factor=1.5), "^end_factor=1.5 must be in"),
])
def test_warmlinear_refuses_factors_outside_their_range(kwargs, message):
    from cifar_tricks.optim.schedules import warmlinear

    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR)
    with pytest.raises(ValueError, match=message):
        warmlinear(optimizer, steps_per_epoch=10, epochs=10, **kwargs)


# ------------------------------------------------------------------------------ the optimizer

BATCH = 1024  # airbench's batch size, the one conf/optim/airbench_sgd.yaml is written for


def airbench_optimizer(model: nn.Module) -> torch.optim.SGD:
    """airbench94.py's conversion of its decoupled hyperparameters, and its two groups."""
    batch_size, momentum, bias_scaler = BATCH, 0.85, 64.0
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = 11.5 / kilostep_scale
    wd = 0.0153 * batch_size / kilostep_scale
    lr_biases = lr * bias_scaler
    norm_biases = [p for k, p in model.named_parameters() if "norm" in k and p.requires_grad]
    other_params = [p for k, p in model.named_parameters() if "norm" not in k and p.requires_grad]
    param_configs = [dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
                     dict(params=other_params, lr=lr, weight_decay=wd / lr)]
    return torch.optim.SGD(param_configs, momentum=momentum, nesterov=True)


def toy_problem():
    """A small net with airbench's BatchNorm (scale frozen, so only its bias is a norm
    parameter) and a batch of airbench's size."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        fc1=nn.Linear(12, 16), norm=nn.BatchNorm1d(16), act=nn.GELU(), fc2=nn.Linear(16, 10)))
    model.norm.weight.requires_grad_(False)
    with torch.no_grad():
        model.norm.bias.uniform_(-0.1, 0.1)
    images, labels = torch.randn(BATCH, 12), torch.randint(0, 10, (BATCH,))
    return model, images, labels


def test_airbench_sgd_yaml_holds_airbenchs_numbers_for_a_mean_loss():
    cfg = compose_config(["optim=airbench_sgd"]).optim
    kilostep_scale = 1024 * (1 + 1 / (1 - 0.85))
    lr_sum, wd = 11.5 / kilostep_scale, 0.0153 * BATCH / kilostep_scale
    assert cfg.momentum == 0.85 and cfg.nesterov is True
    assert cfg.lr == pytest.approx(lr_sum * BATCH, rel=1e-12)  # 1.5
    assert cfg.weight_decay == pytest.approx(wd / lr_sum / BATCH, rel=1e-12)  # 0.0153 / 11.5
    assert cfg.lr * cfg.weight_decay == pytest.approx(wd, rel=1e-12)  # the decay per step
    assert cfg.norm_bias_lr_scale == 64.0  # bias_scaler


def test_airbench_sgd_with_a_mean_loss_steps_as_airbench_with_its_summed_loss():
    """The definition: the same updates, momentum and the BatchNorm biases' 64x lr included
    (three steps on one batch)."""
    ours, images, labels = toy_problem()
    theirs, _, _ = toy_problem()
    assert all(torch.equal(p, q) for p, q in zip(ours.parameters(), theirs.parameters()))
    mine = create_optimizer(compose_config(["optim=airbench_sgd"]).optim, ours)
    reference = airbench_optimizer(theirs)
    assert sorted(g["lr"] for g in mine.param_groups) == \
        pytest.approx(sorted(g["lr"] * BATCH for g in reference.param_groups), rel=1e-12)
    mean_loss, targets = SoftTargetCrossEntropy(), F.one_hot(labels, 10).float()
    start = [p.detach().clone() for p in ours.parameters()]
    for _ in range(3):
        mine.zero_grad()
        mean_loss(ours(images), targets).backward()
        mine.step()
        reference.zero_grad()
        F.cross_entropy(theirs(images), labels, reduction="none").sum().backward()
        reference.step()
        for p, q in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    moved = max((p - s).abs().max().item() for p, s in zip(ours.parameters(), start))
    assert moved > 1e-3 and math.isfinite(moved)  # the steps were not vanishingly small


@pytest.mark.parametrize("kwargs", [dict(warmup_fraction=0.0), dict(start_factor=1.0),
                                    dict(end_factor=0.0), dict(end_factor=1.0)])
def test_warmlinear_accepts_the_ends_of_its_ranges(kwargs):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = schedules.warmlinear(optimizer, steps_per_epoch=10, epochs=2, **kwargs)
    factors = []
    for _ in range(20):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    factors.append(optimizer.param_groups[0]["lr"])
    end = kwargs.get("end_factor", 0.07)
    start = kwargs.get("start_factor", 0.2) if kwargs.get("warmup_fraction", 0.23) else 1.0
    assert factors[0] == pytest.approx(start) and factors[-1] == pytest.approx(end, abs=1e-12)
