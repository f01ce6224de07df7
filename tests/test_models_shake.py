"""Shake-Shake and ShakeDrop behave as their definitions say, and the models using them are
random in training and deterministic in evaluation."""

from __future__ import annotations

import pytest
import torch

from cifar_tricks.models import create_model
from cifar_tricks.models.layers import ShakeDrop, shake_shake

pytestmark = pytest.mark.usefixtures("one_thread")


def _per_sample_coefficient(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """c with num == c * den for each sample (least squares over all but the batch dim)."""
    dims = tuple(range(1, num.dim()))
    return (num * den).sum(dims) / (den * den).sum(dims)


def _broadcast(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return c.view(-1, *([1] * (like.dim() - 1)))


def test_shake_shake_forward_mixes_and_backward_uses_another_coefficient() -> None:
    torch.manual_seed(0)
    a = torch.randn(8, 3, 4, 4, requires_grad=True)
    b = torch.randn(8, 3, 4, 4, requires_grad=True)
    out = shake_shake(a, b, training=True)

    # out = alpha a + (1 - alpha) b  <=>  out - b = alpha (a - b)
    alpha = _per_sample_coefficient((out - b).detach(), (a - b).detach())
    mix = _broadcast(alpha, a)
    assert torch.allclose(out, mix * a + (1 - mix) * b, atol=1e-5)
    assert ((alpha >= 0) & (alpha <= 1)).all()
    assert alpha.std() > 0.05  # one draw per sample, not one per batch

    g = torch.randn_like(out)
    out.backward(g)
    beta = _per_sample_coefficient(a.grad, g)
    assert torch.allclose(a.grad, _broadcast(beta, g) * g, atol=1e-5)
    assert torch.allclose(b.grad, (1 - _broadcast(beta, g)) * g, atol=1e-5)
    assert ((beta >= 0) & (beta <= 1)).all()
    # beta is drawn independently of alpha ("shake" forward and backward)
    assert (beta - alpha).abs().max() > 1e-3


def test_shake_shake_eval_is_the_mean() -> None:
    a, b = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    out1, out2 = shake_shake(a, b, training=False), shake_shake(a, b, training=False)
    assert torch.equal(out1, 0.5 * (a + b)) and torch.equal(out1, out2)


def test_shake_drop_coefficients() -> None:
    torch.manual_seed(0)
    p, n = 0.5, 20_000
    layer = ShakeDrop(p).train()
    x = torch.ones(n, 3, requires_grad=True)
    out = layer(x)
    out.backward(torch.ones_like(out))
    fwd, bwd = out.detach(), x.grad
    # one coefficient per sample, the same for every feature
    assert torch.equal(fwd, fwd[:, :1].expand_as(fwd))
    assert torch.equal(bwd, bwd[:, :1].expand_as(bwd))
    fwd, bwd = fwd[:, 0], bwd[:, 0]

    kept = (fwd == 1) & (bwd == 1)  # gate on: identity both ways
    dropped = ~kept
    assert ((fwd[dropped] >= -1) & (fwd[dropped] <= 1)).all()
    assert ((bwd[dropped] >= 0) & (bwd[dropped] <= 1)).all()
    assert (fwd[dropped] != bwd[dropped]).all()
    assert (fwd[dropped] < 0).any()  # alpha spans [-1, 1], beta only [0, 1]
    assert abs(dropped.float().mean().item() - p) < 0.02
    # E[b + alpha (1 - b)] = 1 - p with E[alpha] = 0
    assert abs(fwd.mean().item() - (1 - p)) < 0.03


def test_shake_drop_eval_is_the_expectation() -> None:
    layer = ShakeDrop(0.3).eval()
    x = torch.randn(5, 4, 2, 2)
    assert torch.equal(layer(x), (1 - 0.3) * x) and torch.equal(layer(x), layer(x))


@pytest.mark.parametrize("name", ["shake_resnet26_2x32d", "pyramidnet110"])
def test_model_random_in_training_deterministic_in_eval(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10)
    # 8x8 inputs keep the test fast; the models pool adaptively
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        model.train()
        assert not torch.allclose(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
