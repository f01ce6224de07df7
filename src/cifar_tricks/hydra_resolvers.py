"""OmegaConf resolvers used by conf/: job folder names and the Optuna storage URL."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

__all__ = ["job_dir", "sqlite_storage", "register_resolvers"]


def job_dir(overrides: Sequence[str], sweep_dir: str) -> str:
    """The folder of a sweep job, named by what makes the job (`identity.job_overrides`), so a
    rerun finds it whatever the spelling of its command line.

    When Hydra is about to run the job (it resolves this just before it creates the folder and
    writes into it), the job's settings are checked (`validate`) and the folder is claimed for
    this process (`run_folder.claim`): a refused job, or a second sweep writing the same job,
    stops the sweep before anything is written there.
    """
    from .identity import folder_name, job_overrides

    name = folder_name(job_overrides(list(overrides)))
    if _about_to_run_a_sweep_job():
        from . import distributed
        from .config import compose
        from .errors import CifarTricksError
        from .jobs import exit_with
        from .run_folder import claim
        from .validate import validate

        distributed.adopt_scheduler_environment()  # a job of several SLURM tasks: one writes
        try:
            validate(compose(list(overrides)))
            if distributed.is_main():
                claim(Path(sweep_dir) / name)
        except CifarTricksError as e:  # one clear message, and the sweep stops here
            exit_with(e)
    return name


def _about_to_run_a_sweep_job() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False
    hydra = HydraConfig.get()
    return hydra.mode == RunMode.MULTIRUN and hydra.job.get("num") is not None


def sqlite_storage(folder: str) -> str:
    """`sqlite:///<folder>/optuna.db`, creating the folder (Optuna opens the database before
    Hydra creates the sweep folder)."""
    path = Path(folder).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'optuna.db'}"


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("job_dir", job_dir, replace=True)
    OmegaConf.register_new_resolver("sqlite_storage", sqlite_storage, replace=True)
