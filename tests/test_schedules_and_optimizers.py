"""Schedules against their closed forms, weight-decay parameter groups, every optim/sched config,
and AdaBound's bounds and AdaBoundW's decoupled decay."""
from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import get_class, instantiate
from torch import nn

from cifar_tricks.models.resnet_cifar import resnet20
from cifar_tricks.optim import AdaBound, AdaBoundW, create_optimizer, param_groups, schedules
from conftest import compose_config, options

LR = 0.1
SPE = 10  # steps per epoch: small, so whole runs take milliseconds
EPOCHS = 200
N = SPE * EPOCHS


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


def sgd(lr: float = LR) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(3))], lr=lr, momentum=0.9)


def lr_trace(scheduler, iterations: int = N) -> list[float]:
    """Step `iterations` times as train_one_epoch does (update, then schedule); lrs[i] is the lr
    of update i (0-based), lrs[iterations] the lr the scheduler ends on."""
    optimizer = scheduler.optimizer
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(iterations):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def build(name: str, **kwargs):
    return getattr(schedules, name)(sgd(), steps_per_epoch=SPE, epochs=EPOCHS, **kwargs)


# ---------------------------------------------------------------- schedules: closed forms

def test_multistep_boundaries():
    lrs = lr_trace(build("multistep", milestones=[60, 120, 160], gamma=0.2))
    assert lrs[60 * SPE - 1] == pytest.approx(LR)
    assert lrs[60 * SPE] == pytest.approx(LR * 0.2)
    assert lrs[120 * SPE] == pytest.approx(LR * 0.2 ** 2)
    assert lrs[160 * SPE - 1] == pytest.approx(LR * 0.2 ** 2)
    assert lrs[160 * SPE] == pytest.approx(LR * 0.2 ** 3)


def test_step_uses_its_gamma():
    lrs = lr_trace(build("step", step_size=30, gamma=0.5))
    assert lrs[30 * SPE - 1] == pytest.approx(LR) and lrs[30 * SPE] == pytest.approx(LR * 0.5)


def test_step_multiplies_every_step_size_epochs():
    lrs = lr_trace(build("step", step_size=30, gamma=0.1))
    for k in range(1, 6):
        assert lrs[k * 30 * SPE - 1] == pytest.approx(LR * 0.1 ** (k - 1))
        assert lrs[k * 30 * SPE] == pytest.approx(LR * 0.1 ** k)


def test_cosine_over_the_whole_run():
    lrs = lr_trace(build("cosine"))
    assert lrs[0] == pytest.approx(LR)
    assert lrs[N // 4] == pytest.approx(LR * (1 + math.cos(math.pi / 4)) / 2)
    assert lrs[N // 2] == pytest.approx(LR / 2)
    assert abs(lrs[N]) < 1e-8
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_warmup_then_multistep():
    lrs = lr_trace(build("warmup", warmup_epochs=5, start_factor=1 / 3,
                         milestones=[60, 120, 160], gamma=0.2))
    w = 5 * SPE
    assert lrs[0] == pytest.approx(LR / 3)
    assert lrs[w // 2] == pytest.approx(LR * (1 / 3 + 2 / 3 * 0.5))  # linear in the iteration
    assert lrs[w] == pytest.approx(LR)
    assert lrs[60 * SPE - 1] == pytest.approx(LR)
    assert lrs[60 * SPE] == pytest.approx(LR * 0.2)  # milestones count from the run's start
    assert lrs[120 * SPE] == pytest.approx(LR * 0.2 ** 2)
    assert lrs[160 * SPE] == pytest.approx(LR * 0.2 ** 3)


def test_warmcosine_reaches_zero_at_the_last_iteration():
    lrs = lr_trace(build("warmcosine", warmup_epochs=20, start_factor=0.01))
    w = 20 * SPE
    assert lrs[0] == pytest.approx(LR * 0.01)
    assert lrs[w // 2] == pytest.approx(LR * (0.01 + 0.99 * 0.5))
    assert lrs[w] == pytest.approx(LR)
    assert lrs[w + (N - w) // 2] == pytest.approx(LR / 2)  # the cosine lasts epochs - warmup
    assert abs(lrs[N]) < 1e-8


@pytest.mark.parametrize("name, kwargs", [
    ("warmcosine", dict(warmup_epochs=EPOCHS, start_factor=0.1)),
    ("warmup", dict(warmup_epochs=10, start_factor=0.1, milestones=[5, 60], gamma=0.1)),
])
def test_warmup_longer_than_allowed_is_refused(name, kwargs):
    with pytest.raises(ValueError, match="^warmup_epochs|^milestones"):
        build(name, **kwargs)


def test_cosine_restarts_return_to_the_lr():
    eta_min, t0 = 1e-4, 10 * SPE
    lrs = lr_trace(build("cosine_restarts", T_0=10, T_mult=2, eta_min=eta_min))
    mid = eta_min + (LR - eta_min) / 2
    assert lrs[0] == pytest.approx(LR)
    assert lrs[t0 // 2] == pytest.approx(mid)
    assert lrs[t0 - 1] < 2 * eta_min
    assert lrs[t0] == pytest.approx(LR)  # restart after T_0 epochs
    assert lrs[t0 + t0] == pytest.approx(mid)  # the second cycle is twice as long
    assert lrs[t0 + 2 * t0] == pytest.approx(LR)  # restart after T_0 + 2 T_0 epochs
    assert lrs[t0 + 2 * t0 + 4 * t0] == pytest.approx(LR)


def test_onecycle_peaks_at_the_optimizer_lr_at_pct_start():
    lrs = lr_trace(build("onecycle", pct_start=0.3))  # N steps: one more would be refused
    peak = round(0.3 * N) - 1  # OneCycleLR's first phase ends at pct_start * total_steps - 1
    assert lrs[0] == pytest.approx(LR / 25)
    assert lrs[peak] == pytest.approx(LR) and max(lrs) == pytest.approx(LR)
    assert lrs[N - 1] == pytest.approx(LR / 25 / 1e4)

    def cos_from(start: float, end: float, frac: float) -> float:
        return end + (start - end) * (1 + math.cos(math.pi * frac)) / 2

    for t in (150, 300, 450):  # cosine up to the peak, then cosine down to the last update
        assert lrs[t] == pytest.approx(cos_from(LR / 25, LR, t / peak))
    for t in (800, 1300, 1900):
        assert lrs[t] == pytest.approx(cos_from(LR, LR / 25 / 1e4, (t - peak) / (N - 1 - peak)))


def test_onecycle_uses_its_div_factors_and_cycles_momentum_against_the_lr():
    """Smith & Topin 2017 / torch's OneCycleLR: lr from lr/div_factor up to lr, then down to
    lr/div_factor/final_div_factor; momentum goes the other way, max_momentum -> base_momentum
    at the peak -> max_momentum. Non-default factors, so none can fall back to torch's."""
    scheduler = build("onecycle", pct_start=0.3, div_factor=10.0, final_div_factor=100.0,
                      base_momentum=0.8, max_momentum=0.9)
    optimizer = scheduler.optimizer
    lrs, momenta = [], []
    for _ in range(N):
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        scheduler.step()
    peak = round(0.3 * N) - 1
    assert lrs[0] == pytest.approx(LR / 10) and lrs[peak] == pytest.approx(LR)
    assert lrs[N - 1] == pytest.approx(LR / 10 / 100)
    assert momenta[0] == pytest.approx(0.9) and momenta[peak] == pytest.approx(0.8)
    assert momenta[N - 1] == pytest.approx(0.9)
    flat = build("onecycle", cycle_momentum=False)
    flat.optimizer.step()
    flat.step()
    assert flat.optimizer.param_groups[0]["momentum"] == 0.9  # the optimizer's, untouched


@pytest.mark.parametrize("name, kwargs, key", [
    ("onecycle", dict(div_factor=0.0), "div_factor"),
    ("onecycle", dict(final_div_factor=0.0), "final_div_factor"),
    ("cosine_restarts", dict(T_0=0), "T_0"),
    ("step", dict(step_size=0), "step_size"),
])
def test_a_length_or_factor_of_zero_is_refused_naming_it(name, kwargs, key):
    with pytest.raises(ValueError, match=f"^{key} must"):
        build(name, **kwargs)


def test_a_milestone_at_the_end_of_the_warmup_is_allowed_and_applies_there():
    lrs = lr_trace(build("warmup", warmup_epochs=5, start_factor=0.5, milestones=[5], gamma=0.1))
    assert lrs[5 * SPE - 1] < LR and lrs[5 * SPE] == pytest.approx(LR * 0.1)


# ---------------------------------------------------------------- every sched config

@pytest.mark.parametrize("name", options("sched"))
def test_every_sched_config_builds_runs_and_resumes(name):
    """Built as run.py does; the whole run steps without error (OneCycleLR refuses extra steps),
    and a scheduler restored from a mid-run checkpoint continues the same curve."""
    cfg = compose_config([f"sched={name}"])

    def fresh():
        optimizer = sgd()
        return optimizer, instantiate(cfg.sched)(optimizer, steps_per_epoch=SPE, epochs=EPOCHS)

    optimizer, scheduler = fresh()
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    lrs = lr_trace(scheduler)
    assert all(math.isfinite(lr) and 0 <= lr <= LR * (1 + 1e-9) for lr in lrs)

    optimizer, scheduler = fresh()
    lr_trace(scheduler, iterations=700)  # stops mid-run for every schedule
    saved = optimizer.state_dict(), scheduler.state_dict()
    optimizer, scheduler = fresh()
    optimizer.load_state_dict(saved[0])
    scheduler.load_state_dict(saved[1])
    assert lr_trace(scheduler, iterations=N - 700) == pytest.approx(lrs[700:], rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------- parameter groups

def small_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 8, 3, bias=False),
        nn.GroupNorm(2, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(8),
        nn.Linear(8, 10),
    )


NORM = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


def expected_split(model: nn.Module) -> tuple[set[int], set[int]]:
    """(decayed, not decayed) by the definition: biases and norm parameters are not decayed."""
    no_decay = {id(p) for m in model.modules() for n, p in m.named_parameters(recurse=False)
                if n == "bias" or isinstance(m, NORM)}
    return {id(p) for p in model.parameters()} - no_decay, no_decay


@pytest.mark.parametrize("make", [small_model, lambda: resnet20(num_classes=10)],
                         ids=["conv_bn_linear", "resnet20"])
def test_no_decay_group_holds_exactly_biases_and_norm_parameters(make):
    model = make()
    decay, no_decay = param_groups(model, weight_decay=5e-4, no_decay_bias_bn=True)
    expected_decay, expected_no_decay = expected_split(model)
    assert {id(p) for p in decay["params"]} == expected_decay
    assert {id(p) for p in no_decay["params"]} == expected_no_decay
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (5e-4, 0.0)
    assert all(p.ndim > 1 for p in decay["params"])  # conv and linear weights only
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_small_model_split_by_name():
    model = small_model()
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = param_groups(model, weight_decay=1.0, no_decay_bias_bn=True)
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.weight", "3.weight", "8.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "0.bias", "1.bias", "1.weight", "4.bias", "4.weight", "7.bias", "7.weight", "8.bias"]


def test_without_the_flag_one_group_holds_every_parameter():
    model = resnet20(num_classes=10)
    (group,) = param_groups(model, weight_decay=5e-4, no_decay_bias_bn=False)
    assert [id(p) for p in group["params"]] == [id(p) for p in model.parameters()]
    assert group["weight_decay"] == 5e-4


def test_tied_parameters_appear_once():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    groups = param_groups(model, weight_decay=0.1, no_decay_bias_bn=True)
    assert sum(len(g["params"]) for g in groups) == 2


# ---------------------------------------------------------------- every optim config

@pytest.mark.parametrize("no_decay", [False, True])
@pytest.mark.parametrize("name", options("optim"))
def test_every_optim_config_builds_through_create_optimizer_and_steps(name, no_decay):
    cfg = compose_config([f"optim={name}", f"optim.no_decay_bias_bn={str(no_decay).lower()}"])
    assert cfg.optim._partial_ is True and cfg.optim.no_decay_bias_bn is no_decay
    torch.manual_seed(0)
    model = small_model()
    optimizer = create_optimizer(cfg.optim, model)
    assert isinstance(optimizer, get_class(cfg.optim._target_))
    # a norm-bias lr scale (airbench_sgd: 64) adds the norm biases' own group last
    scale = cfg.optim.get("norm_bias_lr_scale", 1.0)
    groups = optimizer.param_groups[:-1] if scale != 1.0 else optimizer.param_groups
    assert len(groups) == (2 if no_decay else 1)
    assert all(g["lr"] == cfg.optim.lr for g in groups)
    if scale != 1.0:
        assert optimizer.param_groups[-1]["lr"] == cfg.optim.lr * scale
    assert optimizer.param_groups[0]["weight_decay"] == cfg.optim.weight_decay
    if no_decay:
        assert optimizer.param_groups[1]["weight_decay"] == 0.0
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(4, 3, 8, 8)).square().mean().backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_create_optimizer_leaves_the_config_untouched():
    cfg = compose_config(["optim=sgd"])
    create_optimizer(cfg.optim, nn.Linear(2, 2))
    assert "no_decay_bias_bn" in cfg.optim


def test_create_optimizer_refuses_a_non_boolean_flag():
    cfg = compose_config(["optim=sgd", "optim.no_decay_bias_bn=maybe"])
    with pytest.raises(ValueError, match="^no_decay_bias_bn must"):
        create_optimizer(cfg.optim, nn.Linear(2, 2))


# ---------------------------------------------------------------- AdaBound / AdaBoundW

def paper_bounds(final_lr: float, gamma: float, t: int) -> tuple[float, float]:
    """Luo et al. 2019, section 4 (and the reference code): eta_l(t) = alpha* (1 - 1/(gamma t
    + 1)), eta_u(t) = alpha* (1 + 1/(gamma t)), with alpha* the final (SGD) step size."""
    return final_lr - final_lr / (gamma * t + 1), final_lr + final_lr / (gamma * t)


def test_adabound_first_step_is_adams():
    """At t=1 the bounds are (~0, ~final_lr/gamma): Adam's first step, lr * sign(g)."""
    p = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    optimizer = AdaBound([p], lr=1e-3, final_lr=0.1, gamma=1e-3)
    p.grad = torch.tensor([0.5, -4.0, 2.0])
    optimizer.step()
    assert p.detach() == pytest.approx(torch.tensor([1.0 - 1e-3, -2.0 + 1e-3, 3.0 - 1e-3]),
                                       abs=1e-7)


@pytest.mark.parametrize("amsbound", [False, True])
def test_adabound_step_sizes_stay_within_the_bounds(amsbound):
    """A quadratic with curvatures over six decades: flat coordinates want steps above the upper
    bound, steep ones below the lower; every effective step size |dp / m| is clipped into
    [eta_l(t), eta_u(t)], both bounds are reached, and a schedule moves them (final_lr * lr/lr0)."""
    torch.manual_seed(0)
    # float64: dp / m must not lose digits to cancellation against p
    curvature = torch.logspace(-3, 3, 64, dtype=torch.float64)
    p = nn.Parameter(torch.randn(64, dtype=torch.float64))
    lr, final_lr, gamma = 1e-2, 0.1, 0.05
    optimizer = AdaBound([p], lr=lr, final_lr=final_lr, gamma=gamma, amsbound=amsbound)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=100, gamma=0.5)
    hit_lower = hit_upper = False
    for t in range(1, 201):
        optimizer.zero_grad()
        (0.5 * curvature * p ** 2).sum().backward()
        before = p.detach().clone()
        scale = optimizer.param_groups[0]["lr"] / lr
        optimizer.step()
        scheduler.step()
        m = optimizer.state[p]["exp_avg"]
        keep = m.abs() > 1e-12
        effective = ((before - p.detach()) / m)[keep]
        lower, upper = paper_bounds(final_lr * scale, gamma, t)
        assert (effective >= lower * (1 - 1e-9)).all() and (effective <= upper * (1 + 1e-9)).all()
        hit_lower |= bool(((effective / lower - 1).abs() < 1e-9).any())
        hit_upper |= bool(((effective / upper - 1).abs() < 1e-9).any())
    assert hit_lower and hit_upper


def test_adaboundw_decays_weights_decoupled_from_the_gradient():
    """With a zero gradient the update is 0 and p shrinks by weight_decay * p (the reference's
    decay), times lr / initial lr once a schedule has moved the lr."""
    wd = 0.1
    p = nn.Parameter(torch.tensor([1.0, -2.0, 4.0]))
    optimizer = AdaBoundW([p], lr=1e-3, weight_decay=wd)
    p.grad = torch.zeros(3)
    optimizer.step()
    assert p.detach() == pytest.approx(torch.tensor([1.0, -2.0, 4.0]) * (1 - wd))
    optimizer.param_groups[0]["lr"] = 0.5e-3  # what a scheduler does
    before = p.detach().clone()
    optimizer.step()
    assert p.detach() == pytest.approx(before * (1 - wd / 2))


def test_adaboundw_update_ignores_the_decay_while_adabound_adds_it_to_the_gradient():
    torch.manual_seed(0)
    start, grads = torch.randn(16), [torch.randn(16) for _ in range(5)]
    runs = {}
    for name, cls, wd in [("plain", AdaBound, 0.0), ("w", AdaBoundW, 1e-2), ("l2", AdaBound, 1e-2)]:
        p = nn.Parameter(start.clone())
        optimizer = cls([p], lr=1e-2, final_lr=0.1, gamma=1e-3, weight_decay=wd)
        trace = []
        for g in grads:
            before = p.detach().clone()
            p.grad = g.clone()
            optimizer.step()
            trace.append((before, p.detach().clone()))
        runs[name] = trace
    # AdaBoundW: p_new = p (1 - wd) - update, with the same update as without weight decay
    plain_updates = [b - a for b, a in runs["plain"]]
    for (before, after), update in zip(runs["w"], plain_updates):
        assert after == pytest.approx(before * (1 - 1e-2) - update, abs=1e-6)
    # AdaBound (L2): the decay enters the moments, so the updates differ from the plain ones
    assert not torch.allclose(runs["l2"][-1][1], runs["plain"][-1][1])


def test_an_adabound_state_from_before_amsbound_and_base_lr_loads_with_their_defaults():
    """Checkpoints written before the groups held `amsbound` and `base_lr` load as AdaBound
    without AMSBound, with the lr they were saved at as the base lr."""
    p = nn.Parameter(torch.ones(2))
    saved = AdaBound([p], lr=2e-3).state_dict()
    for group in saved["param_groups"]:
        del group["amsbound"], group["base_lr"]
    restored = AdaBound([nn.Parameter(torch.ones(2))], lr=1e-3, amsbound=True)
    restored.load_state_dict(saved)
    group = restored.param_groups[0]
    assert group["amsbound"] is False and group["base_lr"] == 2e-3


@pytest.mark.parametrize("cls", [AdaBound, AdaBoundW])
def test_adabound_defaults_are_the_reference_implementations(cls):
    """Luo et al.'s reference (Luolc/AdaBound): lr 1e-3, betas (0.9, 0.999), final_lr 0.1,
    gamma 1e-3, eps 1e-8, weight_decay 0, amsbound off."""
    group = cls([nn.Parameter(torch.zeros(1))]).param_groups[0]
    assert {k: group[k] for k in ("lr", "betas", "final_lr", "gamma", "eps", "weight_decay",
                                  "amsbound")} == dict(lr=1e-3, betas=(0.9, 0.999), final_lr=0.1,
                                                       gamma=1e-3, eps=1e-8, weight_decay=0.0,
                                                       amsbound=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1e-9), "Invalid learning rate: -1e-09"),
    (dict(eps=-1e-9), "Invalid epsilon value: -1e-09"),
    (dict(betas=(1.0, 0.5)), r"Invalid beta parameters: \(1.0, 0.5\)"),
    (dict(betas=(0.5, 1.0)), r"Invalid beta parameters: \(0.5, 1.0\)"),
    (dict(betas=(-0.1, 0.5)), "Invalid beta parameters"),
    (dict(betas=(0.5, -0.1)), "Invalid beta parameters"),
    (dict(final_lr=-1e-9), "Invalid final learning rate: -1e-09"),
    (dict(gamma=1.0), "Invalid gamma parameter: 1.0"),
    (dict(gamma=-1e-9), "Invalid gamma parameter"),
    (dict(weight_decay=-1e-9), "Invalid weight_decay value: -1e-09"),
])
def test_adabound_refuses_what_the_reference_refuses(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        AdaBound([nn.Parameter(torch.zeros(1))], **kwargs)


def test_adabound_accepts_the_ends_of_its_ranges():
    AdaBound([nn.Parameter(torch.zeros(1))], lr=0.0, eps=0.0, betas=(0.0, 0.0), final_lr=0.0,
             gamma=0.0, weight_decay=0.0)


def test_adabound_base_lr_survives_a_checkpoint():
    p = nn.Parameter(torch.ones(2))
    optimizer = AdaBound([p], lr=1e-3)
    optimizer.param_groups[0]["lr"] = 1e-4  # a schedule has decayed it
    restored = AdaBound([nn.Parameter(torch.ones(2))], lr=1e-3)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.param_groups[0]["base_lr"] == 1e-3
    assert restored.param_groups[0]["lr"] == 1e-4
