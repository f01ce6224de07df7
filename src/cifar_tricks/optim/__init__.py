"""Optimizers' companions: learning-rate schedules stepped once per iteration."""
from .schedules import constant, multistep

__all__ = ["constant", "multistep"]
