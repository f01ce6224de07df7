"""The augmentation pipeline: fixed stage order, one mixing op per batch, every option trains."""
from __future__ import annotations

import json

import pytest
import torch

from cifar_tricks.augment import STAGES, BatchAugment, RandomChoice, split_stages
from cifar_tricks.data import BatchLoader, Split
from conftest import CONF, TINY, compose_config, train_in_process

AUG_OPTIONS = sorted(p.stem for p in (CONF / "aug").glob("*.yaml"))


class Record(BatchAugment):
    """Marks which stage saw the batch and in which dtype."""

    def __init__(self, stage: str, log: list) -> None:
        self.stage, self.log = stage, log

    def __call__(self, images, targets, generator):
        self.log.append((self.stage, images.dtype))
        return images, targets


def test_stages_run_in_the_fixed_order_whatever_the_list_order():
    log: list = []
    augments = [Record("mix", log), Record("erase", log), Record("policy", log)]
    uint8, floats = split_stages(augments)
    split = Split(torch.zeros(8, 3, 4, 4, dtype=torch.uint8), torch.zeros(8, dtype=torch.long))
    loader = BatchLoader(split, 10, 8, (0.5,) * 3, (0.25,) * 3, train=True,
                         uint8_transforms=uint8, float_transforms=floats)
    next(iter(loader))
    assert log == [("policy", torch.uint8), ("erase", torch.float32), ("mix", torch.float32)]
    assert [s for s, _ in log] == list(STAGES)


def test_several_mixing_ops_become_one_random_choice_applying_one_op_per_batch():
    log: list = []
    _, floats = split_stages([Record("mix", log), Record("mix", log)])
    assert len(floats) == 1 and isinstance(floats[0], RandomChoice)
    g = torch.Generator().manual_seed(0)
    for calls in range(1, 50):
        floats[0](torch.zeros(1), torch.zeros(1), g)
        assert len(log) == calls  # exactly one op per batch


def test_random_choice_picks_each_op_equally_often():
    calls = {"a": 0, "b": 0}

    class Named(BatchAugment):
        stage = "mix"

        def __init__(self, name):
            self.name = name

        def __call__(self, images, targets, generator):
            calls[self.name] += 1
            return images, targets

    choice = RandomChoice([Named("a"), Named("b")])
    g = torch.Generator().manual_seed(0)
    for _ in range(2000):
        choice(torch.zeros(1), torch.zeros(1), g)
    assert abs(calls["a"] - 1000) < 120


def test_an_augmentation_without_a_valid_stage_is_refused():
    class NoStage(BatchAugment):
        stage = "later"

    with pytest.raises(ValueError, match="stage is one of"):
        split_stages([NoStage()])


@pytest.mark.parametrize("name", AUG_OPTIONS)
def test_every_aug_option_composes_and_trains_a_few_steps(name, tmp_path):
    cfg = compose_config([f"aug=[{name}]"])
    assert list(cfg.aug) == [name], "each conf/aug file is one entry named like the file"
    train_in_process(TINY + [f"aug=[{name}]", "trainer.limit_train_batches=3",
                             "model=resnet20"], tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["train_loss"] > 0
