"""NASNet-A specifics: only the previous-input path each cell uses is built (the port built both
paths of every Fit module; see cifar_tricks.models.nasnet), and it computes the port's function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifar_tricks.models import create_model
from cifar_tricks.models.nasnet import FactorizedReduce, NormalCell, ReductionCell

PORT_PARAMS = (5_126_494, 5_221_624)  # weiaicunzai NasNetA(4, 2, 44, 44), 10 / 100 classes
UNUSED_IN_PORT = 887_568  # its Fit modules' never-used factorized reductions and projections


pytestmark = pytest.mark.usefixtures("one_thread")


def test_count_is_the_ports_minus_its_unused_parameters() -> None:
    for num_classes, port in zip((10, 100), PORT_PARAMS):
        model = create_model("nasnet", num_classes=num_classes)
        assert sum(p.numel() for p in model.parameters()) == port - UNUSED_IN_PORT


def test_previous_input_is_reduced_exactly_after_a_reduction_cell() -> None:
    cells = list(create_model("nasnet").cells)
    assert [type(c) for c in cells].count(ReductionCell) == 2
    for before, cell in zip(cells, cells[1:]):
        reduces = isinstance(cell.fit_prev, FactorizedReduce)
        assert reduces == (isinstance(before, ReductionCell) and isinstance(cell, NormalCell))


def test_factorized_reduce_matches_the_ports_pad_crop_pool() -> None:
    torch.manual_seed(0)
    block, x = FactorizedReduce(8, 6).eval(), torch.randn(2, 8, 16, 16)
    # the port: relu, [avgpool(1, 2) -> conv] and [pad right/bottom, crop left/top, avgpool(1, 2)
    # -> conv], concatenated, BN
    conv1 = nn.Conv2d(8, 3, 1).eval()
    conv2 = nn.Conv2d(8, 3, 1).eval()
    conv1.load_state_dict(block.conv1.state_dict())
    conv2.load_state_dict(block.conv2.state_dict())
    shift = nn.Sequential(nn.ConstantPad2d((0, 1, 0, 1), 0), nn.ConstantPad2d((-1, 0, -1, 0), 0))
    r = torch.relu(x)
    port = block.bn(torch.cat([conv1(nn.AvgPool2d(1, 2)(r)),
                               conv2(nn.AvgPool2d(1, 2)(shift(r)))], 1))
    with torch.no_grad():
        assert torch.allclose(block(x), port, atol=1e-6)


def test_stem_width_no_longer_has_to_equal_filters() -> None:
    model = create_model("nasnet", filters=12, stem_filters=16, cells_per_stage=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
