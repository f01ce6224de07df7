"""The augmentation pipeline: fixed stage order, one mixing op per batch, every option trains."""
from __future__ import annotations

import json

import pytest
import torch

from cifar_tricks.augment import STAGES, BatchAugment, RandomChoice, split_stages
from cifar_tricks.data import BatchLoader, Split
from conftest import CONF, compose_config

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


def test_random_choice_hands_the_batch_and_generator_to_the_op_its_generator_picks():
    seen = []

    class Named(BatchAugment):
        stage = "mix"

        def __init__(self, name):
            self.name = name

        def __call__(self, images, targets, generator):
            seen.append((self.name, images, targets, generator))
            return images, targets

    choice = RandomChoice([Named("a"), Named("b"), Named("c")])
    images, targets = torch.zeros(2), torch.ones(2)
    picks = []
    for global_seed in (1, 2):  # the global RNG has no say in the choice
        torch.manual_seed(global_seed)
        g = torch.Generator().manual_seed(7)
        seen.clear()
        for _ in range(20):
            choice(images, targets, g)
        assert all(i is images and t is targets and gen is g for _, i, t, gen in seen)
        picks.append([name for name, *_ in seen])
    assert picks[0] == picks[1] and set(picks[0]) == {"a", "b", "c"}


def test_an_augmentation_without_a_valid_stage_is_refused():
    class NoStage(BatchAugment):
        stage = "later"

    with pytest.raises(ValueError, match="stage is one of"):
        split_stages([NoStage()])


@pytest.mark.parametrize("name", AUG_OPTIONS)
def test_every_aug_option_is_one_entry_named_like_its_file(name):
    # what each option does in the loop: tests/test_option_effects.py
    assert list(compose_config([f"aug=[{name}]"]).aug) == [name]


def test_autoaugment_random_erase_and_mixup_all_apply_in_one_batch():
    from hydra.utils import instantiate

    cfg = compose_config(["aug=[mixup,random_erase,autoaugment]"])
    log: list = []

    class Spy(BatchAugment):
        def __init__(self, inner):
            self.inner, self.stage = inner, inner.stage

        def __call__(self, images, targets, generator):
            out = self.inner(images, targets, generator)
            log.append((type(self.inner).__name__, bool((out[0] != images).any()),
                        bool((out[1] != targets).any())))
            return out

    augments = [Spy(instantiate(node)) for node in cfg.aug.values()]
    uint8, floats = split_stages(augments)
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g),
                  torch.arange(64) % 10)
    loader = BatchLoader(split, 10, 64, (0.5,) * 3, (0.25,) * 3, train=True,
                         uint8_transforms=uint8, float_transforms=floats)
    next(iter(loader))
    assert [name for name, _, _ in log] == ["AutoAugment", "RandomErasing", "Mixup"]
    assert all(changed_images for _, changed_images, _ in log)
    assert log[-1][2], "mixup mixes the targets"


@pytest.mark.slow
def test_seed_cutout_by_mixup_grid_runs_one_job_per_list(tmp_path):
    from conftest import run_cli

    sweep = tmp_path / "sweep"
    run_cli("-m", "experiment=smoke", "data.num_train=128", "data.num_test=64", "data.val_size=0",
            "trainer.limit_eval_batches=1", "aug=[],[cutout],[mixup],[cutout,mixup]",
            f"hydra.sweep.dir={sweep}")
    choices = sorted(tuple(json.loads(p.read_text())["choices"]["aug"])
                     for p in sweep.glob("*/summary.json"))
    assert choices == [(), ("cutout",), ("cutout", "mixup"), ("mixup",)]


def test_preview_writes_stored_and_augmented_rows(tmp_path):
    import matplotlib.image

    from cifar_tricks.augment.preview import preview

    out = preview(["data=synthetic", "data.num_train=64", "aug=[cutout,mixup]"],
                  tmp_path / "preview.png", n=4, draws=2)
    picture = matplotlib.image.imread(out)
    assert picture.shape[0] > 200 and picture.shape[1] > 300  # 3 rows of 4 images, titled
