"""ConvMixer's patch and kernel knobs build the networks locuslab/convmixer builds."""

from __future__ import annotations

import pytest
import torch

from cifar_tricks.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("kernel_size, patch_size, params, grid", [
    (9, 1, 706_570, 32),  # the paper's CIFAR-10 setting (default)
    (5, 2, 594_186, 16),  # locuslab/convmixer-cifar10's quick script
    (8, 1, 671_754, 32),  # an even kernel: "same" padding keeps the grid
])
def test_patch_and_kernel_size(kernel_size: int, patch_size: int, params: int, grid: int) -> None:
    model = create_model("convmixer_256_8", kernel_size=kernel_size, patch_size=patch_size).eval()
    assert _params(model) == params
    with torch.no_grad():
        assert model.forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 256, grid, grid)
