"""A job is its configuration: what makes two runs the same job, in one place.

A job's identity is its resolved configuration minus the settings that cannot change its result
(`NON_RESULT_KEYS`: where the data lies, the device, threads, logging, evaluation batch size,
compilation, ...). Everything that names, skips, resumes or counts a job uses it:

- `job_key(config)`: a digest of the identity, stored in `summary.json`; a rerun skips or resumes
  the job whose key matches, the report counts each key once;
- `canonical_overrides(overrides)`: the command line reduced to what changes the identity,
  spelled one way (`optim.lr=1e-1` and `optim.lr=0.1` alike, `seed=0` dropped when 0 is what the
  job would get anyway, `data.root=...` dropped), which names the job's folder in a sweep;
- `config_differences(old, new)`: what differs between two configurations, ignoring the same
  list, so a run resumes after such a setting changed.
"""
from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, Callable, Iterable, Sequence

__all__ = ["NON_RESULT_KEYS", "MULTI_SELECT_GROUPS", "ADDED_SETTINGS", "is_result_key", "flatten",
           "identity", "job_key", "config_differences", "canonical_overrides", "job_overrides",
           "folder_name", "render_value"]

# Settings that cannot change a job's result, only where, how fast or how verbosely it runs.
NON_RESULT_KEYS = (
    "data.root", "data.download",  # the same data, elsewhere
    "trainer.device", "trainer.num_threads",  # where it runs
    "trainer.compile", "trainer.channels_last",  # how fast (the same maths)
    "trainer.eval_batch_size",  # evaluation is per image: batching changes nothing
    "trainer.progress", "trainer.log_every", "trainer.checkpoint",  # what it shows and keeps
    "trainer.save_best",
    "optimized_metric",  # what a sweeper is told, not what is trained
    "lr_find",  # settings of mode=lr_find only
    "logger",  # experiment trackers (MLflow, W&B): what records a run, not what it does
    "eval",  # settings of mode=eval only (it evaluates a run; it trains nothing)
)

# Groups whose choice is a list of entries (`aug=[cutout,mixup]`); the order of a group that
# can change a result (not `logger`: NON_RESULT_KEYS) is part of a job.
MULTI_SELECT_GROUPS = ("aug", "trick", "logger")

MAX_DIR_NAME = 120  # bytes; file systems allow 255

# Settings added after jobs were first keyed, each with the value that does what the job did
# before the setting existed: at that value a job keeps the identity (its folder, its skip, its
# checkpoint) it had, and a config without the key reads as one with it.
ADDED_SETTINGS: dict[str, Any] = {
    "data.labels": "fine",  # CIFAR-100's coarse labels (data=cifar100_coarse)
    "trainer.eval_tta": "none",  # test-time augmented numbers of the last epoch
    "optim.norm_bias_lr_scale": 1.0,  # airbench's BatchNorm-bias lr factor (optional key)
    "data.crop_fill": "zeros",  # reflect padding of the random crop (airbench's translate)
    "data.flip_mode": "random",  # airbench's alternating flip
}


def is_result_key(key: str) -> bool:
    """Whether a setting (`trainer.device`, `optim.lr`, ...) can change a job's result."""
    return not any(key == k or key.startswith(k + ".") for k in NON_RESULT_KEYS)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (`optim.lr`); an empty mapping has no key."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that make the job, flattened (`optim.lr`), plus the order of the
    multi-select groups' entries (which decides the order of augmentations and tricks)."""
    settings = {k: v for k, v in flatten(config).items()
                if is_result_key(k) and not (k in ADDED_SETTINGS and v == ADDED_SETTINGS[k])}
    for group in filter(is_result_key, MULTI_SELECT_GROUPS):
        settings[f"{group}.<order>"] = list(config.get(group) or {})
    return settings


def job_key(config: dict[str, Any]) -> str:
    """A short digest of `identity(config)`: equal for the same job, whatever its spelling."""
    text = json.dumps(identity(config), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def config_differences(old: dict, new: dict, ignore: Iterable[str] = NON_RESULT_KEYS) -> list[str]:
    """`key: old -> new` for every setting that differs, ignoring those that change no result."""
    skip = tuple(ignore)
    a, b = {**ADDED_SETTINGS, **flatten(old)}, {**ADDED_SETTINGS, **flatten(new)}
    return [f"{k}: {a.get(k, '<unset>')} -> {b.get(k, '<unset>')}"
            for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k) and not any(k == s or k.startswith(s + ".") for s in skip)]


# ------------------------------------------------------------------------------------ naming

def render_value(value: Any) -> str:
    """A value as it would be typed on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(render_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{render_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _lookup(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node[part]
    return node


def canonical_overrides(overrides: Sequence[str], config: dict[str, Any],
                        compose: Callable[[list[str]], dict[str, Any]],
                        is_group: Callable[[str], bool]) -> list[str]:
    """The overrides that change the job, each spelled one way, sorted.

    `config` is the job's resolved configuration; `compose(overrides)` composes and resolves
    another one; `is_group(key)` says whether a key names a config group. Overrides of
    settings that change no result are dropped; then, one at a time in sorted order, every
    override without which the job would be the same job (`seed=0`, `model=wideresnet`, a value
    an experiment sets anyway) is dropped. Leaf values are spelled as the configuration holds
    them, group choices as chosen (a multi-select group always as a list).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    target = job_key(config)
    kept = sorted((o for o in parsed if not o.is_delete()), key=lambda o: o.input_line)
    kept = [o for o in kept if is_group(o.key_or_group) or is_result_key(o.key_or_group)]
    for override in list(kept):
        rest = [o.input_line for o in kept if o is not override]
        try:
            same = job_key(compose(rest)) == target
        except Exception:  # without it the rest does not compose: it is needed
            same = False
        if same:
            kept.remove(override)
    rendered = []
    for o in kept:
        key = o.key_or_group
        if is_group(key):
            value = o.value()
            if key in MULTI_SELECT_GROUPS and not isinstance(value, list):
                value = [value]
            rendered.append(f"{key}={render_value(value)}")
        else:
            rendered.append(f"{key}={render_value(_lookup(config, key))}")
    return sorted(rendered) + sorted(o.input_line for o in parsed if o.is_delete())


def folder_name(canonical: Sequence[str]) -> str:
    """The folder of a sweep job: its canonical overrides joined by commas (`defaults` for
    none); slashes (paths in values) would nest folders, and a name longer than MAX_DIR_NAME
    bytes (file systems count bytes, and a character may take four) is cut on a character
    boundary and ends with a digest of the whole name."""
    name = ",".join(canonical).replace("/", "_") or "defaults"
    encoded = name.encode()
    if len(encoded) > MAX_DIR_NAME:
        digest = hashlib.sha1(encoded).hexdigest()[:10]
        head = encoded[:MAX_DIR_NAME - 11].decode(errors="ignore")  # drops a cut character
        name = f"{head}_{digest}"
    return name


@functools.lru_cache(maxsize=512)
def _job_overrides(overrides: tuple[str, ...]) -> tuple[str, ...]:
    from .config import compose, is_config_group, resolved

    def composed(some: list[str]) -> dict[str, Any]:
        return resolved(compose(some))

    return tuple(canonical_overrides(overrides, composed(list(overrides)), composed,
                                     is_config_group))


def job_overrides(overrides: Sequence[str]) -> list[str]:
    """`canonical_overrides` of a command line of this project (composed from conf/), cached:
    a job's folder name and its summary's `job_overrides`."""
    return list(_job_overrides(tuple(overrides)))
