"""Every option of every config group composes and builds; mistakes fail at compose time."""
from __future__ import annotations

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cifar_tricks.config import TrainerConfig
from cifar_tricks.data import ImageData
from conftest import CONF, compose_config, options


def test_default_config_is_the_seed_recipe():
    cfg = compose_config([])
    assert cfg.data._target_ == "cifar_tricks.data.cifar10"
    assert cfg.model._target_ == "cifar_tricks.models.wide_resnet.wideresnet"
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.1, 0.9, 5e-4)
    assert list(cfg.sched.milestones) == [60, 120, 160] and cfg.sched.gamma == 0.2
    assert (cfg.trainer.epochs, cfg.trainer.batch_size) == (200, 128)
    assert (cfg.data.crop, cfg.data.crop_padding, cfg.data.flip) == (True, 4, True)
    assert dict(cfg.aug) == {} and dict(cfg.trick) == {}


@pytest.mark.parametrize("name", options("data"))
def test_every_data_option_builds(name, fake_cifar):
    cfg = compose_config([f"data={name}", f"data.root={fake_cifar}" if name != "synthetic" else
                          "data.num_train=100"])
    data = instantiate(cfg.data)
    assert isinstance(data, ImageData)
    assert data.num_classes == cfg.data.num_classes
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (3, 32, 32)
    assert int(data.train.labels.max()) < data.num_classes


@pytest.mark.parametrize("name", options("optim"))
def test_every_optim_option_builds(name):
    from cifar_tricks.optim import create_optimizer

    cfg = compose_config([f"optim={name}"])
    optimizer = create_optimizer(cfg.optim, torch.nn.Linear(3, 2))
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert optimizer.param_groups[0]["lr"] == cfg.optim.lr


@pytest.mark.parametrize("name", options("sched"))
def test_every_sched_option_builds(name):
    cfg = compose_config([f"sched={name}"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    scheduler = instantiate(cfg.sched)(optimizer, steps_per_epoch=10, epochs=200)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)


def test_multistep_milestones_are_epochs_stepped_per_iteration():
    cfg = compose_config(["sched=multistep"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    scheduler = instantiate(cfg.sched)(optimizer, steps_per_epoch=10, epochs=200)
    lrs = []
    for _ in range(61 * 10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[599] == pytest.approx(0.1)  # last step of epoch 60 (epochs counted from 1)
    assert lrs[600] == pytest.approx(0.02)  # first step of epoch 61: x0.2 after 60 epochs


@pytest.mark.parametrize("name", options("trainer"))
def test_every_trainer_option_is_typed(name):
    cfg = compose_config([f"trainer={name}"])
    assert isinstance(OmegaConf.to_object(cfg.trainer), TrainerConfig)


@pytest.mark.parametrize("name", options("experiment"))
def test_every_experiment_composes_and_builds(name):
    cfg = compose_config([f"experiment={name}"])
    model = instantiate(cfg.model)
    assert isinstance(model, torch.nn.Module)


@pytest.mark.parametrize("name", options("hparams_search"))
def test_every_search_optimises_validation_accuracy(name):
    with_hydra = compose_config_with_hydra([f"hparams_search={name}"])
    assert with_hydra.optimized_metric == "val_acc"
    assert with_hydra.data.val_size > 0
    sweeper = with_hydra.hydra.sweeper
    assert "optuna" in sweeper._target_ and sweeper.direction == "maximize"
    assert sweeper.params, "a search needs a search space"


def compose_config_with_hydra(overrides):
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def test_multi_select_groups_default_to_empty_lists():
    cfg = compose_config_with_hydra([])
    defaults = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))["defaults"]
    assert {"aug": []} in defaults and {"trick": []} in defaults
    assert dict(cfg.aug) == {} and dict(cfg.trick) == {}


def test_unknown_option_lists_the_available_ones():
    with pytest.raises(MissingConfigException) as err:
        compose_config(["model=resnet1"])
    message = str(err.value)
    assert "model/resnet1" in message
    for name in options("model"):
        assert name in message


@pytest.mark.parametrize("override, key", [
    ("trainer.epochs=abc", "trainer.epochs"),
    ("trainer.precision=fp61", "trainer.precision"),
    ("data.fraction=half", "data.fraction"),
    ("trainer.batchsize=64", "batchsize"),
])
def test_wrong_type_or_unknown_key_fails_at_compose_time(override, key):
    with pytest.raises(ConfigCompositionException) as err:
        compose_config([override])
    assert key in str(err.value) + str(err.value.__cause__)


def test_every_group_folder_in_the_design_exists():
    for group in ("data", "model", "aug", "optim", "sched", "trick", "trainer", "experiment",
                  "ablation", "hparams_search"):
        assert (CONF / group).is_dir(), group


def test_readme_settings_tables_are_the_generated_ones():
    from cifar_tricks.readme import generated_blocks, read_block

    readme = (CONF.parent / "README.md").read_text()
    for name, body in generated_blocks(with_models=False).items():
        assert read_block(readme, name) == body, \
            f"the README's {name} is stale: python -m cifar_tricks.readme README.md"


@pytest.mark.parametrize("schema, function", [
    ("CifarConfig", "cifar10"), ("CifarConfig", "cifar100"), ("SyntheticConfig", "synthetic")])
def test_dataset_function_defaults_equal_the_schema_defaults(schema, function):
    """The schema is the one source of the data defaults; a dataset function used from Python
    must not silently default to something else."""
    import dataclasses
    import inspect

    from cifar_tricks import config, data
    from cifar_tricks.data import datasets

    fields = {f.name: f for f in dataclasses.fields(getattr(config, schema))}
    # cifar10/cifar100 forward **kwargs to the shared CIFAR reader: its signature has them
    target = datasets._cifar if function.startswith("cifar") else getattr(data, function)
    checked = 0
    for name, parameter in inspect.signature(target).parameters.items():
        if parameter.default is inspect.Parameter.empty or name not in fields:
            continue
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else f.default
        value = list(parameter.default) if isinstance(parameter.default, tuple) else \
            parameter.default
        assert value == default, f"{function}({name}={value!r}) but {schema}.{name}={default!r}"
        checked += 1
    assert checked >= 7  # fraction, val_size, split_seed, crop, crop_padding, flip, ...


def test_yaml_files_of_typed_groups_repeat_no_schema_default():
    """conf/trainer and conf/data hold only what differs from the schema (one source each)."""
    import dataclasses

    import yaml

    from cifar_tricks import config

    schemas = {"trainer/default.yaml": config.TrainerConfig, "data/cifar10.yaml":
               config.CifarConfig, "data/cifar100.yaml": config.CifarConfig,
               "data/synthetic.yaml": config.SyntheticConfig}
    for path, schema in schemas.items():
        values = yaml.safe_load((CONF / path).read_text()) or {}
        defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING
                             else f.default) for f in dataclasses.fields(schema)}
        # what a dataset is (its target, classes, statistics) is stated per dataset, even where
        # it happens to equal the generic default
        own = {"_target_", "num_classes", "mean", "std"}
        repeated = sorted(k for k, v in values.items()
                          if k in defaults and k not in own and v == defaults[k])
        assert not repeated, f"{path} repeats the schema defaults of {repeated}: delete them"
