"""EfficientNet-B0 specifics: the drop-connect schedule that the original never applied, and no
dead parameters in expansion-1 blocks (see the module docstring of
cifar_tricks.models.efficientnet)."""

from __future__ import annotations

import pytest
import torch

from cifar_tricks.models import create_model
from cifar_tricks.models.efficientnet import MBConv
from cifar_tricks.models.layers import DropPath

pytestmark = pytest.mark.usefixtures("one_thread")


def test_drop_path_rises_linearly_over_blocks() -> None:
    model = create_model("efficientnetb0", drop_path_rate=0.2)
    blocks = [m for m in model.modules() if isinstance(m, MBConv)]
    assert len(blocks) == 16
    for i, block in enumerate(blocks):
        if block.has_skip:
            assert isinstance(block.drop_path, DropPath)
            assert block.drop_path.drop_prob == pytest.approx(0.2 * i / 16)
    assert max(m.drop_prob for m in model.modules() if isinstance(m, DropPath)) > 0.15


def test_first_block_has_no_expansion_conv() -> None:
    first = create_model("efficientnetb0").layers[0]
    assert isinstance(first.expand, torch.nn.Identity)


def test_regularisers_only_in_training() -> None:
    x = torch.randn(4, 3, 32, 32)
    for rates, stochastic in (((0.5, 0.5), True), ((0.0, 0.0), False)):
        torch.manual_seed(0)
        model = create_model("efficientnetb0", drop_rate=rates[0], drop_path_rate=rates[1])
        with torch.no_grad():
            # training mode: BN uses batch statistics, so only dropout / drop-path are random
            outs = [model.train()(x) for _ in range(2)]
            assert torch.allclose(outs[0], outs[1]) != stochastic
            assert torch.equal(model.eval()(x), model(x))
