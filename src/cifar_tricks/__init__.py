"""cifar-tricks: Hydra-configured CIFAR research sweeps.

Importing the package registers what `conf/` needs (the typed schemas and the OmegaConf
resolvers), so any process that composes or unpickles a cifar-tricks job (run.py, tests, joblib
and submitit workers) can resolve it.
"""
from .config import register

register()

__version__ = "0.1.0"


def __getattr__(name: str):
    """`cifar_tricks.load_run`, imported on first use: `import cifar_tricks` stays cheap (no torch,
    no model code) for the processes that only compose configs."""
    if name == "load_run":
        from .inference import load_run

        return load_run
    raise AttributeError(f"module 'cifar_tricks' has no attribute {name!r}")
