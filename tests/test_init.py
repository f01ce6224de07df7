"""Kaiming and Xavier initialisation: the weight statistics of large layers match the papers'
formulas (sampling error of a std over ~10^5 weights is ~0.2%, the tolerance 3%)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cifar_tricks.tricks.init import kaiming_init, xavier_init

pytestmark = pytest.mark.usefixtures("one_thread")

C_IN, C_OUT, K = 64, 256, 3          # conv: fan_in 576, fan_out 2304, 147k weights
L_IN, L_OUT = 512, 300               # linear: 154k weights


def model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(C_IN, C_OUT, K, bias=True), nn.BatchNorm2d(C_OUT),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(C_OUT, L_IN), nn.LayerNorm(L_IN), nn.Linear(L_IN, L_OUT))
    # non-trivial starting values, so "set to" is distinguishable from "left at the default"
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3)
    return net


def check_identity_norms_and_zero_biases(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))


def test_kaiming_conv_std_is_sqrt_2_over_fan_out_and_linear_is_0_01():
    net = kaiming_init(model())
    conv, big_linear = net[0].weight, net[7].weight
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (C_OUT * K * K)), rel=0.03)
    assert abs(conv.mean().item()) < 0.03 * conv.std().item()
    assert big_linear.std().item() == pytest.approx(0.01, rel=0.03)
    assert abs(big_linear.mean().item()) < 1e-4
    check_identity_norms_and_zero_biases(net)


def test_xavier_std_is_sqrt_2_over_fan_in_plus_fan_out_and_uniformly_bounded():
    net = xavier_init(model())
    for weight, fan_in, fan_out in ((net[0].weight, C_IN * K * K, C_OUT * K * K),
                                    (net[7].weight, L_IN, L_OUT)):
        assert weight.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.03)
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert weight.abs().max().item() <= bound
        assert weight.abs().max().item() > 0.99 * bound  # uniform: the edges are reached
    check_identity_norms_and_zero_biases(net)


@pytest.mark.parametrize("init", [kaiming_init, xavier_init])
def test_layers_without_bias_or_affine_are_fine(init):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4, affine=False),
                        nn.Linear(4, 2, bias=False))
    assert init(net) is net
