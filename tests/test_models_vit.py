"""The shared transformer blocks compute what their definitions say, and the ViT keeps the
omihub777 quirks (logit scale, patch order) that the seed's numbers were trained with."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifar_tricks.models import create_model
from cifar_tricks.models.vit import Attention, EncoderBlock, Mlp

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_attention(attn: Attention, x: torch.Tensor, scale: float,
                         bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v per head, written out."""
    b, n, d = x.shape
    h = attn.num_heads
    q, k, v = attn.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
    logits = q @ k.transpose(-2, -1) * scale + (0 if bias is None else bias)
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
    return attn.proj(out)


@pytest.mark.parametrize("scale", [None, 64 ** -0.5])
def test_attention_matches_written_out_softmax_with_either_scale(scale: float | None) -> None:
    torch.manual_seed(0)
    attn = Attention(64, num_heads=8, scale=scale).eval()
    x = torch.randn(2, 5, 64)
    expected = _reference_attention(attn, x, 8 ** -0.5 if scale is None else scale)
    assert torch.allclose(attn(x), expected, atol=1e-5)


def test_attention_takes_an_additive_float_mask() -> None:
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4).eval()
    x = torch.randn(2, 6, 32)
    bias = torch.randn(4, 6, 6)  # e.g. a relative position bias, one per head
    assert torch.allclose(attn(x, bias), _reference_attention(attn, x, 8 ** -0.5, bias), atol=1e-5)
    # -inf on the last key: changing that token's value leaves the other queries' outputs alone
    mask = torch.zeros(6, 6)
    mask[:, -1] = float("-inf")
    y = x.clone()
    y[:, -1] += 1.0
    assert torch.allclose(attn(x, mask)[:, :-1], attn(y, mask)[:, :-1], atol=1e-5)


def test_encoder_block_pre_norm_and_normalised_residual() -> None:
    torch.manual_seed(0)
    dim = 16
    block = EncoderBlock(dim, Attention(dim, 2), Mlp(dim, 32)).eval()
    x = torch.randn(2, 4, dim)
    h = x + block.attn(block.norm1(x))
    assert torch.allclose(block(x), h + block.mlp(block.norm2(h)), atol=1e-6)

    block.norm_residual = True  # the CCT layer: norm2 rewrites the stream
    h = block.norm2(x + block.attn(block.norm1(x)))
    assert torch.allclose(block(x), h + block.mlp(h), atol=1e-6)


def test_mlp_act_out_adds_a_gelu_after_the_second_linear() -> None:
    assert isinstance(Mlp(8, 16, act_out=True)[4], nn.GELU)
    assert isinstance(Mlp(8, 16)[4], nn.Identity)


def test_vision_transformer_scales_logits_by_width_unless_told_otherwise() -> None:
    seed_vit = create_model("vision_transformer")
    paper_vit = create_model("vision_transformer", attn_scale_by_width=False)
    assert seed_vit.blocks[0].attn.scale == pytest.approx(384 ** -0.5)
    assert paper_vit.blocks[0].attn.scale is None  # SDPA's default, head_dim ** -0.5


def test_vision_transformer_tokens_are_4x4_patches_pixel_major_channel_last() -> None:
    model = create_model("vision_transformer").eval()
    x = torch.randn(1, 3, 32, 32)
    seen = {}
    hook = model.patch_embed.register_forward_hook(lambda m, inp, out: seen.update(tokens=inp[0]))
    with torch.no_grad():
        model(x)
    hook.remove()
    # the original: x.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 4, 5, 1).reshape(1, 64, -1)
    expected = x.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 4, 5, 1).reshape(1, 64, -1)
    assert torch.equal(seen["tokens"], expected)
