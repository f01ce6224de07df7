"""Every conf/experiment/*.yaml composes, keeps the experiment form, and sets only keys that
exist; each recipe experiment has the effect its model's YAML comment states; the user's
command-line overrides win over an experiment."""
from __future__ import annotations

import re

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import CONF, compose_config

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))

# Value keys an experiment may add although its groups lack them, with the reason.
NEW_KEYS_ALLOWED = {
    # torch.optim.AdamW's eps (ConvMixer's timm recipe: --opt-eps 1e-3); conf/optim/adamw.yaml
    # leaves it at torch's default, and create_optimizer passes every optim key to the optimizer.
    ("convmixer_256_8_paper", "optim.eps"),
}

SGD, ADAMW = "torch.optim.SGD", "torch.optim.AdamW"
COSINE, WARMCOSINE, ONECYCLE = ("cifar_tricks.optim.cosine", "cifar_tricks.optim.warmcosine",
                                "cifar_tricks.optim.onecycle")
M = "cifar_tricks.models."

# The seed's transformer runs (seed README §1.0, cited in each model YAML): 200 epochs, SGD,
# cosine decay, batch 128, the seed's lr of each model; nothing else.
SEED_RECIPES = {  # experiment: (model _target_, lr)
    "vision_transformer_seed": (M + "vit.vision_transformer", 0.1),
    "mobilevit_s_seed": (M + "mobilevit.mobilevit_s", 0.1),
    "mobilevit_xs_seed": (M + "mobilevit.mobilevit_xs", 0.1),
    "mobilevit_xxs_seed": (M + "mobilevit.mobilevit_xxs", 0.1),
    "coatnet_0_seed": (M + "coatnet.coatnet_0", 0.01),
    "coatnet_1_seed": (M + "coatnet.coatnet_1", 0.01),
    "coatnet_2_seed": (M + "coatnet.coatnet_2", 0.01),
    "cvt_seed": (M + "cvt.cvt", 0.01),
    "swin_t_seed": (M + "swin.swin_t", 0.01),
    "swin_s_seed": (M + "swin.swin_s", 0.01),
}
# "Transformers from scratch usually gain from warmup, label smoothing and AdamW":
# optim=adamw optim.lr=1e-3 sched=warmcosine trick=[label_smooth].
ADAMW_RECIPES = {  # experiment: model _target_
    "coatnet_0_adamw": M + "coatnet.coatnet_0",
    "coatnet_1_adamw": M + "coatnet.coatnet_1",
    "coatnet_2_adamw": M + "coatnet.coatnet_2",
    "cvt_adamw": M + "cvt.cvt",
    "mobilevit_s_adamw": M + "mobilevit.mobilevit_s",
    "mobilevit_xs_adamw": M + "mobilevit.mobilevit_xs",
    "mobilevit_xxs_adamw": M + "mobilevit.mobilevit_xxs",
    "swin_t_adamw": M + "swin.swin_t",
    "swin_s_adamw": M + "swin.swin_s",
}

# experiment: {dotted key: value}, written out from each recipe's text; "aug" and "trick" are
# the selected entries in order.
RECIPES: dict[str, dict] = {
    **{name: {"model._target_": target, "optim._target_": SGD, "optim.nesterov": False,
              "optim.lr": lr, "sched._target_": COSINE, "trainer.epochs": 200,
              "trainer.batch_size": 128, "aug": [], "trick": []}
       for name, (target, lr) in SEED_RECIPES.items()},
    **{name: {"model._target_": target, "optim._target_": ADAMW, "optim.lr": 1e-3,
              "sched._target_": WARMCOSINE, "aug": [], "trick": ["label_smooth"]}
       for name, target in ADAMW_RECIPES.items()},
    # omihub777 ViT-CIFAR, 91.0% C10: lr 1e-3, wd 5e-5, 5 warmup epochs, cosine, AutoAugment,
    # label smoothing 0.1, 200 epochs (the command line's AdamW)
    "vision_transformer_paper": {
        "model._target_": M + "vit.vision_transformer", "optim._target_": ADAMW,
        "optim.lr": 1e-3, "optim.weight_decay": 5e-5, "sched._target_": WARMCOSINE,
        "sched.warmup_epochs": 5, "aug": ["autoaugment"], "aug.autoaugment.policy": "cifar10",
        "trick": ["label_smooth"], "trick.label_smooth.eps": 0.1, "trainer.epochs": 200},
    # CCT paper / SHI-Labs: AdamW lr 5.5e-4, wd 6e-2, batch 128, 300 epochs, 10 warmup epochs,
    # cosine to 1e-5, label smoothing 0.1, RandAugment m9, mixup 0.8 / cutmix 1.0 (every batch
    # mixed), random erasing 0.25
    "cct_7_3x1_paper": {
        "model._target_": M + "cct.cct_7_3x1", "optim._target_": ADAMW, "optim.lr": 5.5e-4,
        "optim.weight_decay": 6e-2, "sched._target_": WARMCOSINE, "sched.warmup_epochs": 10,
        "sched.eta_min": 1e-5, "trainer.epochs": 300, "trainer.batch_size": 128,
        "aug": ["randaugment", "mixup", "cutmix", "random_erase"],
        "aug.randaugment.magnitude": 9, "aug.mixup.alpha": 0.8, "aug.cutmix.alpha": 1.0,
        "aug.cutmix.prob": 1.0, "aug.random_erase.p": 0.25,
        "trick": ["label_smooth"], "trick.label_smooth.eps": 0.1},
    # ConvMixer paper (timm): AdamW lr 0.01, wd 0.01, eps 1e-3, one-cycle, 200 epochs, batch 64,
    # grad clip 1.0, RandAugment m9, mixup 0.5, cutmix 0.5 (every batch mixed), random erasing 0.25
    "convmixer_256_8_paper": {
        "model._target_": M + "convmixer.convmixer_256_8", "model.patch_size": 1,
        "model.kernel_size": 9, "optim._target_": ADAMW, "optim.lr": 0.01,
        "optim.weight_decay": 0.01, "optim.eps": 1e-3, "sched._target_": ONECYCLE,
        "trainer.epochs": 200, "trainer.batch_size": 64,
        "aug": ["randaugment", "mixup", "cutmix", "random_erase"],
        "aug.randaugment.magnitude": 9, "aug.mixup.alpha": 0.5, "aug.cutmix.alpha": 0.5,
        "aug.cutmix.prob": 1.0, "aug.random_erase.p": 0.25,
        "trick": ["grad_clip"], "trick.grad_clip.max_norm": 1.0},
}


def effect(cfg, key: str):
    if key in ("aug", "trick"):
        return list(cfg[key])
    return OmegaConf.select(cfg, key, throw_on_missing=True)


def group_overrides(raw: dict) -> list[str]:
    """The `override /group: option` entries of an experiment's defaults, as command-line
    overrides that select the same options."""
    out = []
    for entry in raw.get("defaults", []):
        if isinstance(entry, dict):
            ((key, option),) = entry.items()
            group = key.removeprefix("override").strip().lstrip("/")
            if isinstance(option, list):
                option = "[" + ",".join(option) + "]"
            out.append(f"{group}={option}")
    return out


def leaf_keys(node, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [k for key, value in node.items()
                for k in leaf_keys(value, f"{prefix}.{key}" if prefix else str(key))]
    return [prefix]


def read(name: str) -> tuple[str, dict]:
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    return text, yaml.safe_load(text)


def test_experiments_are_discovered():
    assert {"smoke", "divide_co_train"} <= set(EXPERIMENTS)
    assert set(RECIPES) <= set(EXPERIMENTS), sorted(set(RECIPES) - set(EXPERIMENTS))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_resolves(name):
    cfg = compose_config([f"experiment={name}"])
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_has_the_experiment_form(name):
    text, _ = read(name)
    assert text.startswith("# @package _global_\n"), f"conf/experiment/{name}.yaml"
    header = text.split("\ndefaults:")[0]
    assert f"python run.py experiment={name}" in header, \
        f"conf/experiment/{name}.yaml: its header comment should show the command"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_value_key_exists_in_its_groups(name):
    """A misspelt key would silently add a new key: each value an experiment sets must exist in
    the config composed from the same group options without the experiment."""
    _, raw = read(name)
    base = compose_config(group_overrides(raw))
    values = {k: v for k, v in raw.items() if k not in ("defaults", "hydra")}
    missing = [key for key in leaf_keys(values)
               if (name, key) not in NEW_KEYS_ALLOWED
               and OmegaConf.select(base, key, default=KeyError) is KeyError]
    assert not missing, f"conf/experiment/{name}.yaml sets keys its groups lack: {missing}"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_experiment_has_the_recipe_effect(name):
    cfg = compose_config([f"experiment={name}"])
    wrong = {key: (effect(cfg, key), want) for key, want in RECIPES[name].items()
             if effect(cfg, key) != want}
    assert not wrong, f"experiment={name}: key: (composed, recipe) {wrong}"


def test_allowed_new_keys_are_still_set():
    for name, key in NEW_KEYS_ALLOWED:
        _, raw = read(name)
        assert key in leaf_keys(raw), f"{name} no longer sets {key}: drop it from the allow-list"


@pytest.mark.parametrize("name", EXPERIMENTS)
@pytest.mark.parametrize("order", ["experiment first", "experiment last"])
def test_user_value_overrides_win_over_the_experiment(name, order):
    user = ["optim.lr=0.5", "trainer.epochs=7"]
    overrides = [f"experiment={name}", *user]
    cfg = compose_config(overrides if order == "experiment first" else overrides[::-1])
    assert cfg.optim.lr == 0.5 and cfg.trainer.epochs == 7


def test_user_group_overrides_win_over_the_experiment():
    cfg = compose_config(["experiment=vision_transformer_paper", "model=resnet18", "optim=sgd",
                          "aug=[cutout]", "trick=[]", "optim.lr=0.05"])
    assert cfg.model._target_ == M + "resnet.resnet18"
    assert cfg.optim._target_ == SGD and cfg.optim.lr == 0.05
    assert list(cfg.aug) == ["cutout"] and list(cfg.trick) == []
    # what the user did not override stays the recipe's
    assert cfg.optim.weight_decay == 5e-5
    assert cfg.sched._target_ == WARMCOSINE and cfg.sched.warmup_epochs == 5

    cfg = compose_config(["experiment=coatnet_0_adamw", "optim=sgd", "sched=cosine",
                          "trick=[sam]"])
    assert cfg.optim._target_ == SGD and cfg.optim.lr == 1e-3
    assert cfg.sched._target_ == COSINE and list(cfg.trick) == ["sam"]


def model_yaml_pointers() -> dict[str, list[str]]:
    return {p.stem: re.findall(r"experiment=(\w+)", "".join(
                line for line in p.read_text().splitlines(keepends=True)
                if line.startswith("#")))
            for p in sorted((CONF / "model").glob("*.yaml"))}


def test_model_yaml_recipe_pointers_name_experiments_of_that_model():
    pointers = model_yaml_pointers()
    for model, names in pointers.items():
        target = yaml.safe_load((CONF / "model" / f"{model}.yaml").read_text())["_target_"]
        for name in names:
            assert name in EXPERIMENTS, f"conf/model/{model}.yaml points to missing {name}"
            if name in RECIPES:
                assert RECIPES[name]["model._target_"] == target, (model, name)
    pointed = {name for names in pointers.values() for name in names}
    assert set(RECIPES) <= pointed, sorted(set(RECIPES) - pointed)


def test_recipes_live_in_experiments_not_in_model_comments():
    for path in sorted((CONF / "model").glob("*.yaml")):
        assert "python run.py model=" not in path.read_text(), \
            f"{path.name}: a recipe command line belongs in conf/experiment/ (experiment=...)"
