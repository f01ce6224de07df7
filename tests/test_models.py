"""Model zoo: exact parameter counts, forward/backward, registry and configs."""

from __future__ import annotations

import inspect
from pathlib import Path

import hydra.utils
import pytest
import torch
from omegaconf import OmegaConf

from cifar_tricks.models import (
    create_model,
    get_model_entry,
    list_models,
    model_table,
    register_model,
)
from cifar_tricks.models.layers import Classifier
from model_reference import expected_params

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "model"
MODEL_CONFIGS = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(name: str, num_classes: int) -> torch.nn.Module:
    """`conf/model/<name>.yaml` instantiated by Hydra, as run.py does."""
    root = OmegaConf.create({"data": {"num_classes": num_classes},
                             "model": OmegaConf.load(CONF_DIR / f"{name}.yaml")})
    return hydra.utils.instantiate(root.model)


def assert_params_match_reference(model: torch.nn.Module, name: str, num_classes: int) -> None:
    expected = expected_params(name)[num_classes == 100]
    got = n_params(model)
    assert got == expected, \
        f"{name} ({num_classes} classes): {got:,} params, reference {expected:,}"


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_model_builds_trains_and_evaluates_for_10_and_100_classes(name: str) -> None:
    """One build per class count: counts, train forward+backward, deterministic eval, surface."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = build(name, 10)
    assert_params_match_reference(model, name, 10)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 10)
    del model

    model = build(name, 100).train()
    assert isinstance(model, Classifier)  # forward = forward_head(forward_features)
    assert_params_match_reference(model, name, 100)
    out = model(x)
    assert out.shape == (2, 100) and torch.isfinite(out).all()
    out.logsumexp(dim=1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
        assert torch.equal(first, second), "eval mode must be deterministic"
        assert first.shape == (2, 100) and torch.isfinite(first).all()
        features = model.forward_features(x)
        assert features.shape[1] == model.num_features
        assert torch.allclose(model.forward_head(features), first, atol=1e-5)


def test_every_registered_model_has_exactly_one_config() -> None:
    assert set(MODEL_CONFIGS) == set(list_models())


def test_resnet20_shortcut_a_is_the_papers_parameter_free_option() -> None:
    assert n_params(create_model("resnet20", num_classes=10, shortcut="A")) == 269_722
    model = create_model("resnet20", num_classes=100, shortcut="A").train()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 100)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_arguments_rejected() -> None:
    with pytest.raises(ValueError):
        create_model("resnet20", shortcut="C")
    with pytest.raises(KeyError):
        create_model("no_such_model")


def test_register_model_rejects_duplicate() -> None:
    def resnet20(num_classes: int = 10) -> torch.nn.Module:
        return torch.nn.Identity()

    original = get_model_entry("resnet20")
    with pytest.raises(ValueError, match="resnet20"):
        register_model(resnet20)
    assert get_model_entry("resnet20") == original


@pytest.fixture(scope="module")
def table() -> str:
    return model_table()


def test_readme_model_table_is_the_generated_one(table: str) -> None:
    from cifar_tricks.models.__main__ import END, START

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split(START)[1].split(END)[0].strip()
    assert block == table, "regenerate it: python -m cifar_tricks.models --readme README.md"


def test_model_table(table: str) -> None:
    rows = {}
    for line in table.splitlines():
        if line.startswith("| "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    assert set(list_models()) <= set(rows)
    for name in list_models():
        assert rows[name][1] == get_model_entry(name)[1]
    # resnet20 is ~40.8M multiply-accumulates, i.e. ~81.6M FLOPs
    assert abs(float(rows["resnet20"][3]) * 1e9 / (2 * 40.8e6) - 1) < 0.10
    assert "FLOPs" in table.split("|")[0] and "MACs" in table.split("|")[0]  # the note says which


@pytest.mark.parametrize("path", sorted(CONF_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_model_config(path: Path) -> None:
    cfg = OmegaConf.load(path)
    fn = hydra.utils.get_method(cfg._target_)
    assert fn.__name__ == path.stem
    assert get_model_entry(path.stem)[0] is fn
    assert OmegaConf.to_container(cfg)["num_classes"] == "${data.num_classes}"
    params = inspect.signature(fn).parameters
    assert all(k in params for k in cfg if k != "_target_"), list(cfg)
