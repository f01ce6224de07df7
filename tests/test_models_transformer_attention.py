"""CoAtNet and Swin attention against their definitions, on tiny inputs: relative-bias attention
through SDPA, Swin's window partition and shifted-window mask, and the stage resolutions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from cifar_tricks.models.coatnet import CoAtNet, RelativeAttention
from cifar_tricks.models.swin import (
    SwinBlock,
    SwinTransformer,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_attention(attn: RelativeAttention, x: torch.Tensor, grid: tuple[int, int],
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d) + B [+ mask]) V per head, B[h, i, j] read from the table by hand
    at the 2D offset of token i from token j."""
    height, width = grid
    b, n, _ = x.shape
    heads = attn.heads
    q, k, v = attn.to_qkv(x).chunk(3, dim=-1)
    q, k, v = (t.reshape(b, n, heads, -1).transpose(1, 2) for t in (q, k, v))
    table = attn.relative_bias_table
    bias = torch.empty(table.shape[1], n, n)
    for i, j in itertools.product(range(n), range(n)):
        dy, dx = i // width - j // width, i % width - j % width
        bias[:, i, j] = table[(dy + height - 1) * (2 * width - 1) + dx + width - 1]
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
    if mask is not None:
        logits = logits + mask
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1)
    return attn.to_out(out)


@pytest.mark.parametrize("bias_heads", [None, 1])
def test_sdpa_relative_attention_equals_definition(bias_heads: int | None) -> None:
    torch.manual_seed(0)
    attn = RelativeAttention(12, 10, (3, 4), heads=2, dim_head=4, bias_heads=bias_heads)
    torch.nn.init.normal_(attn.relative_bias_table)  # the CoAtNet table starts at 0
    x = torch.randn(2, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), reference_attention(attn, x, (3, 4)))
        mask = torch.zeros(2, 1, 12, 12).masked_fill(torch.rand(2, 1, 12, 12) < 0.3, float("-inf"))
        mask[..., torch.arange(12), torch.arange(12)] = 0.0  # every token still sees itself
        torch.testing.assert_close(attn(x, mask), reference_attention(attn, x, (3, 4), mask))


def test_window_partition_then_reverse_is_identity() -> None:
    x = torch.randn(2, 8, 12, 3)
    windows = window_partition(x, 4)
    assert windows.shape == (2 * 2 * 3, 16, 3)
    torch.testing.assert_close(windows[1], x[0, 0:4, 4:8].reshape(16, 3))  # row-major windows
    torch.testing.assert_close(windows[3 + 2], x[0, 4:8, 8:12].reshape(16, 3))
    assert torch.equal(window_reverse(windows, 4, 8, 12), x)


@pytest.mark.parametrize("height, width", [(8, 8), (8, 12)])
def test_shifted_window_mask_blocks_tokens_from_different_regions(height: int, width: int) -> None:
    """After rolling by -s, the token at (y, x) came from ((y + s) % H, (x + s) % W): two tokens of
    one window may attend to each other iff neither or both wrapped around, per axis."""
    ws, s = 4, 2
    mask = shifted_window_mask(height, width, ws, s)
    coords = window_partition(torch.stack(torch.meshgrid(
        torch.arange(height), torch.arange(width), indexing="ij"), -1)[None], ws)  # (windows, N, 2)
    wrapped = torch.stack([coords[..., 0] >= height - s, coords[..., 1] >= width - s], -1)
    same_region = (wrapped[:, :, None] == wrapped[:, None, :]).all(-1)
    assert mask.shape == same_region.shape
    assert (mask[same_region] == 0).all()
    assert (mask[~same_region] < -1e4).all()
    assert (~same_region).any() and (mask.diagonal(dim1=1, dim2=2) == 0).all()


def test_shifted_block_ignores_tokens_of_other_regions() -> None:
    """End to end through roll, partition, SDPA and roll back: the shifted window at rolled rows
    and columns 4..7 holds original rows / columns 6, 7 and 0, 1, which must not attend to each
    other."""
    torch.manual_seed(0)
    block = SwinBlock(8, heads=2, head_dim=4, window_size=4, resolution=8, shifted=True).eval()
    assert block.shift == 2
    x = torch.randn(1, 8, 8, 8)

    def change_at(pos: tuple[int, int], probe: tuple[int, int] = (7, 7)) -> float:
        y = x.clone()
        y[0, pos[0], pos[1]] += 10.0
        with torch.no_grad():
            diff = block._attention(y) - block._attention(x)
        return diff[0, probe[0], probe[1]].abs().max().item()

    assert change_at((6, 6)) > 1e-3  # same region of the same shifted window
    assert change_at((0, 7)) == 0.0  # same window after the roll, other region
    assert change_at((7, 0)) == 0.0
    assert change_at((0, 0)) == 0.0
    assert change_at((2, 2)) == 0.0  # another window altogether


def tiny_swin() -> SwinTransformer:
    return SwinTransformer(8, (2, 2, 2, 2), (1, 2, 2, 2), num_classes=10, head_dim=4)


def test_swin_resolutions_and_no_shift_when_one_window_covers_the_map() -> None:
    torch.manual_seed(0)
    model = tiny_swin().eval()
    sizes = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, i, out: sizes.append(tuple(out.shape[1:])))
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 64, 4, 4)
    assert sizes == [(16, 16, 8), (16, 16, 16), (8, 8, 32), (4, 4, 64)]
    shifts = [[block.shift for block in stage[1:]] for stage in model.stages]
    assert shifts == [[0, 2], [0, 2], [0, 2], [0, 0]]
    last = model.stages[3][2]
    assert last.attn_mask is None and last.window_size == 4
    x = torch.randn(1, 4, 4, 64)
    y = x.clone()
    y[0, 0, 0] += 10.0
    with torch.no_grad():  # one unmasked 4x4 window: every token sees every other
        assert ((last._attention(y) - last._attention(x)).abs().amax(-1) > 0).all()


def test_coatnet_halves_the_resolution_in_every_stage() -> None:
    model = CoAtNet([1, 1, 2, 2, 1], [8, 8, 16, 16, 32], num_classes=10, heads=2, dim_head=4)
    sizes = []
    for stage in (model.stem, *model.stages):
        stage.register_forward_hook(lambda m, i, out: sizes.append(tuple(out.shape[1:])))
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sizes == [(8, 16, 16), (8, 8, 8), (16, 4, 4), (16, 2, 2), (32, 1, 1)]


def test_attention_masks_follow_autocast_dtype() -> None:
    torch.manual_seed(0)
    model = tiny_swin().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
