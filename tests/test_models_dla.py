"""DLA beyond the levels the reference used: deeper trees chain their sub-trees correctly."""

from __future__ import annotations

import torch

from cifar_tricks.models.dla import DLA, Tree


def test_level3_tree_runs_and_aggregates_every_stage(one_thread) -> None:
    tree = Tree(8, 16, level=3, stride=2)
    # prev_root + level-2 and level-1 sub-trees + left + right feed the root
    assert tree.root[0].in_channels == 5 * 16
    assert tree(torch.randn(2, 8, 16, 16)).shape == (2, 16, 8, 8)


def test_custom_levels_and_widths() -> None:
    model = DLA(levels=(1, 3), channels=(8, 8, 16, 32, 64), num_classes=7)
    assert model.num_features == 64
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
