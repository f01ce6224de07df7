"""cifar-tricks: Hydra-configured CIFAR research sweeps.

Importing the package registers the OmegaConf resolvers the configs use, so any process that
unpickles a cifar-tricks task (joblib, submitit workers) can resolve the sweep folders too.
"""
from .hydra_resolvers import register_resolvers

register_resolvers()

__version__ = "0.1.0"
