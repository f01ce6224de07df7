"""cifar-tricks: Hydra-configured CIFAR research sweeps.

Importing the package registers what `conf/` needs (the typed schemas and the OmegaConf
resolvers), so any process that composes or unpickles a cifar-tricks job (run.py, tests, joblib
and submitit workers) can resolve it.
"""
from .config import register

register()

__version__ = "0.1.0"
