"""Every bad value is refused before training, before any data is loaded or any folder is
written, with a message naming the key, the value and what is allowed (validate.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cifar_tricks.errors import ConfigError
from cifar_tricks.validate import validate
from conftest import ROOT, TINY, compose_config, train_in_process

# (overrides, a fragment of the message): the list, then the audit of every group
BAD = [
    # trainer
    (["+trainer.foo=1"], "trainer.foo is not a trainer setting"),
    (["trainer.device=foo"], "trainer.device='foo' is not a device"),
    (["trainer.num_threads=0"], "trainer.num_threads=0 is not allowed: it must be >= 1"),
    (["trainer.num_threads=-1"], "trainer.num_threads=-1 is not allowed"),
    (["trainer.limit_train_batches=0"], "trainer.limit_train_batches=0 is not allowed"),
    (["trainer.limit_train_batches=-1"], "trainer.limit_train_batches=-1 is not allowed"),
    (["trainer.limit_eval_batches=-1"], "trainer.limit_eval_batches=-1 is not allowed"),
    (["trainer.epochs=0"], "trainer.epochs=0 is not allowed: it must be >= 1"),
    (["trainer.batch_size=0"], "trainer.batch_size=0 is not allowed"),
    (["trainer.eval_batch_size=0"], "trainer.eval_batch_size=0 is not allowed"),
    (["trainer.log_every=0"], "trainer.log_every=0 is not allowed"),
    (["seed=99999999999999999999"], "seed=99999999999999999999 must be a whole number in"),
    (["seed=-1"], "seed=-1 must be a whole number in [0, 2^63 - 1]"),
    # data
    (["data.crop_padding=-1"], "data.crop_padding=-1 is not allowed: it must be >= 0"),
    (["data.crop_padding=33"], "data.crop_padding=33 is larger than the 32x32 images"),
    (["data.std=[0.25,0,0.25]"], "data.std=[0.25, 0.0, 0.25] is not allowed: it must be 3 values"),
    (["data.std=[0.25,0.25]"], "data.std=[0.25, 0.25] is not allowed"),
    (["data.mean=[0.5,0.5]"], "data.mean=[0.5, 0.5] is not allowed"),
    (["data.num_classes=0"], "data.num_classes=0 is not allowed: it must be >= 2"),
    (["data.fraction=1.5"], "data.fraction=1.5 is not allowed: it must be in (0, 1]"),
    (["data.val_size=-1"], "data.val_size=-1 is not allowed: it must be >= 0"),
    (["+data.foo=1"], "data.foo is not a data setting"),
    (["data.num_train=0"], "data.num_train=0 is not allowed"),
    (["data.noise=-1"], "data.noise=-1.0 is not allowed"),
    # sched
    (["sched=warmup", "sched.warmup_epochs=2"], "sched.warmup_epochs=2 must be at least 0 and"),
    (["sched=warmcosine", "sched.warmup_epochs=1"], "sched.warmup_epochs=1 must be at least 0"),
    (["sched=multistep", "sched.gamma=-1"], "sched.gamma=-1 must be positive"),
    (["sched=step", "sched.gamma=0"], "sched.gamma=0 must be positive"),
    (["sched=warmup", "trainer.epochs=10", "sched.gamma=-0.5"], "sched.gamma=-0.5 must be"),
    (["sched=multistep", "sched.milestones=[-5,10]"], "sched.milestones [-5, 10] must be epochs"),
    (["sched=multistep", "sched.milestones=[2.5]"], "sched.milestones=[2.5] must be a list"),
    (["sched=cosine", "sched.eta_min=-1"], "sched.eta_min=-1 must be at least 0"),
    (["sched=step", "sched.step_size=0"], "sched.step_size must be at least 1 epoch"),
    (["sched=cosine_restarts", "sched.T_mult=0"], "sched: Expected integer T_mult >= 1"),
    (["sched=onecycle", "sched.div_factor=0"], "sched.div_factor must be positive"),
    (["sched=onecycle", "sched.pct_start=2"], "sched: Expected float between 0 and 1"),
    (["sched=cosine", "+sched.foo=1"], "sched.foo is not a setting of cifar_tricks.optim.cosine"),
    # optim
    (["optim.lr=abc"], "optim.lr='abc' must be a number"),
    (["optim.lr=-1"], "optim: Invalid learning rate: -1"),
    (["optim.momentum=-0.5"], "optim: Invalid momentum value: -0.5"),
    (["optim.weight_decay=-1"], "optim: Invalid weight_decay value: -1"),
    (["+optim.foo=1"], "optim.foo is not a setting of torch.optim.SGD"),
    (["optim.nesterov=maybe"], "optim.nesterov='maybe' must be true or false"),
    (["optim=adam", "optim.betas=[0.9,1.5]"], "optim: Invalid beta parameter at index 1"),
    (["optim=adabound", "optim.final_lr=-1"], "optim: Invalid final learning rate: -1"),
    (["optim.no_decay_bias_bn=maybe"], "optim.no_decay_bias_bn must be true or false"),
    # aug
    (["aug=[cutout]", "aug.cutout.size=40"], "aug.cutout.size=40 is larger than the 32x32"),
    (["aug=[cutout]", "aug.cutout.size=8.5"], "aug.cutout.size=8.5 must be a whole number"),
    (["aug=[cutout]", "aug.cutout.size=abc"], "aug.cutout.size='abc' must be a whole number"),
    (["aug=[autoaugment]", "aug.autoaugment.fill=300"], "aug.autoaugment.fill must be a pixel"),
    (["aug=[randaugment]", "aug.randaugment.fill=-1"], "aug.randaugment.fill must be a pixel"),
    (["aug=[autoaugment]", "aug.autoaugment.policy=cifar"], "aug.autoaugment.policy must be"),
    (["aug=[trivialaugment]", "aug.trivialaugment.interpolation=cubic"],
     "aug.trivialaugment.interpolation must be one of"),
    (["aug=[trivialaugment]", "aug.trivialaugment.num_magnitude_bins=1"],
     "aug.trivialaugment.num_magnitude_bins must be at least 2"),
    (["aug=[randaugment]", "aug.randaugment.magnitude=40"], "aug.randaugment.magnitude must be"),
    (["aug=[mixup]", "aug.mixup.alpha=abc"], "aug.mixup.alpha='abc' must be a number"),
    (["aug=[cutmix]", "aug.cutmix.prob=2"], "aug.cutmix.prob must be in [0, 1]"),
    (["aug=[random_erase]", "aug.random_erase.scale=[0.5,0.2]"], "aug.random_erase.scale must"),
    (["aug=[ricap]", "aug.ricap.beta=0"], "aug.ricap.beta must be positive"),
    (["aug=[cutout]", "+aug.cutout.foo=1"], "aug.cutout.foo is not a setting of"),
    # trick
    (["trick=[sam,asam]"], "sam and asam exclude each other"),
    (["trick=[kaiming_init,xavier_init]"], "kaiming_init and xavier_init exclude each other"),
    (["trick=[sam]", "trick.sam.rho=-1"], "trick.sam.rho (the neighbourhood radius) must be"),
    (["trick=[label_smooth]", "trick.label_smooth.eps=1"], "trick.label_smooth.eps must be in"),
    (["trick=[ema]", "trick.ema.decay=abc"], "trick.ema.decay='abc' must be a number"),
    (["trick=[grad_clip]", "trick.grad_clip.max_norm=0"], "trick.grad_clip.max_norm must be"),
    (["trick=[kd]", "trick.kd.teacher=resnet1", "trick.kd.checkpoint=x.pt"],
     "trick.kd.teacher='resnet1' is not a model of the zoo"),
    (["trick=[kd]", "trick.kd.teacher=lenet", "trick.kd.checkpoint=x.pt",
      "trick.kd.temperature=0"], "trick.kd.temperature must be positive"),
    (["trick=[ema]", "+trick.ema.foo=1"], "trick.ema.foo is not a setting of"),
    # model
    (["model=vision_transformer", "model.dropout=abc"], "model.dropout='abc' must be a number"),
    (["optimized_metric=val_acc", "data.val_size=0"], "optimized_metric=val_acc needs a"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_a_bad_value_is_refused_with_a_message_naming_its_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(TINY + overrides))
    assert message in str(err.value)


@pytest.mark.parametrize("overrides, message", BAD[::6], ids=[" ".join(o) for o, _ in BAD[::6]])
def test_a_refused_run_writes_nothing(tmp_path, overrides, message):
    folder = tmp_path / "run"
    with pytest.raises(ConfigError, match=message.split(" ")[0].replace("[", r"\[")):
        train_in_process(TINY + overrides, folder)
    assert not folder.exists()


def test_every_option_of_every_group_passes_with_its_defaults():
    from conftest import CONF

    for group in ("aug", "trick", "optim", "sched", "model", "data", "experiment"):
        for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
            if (group, option) == ("trick", "kd"):
                continue  # needs a teacher run: tests/test_kd.py
            overrides = [f"{group}=[{option}]" if group in ("aug", "trick") else
                         f"{group}={option}", "trainer.epochs=300"]  # past every warmup
            validate(compose_config(overrides))


def test_the_command_line_refusal_is_one_message_at_the_end_and_leaves_no_folder(tmp_path):
    folder = tmp_path / "run"
    env = {"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "experiment=smoke",
                           "sched=step", "sched.gamma=-1", f"hydra.run.dir={folder}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert lines[-1].startswith("Error (ConfigError): sched.gamma=-1 must be positive")
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not folder.exists()


def test_a_sweep_stops_at_its_first_refused_job_before_that_jobs_folder_exists(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "-m", "experiment=smoke",
                           "data.num_train=128", "data.num_test=64", "sched=step",
                           "sched.gamma=0.5,-1,0.2", f"hydra.sweep.dir={sweep}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "sched.gamma=-1 must be positive" in proc.stderr.strip().splitlines()[-1]
    summaries = sorted(sweep.glob("*/summary.json"))
    assert len(summaries) == 1 and "gamma=0.5" in summaries[0].parent.name  # the job before
    assert json.loads(summaries[0].read_text())["status"] == "completed"
    assert not [d for d in sweep.iterdir() if d.is_dir() and "gamma" in d.name
                and "0.5" not in d.name]  # neither the refused job nor the one after


@pytest.mark.parametrize("argument, message", [
    ("aug=[cutot]", "'cutot' is not an option of aug; the options are autoaugment, cutmix"),
    ("trick=[sma]", "'sma' is not an option of trick; the options are asam, ema"),
])
def test_an_unknown_multi_select_option_lists_the_options(tmp_path, argument, message):
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "experiment=smoke", argument,
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and message in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_lr_find_refuses_a_loss_that_is_never_finite(tmp_path):
    from cifar_tricks import jobs
    from cifar_tricks.errors import LRFinderError

    # a std of 1e-38 turns the normalised images into infinities: the loss is NaN at once
    overrides = TINY + ["mode=lr_find", "data.std=[1e-38,1e-38,1e-38]", "lr_find.num_iter=20"]
    with pytest.raises(LRFinderError, match=r"finite for only [01] of [12] steps .* too few to "
                                            r"suggest a learning rate"):
        jobs.lr_find(compose_config(overrides), jobs.Job(tmp_path, overrides, {}))
    assert not (tmp_path / "lr_find.png").exists()


COMPONENT_RULES = [(o, m) for o, m in BAD if m.startswith((
    "sched.gamma", "optim: Invalid learning", "aug.cutmix.prob", "aug.ricap.beta",
    "trick.sam.rho", "trick.label_smooth.eps", "aug.randaugment.magnitude"))]


@pytest.mark.parametrize("overrides, message", COMPONENT_RULES,
                         ids=[" ".join(o) for o, _ in COMPONENT_RULES])
def test_building_a_run_without_validating_names_the_key_of_a_component_rule(overrides, message):
    """Components name their own argument; the builder adds the key (build.config_errors), so a
    caller of build_run who skipped validate still gets it."""
    from cifar_tricks.build import build_run

    assert len(COMPONENT_RULES) == 9  # the prefixes above each matched
    with pytest.raises(ConfigError) as err:
        build_run(compose_config(TINY + overrides))
    assert message in str(err.value)


def test_errors_that_already_name_their_fix_pass_through_unwrapped(tmp_path):
    from cifar_tricks.errors import CheckpointError

    cfg = compose_config(TINY + ["trick=[kd]", "trick.kd.teacher=lenet",
                                 f"trick.kd.checkpoint={tmp_path / 'absent.pt'}"])
    with pytest.raises(CheckpointError, match="absent.pt does not exist"):
        validate(cfg)


def test_a_message_whose_first_word_is_no_key_gets_the_node_path_only():
    from cifar_tricks.build import config_errors

    with pytest.raises(ConfigError, match=r"^optim: Invalid epsilon value: -1$"):
        with config_errors("optim", {"lr": 0.1, "eps": 0.0}):
            raise ValueError("Invalid epsilon value: -1")
