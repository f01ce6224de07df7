"""Hydra callbacks of this project (registered in conf/config.yaml under `hydra.callbacks`)."""
from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .errors import FolderBusyError
from .run_folder import claim

__all__ = ["ClaimRunFolder"]


class ClaimRunFolder(Callback):
    """A single run claims `hydra.run.dir` before Hydra writes anything into it (its .hydra/
    files, run.log), so a second process started into the same folder is refused untouched.
    Sweep jobs claim their folders when they are named (the `job_dir` resolver)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            claim(config.hydra.run.dir)
        except FolderBusyError as e:
            # Hydra turns a callback's exception into a warning and goes on: exit instead
            print(f"Error: {e}", file=sys.stderr)
            raise SystemExit(1) from e
