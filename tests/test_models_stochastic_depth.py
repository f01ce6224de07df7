"""Stochastic depth keeps or drops a block's residual branch for the whole mini-batch in
training and scales it by the survival probability in evaluation (Huang et al. 2016)."""

from __future__ import annotations

import torch

from cifar_tricks.models import create_model
from cifar_tricks.models.stochastic_depth import StochasticDepthBlock


def test_survival_probabilities_decay_linearly_to_one_half() -> None:
    model = create_model("stochastic_depth_resnet18")
    keep = [1 - block.drop_path.drop_prob for stage in model.layers for block in stage]
    assert len(keep) == 8 and keep[0] == 1.0 and abs(keep[-1] - 0.5) < 1e-9
    steps = [a - b for a, b in zip(keep, keep[1:])]
    assert max(steps) - min(steps) < 1e-9


def test_block_drops_per_batch_in_training_and_scales_in_eval() -> None:
    torch.manual_seed(0)
    block = StochasticDepthBlock(4, 4, survival_prob=0.5)
    x = torch.randn(6, 4, 5, 5)
    block.eval()
    with torch.no_grad():
        residual = block.residual(x)
        assert torch.allclose(block(x), 0.5 * residual + x)

    block.train()
    outcomes = set()
    with torch.no_grad():
        for _ in range(40):
            out = block(x)
            residual = block.residual(x)  # train-mode BN: the same batch gives the same branch
            if torch.equal(out, x):
                outcomes.add("dropped")
            else:
                # kept unscaled, and for every sample of the batch at once
                assert torch.allclose(out, residual + x)
                outcomes.add("kept")
    assert outcomes == {"dropped", "kept"}
