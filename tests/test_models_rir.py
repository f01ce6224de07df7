"""ResNet in ResNet specifics: the classifier head follows num_classes (the seed's returned 100
logits for 10 classes and crashed for 100; see cifar_tricks.models.rir)."""

from __future__ import annotations

import pytest
import torch

from cifar_tricks.models import create_model

SEED_10_CLASSES = 10_293_634  # the seed's 10-class build, with its 450 -> 100 last layer


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_head_fix_changes_only_the_last_layer() -> None:
    # 10 classes: the seed's net with Linear(450, 10) instead of Linear(450, 100)
    assert n_params(create_model("rir", num_classes=10)) == SEED_10_CLASSES - 450 * 90 - 90
    # 100 classes: upstream's CIFAR-100 net (100-channel head conv, Linear(450, 100))
    assert n_params(create_model("rir", num_classes=100)) == SEED_10_CLASSES


@pytest.mark.parametrize("num_classes", [10, 100])
def test_logits_follow_num_classes(num_classes: int) -> None:
    model = create_model("rir", num_classes=num_classes).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, num_classes)
