"""Hydra callbacks of this project (registered in conf/config.yaml under `hydra.callbacks`)."""
from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from . import distributed
from .errors import CifarTricksError
from .run_folder import claim

__all__ = ["ClaimRunFolder"]


class ClaimRunFolder(Callback):
    """A single run checks every setting (`validate`) and claims `hydra.run.dir` before Hydra
    writes anything into it (its .hydra/ files, run.log): a refused run, or a second process
    started into the same folder, leaves the folder as it was. Sweep jobs do both when their
    folders are named (the `job_dir` resolver)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from .jobs import exit_with
        from .validate import validate

        distributed.adopt_scheduler_environment()
        try:
            validate(config)
            if distributed.is_main():  # the other ranks of a torchrun run never write here
                claim(config.hydra.run.dir)
        except CifarTricksError as e:
            # Hydra turns a callback's exception into a warning and goes on: exit instead
            exit_with(e)
