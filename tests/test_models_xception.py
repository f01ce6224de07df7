"""Xception specifics: the port's in-place ReLU fed the activated input to the shortcuts of the
entry blocks 2-3 and the middle flow, not to the exit block (cifar_tricks.models.xception)."""

from __future__ import annotations

import torch
from torch import nn

from cifar_tricks.models.xception import MiddleFlowBlock, XceptionBlock


def _silence_residual(block: nn.Module) -> None:
    last_bn = [m for m in block.residual.modules() if isinstance(m, nn.BatchNorm2d)][-1]
    nn.init.zeros_(last_bn.weight)
    nn.init.zeros_(last_bn.bias)


def test_middle_flow_identity_adds_the_activated_input() -> None:
    block = MiddleFlowBlock(8).eval()
    _silence_residual(block)
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))


def test_entry_shortcuts_see_the_activation_and_the_exit_shortcut_does_not() -> None:
    x = torch.randn(2, 8, 4, 4)
    for act_shortcut in (True, False):
        block = XceptionBlock(8, 8, 8, stride=1, act_shortcut=act_shortcut).eval()
        _silence_residual(block)
        with torch.no_grad():
            expected = block.shortcut(torch.relu(x) if act_shortcut else x)
            assert torch.allclose(block(x), expected)
