"""Every setting checked before anything is loaded or written.

`validate(cfg)` raises a `ConfigError` naming the key, the value and what is allowed, for the
first setting that is wrong, or returns. It runs before Hydra creates a run's folder (a callback
for a single run, the folder-naming resolver for a sweep job), so a refused run leaves nothing
behind, and again in `jobs.train` for callers that skip Hydra. What it checks:

- `seed`: a whole number in [0, 2^63).
- `trainer` and `data`: no key outside their schemas (`+trainer.foo=1`), each value in the range
  its schema field declares (`config.py`, the README's tables), `trainer.device` names a device,
  `data.crop_padding` at most the image size (below it with `data.crop_fill=reflect`).
- `model`, `optim`, `sched`, `aug.*`, `trick.*`: every key is an argument of the component the
  node builds (`+optim.foo=1`), with the type its signature declares (`aug.cutout.size=abc`).
- The components themselves, built once without data (augmentations, tricks, the optimizer on a
  dummy parameter, the schedule over the run's epochs): each refuses its own bad values
  (`sched.gamma=-1`, `aug.randaugment.magnitude=40`, `trick=[sam,asam]`), and the builder names
  the key (`build.config_errors`).
"""
from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from . import distributed
from .build import build, build_augments, check_config, config_errors, resolve_device
from .config import CifarConfig, ImageDataConfig, SyntheticConfig, TrainerConfig, as_yaml
from .data import CIFAR_LABELS, check_labels
from .errors import ConfigError
from .identity import MULTI_SELECT_GROUPS
from .optim import create_optimizer
from .precision import autocast_dtype
from .tricks.base import Tricks

__all__ = ["validate"]

SEED_RANGE = (0, 2**63 - 1)
# keys of a config node that configure Hydra's instantiate, not the component
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
# keys of ours that a node carries beside the component's own arguments
OWN_KEYS = {"optim": {"no_decay_bias_bn", "norm_bias_lr_scale"}}
# what the schedule builders receive from the run, not from the config
RUN_ARGUMENTS = {"optimizer", "steps_per_epoch", "epochs"}


def validate(cfg: DictConfig) -> None:
    """Check every setting of `cfg` (see the module docstring); raise ConfigError or return."""
    _check_seed(cfg.seed)
    _check_schema(cfg.trainer, TrainerConfig, "trainer")
    _check_schema(cfg.data, _data_schema(cfg.data), "data")
    _check_labels(cfg.data)
    _check_device(cfg.trainer.device)
    image_size = int(cfg.data.get("image_size", 32))
    if cfg.data.crop_padding > image_size:
        raise ConfigError(f"data.crop_padding={cfg.data.crop_padding} is larger than the "
                          f"{image_size}x{image_size} images: allowed 0 to {image_size} (4 is "
                          f"the usual CIFAR padding)")
    if cfg.data.get("crop_fill") == "reflect" and cfg.data.crop and \
            cfg.data.crop_padding >= image_size:
        raise ConfigError(f"data.crop_padding={cfg.data.crop_padding} with data.crop_fill=reflect "
                          f"must be below the {image_size}x{image_size} image size (a reflection "
                          f"repeats no edge pixel): lower data.crop_padding (2 is airbench's "
                          f"translate) or use data.crop_fill=zeros")
    check_config(cfg)
    processes = distributed.world_size()
    if cfg.trainer.batch_size % processes:
        raise ConfigError(f"trainer.batch_size={cfg.trainer.batch_size} must be divisible by the "
                          f"{processes} processes of this run: it is the global batch, split "
                          f"evenly over them (e.g. trainer.batch_size="
                          f"{cfg.trainer.batch_size // processes * processes or processes})")
    if cfg.trainer.save_best and not cfg.data.val_size:
        raise ConfigError("trainer.save_best=true keeps the epoch of best validation accuracy, "
                          "and this run has no validation split: set data.val_size (e.g. "
                          "data.val_size=5000). The best epoch is never chosen on test.")
    if cfg.trainer.sync_bn and processes > 1 and not _cuda_run(cfg.trainer.device):
        raise ConfigError("trainer.sync_bn=true needs CUDA: PyTorch's SyncBatchNorm runs on GPUs "
                          "only; on CPU each process keeps its own BatchNorm statistics "
                          "(trainer.sync_bn=false)")
    for path, node in _component_nodes(cfg):
        check_arguments(node, path, OWN_KEYS.get(path, set()))
    _build_without_data(cfg, image_size)


def _trains_in_fp16(trainer: DictConfig) -> bool:
    """fp16 asked for, or `auto` on this machine's GPU without bf16."""
    if trainer.precision == "fp16":
        return True
    device = torch.device("cpu") if not torch.cuda.is_available() \
        else resolve_device(trainer.device)
    return autocast_dtype(device, trainer.precision) == torch.float16


def _cuda_run(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def _check_seed(seed: Any) -> None:
    low, high = SEED_RANGE
    if isinstance(seed, bool) or not isinstance(seed, int) or not low <= seed <= high:
        raise ConfigError(f"seed={seed!r} must be a whole number in [0, 2^63 - 1], e.g. seed=0")


def _data_schema(data: DictConfig) -> type:
    target = data.get("_target_", "")
    return SyntheticConfig if target.endswith(".synthetic") else \
        CifarConfig if target.startswith("cifar_tricks.data.cifar") else ImageDataConfig


def _check_labels(data: DictConfig) -> None:
    """`data.labels` is a labelling of the CIFAR release and `data.num_classes` its number of
    classes (`data.labels=coarse` is CIFAR-100's 20 superclasses: data=cifar100_coarse)."""
    dataset = str(data.get("_target_", "")).rsplit(".", 1)[-1]
    if "labels" in data and dataset in CIFAR_LABELS:
        check_labels(dataset, data.labels, data.num_classes)


def _check_schema(node: DictConfig, schema: type, path: str) -> None:
    """No key outside the schema; each value in its field's declared range."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown = sorted(set(node) - set(fields) - HYDRA_KEYS)
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]} is not a {path} setting; the {path} settings "
                          f"are {', '.join(k for k in fields if not k.startswith('_'))}")
    for name, f in fields.items():
        allowed = f.metadata.get("allowed")
        value = node.get(name)
        if allowed is None or value is None:
            continue
        plain = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if not allowed.admits(plain):
            raise ConfigError(f"{path}.{name}={plain!r} is not allowed: it must be {allowed} "
                              f"(the default is {as_yaml(_default(f))})")


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _check_device(name: str) -> None:
    if name == "auto":
        return
    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"trainer.device={name!r} is not a device: use auto (CUDA when "
                          f"available), cpu, cuda or cuda:N") from None


def _component_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    nodes = [(group, cfg[group]) for group in ("model", "optim", "sched")]
    for group in MULTI_SELECT_GROUPS:  # aug, trick, logger: named entries
        nodes += [(f"{group}.{name}", node) for name, node in (cfg.get(group) or {}).items()]
    return nodes


def check_arguments(node: DictConfig, path: str, own: set[str] = frozenset()) -> None:
    """Every key of `node` is an argument of its `_target_`, of the declared type."""
    try:
        target = get_method(node["_target_"])
    except Exception:
        raise ConfigError(f"{path}._target_={node.get('_target_')!r} cannot be imported; "
                          f"check the option's YAML file") from None
    signature = _signature(target)
    if signature is None:
        return
    parameters = signature.parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    hints = _hints(target)
    names = [n for n, p in parameters.items()
             if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in RUN_ARGUMENTS
             and n not in ("self", "params")]
    for key in node:
        if key in HYDRA_KEYS or key in own:
            continue
        if key not in parameters:
            if open_ended:
                continue
            raise ConfigError(f"{path}.{key} is not a setting of {node['_target_']}; its "
                              f"settings are {', '.join(names)}")
        hint = hints.get(key)
        value = node[key]
        plain = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if hint is not None and not _matches(plain, hint):
            raise ConfigError(f"{path}.{key}={plain!r} must be {_describe(hint)}")


def _signature(target: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


def _hints(target: Any) -> dict[str, Any]:
    """The resolved type hints of a function or a class's __init__ ({} when they cannot be)."""
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function)
    except Exception:
        return {}


def _matches(value: Any, hint: Any) -> bool:
    """Whether a config value fits a type hint (ints where floats are asked, lists for
    sequences); hints it does not understand admit anything."""
    if hint is Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return not args or all(any(_matches(v, a) for a in args) for v in value)
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and issubclass(hint, torch.Tensor):
        return False  # a tensor never comes from a config
    return True


def _describe(hint: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
             type(None): "null"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in typing.get_args(hint)
                 if not (isinstance(a, type) and issubclass(a, torch.Tensor))]
        return " or ".join(dict.fromkeys(parts))
    if typing.get_origin(hint) in (list, tuple, Sequence):
        return "a list"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _build_without_data(cfg: DictConfig, image_size: int) -> None:
    """Build the augmentations, tricks, optimizer and schedule once, on no data: each component
    refuses its own bad values, named by their key."""
    for (name, node), augment in zip(cfg.aug.items(), build_augments(cfg)):
        with config_errors(f"aug.{name}", node):
            augment.check_image_size(image_size)
    tricks = Tricks({name: build(node, f"trick.{name}") for name, node in cfg.trick.items()})
    dummy = torch.nn.Linear(1, 1)
    with config_errors("optim", cfg.optim):
        optimizer = tricks.wrap_optimizer(create_optimizer(cfg.optim, dummy), dummy)
    if getattr(optimizer, "closure_passes", 1) > 1 and _trains_in_fp16(cfg.trainer):
        raise ConfigError(
            f"trainer.precision={as_yaml(cfg.trainer.precision)} trains in fp16 here, whose "
            f"gradient scaler steps once per backward pass, but trick={list(cfg.trick)} runs two "
            f"(SAM's ascent and descent): use trainer.precision=fp32, or bf16 on a GPU that "
            f"supports it")
    with config_errors("sched", cfg.sched):
        build(cfg.sched, "sched")(optimizer, steps_per_epoch=1, epochs=cfg.trainer.epochs)
