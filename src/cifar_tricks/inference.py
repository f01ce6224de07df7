"""Use what you trained: a run folder back as a model, its preprocessing and its class names.

`load_run` is for notebooks and scripts; `mode=eval` (evaluation.py) and
`python -m cifar_tricks.export` (export.py) are built on the same pieces, so all three read the
same weights: the ones the run's summary reports (`checkpoint.evaluation_weights`: the EMA's with
`trick=[ema]`), from `checkpoints/last.pt` or, with `checkpoint="best"`, `checkpoints/best.pt`.
The model is rebuilt from the config the checkpoint records, so no Hydra composition is needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from omegaconf import OmegaConf
from torch import nn

from .build import build
from .checkpoint import evaluation_weights, read_checkpoint
from .data import normalisation
from .data.datasets import cifar_class_names, generic_class_names
from .errors import CheckpointError, ConfigError, DatasetError
from .run_folder import RunFolder, Summary

__all__ = ["CHECKPOINTS", "WEIGHTS", "LoadedRun", "Preprocess", "class_names", "load_run",
           "read_run_checkpoint", "build_model"]


# `checkpoint=` / `eval.checkpoint`: which file of the run folder
CHECKPOINTS: dict[str, Callable[[RunFolder], Path]] = {
    "last": lambda folder: folder.checkpoint_path,
    "best": lambda folder: folder.best_path,  # written with trainer.save_best=true
}
# `weights=` / `eval.weights`: which weights of the checkpoint
WEIGHTS: dict[str, Callable[[dict], dict | None]] = {
    "eval": evaluation_weights,  # the ones evaluated and reported (EMA's when averaging)
    "model": lambda state: state.get("model"),  # the trained ones (metrics.csv's raw_* with EMA)
}


class Preprocess(nn.Module):
    """The run's input normalisation: images `(B, 3, H, W)` or `(3, H, W)`, either uint8 pixels
    (0-255) or floats in [0, 1] (pixel / 255, torchvision's `ToTensor` convention), to the
    normalised float batch the model takes. The arithmetic is the training loader's
    (`(x - 255 mean) / (255 std)`), so uint8 images give exactly the logits evaluation saw."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        offset, scale = normalisation(mean, std)
        self.register_buffer("offset", offset)
        self.register_buffer("scale", scale)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 3:
            images = images.unsqueeze(0)
        pixels = images.float() if images.dtype == torch.uint8 else images.float() * 255
        return (pixels.to(self.offset.device) - self.offset) * self.scale


@dataclass
class LoadedRun:
    """A trained run, ready to predict. `model` is in eval mode on `device`; `preprocess` turns
    images into its input (see `Preprocess`); `class_names[i]` names logit `i`."""

    path: Path
    model: nn.Module
    preprocess: Preprocess
    class_names: list[str]
    config: dict[str, Any]  # the resolved config the run was trained with
    summary: Summary | None
    checkpoint: Path
    epoch: int | None
    weights: str
    device: torch.device

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits `(B, classes)` of raw images (uint8, or float in [0, 1])."""
        return self.model(self.preprocess(images.to(self.device)))

    def predict(self, images: torch.Tensor) -> list[str]:
        """The predicted class name of each image."""
        return [self.class_names[i] for i in self.logits(images).argmax(1).tolist()]

    def data(self, **changes: Any) -> Any:
        """The run's dataset (`ImageData`: train / val / test uint8 splits), built from its config;
        `changes` override data settings that change no result, e.g. `root="/datasets"`."""
        node = OmegaConf.create({**self.config["data"], **changes})
        return build(node, "data")


def read_run_checkpoint(run_dir: Path, checkpoint: str = "last") -> tuple[Path, dict]:
    """(path, state) of the run's checkpoint `checkpoint` (`last` or `best`), read with
    `weights_only=True`; a missing file raises CheckpointError saying why and what to do."""
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"checkpoint={checkpoint!r} is not a checkpoint of a run; choose one of "
                          f"{', '.join(CHECKPOINTS)}")
    folder = RunFolder(run_dir)
    path = CHECKPOINTS[checkpoint](folder)
    if not path.is_file():
        raise CheckpointError(_missing_reason(folder, path, checkpoint))
    state = read_checkpoint(path, "Evaluate another run, or retrain this one.")
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{path} is not a cifar-tricks checkpoint (it holds no config). "
                              f"Evaluate another run, or retrain this one.")
    return path, state


def _missing_reason(folder: RunFolder, path: Path, checkpoint: str) -> str:
    trainer = _hydra_config(folder.path).get("trainer") or {}
    if checkpoint == "best":
        return (f"{folder.path} has no {path.name}: only runs trained with trainer.save_best=true "
                f"(and a validation split, data.val_size) keep the best epoch's weights. Use "
                f"the last epoch's (eval.checkpoint=last), or retrain with trainer.save_best=true.")
    best = " Its best epoch's are kept: eval.checkpoint=best." if folder.best_path.is_file() \
        else ""
    summary = folder.read_summary()
    if trainer.get("checkpoint") is False or (summary and summary.status.finished):
        return (f"{folder.path} has no checkpoints/{path.name}: it was trained with "
                f"trainer.checkpoint=false, which keeps no last weights (or they were deleted)."
                f"{best} Retrain it with trainer.checkpoint=true (the default) to evaluate or "
                f"export its last epoch.")
    status = f" (its status is {summary.status})" if summary else ""
    return (f"{folder.path} has no checkpoints/{path.name}{status}: a run writes it after its "
            f"first epoch. Wait for the run, or give a finished run folder.")


def _hydra_config(run_dir: Path) -> dict:
    """The run's `.hydra/config.yaml` as written by Hydra (unresolved), {} when absent."""
    import yaml

    try:
        loaded = yaml.safe_load((Path(run_dir) / ".hydra" / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def build_model(config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None,
                device: torch.device | str, path: Path) -> nn.Module:
    """The run's model, rebuilt from its config, with `state_dict` loaded, in eval mode."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path} holds no model weights. Evaluate another run, or retrain "
                              f"this one.")
    model = build(OmegaConf.create(config).model, "model")
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: its weights do not fit the model its config builds ({str(e)[:300]}). The "
            f"model's code may have changed since the run was trained.") from None
    return model.to(device).eval()


def class_names(data_config: dict[str, Any]) -> list[str]:
    """The names of the run's classes as its dataset names them (`ImageData.classes`): from the
    CIFAR release's meta file for `data.labels`, read without the images; `class i` for
    synthetic data, a missing meta file, or one that is unreadable."""
    count = int(data_config["num_classes"])
    dataset = str(data_config.get("_target_", "")).rsplit(".", 1)[-1]
    try:
        names = cifar_class_names(dataset, data_config.get("root", "data"),
                                  data_config.get("labels", "fine"))
    except (KeyError, DatasetError):  # not a CIFAR release, or a meta file that is not one
        names = None
    return names if names and len(names) == count else generic_class_names(count)


def load_run(run_dir: str | Path, weights: str = "eval", checkpoint: str = "last",
             device: str | torch.device = "cpu") -> LoadedRun:
    """A trained run folder as a model to use.

    Args:
        run_dir: the run's folder (Hydra's output dir: `summary.json`, `checkpoints/`).
        weights: `eval`, the weights the run evaluated and reported in summary.json (the EMA's
            with `trick=[ema]`), or `model`, the trained weights.
        checkpoint: `last` (checkpoints/last.pt) or `best` (checkpoints/best.pt, written by runs
            with `trainer.save_best=true`).
        device: where the model is put (CPU by default).

    Example (a notebook)::

        from cifar_tricks import load_run
        run = load_run("outputs/2026-01-01/12-00-00")
        data = run.data()                       # the run's dataset, as uint8 tensors
        images = data.test.images[:8]           # (8, 3, 32, 32) uint8
        run.predict(images)                     # ['cat', 'ship', ...]
        logits = run.model(run.preprocess(images))   # the same, by hand
        run.summary.test_acc, run.config["optim"]["lr"]

    The checkpoint is read with `weights_only=True` (it cannot run code).
    """
    if weights not in WEIGHTS:
        raise ConfigError(f"weights={weights!r} is not a set of weights of a checkpoint; choose "
                          f"one of {', '.join(WEIGHTS)}")
    run_dir = Path(run_dir)
    path, state = read_run_checkpoint(run_dir, checkpoint)
    device = torch.device(device)
    config = state["config"]
    model = build_model(config, WEIGHTS[weights](state), device, path)
    data = config["data"]
    return LoadedRun(path=run_dir, model=model,
                     preprocess=Preprocess(data["mean"], data["std"]).to(device),
                     class_names=class_names(data), config=config,
                     summary=RunFolder(run_dir).read_summary(), checkpoint=path,
                     epoch=state.get("epoch"), weights=weights, device=device)
