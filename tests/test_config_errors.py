"""A refused value names its full config key: components name their own argument, the builder
(which knows which node it builds) adds the path and our error type."""
from __future__ import annotations

import pytest

from cifar_tricks.build import build_run, build_scheduler, config_errors
from cifar_tricks.errors import CheckpointError, ConfigError
from conftest import TINY, compose_config


@pytest.mark.parametrize("overrides, message", [
    (["aug=[cutmix]", "aug.cutmix.alpha=-1"], "aug.cutmix.alpha must be positive, got -1"),
    (["aug=[cutmix]", "aug.cutmix.prob=2"], "aug.cutmix.prob must be in [0, 1], got 2"),
    (["aug=[cutout]", "aug.cutout.size=0"], "aug.cutout.size must be a positive whole number"),
    (["aug=[mixup]", "aug.mixup.alpha=0"], "aug.mixup.alpha must be positive"),
    (["aug=[ricap]", "aug.ricap.beta=-1"], "aug.ricap.beta must be positive"),
    (["aug=[random_erase]", "aug.random_erase.p=1.5"], "aug.random_erase.p must be in [0, 1]"),
    (["aug=[randaugment]", "aug.randaugment.magnitude=40"], "aug.randaugment.magnitude must be"),
    (["trick=[grad_clip]", "trick.grad_clip.max_norm=0"], "trick.grad_clip.max_norm must be"),
    (["trick=[label_smooth]", "trick.label_smooth.eps=1.0"], "trick.label_smooth.eps must be"),
    (["trick=[ema]", "trick.ema.decay=2"], "trick.ema.decay must be in [0, 1]"),
    (["trick=[sam]", "trick.sam.rho=-0.1"], "trick.sam.rho (the neighbourhood radius) must"),
    (["trick=[asam]", "trick.asam.eta=-1"], "trick.asam.eta (ASAM's offset) must"),
    (["data.fraction=1.5"], "data.fraction=1.5 is outside (0, 1]"),
    (["optim=adabound", "optim.lr=-1"], "optim: Invalid learning rate: -1"),
    (["optim.no_decay_bias_bn=maybe"], "optim.no_decay_bias_bn must be true or false"),
    (["model=vision_transformer", "+model.patch_size=5"],
     "model: img_size 32 is not a multiple of patch_size 5"),
])
def test_a_refused_value_names_its_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        build_run(compose_config(TINY + overrides))
    assert message in str(err.value)


@pytest.mark.parametrize("overrides, message", [
    (["sched=warmcosine", "sched.warmup_epochs=3", "trainer.epochs=2"],
     "sched.warmup_epochs=3 must be at least 0 and less than the run's epochs "
     "(trainer.epochs=2)"),
    (["sched=step", "sched.step_size=0"], "sched.step_size must be at least 1 epoch, got 0"),
    (["sched=warmup", "sched.warmup_epochs=5", "sched.milestones=[2]", "trainer.epochs=10"],
     "sched.milestones [2] must not precede the end of the warmup"),
])
def test_a_refused_schedule_value_names_its_key(overrides, message):
    cfg = compose_config(TINY + overrides)
    run = build_run(cfg, schedule=False)
    with pytest.raises(ConfigError) as err:
        build_scheduler(cfg, run)
    assert message in str(err.value)
    with pytest.raises(ConfigError, match=message.split(" ")[0]):
        build_run(cfg)  # the whole build refuses it too


def test_errors_that_already_name_their_fix_pass_through_unwrapped(tmp_path):
    cfg = compose_config(TINY + ["trick=[kd]", "trick.kd.teacher=lenet",
                                 f"trick.kd.checkpoint={tmp_path / 'absent.pt'}"])
    with pytest.raises(CheckpointError, match="absent.pt does not exist"):
        build_run(cfg)


def test_a_message_whose_first_word_is_no_key_gets_the_node_path_only():
    with pytest.raises(ConfigError, match=r"^optim: Invalid epsilon value: -1$"):
        with config_errors("optim", {"lr": 0.1, "eps": 0.0}):
            raise ValueError("Invalid epsilon value: -1")
