"""SAM and ASAM (`cifar_tricks.optim.sam`) against their definitions, on problems small enough to
differentiate by hand: loss = (w . x - y)^2, so grad L(w) = 2 (w . x - y) x."""
from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from torch import nn

from cifar_tricks.optim.sam import SAM, disable_running_stats, enable_running_stats

pytestmark = pytest.mark.usefixtures("one_thread")

X = [1.0, -2.0, 0.5]
Y = 0.3
W0 = [0.4, 0.1, -0.7]
LR = 0.1


def grad(w: list[float]) -> list[float]:
    """Hand-derived gradient of (w . x - y)^2."""
    r = sum(wi * xi for wi, xi in zip(w, X)) - Y
    return [2 * r * xi for xi in X]


def norm(v: list[float]) -> float:
    return math.sqrt(sum(vi * vi for vi in v))


def make_closure(w: torch.Tensor, clip: float | None = None):
    x, y = torch.tensor(X), torch.tensor(Y)

    def closure() -> torch.Tensor:
        loss = (w @ x - y) ** 2
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([w], clip)
        return loss
    return closure


def sam_step(rho: float = 0.05, adaptive: bool = False, eta: float = 0.0,
             clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.tensor(W0, requires_grad=True)
    opt = SAM([w], functools.partial(torch.optim.SGD, lr=LR), rho=rho, adaptive=adaptive,
              eta=eta)
    opt.zero_grad()
    loss = opt.step(make_closure(w, clip))
    return w.detach(), loss.detach()


# ------------------------------------------------------------------------------------ update

def test_sam_step_is_sgd_on_the_gradient_at_the_perturbed_point():
    rho = 0.05
    g = grad(W0)
    w_adv = [wi + rho * gi / norm(g) for wi, gi in zip(W0, g)]
    expected = [wi - LR * gi for wi, gi in zip(W0, grad(w_adv))]
    w, loss = sam_step(rho)
    assert torch.allclose(w, torch.tensor(expected), atol=1e-6)
    # the returned loss is the first one, at w (what a plain step would report)
    assert loss.item() == pytest.approx((sum(a * b for a, b in zip(W0, X)) - Y) ** 2, rel=1e-6)


def test_rho_zero_is_plain_sgd():
    w, _ = sam_step(rho=0.0)
    expected = [wi - LR * gi for wi, gi in zip(W0, grad(W0))]
    assert torch.allclose(w, torch.tensor(expected), atol=1e-6)


B0 = 0.2  # the bias of the tiny linear model below


class TinyLinear(nn.Module):
    """w . x + b, with `w` named "weight" (shape 1 x 3) and `b` named "bias" (shape 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([W0]))
        self.bias = nn.Parameter(torch.tensor([B0]))

    def loss(self) -> torch.Tensor:
        return ((self.weight @ torch.tensor(X)) + self.bias - Y).pow(2).sum()


def linear_grads(w: list[float], b: float) -> tuple[list[float], float]:
    """Hand-derived gradients of (w . x + b - y)^2: 2 r x for w, 2 r for b."""
    r = sum(wi * xi for wi, xi in zip(w, X)) + b - Y
    return [2 * r * xi for xi in X], 2 * r


def test_asam_scales_weights_by_abs_w_plus_eta_and_leaves_biases_at_t_one():
    # the official rule (SamsungLabs/ASAM asam.py): T = |w| + eta for parameters named "weight",
    # T = 1 for the others; e = rho T^2 g / ||T g||, the norm over all entries together
    rho, eta = 0.5, 0.01
    model = TinyLinear()
    opt = SAM(model.parameters(), functools.partial(torch.optim.SGD, lr=LR), rho=rho,
              adaptive=True, eta=eta, model=model)
    model.loss().backward()
    g_w, g_b = linear_grads(W0, B0)
    t = [abs(wi) + eta for wi in W0]
    t_g_norm = norm([ti * gi for ti, gi in zip(t, g_w)] + [1.0 * g_b])
    expected_w = [rho * ti * ti * gi / t_g_norm for ti, gi in zip(t, g_w)]
    expected_b = rho * g_b / t_g_norm  # T = 1: not |b| + eta
    e = {p: e_w for p, e_w in opt.perturbation()}
    assert e.keys() == {model.weight, model.bias}
    assert torch.allclose(e[model.weight], torch.tensor([expected_w]), atol=1e-7)
    assert torch.allclose(e[model.bias], torch.tensor([expected_b]), atol=1e-7)
    # and the step is SGD with the gradient taken at (w + e_w, b + e_b)
    gw2, gb2 = linear_grads([wi + ei for wi, ei in zip(W0, expected_w)], B0 + expected_b)
    opt.zero_grad()
    opt.step(lambda: _backward(model.loss()))
    assert torch.allclose(model.weight.detach(),
                          torch.tensor([[wi - LR * gi for wi, gi in zip(W0, gw2)]]), atol=1e-6)
    assert model.bias.item() == pytest.approx(B0 - LR * gb2, abs=1e-6)


def _backward(loss: torch.Tensor) -> torch.Tensor:
    loss.backward()
    return loss


def test_asam_names_decide_over_shapes_when_the_model_is_given():
    # a BatchNorm weight is 1-d but named "weight": scaled; a 2-d parameter named otherwise
    # (a positional embedding, say) is not
    model = nn.Module()
    model.norm = nn.BatchNorm1d(2)
    model.pos_embedding = nn.Parameter(torch.tensor([[2.0, -3.0]]))
    with torch.no_grad():
        model.norm.weight.copy_(torch.tensor([2.0, -3.0]))
    opt = SAM(model.parameters(), functools.partial(torch.optim.SGD, lr=LR), rho=1.0,
              adaptive=True, eta=0.0, model=model)
    for p in (model.norm.weight, model.norm.bias, model.pos_embedding):
        p.grad = torch.ones_like(p)
    e = {p: e_w for p, e_w in opt.perturbation()}
    # T g: norm.weight (2, 3), norm.bias (1, 1), pos_embedding (1, 1): ||T g|| = sqrt(17)
    n = math.sqrt(17.0)
    assert torch.allclose(e[model.norm.weight], torch.tensor([4.0, 9.0]) / n)
    assert torch.allclose(e[model.norm.bias], torch.tensor([1.0, 1.0]) / n)
    assert torch.allclose(e[model.pos_embedding], torch.tensor([[1.0, 1.0]]) / n)


def test_asam_without_a_model_treats_multi_dimensional_parameters_as_weights():
    kernel = torch.tensor([[2.0, -3.0]], requires_grad=True)  # ndim 2: a weight
    vector = torch.tensor([2.0, -3.0], requires_grad=True)  # ndim 1: T = 1
    opt = SAM([kernel, vector], functools.partial(torch.optim.SGD, lr=LR), rho=1.0,
              adaptive=True, eta=0.0)
    kernel.grad, vector.grad = torch.ones(1, 2), torch.ones(2)
    e = {p: e_w for p, e_w in opt.perturbation()}
    n = math.sqrt(4.0 + 9.0 + 1.0 + 1.0)
    assert torch.allclose(e[kernel], torch.tensor([[4.0, 9.0]]) / n)
    assert torch.allclose(e[vector], torch.tensor([1.0, 1.0]) / n)


def test_asam_with_eta_zero_does_not_perturb_zero_weights():
    w = torch.tensor([[0.0, 0.5, -1.0]], requires_grad=True)  # 2-d: a weight without a model
    opt = SAM([w], functools.partial(torch.optim.SGD, lr=LR), rho=0.5, adaptive=True)
    w.grad = torch.tensor([[1.0, 1.0, 1.0]])
    ((_, e_w),) = opt.perturbation()
    e_w = e_w.flatten()
    assert e_w[0] == 0 and e_w[1] != 0 and e_w[2] != 0
    # |w|-scaling: e_w[2] / e_w[1] = (1.0 / 0.5)^2
    assert (e_w[2] / e_w[1]).item() == pytest.approx(4.0)


def test_the_norm_runs_over_all_groups_together():
    a = torch.tensor([3.0], requires_grad=True)
    b = torch.tensor([4.0], requires_grad=True)
    opt = SAM([{"params": [a]}, {"params": [b]}], functools.partial(torch.optim.SGD, lr=LR),
              rho=1.0)
    a.grad, b.grad = torch.tensor([3.0]), torch.tensor([4.0])
    e = {p: e_w for p, e_w in opt.perturbation()}
    assert torch.allclose(e[a], torch.tensor([0.6])) and torch.allclose(e[b], torch.tensor([0.8]))


def test_a_closure_that_clips_gets_the_clipped_second_gradient():
    # clipping rescales g as a whole, so e(w) is unchanged; the descent uses the clipped g(w+e)
    rho, clip = 0.05, 0.1
    g = grad(W0)
    w_adv = [wi + rho * gi / norm(g) for wi, gi in zip(W0, g)]
    g2 = grad(w_adv)
    factor = min(1.0, clip / (norm(g2) + 1e-6))
    w, _ = sam_step(rho, clip=clip)
    assert torch.allclose(w, torch.tensor([wi - LR * factor * gi for wi, gi in zip(W0, g2)]),
                          atol=1e-6)


def test_a_bf16_autocast_closure_keeps_fp32_weights_and_matches_fp32_closely():
    """The bf16 step's update matches the fp32 one to bf16's precision (a relative error of a
    few 2^-8), which is tighter than what SAM's perturbation changes in the update, so a step
    that lost the perturbation under autocast would fail."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(32, 8), torch.randint(3, (32,))

    def update(bf16: bool, rho: float = 0.5) -> list[torch.Tensor]:
        model = copy.deepcopy(net)
        opt = SAM(model.parameters(), functools.partial(torch.optim.SGD, lr=0.5), rho=rho,
                  model=model)

        def closure() -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            return loss
        opt.zero_grad()
        opt.step(closure)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        return [(p - p0).detach() for p, p0 in zip(model.parameters(), net.parameters())]

    def distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
        return torch.linalg.vector_norm(torch.cat([(u - v).flatten() for u, v in zip(a, b)]))

    bf16, fp32, no_sam = update(True), update(False), update(False, rho=0.0)
    size = torch.linalg.vector_norm(torch.cat([u.flatten() for u in fp32]))
    error, sam_effect = distance(bf16, fp32), distance(fp32, no_sam)
    assert error <= 0.02 * size
    assert error < sam_effect / 2


# ------------------------------------------------------------------------------------ plumbing

@pytest.mark.parametrize("prebuilt", [False, True])
def test_a_scheduler_on_sam_sets_the_base_optimizers_lr(prebuilt: bool):
    w = torch.tensor(W0, requires_grad=True)
    if prebuilt:
        opt = SAM(None, torch.optim.SGD([w], lr=LR))
    else:
        opt = SAM([w], functools.partial(torch.optim.SGD, lr=LR))
    assert opt.param_groups is opt.base_optimizer.param_groups
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    opt.zero_grad()
    opt.step(make_closure(w))
    sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(LR * 0.1)
    # and the base step uses it: with rho 0 the update is exactly -0.01 * grad
    opt.param_groups[0]["rho"] = 0.0
    w0 = w.detach().clone().tolist()
    opt.zero_grad()
    opt.step(make_closure(w))
    assert torch.allclose(w.detach(), torch.tensor([a - LR * 0.1 * g
                                                    for a, g in zip(w0, grad(w0))]), atol=1e-6)


def test_a_prebuilt_base_with_other_params_is_refused():
    w, v = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="^SAM was given a built base optimizer and different "
                                         "params; pass params=None"):
        SAM([v], torch.optim.SGD([w], lr=0.1))


@pytest.mark.parametrize("given", [
    lambda w, v: [w, v],  # the tensors
    lambda w, v: [{"params": [w]}, {"params": v}],  # groups, a list or one tensor each
])
def test_a_prebuilt_base_with_its_own_params_is_accepted_in_any_form(given):
    w, v = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    SAM(given(w, v), torch.optim.SGD([w, v], lr=0.1))
    with pytest.raises(ValueError, match="different params"):  # one missing is refused
        SAM(given(w, v)[:1], torch.optim.SGD([w, v], lr=0.1))


def test_step_without_a_closure_says_so():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="closure"):
        SAM([w], functools.partial(torch.optim.SGD, lr=0.1)).step()


def test_state_dict_round_trip_resumes_identically():
    torch.manual_seed(0)
    x, y = torch.randn(16, 5), torch.randn(16, 1)

    def build(model: nn.Module):
        opt = SAM(model.parameters(), functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9,
                                                        weight_decay=5e-4), rho=0.05,
                  model=model)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)

    def train_step(model: nn.Module, opt: SAM, sched) -> None:
        def closure() -> torch.Tensor:
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss
        opt.zero_grad()
        opt.step(closure)
        sched.step()

    model = nn.Linear(5, 1)
    opt, sched = build(model)
    for _ in range(3):
        train_step(model, opt, sched)
    saved = copy.deepcopy({"model": model.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict()})
    assert saved["optimizer"].keys() == {"state", "param_groups"}
    assert all("momentum_buffer" in s for s in saved["optimizer"]["state"].values())

    resumed = nn.Linear(5, 1)
    opt2, sched2 = build(resumed)
    resumed.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["optimizer"])
    sched2.load_state_dict(saved["scheduler"])
    assert opt2.param_groups is opt2.base_optimizer.param_groups
    for _ in range(2):  # crosses a StepLR milestone: the scheduler must reach the base's lr
        train_step(model, opt, sched)
        train_step(resumed, opt2, sched2)
    assert opt2.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 2)
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


# ------------------------------------------------------------------------------------ BatchNorm

def bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 1))


def bn_step(model: nn.Module, bypass: bool, x: torch.Tensor, y: torch.Tensor) -> None:
    opt = SAM(model.parameters(), functools.partial(torch.optim.SGD, lr=0.1), rho=0.5,
              model=model if bypass else None)

    def closure() -> torch.Tensor:
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss
    opt.zero_grad()
    opt.step(closure)


def test_bn_running_stats_move_in_the_first_forward_only():
    x, y = torch.randn(8, 4) * 3 + 1, torch.randn(8, 1)
    reference = bn_net()
    reference.train()
    with torch.no_grad():
        reference(x)  # one plain forward at w
    ref_bn = reference[1]

    model = bn_net()
    bn_step(model, bypass=True, x=x, y=y)
    bn = model[1]
    assert torch.allclose(bn.running_mean, ref_bn.running_mean)
    assert torch.allclose(bn.running_var, ref_bn.running_var)
    assert bn.num_batches_tracked.item() == 1
    assert bn.momentum == 0.1  # restored

    unbypassed = bn_net()
    bn_step(unbypassed, bypass=False, x=x, y=y)  # the check above would notice a second update
    assert not torch.allclose(unbypassed[1].running_mean, ref_bn.running_mean)


def test_disable_enable_running_stats_also_restores_the_cumulative_counter():
    bn = nn.BatchNorm1d(3, momentum=None)  # cumulative average: num_batches_tracked matters
    model = nn.Sequential(bn)
    model(torch.randn(4, 3))
    mean = bn.running_mean.clone()
    disable_running_stats(model)
    disable_running_stats(model)  # idempotent: the second call must not back up momentum 0
    model(torch.randn(4, 3) + 5)
    enable_running_stats(model)
    assert torch.equal(bn.running_mean, mean)
    assert bn.num_batches_tracked.item() == 1 and bn.momentum is None
