"""The defaults and recipes the README states: where the data is read from, the split seed, the
papers' augmentation and trick settings, the speedrun recipes, and what `--help` and the checks
say. Each expected value is the README's (or the paper's), composed rather than trained."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from cifar_tricks.build import build_run
from cifar_tricks.errors import ConfigError
from cifar_tricks.validate import validate
from conftest import CONF, TINY, compose_config, run_cli


def compose_with_choices(overrides: list[str]):
    """The composed config and the option Hydra chose in each group (`hydra.runtime.choices`)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    return cfg, cfg.hydra.runtime.choices


# ------------------------------------------------------------------------------------ the data

@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "cifar100_coarse"])
def test_data_root_is_the_cifar_root_variable_when_set_else_data(dataset, monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_ROOT", str(tmp_path))
    assert compose_config([f"data={dataset}"]).data.root == str(tmp_path)
    monkeypatch.delenv("CIFAR_ROOT")
    assert Path(compose_config([f"data={dataset}"]).data.root) == Path("./data")


def test_split_seed_not_seed_decides_the_validation_and_fraction_subsets():
    split = TINY + ["data.val_size=64", "data.fraction=0.5"]
    runs = {seed: build_run(compose_config(split + [f"seed={seed}"])) for seed in (0, 1)}
    zero, one = runs[0].data, runs[1].data
    assert len(zero.val) == 64 and len(zero.train) == (256 - 64) // 2
    assert torch.equal(zero.val.images, one.val.images)
    assert torch.equal(zero.train.images, one.train.images)
    assert torch.equal(zero.train.labels, one.train.labels)
    # the split does depend on data.split_seed: the test above could not pass by accident
    other = build_run(compose_config(split + ["data.split_seed=1"])).data
    assert not torch.equal(zero.val.images, other.val.images)
    assert not torch.equal(zero.train.images, other.train.images)


# ------------------------------------------------------------------------------------ checks

@pytest.mark.parametrize("sched", ["multistep", "warmup"])
def test_milestones_past_the_end_of_the_run_are_allowed_with_a_warning(sched, caplog):
    def warnings(milestones: str) -> list[str]:
        overrides = TINY + [f"sched={sched}", "trainer.epochs=4", f"sched.milestones={milestones}"]
        if sched == "warmup":
            overrides.append("sched.warmup_epochs=1")
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            validate(compose_config(overrides))  # a warning, not a refusal
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    late = warnings("[2,9]")
    assert len(late) == 1 and "milestones" in late[0] and "[9]" in late[0]
    assert warnings("[2,3]") == []  # within the run: nothing to say


@pytest.mark.parametrize("logger, settings", [
    ("mlflow", ["tracking_uri", "log_checkpoints"]),  # the settings the README names for each
    ("wandb", ["mode", "project", "entity"]),
])
def test_an_unknown_logger_key_is_refused_with_the_keys_that_exist(logger, settings):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY + [f"logger=[{logger}]", f"+logger.{logger}.foo=1"]))
    message = str(err.value)
    assert f"logger.{logger}.foo" in message
    for key in settings:
        assert key in message
    validate(compose_config(TINY + [f"logger=[{logger}]"]))  # the option itself is accepted


# ------------------------------------------------------------------------------------ augmentations

def test_cutout_is_one_16_pixel_square():
    assert compose_config(["aug=[cutout]"]).aug.cutout.size == 16


def test_random_erasing_is_the_papers_p_area_and_aspect():
    erase = compose_config(["aug=[random_erase]"]).aug.random_erase
    assert erase.p == 0.5
    assert list(erase.scale) == pytest.approx([0.02, 0.4])  # area 2-40%
    assert list(erase.ratio) == pytest.approx([0.3, 1 / 0.3])  # aspect r1 = 0.3 to 1 / r1
    assert erase.value == "random"


def test_mixup_draws_lambda_from_beta_1_1():
    assert compose_config(["aug=[mixup]"]).aug.mixup.alpha == 1.0


def test_cutmix_mixes_half_the_batches_with_beta_1_1():
    cutmix = compose_config(["aug=[cutmix]"]).aug.cutmix
    assert cutmix.prob == 0.5
    assert cutmix.alpha == 1.0  # Yun et al. 2019: lambda ~ Beta(1, 1), i.e. uniform


def test_ricap_boundary_is_beta_0_3():
    assert compose_config(["aug=[ricap]"]).aug.ricap.beta == 0.3


def test_autoaugment_uses_the_cifar10_policy():
    assert compose_config(["aug=[autoaugment]"]).aug.autoaugment.policy == "cifar10"


def test_randaugment_is_two_ops_at_magnitude_9():
    randaugment = compose_config(["aug=[randaugment]"]).aug.randaugment
    assert (randaugment.num_ops, randaugment.magnitude) == (2, 9)


def test_trivialaugment_draws_from_the_papers_31_magnitudes():
    # Müller & Hutter 2021, TrivialAugment (Wide): strengths 0..30
    assert compose_config(["aug=[trivialaugment]"]).aug.trivialaugment.num_magnitude_bins == 31


# ------------------------------------------------------------------------------------ tricks

@pytest.mark.parametrize("trick, expected", [
    ("label_smooth", {"eps": 0.1}),
    ("sam", {"rho": 0.05, "adaptive": False}),
    ("asam", {"rho": 0.5, "adaptive": True}),
    ("kd", {"temperature": 4.0, "alpha": 0.9}),
    ("ema", {"decay": 0.999, "warmup": True}),
    ("grad_clip", {"max_norm": 2.0}),
])
def test_trick_defaults_are_the_readme_values(trick, expected):
    node = compose_config([f"trick=[{trick}]"]).trick[trick]
    assert {key: node[key] for key in expected} == expected


# ------------------------------------------------------------------------------------ speedrun

def test_speedrun_is_airbench94_written_as_options():
    cfg, choices = compose_with_choices(["experiment=speedrun"])
    assert (choices.model, choices.optim, choices.sched) == ("airbench94", "airbench_sgd",
                                                             "warmlinear")
    assert set(cfg.trick) == {"whiten_init", "label_smooth", "lookahead"}
    assert cfg.trick.label_smooth.eps == 0.2
    assert (cfg.data.crop_padding, cfg.data.crop_fill, cfg.data.flip_mode) == (
        2, "reflect", "alternating")
    assert cfg.trainer.eval_tta == "flip_translate"
    assert (cfg.trainer.epochs, cfg.trainer.batch_size) == (10, 1024)


def test_speedrun_pieces_hold_airbenchs_hyperparameters():
    cfg = compose_config(["experiment=speedrun"])
    whiten = cfg.trick.whiten_init
    assert (whiten.num_images, whiten.eps, whiten.bias_epochs) == (5000, 5e-4, 3)
    # airbench's decoupled lr 11.5 and weight decay 0.0153 "per 1024 examples", for a mean loss
    optim = cfg.optim
    assert optim.momentum == 0.85 and optim.nesterov is True
    kilostep_scale = 1024 * (1 + 1 / (1 - 0.85))
    assert optim.lr == pytest.approx(11.5 / kilostep_scale * 1024) == pytest.approx(1.5)
    assert optim.weight_decay == pytest.approx(0.0153 / 11.5)
    assert optim.norm_bias_lr_scale == 64
    sched = cfg.sched
    assert (sched.start_factor, sched.warmup_fraction, sched.end_factor) == (0.2, 0.23, 0.07)
    lookahead = cfg.trick.lookahead
    assert lookahead.k == 5 and lookahead.exponent == 3
    assert lookahead.decay == pytest.approx(0.95 ** 5)


def test_speedrun_cpu_is_the_speedrun_narrowed_for_a_cpu():
    cpu, choices = compose_with_choices(["experiment=speedrun_cpu"])
    assert choices.model == "airbench_cpu"
    assert (cpu.trainer.epochs, cpu.trainer.batch_size) == (5, 512)
    assert cpu.optim.lr == pytest.approx(0.75)
    assert cpu.trainer.device == "cpu" and cpu.trainer.channels_last is True
    # the rest is the same recipe
    gpu, gpu_choices = compose_with_choices(["experiment=speedrun"])
    assert (choices.optim, choices.sched) == (gpu_choices.optim, gpu_choices.sched)
    assert cpu.trick == gpu.trick and cpu.data == gpu.data
    assert cpu.trainer.eval_tta == gpu.trainer.eval_tta
    assert {k: v for k, v in cpu.optim.items() if k != "lr"} == \
        {k: v for k, v in gpu.optim.items() if k != "lr"}


# ------------------------------------------------------------------------------------ --help

@pytest.mark.slow
def test_help_lists_the_groups_their_options_and_the_keys():
    text = run_cli("--help", timeout=120).stdout
    lines = text.splitlines()
    for group in ("data", "model", "aug", "optim", "sched", "trick", "trainer", "logger",
                  "experiment", "ablation", "hparams_search"):
        line = next((x for x in lines if x.startswith(f"{group}: ")), None)
        assert line is not None, f"--help lists no group {group}"
        listed = {name.strip() for name in line.split(":", 1)[1].split(",")}
        assert {p.stem for p in (CONF / group).glob("*.yaml")} <= listed, group
    # every key: the composed config, e.g. trainer.epochs, with the seed recipe's values
    start = lines.index("trainer:") + 1
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith(" "))
    assert {"  epochs: 200", "  batch_size: 128"} <= set(lines[start:end])
