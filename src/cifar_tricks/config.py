"""Typed schemas of the config groups whose values users type on the command line, and the one
call that registers everything `conf/` needs.

Hydra checks overrides against these at compose time, so `trainer.epochs=abc` or
`trainer.precision=fp61` fails before anything runs, with the key and the accepted values.
The dataclasses are the one source of the trainer and data defaults: `conf/trainer/default.yaml`
and `conf/data/*.yaml` hold only what differs per option, and the README's tables are generated
from the `help` of each field (`python -m cifar_tricks.readme README.md`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore

__all__ = ["CONFIG_DIR", "TrainerConfig", "ImageDataConfig", "CifarConfig", "SyntheticConfig",
           "Precision", "Progress", "SETTINGS_TABLES", "register", "compose", "is_config_group",
           "settings_table"]

# conf/ of the source tree (the package is installed editable from it, as the README says)
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


class Precision(str, Enum):
    auto = "auto"  # bf16 autocast on CUDA, fp32 elsewhere
    bf16 = "bf16"
    fp32 = "fp32"


class Progress(str, Enum):
    auto = "auto"  # a bar on a terminal, one log line per epoch otherwise (SLURM, joblib, CI)
    bar = "bar"
    log = "log"


def setting(default: Any, help: str) -> Any:
    """A dataclass field with its README line (`help`); lists get a default factory."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainerConfig:
    epochs: int = setting(200, "epochs to train")
    batch_size: int = setting(128, "training images per step")
    eval_batch_size: int = setting(500, "images per evaluation batch (does not change results)")
    device: str = setting("auto", "`auto` (CUDA when available), `cpu`, `cuda`, `cuda:N`")
    precision: Precision = setting(
        Precision.auto, "`auto` (bf16 autocast on CUDA, fp32 on CPU), `bf16`, `fp32`")
    channels_last: Optional[bool] = setting(None, "`null`: on for CUDA, off for CPU")
    compile: bool = setting(False, "`torch.compile` the model")
    deterministic: bool = setting(False, "deterministic kernels (reproducible on GPU, slower)")
    num_threads: Optional[int] = setting(
        None, "torch CPU threads (`null`: torch's default; give each of N parallel CPU jobs "
              "cores/N)")
    limit_train_batches: Optional[int] = setting(None, "cap training batches per epoch "
                                                       "(quick runs)")
    limit_eval_batches: Optional[int] = setting(None, "cap evaluation batches (quick runs)")
    progress: Progress = setting(
        Progress.auto, "`auto`: a tqdm bar on a terminal, one log line per epoch elsewhere "
                       "(SLURM, joblib, CI); `bar`, `log`")
    log_every: int = setting(50, "steps between progress refreshes (each one waits for the device)")
    checkpoint: bool = setting(
        True, "write `checkpoints/last.pt` every epoch (resume by rerunning in the folder)")


@dataclass
class ImageDataConfig:
    """What every dataset config shares: classes, statistics, splits and base augmentation."""
    num_classes: int = setting(10, "classes (the model's head follows it; set by each dataset)")
    mean: List[float] = setting([0.5, 0.5, 0.5], "per-channel mean in [0, 1] for normalising "
                                                 "(each CIFAR YAML sets its training set's)")
    std: List[float] = setting([0.25, 0.25, 0.25], "per-channel std in [0, 1] for normalising "
                                                   "(likewise)")
    fraction: float = setting(
        1.0, "share of the training set kept, stratified (0.5: the seed's \"half data\")")
    val_size: int = setting(
        0, "stratified validation images held out of train (searches optimise on them)")
    split_seed: int = setting(
        0, "fixes the validation split and the fraction subset, independently of `seed`")
    crop: bool = setting(True, "random crop of the zero-padded image")
    crop_padding: int = setting(4, "zero padding of the random crop")
    flip: bool = setting(True, "random horizontal flip")


@dataclass
class CifarConfig(ImageDataConfig):
    _target_: str = "cifar_tricks.data.cifar10"
    root: str = setting("data", "folder holding `cifar-10-batches-py/` or `cifar-100-python/` "
                                "(the YAML's default: `$CIFAR_ROOT`, else `data`)")
    download: bool = setting(True, "download with torchvision when the files are missing")


@dataclass
class SyntheticConfig(ImageDataConfig):
    _target_: str = "cifar_tricks.data.synthetic"
    num_train: int = setting(1000, "training images")
    num_test: int = setting(500, "test images")
    image_size: int = setting(32, "height and width")
    noise: float = setting(48.0, "std of the pixel noise added to each class's pattern")
    generator_seed: int = setting(0, "fixes the patterns and the noise")


def register_schemas() -> None:
    cs = ConfigStore.instance()
    # Outside the user-facing groups, so `data=...` / `trainer=...` list only real options.
    cs.store(group="schema/trainer", name="default", node=TrainerConfig)
    cs.store(group="schema/data", name="cifar", node=CifarConfig)
    cs.store(group="schema/data", name="synthetic", node=SyntheticConfig)


def register() -> None:
    """Register what conf/ needs: the typed schemas and the OmegaConf resolvers. Importing
    `cifar_tricks` calls it, so every process that composes or unpickles a config has them."""
    from .hydra_resolvers import register_resolvers

    register_schemas()
    register_resolvers()


def compose(overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The config `python run.py <overrides>` would run (Hydra's compose API), inside a running
    Hydra app (a job naming its folder) as well as outside one (tests, the preview)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside run.py: its search path is conf/
        return hydra_compose(config_name="config", overrides=list(overrides))
    if not CONFIG_DIR.is_dir():
        raise FileNotFoundError(f"no config folder at {CONFIG_DIR}: install cifar-tricks from "
                                f"its source tree (pip install -e .)")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def is_config_group(key: str) -> bool:
    """Whether `key` (`model`, `aug`, `ablation/rows/shake_tricks`) names a config group."""
    return (CONFIG_DIR / key).is_dir()


def settings_table(schema: type, group: str) -> str:
    """The markdown table `key | default | meaning` of a schema's fields (the README's)."""
    rows = [f"| {group} key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(schema):
        if f.name.startswith("_"):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else f.default
        rows.append(f"| `{f.name}` | `{_as_yaml(default)}` | {f.metadata.get('help', '')} |")
    return "\n".join(rows)


def _as_yaml(value: Any) -> str:
    """A default as it is typed on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)



# The README's generated tables of keys: block name -> (schema, group)
SETTINGS_TABLES = {"trainer-table": (TrainerConfig, "trainer"),
                   "data-table": (CifarConfig, "data")}
