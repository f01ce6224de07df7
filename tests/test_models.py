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

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "model"

# (name, constructor kwargs) -> parameter counts for 10 and 100 classes (None: not checked).
REQUIRED_PARAMS: dict[tuple[str, tuple], tuple[int, int | None]] = {
    ("lenet", ()): (62_006, 69_656),
    ("resnet18", ()): (11_173_962, 11_220_132),
    ("resnet34", ()): (21_282_122, 21_328_292),
    ("resnet50", ()): (23_520_842, 23_705_252),
    ("resnet20", ()): (272_474, 278_324),
    ("resnet20", (("shortcut", "A"),)): (269_722, None),
    ("resnet32", ()): (466_906, 472_756),
    ("resnet44", ()): (661_338, 667_188),
    ("resnet56", ()): (855_770, 861_620),
    ("resnet110", ()): (1_730_714, 1_736_564),
    ("wideresnet", ()): (36_479_194, 36_536_884),
    ("wideresnet16_8", ()): (10_961_370, 11_007_540),
    ("wideresnet40_2", ()): (2_243_546, 2_255_156),
}

# WRN-28-10 training steps are too slow for a CPU unit test; such models get an eval forward only.
HEAVY_PARAMS = 30_000_000


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # batch-1/2 32px convs are too small to parallelise; OpenMP sync makes 2 threads far slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_registered_model_has_required_counts() -> None:
    assert {name for name, _ in REQUIRED_PARAMS} == set(list_models())


def _key_id(key: tuple[str, tuple]) -> str:
    return "-".join([key[0], *(f"{k}={v}" for k, v in key[1])])


@pytest.mark.parametrize("key", list(REQUIRED_PARAMS), ids=_key_id)
def test_param_count(key: tuple[str, tuple]) -> None:
    name, kwargs = key
    for num_classes, expected in zip((10, 100), REQUIRED_PARAMS[key]):
        if expected is not None:
            model = create_model(name, num_classes=num_classes, **dict(kwargs))
            assert n_params(model) == expected, (name, kwargs, num_classes)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10)
    if n_params(model) > HEAVY_PARAMS:
        model.eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, 32, 32))
        assert out.shape == (1, 10) and torch.isfinite(out).all()
        return
    model.train()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(dim=1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    model.eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 32, 32))
        assert feats.shape[1] == model.num_features
        assert model.forward_head(feats).shape == (2, 10)


def test_resnet20_shortcut_a_trains() -> None:
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

    root = OmegaConf.create({"data": {"num_classes": 7}, "model": cfg})
    model = hydra.utils.instantiate(root.model).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_every_registered_model_has_exactly_one_config() -> None:
    stems = {p.stem for p in CONF_DIR.glob("*.yaml")}
    assert stems == set(list_models())
    assert {"wideresnet", "resnet20", "resnet18", "lenet"} <= stems
