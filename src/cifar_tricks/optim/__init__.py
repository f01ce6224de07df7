"""Optimizers, their parameter groups, and learning-rate schedules stepped once per iteration."""
from .adabound import AdaBound, AdaBoundW
from .param_groups import create_optimizer, param_groups
from .schedules import (
                        constant,
                        cosine,
                        cosine_restarts,
                        multistep,
                        onecycle,
                        step,
                        warmcosine,
                        warmup,
)

__all__ = ["constant", "multistep", "step", "cosine", "warmup", "warmcosine", "cosine_restarts",
           "onecycle", "AdaBound", "AdaBoundW", "param_groups", "create_optimizer"]
