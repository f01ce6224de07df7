"""OmegaConf resolvers used by conf/: job folder names and the Optuna storage URL."""
from __future__ import annotations

import hashlib
from pathlib import Path

from omegaconf import OmegaConf

__all__ = ["job_dir", "sqlite_storage", "register_resolvers"]

MAX_DIR_NAME = 120


def job_dir(override_dirname: str) -> str:
    """A folder name that is a function of the job's overrides alone.

    Hydra's `override_dirname` is already sorted; slashes (paths in values) would nest folders
    and long names exceed file-system limits, so those are replaced and hashed.
    """
    name = override_dirname.replace("/", "_") or "defaults"
    if len(name) > MAX_DIR_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[:MAX_DIR_NAME - 11]}_{digest}"
    return name


def sqlite_storage(folder: str) -> str:
    """`sqlite:///<folder>/optuna.db`, creating the folder (Optuna opens the database before
    Hydra creates the sweep folder)."""
    path = Path(folder).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'optuna.db'}"


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("job_dir", job_dir, replace=True)
    OmegaConf.register_new_resolver("sqlite_storage", sqlite_storage, replace=True)
