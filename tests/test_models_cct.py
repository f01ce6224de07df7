"""CCT-7/3x1: 256 tokens from the conv tokenizer, sequence pooling is a convex combination of the
tokens, stochastic depth rises to 0.1 and acts only in training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifar_tricks.models import create_model
from cifar_tricks.models.cct import SeqPool

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tokenizer_gives_a_16x16_grid_of_256_wide_tokens() -> None:
    model = create_model("cct_7_3x1")
    assert model.tokenizer(torch.zeros(1, 3, 32, 32)).shape == (1, 256, 16, 16)
    assert model.pos_embed.shape == (1, 256, 256)


def test_sequence_pooling_is_a_softmax_weighted_average_of_tokens() -> None:
    torch.manual_seed(0)
    pool = SeqPool(8)
    x = torch.randn(3, 5, 8)
    weights = pool.score(x).softmax(dim=1)
    assert torch.allclose(weights.sum(1), torch.ones(3, 1))
    assert torch.allclose(pool(x), torch.einsum("bn,bnd->bd", weights[..., 0], x), atol=1e-6)


def test_stochastic_depth_rises_linearly_to_0_1_and_is_off_in_eval() -> None:
    model = create_model("cct_7_3x1")
    rates = [0.0 if isinstance(b.drop_path, nn.Identity) else b.drop_path.drop_prob
             for b in model.blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.1, 7).tolist())
    assert all(b.norm_residual for b in model.blocks)
    assert model.blocks[0].attn.qkv.bias is None  # bias-free qkv as SHI-Labs

    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    model.train()
    assert not torch.equal(model(x), model(x))  # drop path and attention dropout draw anew
