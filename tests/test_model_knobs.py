"""Model knob defaults live twice: in the constructor's signature (src/cifar_tricks/models/*.py)
and as keys of conf/model/*.yaml. Every YAML knob must be a keyword of its `_target_` and, where
the constructor gives it a default, equal that default, so the two copies cannot drift apart."""
from __future__ import annotations

import importlib
import inspect
import math
from pathlib import Path

import pytest
import yaml

CONF_MODEL = Path(__file__).resolve().parents[1] / "conf" / "model"
NOT_KNOBS = {"_target_", "num_classes"}  # num_classes follows the data (${data.num_classes})

# (model YAML stem, key) -> why the YAML value differs from the constructor's default by design.
# Keep it empty where possible: a YAML that selects a variant of a generic constructor should be
# its own registered constructor instead. Each entry must still be a real difference (checked).
ALLOWED_DIFFERENCES: dict[tuple[str, str], str] = {}

_NO_DEFAULT = inspect.Parameter.empty


def model_yamls() -> list[Path]:
    return sorted(CONF_MODEL.glob("*.yaml"))


def constructor(target: str):
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def is_interpolation(value) -> bool:
    return isinstance(value, str) and "${" in value


def as_read_by_hydra(value, default):
    """yaml.safe_load (YAML 1.1) reads `1e-3` as a string; OmegaConf reads it as a float."""
    if (isinstance(value, str) and isinstance(default, (int, float))
            and not isinstance(default, bool)):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def same_value(value, default) -> bool:
    """== for scalars (ints and floats compare as numbers, bools only with bools), elementwise
    for sequences (a YAML list equals a tuple default)."""
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return len(value) == len(default) and all(same_value(v, d)
                                                  for v, d in zip(value, default))
    if isinstance(value, bool) or isinstance(default, bool):
        return type(value) is type(default) and value == default
    if isinstance(value, float) and isinstance(default, float) and math.isnan(default):
        return math.isnan(value)
    return value == default


def knob_problems(path: Path) -> list[str]:
    """Every disagreement between a model YAML's knobs and its constructor, each message naming
    the file, the key, both values and the fix."""
    config = yaml.safe_load(path.read_text())
    fn = constructor(config["_target_"])
    params = inspect.signature(fn).parameters
    where = "/".join(path.parts[-3:])  # conf/model/<name>.yaml
    ctor = f"{config['_target_']}{inspect.signature(fn)}"
    problems = []
    for key, value in config.items():
        if key in NOT_KNOBS or is_interpolation(value):
            continue
        param = params.get(key)
        if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            problems.append(
                f"{where}: key {key!r} (value {value!r}) is not a keyword of {ctor}; fix: correct "
                f"the typo or remove the key from {where}, or add {key} to the constructor's "
                f"signature (not only to **kwargs) with its default.")
            continue
        if param.default is _NO_DEFAULT:
            continue
        value = as_read_by_hydra(value, param.default)
        if same_value(value, param.default):
            continue
        reason = ALLOWED_DIFFERENCES.get((path.stem, key))
        if reason is None:
            problems.append(
                f"{where}: key {key!r} is {value!r} in the YAML but the constructor "
                f"{config['_target_']} defaults to {param.default!r}; fix: make them equal (edit "
                f"whichever copy is stale, keeping docstring and parameter counts right), or, "
                f"for a variant of a generic constructor, register the variant as its own "
                f"constructor with this default.")
    return problems


@pytest.mark.parametrize("path", model_yamls(), ids=lambda p: p.stem)
def test_model_yaml_knobs_match_the_constructor(path):
    problems = knob_problems(path)
    assert not problems, "\n".join(problems)


def test_every_model_yaml_names_a_constructor():
    assert len(model_yamls()) > 50
    for path in model_yamls():
        config = yaml.safe_load(path.read_text())
        assert callable(constructor(config["_target_"])), path
        assert "num_classes" in inspect.signature(constructor(config["_target_"])).parameters, path


def test_allowed_differences_are_real_and_explained():
    for (stem, key), reason in ALLOWED_DIFFERENCES.items():
        assert reason.strip(), (stem, key)
        config = yaml.safe_load((CONF_MODEL / f"{stem}.yaml").read_text())
        default = inspect.signature(constructor(config["_target_"])).parameters[key].default
        assert not same_value(as_read_by_hydra(config[key], default), default), \
            f"conf/model/{stem}.yaml {key}: now equals the default; drop its allow-list entry"


def test_the_check_catches_a_typo_and_a_stale_default(tmp_path):
    """The checker itself: a typo'd knob and a drifted default are both reported."""
    fake = tmp_path / "conf" / "model"
    fake.mkdir(parents=True)
    path = fake / "wrn_stale.yaml"
    path.write_text("_target_: cifar_tricks.models.wide_resnet.wideresnet\n"
                    "num_classes: ${data.num_classes}\n"
                    "dropuot: 0.3\n"
                    "dropout: 0.5\n")
    problems = knob_problems(path)
    assert len(problems) == 2, problems
    typo, stale = problems
    assert "conf/model/wrn_stale.yaml" in typo and "'dropuot'" in typo and "fix:" in typo
    assert "conf/model/wrn_stale.yaml" in stale and "'dropout'" in stale
    assert "0.5" in stale and "0.3" in stale and "fix:" in stale


@pytest.mark.parametrize("value, default, same", [
    (3, 3, True), (0.5, 0.5, True), (1, 1.0, True), ([3, 5, 7], (3, 5, 7), True),
    ([3, 5], (3, 5, 7), False), ("B", "B", True), ("A", "B", False), ("1e-3", 1e-3, True),
    (True, 1, False), (None, None, True), (0.3, 0.5, False),
])
def test_value_comparison(value, default, same):
    assert same_value(as_read_by_hydra(value, default), default) is same
