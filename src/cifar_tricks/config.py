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

__all__ = ["CONFIG_DIR", "Range", "at_least", "setting", "TrainerConfig", "ImageDataConfig",
           "CifarConfig", "SyntheticConfig", "Precision", "Progress", "SETTINGS_TABLES",
           "register", "compose", "resolved", "is_config_group", "options", "check_multi_select",
           "settings_table"]

# conf/ of the source tree (the package is installed editable from it, as the README says)
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


class Precision(str, Enum):
    auto = "auto"  # bf16 autocast on a GPU that supports it, fp16 on older GPUs, fp32 on CPU
    bf16 = "bf16"
    fp16 = "fp16"  # with gradient scaling (torch.amp.GradScaler): V100, T4
    fp32 = "fp32"


class TTAMode(str, Enum):
    """Test-time augmentation (cifar_tricks.tta): logits averaged over views, as airbench."""
    none = "none"
    flip = "flip"
    flip_translate = "flip_translate"


class Progress(str, Enum):
    auto = "auto"  # a bar on a terminal, one log line per epoch otherwise (SLURM, joblib, CI)
    bar = "bar"
    log = "log"


@dataclass(frozen=True)
class Range:
    """The values a numeric setting allows (each element, for a list setting of `length`)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # `low` itself is excluded
    length: int | None = None

    def admits(self, value: Any) -> bool:
        values = value if isinstance(value, (list, tuple)) else [value]
        if self.length is not None and len(values) != self.length:
            return False
        return all(self._admits_one(v) for v in values)

    def _admits_one(self, value: Any) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        if self.high is None:
            bound = f"> {self.low:g}" if self.low_open else f">= {self.low:g}"
        else:
            bound = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        return bound if self.length is None else f"{self.length} values, each {bound}"


def at_least(low: float) -> Range:
    return Range(low=low)


def setting(default: Any, help: str, allowed: Range | None = None) -> Any:
    """A dataclass field with its README line (`help`) and the values it allows (checked before
    a run starts, `validate.py`); lists get a default factory."""
    metadata = {"help": help, "allowed": allowed}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainerConfig:
    epochs: int = setting(200, "epochs to train", at_least(1))
    batch_size: int = setting(128, "training images per step", at_least(1))
    eval_batch_size: int = setting(500, "images per evaluation batch (does not change results)",
                                   at_least(1))
    device: str = setting("auto", "`auto` (CUDA when available), `cpu`, `cuda`, `cuda:N`")
    precision: Precision = setting(
        Precision.auto, "`auto` (bf16 autocast on GPUs that support it, fp16 with gradient "
                        "scaling on older ones, fp32 on CPU), `bf16`, `fp16`, `fp32`")
    channels_last: Optional[bool] = setting(None, "`null`: on for CUDA, off for CPU")
    compile: bool = setting(False, "`torch.compile` the model")
    deterministic: bool = setting(False, "deterministic kernels (reproducible on GPU, slower)")
    sync_bn: bool = setting(False, "under torchrun, BatchNorm statistics over all processes "
                                   "(SyncBatchNorm) instead of each process's share of the batch")
    num_threads: Optional[int] = setting(
        None, "torch CPU threads (`null`: torch's default; give each of N parallel CPU jobs "
              "cores/N)", at_least(1))
    limit_train_batches: Optional[int] = setting(None, "cap training batches per epoch "
                                                       "(quick runs)", at_least(1))
    limit_eval_batches: Optional[int] = setting(None, "cap evaluation batches (quick runs)",
                                                at_least(1))
    progress: Progress = setting(
        Progress.auto, "`auto`: a tqdm bar on a terminal, a log line every `log_every` steps "
                       "elsewhere (SLURM, a pipe to tee, CI); `bar`, `log`")
    log_every: int = setting(50, "steps between progress updates (each one waits for the "
                                 "device)", at_least(1))
    checkpoint: bool = setting(
        True, "write `checkpoints/last.pt` every epoch (resume by rerunning in the folder)")
    eval_tta: TTAMode = setting(
        TTAMode.none, "test-time augmentation of the last epoch's evaluation, reported beside "
                      "the plain numbers as `tta_test_acc` (`tta_val_acc`): `none`, `flip`, "
                      "`flip_translate` (airbench's)")
    save_best: bool = setting(
        False, "also keep `checkpoints/best.pt`, the epoch of highest validation accuracy "
               "(needs `data.val_size`; never selected on test)")


class CropFill(str, Enum):
    zeros = "zeros"  # torchvision's RandomCrop(padding=p)
    reflect = "reflect"  # airbench's translate: F.pad(images, (p,)*4, mode="reflect")


class FlipMode(str, Enum):
    random = "random"  # a fresh coin per image per epoch
    alternating = "alternating"  # airbench: a coin per image once, inverted every other epoch


@dataclass
class ImageDataConfig:
    """What every dataset config shares: classes, statistics, splits and base augmentation."""
    num_classes: int = setting(10, "classes (the model's head follows it; set by each dataset)",
                               at_least(2))
    mean: List[float] = setting([0.5, 0.5, 0.5], "per-channel mean for normalising (each CIFAR "
                                                 "YAML sets its training set's)",
                                Range(0, 1, length=3))
    std: List[float] = setting([0.25, 0.25, 0.25], "per-channel std for normalising (likewise)",
                               Range(0, 1, low_open=True, length=3))
    fraction: float = setting(
        1.0, "share of the training set kept, stratified (0.5: the seed's \"half data\")",
        Range(0, 1, low_open=True))
    val_size: int = setting(
        0, "stratified validation images held out of train (searches optimise on them)",
        at_least(0))
    split_seed: int = setting(
        0, "fixes the validation split and the fraction subset, independently of `seed`",
        at_least(0))
    crop: bool = setting(True, "random crop of the padded image")
    crop_padding: int = setting(4, "padding of the random crop (at most the image size; below "
                                   "it with `crop_fill=reflect`)", at_least(0))
    crop_fill: CropFill = setting(
        CropFill.zeros, "what the crop's padding holds: `zeros`, or `reflect` (the image "
                        "mirrored at its border; with `crop_padding=2`, airbench's translate)")
    flip: bool = setting(True, "random horizontal flip")
    flip_mode: FlipMode = setting(
        FlipMode.random, "`random`: each image a new coin each epoch; `alternating` (airbench): "
                         "each image one coin drawn from the seed, shown as drawn in odd epochs "
                         "and mirrored in even ones, so any two epochs in a row show it both "
                         "ways; ignored with `flip=false`")


@dataclass
class CifarConfig(ImageDataConfig):
    _target_: str = "cifar_tricks.data.cifar10"
    root: str = setting("data", "folder holding `cifar-10-batches-py/` or `cifar-100-python/` "
                                "(the YAML's default: `$CIFAR_ROOT`, else `data`)")
    labels: str = setting("fine", "`fine`: the dataset's classes; `coarse`: CIFAR-100's 20 "
                                  "superclasses (`data=cifar100_coarse` sets it and "
                                  "`num_classes: 20`)")
    download: bool = setting(True, "download with torchvision when the files are missing")


@dataclass
class SyntheticConfig(ImageDataConfig):
    _target_: str = "cifar_tricks.data.synthetic"
    num_train: int = setting(1000, "training images", at_least(1))
    num_test: int = setting(500, "test images", at_least(1))
    image_size: int = setting(32, "height and width", at_least(4))
    noise: float = setting(48.0, "std of the pixel noise added to each class's pattern",
                           at_least(0))
    generator_seed: int = setting(0, "fixes the patterns and the noise", at_least(0))


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


def resolved(cfg: Any) -> dict[str, Any]:
    """A composed config as plain data: interpolations resolved, enums as their values (what
    summaries and checkpoints record, and what a job's identity is computed from)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def options(group: str) -> list[str]:
    """The options of a config group (its YAML files), sorted."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def check_multi_select(arguments: list[str]) -> None:
    """Refuse an unknown option of a multi-select group (`aug=[cutot]`, `trick=[sma]`) with the
    list of its options, as Hydra does for `model=` (for a list it only says "Could not load")."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .errors import ConfigError
    from .identity import MULTI_SELECT_GROUPS

    overrides = [a for a in arguments if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # a syntax error: Hydra reports it
        return
    for override in parsed:
        group = override.key_or_group
        if group not in MULTI_SELECT_GROUPS or override.is_delete():
            continue
        choices = list(override.sweep_iterator()) if override.is_sweep_override() \
            else [override.value()]
        known = options(group)
        for choice in choices:
            for name in choice if isinstance(choice, list) else [choice]:
                if name not in known:
                    raise ConfigError(f"{override.input_line}: {name!r} is not an option of "
                                      f"{group}; the options are {', '.join(known)}")


def is_config_group(key: str) -> bool:
    """Whether `key` (`model`, `aug`, `ablation/rows/shake_tricks`) names a config group."""
    return (CONFIG_DIR / key).is_dir()


def settings_table(schema: type, group: str) -> str:
    """The README's table `key | default | allowed | meaning` of a schema's fields."""
    rows = [f"| {group} key | default | allowed | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(schema):
        if f.name.startswith("_"):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else f.default
        allowed = f.metadata.get("allowed")
        rows.append(f"| `{f.name}` | `{as_yaml(default)}` | {allowed or ''} | "
                    f"{f.metadata.get('help', '')} |")
    return "\n".join(rows)


def as_yaml(value: Any) -> str:
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
