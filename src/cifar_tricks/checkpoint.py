"""The checkpoint format, in one place: what `checkpoints/last.pt` holds, and how it is checked
and read back.

    model        the trained weights (what training resumes from)
    eval_model   the weights that were evaluated and reported: the EMA's when a trick averages,
                 else the trained ones (the same tensors, which torch.save stores once)
    optimizer, scheduler, tricks (one entry per `trick` config name), rng, epoch,
    scaler       fp16's loss scale and its growth tracker (only with trainer.precision=fp16)
    history      every metrics row so far (metrics.csv is rewritten from it)
    config       the resolved config (a resume must match it, up to identity.NON_RESULT_KEYS)
    overrides    the job's command-line overrides, for the error messages

Every reader of weights (resume, a KD teacher, evaluation, export) goes through this module, so
the reported weights are the ones a reader gets.

Nothing a checkpoint holds can run code: it holds only tensors and plain containers (the RNG
states too: numpy's as a tensor and numbers), and it is read with `torch.load(weights_only=True)`,
which refuses any other object before it is built. Checkpoints of cifar-tricks from before this
format (numpy RNG arrays, enum values in the config) are refused with the command that converts
them, for files one trusts: `python -m cifar_tricks.checkpoint upgrade PATH`.
"""
from __future__ import annotations

import argparse
import enum
import pickle
import random
import re
import shutil
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


def _numpy_state(legacy: tuple) -> dict[str, Any]:
    """numpy's legacy RNG state ('MT19937', uint32 key, pos, has_gauss, gauss) as a tensor and
    plain numbers."""
    kind, key, pos, has_gauss, gauss = legacy
    return {"kind": kind, "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)}


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": _numpy_state(np.random.get_state()),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["key"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["gauss"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_checkpoint(run: Run, epoch: int, history: list[dict]) -> dict[str, Any]:
    """The checkpoint of `run` after `epoch` epochs (see the module docstring)."""
    evaluated = run.tricks.eval_model() or run.model
    return {"model": run.model.state_dict(), "eval_model": evaluated.state_dict(),
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "tricks": run.tricks.state_dict(), "rng": rng_state(), "epoch": epoch,
            "history": history, "config": run.config, "overrides": run.overrides,
            **({"scaler": run.scaler.state_dict()} if run.scaler is not None else {})}


def restore(run: Run, state: dict[str, Any]) -> tuple[list[dict], int]:
    """Load a checkpoint into `run`'s objects and the RNGs; returns (history, epochs done)."""
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.tricks.load_state_dict(state.get("tricks", {}))
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return state["history"], state["epoch"]


def read_checkpoint(path: Path, fix: str) -> Any:
    """Load a checkpoint with `weights_only=True`: tensors and plain containers only, so a file
    that holds anything else is refused before any of its code can run. A file that cannot be
    read, or is refused, raises CheckpointError ending with `fix`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"unsupported global:? (?:global )?(\S+)", str(e), re.IGNORECASE)
        if refused is None:  # not a pickle we can read at all
            raise CheckpointError(f"cannot read the checkpoint {path} (corrupt or not a "
                                  f"checkpoint: {_weights_only_reason(e)}). {fix}") from None
        raise CheckpointError(
            f"{path} holds an object other than tensors and plain containers ({refused[1]}), so "
            f"it was not loaded: loading it could run code it carries. If it is a checkpoint of "
            f"an older cifar-tricks that you wrote or trust, convert it once with `python -m "
            f"cifar_tricks.checkpoint upgrade {path}`. {fix}") from None
    except Exception as e:
        raise CheckpointError(f"cannot read the checkpoint {path} ({type(e).__name__}: {e}). "
                              f"{fix}") from e


def _weights_only_reason(error: Exception) -> str:
    """The unpickler's own reason, out of torch's long weights_only message."""
    text = str(error)
    reason = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
    return reason[0][:200] if reason else text[:200]


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


# ------------------------------------------------------------------------------------ upgrade

def _plain(tree: Any) -> Any:
    """Enum values (an older config record) as their values, recursively."""
    if isinstance(tree, dict):
        return {k: _plain(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_plain(v) for v in tree)
    return tree.value if isinstance(tree, enum.Enum) else tree


def upgrade(path: Path) -> Path:
    """Rewrite a checkpoint of an older cifar-tricks in today's format, keeping the original as
    `<name>.before-upgrade`. It unpickles the file fully: only for files one trusts."""
    path = Path(path)
    state = torch.load(path, map_location="cpu", weights_only=False)  # trusted by the caller
    if not isinstance(state, dict) or not set(REQUIRED_KEYS) <= state.keys():
        raise CheckpointError(f"{path} is not a cifar-tricks checkpoint: nothing to upgrade")
    if isinstance(state["rng"].get("numpy"), tuple):
        state["rng"]["numpy"] = _numpy_state(state["rng"]["numpy"])
    state["config"] = _plain(state["config"])
    state.setdefault("eval_model", evaluation_weights(state))
    backup = path.with_name(path.name + ".before-upgrade")
    shutil.copy2(path, backup)
    from .run_folder import save_tensors

    save_tensors(path, state)
    torch.load(path, map_location="cpu", weights_only=True)  # the new file loads safely
    return backup


def main(argv: list[str] | None = None) -> None:
    """`python -m cifar_tricks.checkpoint upgrade PATH`: convert an older checkpoint you trust."""
    parser = argparse.ArgumentParser(prog="python -m cifar_tricks.checkpoint")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upgrade", help="rewrite an older checkpoint in today's format "
                             "(it is unpickled fully: only for files you trust)")
    up.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    backup = upgrade(args.path)
    print(f"upgraded {args.path} (the original is kept as {backup})")


if __name__ == "__main__":
    main()
