"""The checkpoint format, in one place: what `checkpoints/last.pt` holds, and how it is checked
and read back.

    model        the trained weights (what training resumes from)
    eval_model   the weights that were evaluated and reported: the EMA's when a trick averages,
                 else the trained ones (the same tensors, which torch.save stores once)
    optimizer, scheduler, tricks (one entry per `trick` config name), rng, epoch,
    history      every metrics row so far (metrics.csv is rewritten from it)
    config       the resolved config (a resume must match it, up to identity.NON_RESULT_KEYS)
    overrides    the job's command-line overrides, for the error messages

Every reader of weights (resume, a KD teacher, evaluation, export) goes through this module, so
the reported weights are the ones a reader gets.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import CheckpointError
from .identity import config_differences

if TYPE_CHECKING:
    from .build import Run

__all__ = ["make_checkpoint", "restore", "read_checkpoint", "check_resumable",
           "evaluation_weights"]

REQUIRED_KEYS = ("model", "optimizer", "scheduler", "epoch", "config", "history", "rng")


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_checkpoint(run: Run, epoch: int, history: list[dict]) -> dict[str, Any]:
    """The checkpoint of `run` after `epoch` epochs (see the module docstring)."""
    evaluated = run.tricks.eval_model() or run.model
    return {"model": run.model.state_dict(), "eval_model": evaluated.state_dict(),
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "tricks": run.tricks.state_dict(), "rng": rng_state(), "epoch": epoch,
            "history": history, "config": run.config, "overrides": run.overrides}


def restore(run: Run, state: dict[str, Any]) -> tuple[list[dict], int]:
    """Load a checkpoint into `run`'s objects and the RNGs; returns (history, epochs done)."""
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.tricks.load_state_dict(state.get("tricks", {}))
    set_rng_state(state["rng"])
    return state["history"], state["epoch"]


def read_checkpoint(path: Path, fix: str) -> Any:
    """Unpickle one of our checkpoints (they hold RNG states, so not `weights_only`); a file that
    cannot be read raises CheckpointError ending with `fix`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"cannot read the checkpoint {path} ({type(e).__name__}: {e}). "
                              f"{fix}") from e


def check_resumable(state: Any, path: Path, config: dict, fix: str) -> dict[str, Any]:
    """`state` if it is one of our checkpoints written by this configuration; else
    CheckpointError listing what is missing or which settings differ, ending with `fix`."""
    if not isinstance(state, dict) or not set(REQUIRED_KEYS) <= state.keys():
        missing = sorted(set(REQUIRED_KEYS) - set(state)) if isinstance(state, dict) \
            else ["everything"]
        raise CheckpointError(f"{path} is not a cifar-tricks checkpoint (missing "
                              f"{', '.join(missing)}). {fix}")
    diff = config_differences(state["config"], config)
    if diff:
        raise CheckpointError(
            f"{path} was written by a different configuration, so this run cannot resume it:\n  "
            + "\n  ".join(diff[:20]) + f"\nIts overrides were {state.get('overrides')}. {fix}")
    return state


def evaluation_weights(state: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The state dict of the weights a checkpoint's run evaluated and reported.

    Checkpoints written before `eval_model` existed kept an EMA only inside the trick state
    (`tricks.EMA`, an AveragedModel: `module.*` and `n_averaged`); those weights are read from
    there. None when the checkpoint holds no model weights at all.
    """
    if isinstance(state.get("eval_model"), dict):
        return state["eval_model"]
    averaged = (state.get("tricks") or {}).get("EMA")
    if isinstance(averaged, dict) and any(k.startswith("module.") for k in averaged):
        return {k.removeprefix("module."): v for k, v in averaged.items()
                if k.startswith("module.")}
    model = state.get("model")
    return model if isinstance(model, dict) else None
