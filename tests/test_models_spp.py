"""SPP-ResNeXt study models: the SPP module is really on (the seed's bug), and the variants differ
as their names say (depth -> bottlenecks per stage, p? -> max-pool kernels)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifar_tricks.models import create_model
from cifar_tricks.models.spp_resnext import SPP, ResNeXtBottleneck

DEPTH_BLOCKS = {11: 1, 20: 2, 29: 3}
KERNELS = {"N": (), "A": (3,), "B": (5,), "C": (7,), "D": (3, 5, 7)}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def counts() -> dict[tuple[int, str], int]:
    return {
        (d, p): sum(t.numel() for t in create_model(f"spp_d{d}_p{p}").parameters())
        for d in DEPTH_BLOCKS for p in KERNELS
    }  # fmt: skip


def _kernels(branch: nn.Module) -> tuple[int, ...]:
    return tuple(m.kernel_size for m in branch.modules() if isinstance(m, nn.MaxPool2d))


@pytest.mark.parametrize("depth", DEPTH_BLOCKS)
def test_blocks_per_stage_and_spp_kernels(depth: int) -> None:
    for variant, kernels in KERNELS.items():
        model = create_model(f"spp_d{depth}_p{variant}")
        assert [len(stage) for stage in model.stages] == [DEPTH_BLOCKS[depth]] * 3
        blocks = [m for m in model.modules() if isinstance(m, ResNeXtBottleneck)]
        assert len(blocks) == 3 * DEPTH_BLOCKS[depth]
        for block in blocks:  # the SPP sits on every bottleneck's branch, or on none (pN)
            assert isinstance(block.branch, SPP) == bool(kernels)
            assert _kernels(block.branch) == kernels


@pytest.mark.parametrize("depth", DEPTH_BLOCKS)
def test_param_counts_order(depth: int, counts: dict[tuple[int, str], int]) -> None:
    assert counts[depth, "A"] == counts[depth, "B"] == counts[depth, "C"]
    assert counts[depth, "D"] > counts[depth, "A"]
    # the seed built pA..pD without SPP; every SPP variant must be larger than the plain pN
    assert all(counts[depth, p] > counts[depth, "N"] for p in "ABCD")


def test_pool_kernel_changes_output_for_the_same_weights() -> None:
    torch.manual_seed(0)
    models = {p: create_model(f"spp_d11_p{p}").eval() for p in "ABC"}
    for p in "BC":  # max-pools have no weights: the state dicts match exactly
        models[p].load_state_dict(models["A"].state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = {p: m(x) for p, m in models.items()}
    for p, q in (("A", "B"), ("A", "C"), ("B", "C")):
        assert not torch.allclose(out[p], out[q]), (p, q)


def test_spp_keeps_shape_and_rejects_even_kernels() -> None:
    spp = SPP(16, 16, (3, 5, 7))
    assert spp(torch.randn(2, 16, 8, 8)).shape == (2, 16, 8, 8)
    with pytest.raises(ValueError):
        SPP(16, 16, (4,))
