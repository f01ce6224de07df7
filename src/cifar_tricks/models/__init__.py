"""CIFAR model zoo and its registry.

Every model constructor is a plain function decorated with :func:`register_model`; its
registered name is the function name and its family the name of the module defining it.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

__all__ = ["register_model", "list_models", "get_model_entry", "create_model", "model_table",
           "param_count", "select_models"]

ModelFn = Callable[..., nn.Module]

_REGISTRY: dict[str, tuple[ModelFn, str]] = {}


def register_model(fn: ModelFn) -> ModelFn:
    """Register ``fn`` under ``fn.__name__``; its family is its module's last name component."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered (family {_REGISTRY[name][1]!r})")
    _REGISTRY[name] = (fn, fn.__module__.rsplit(".", 1)[-1])
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def get_model_entry(name: str) -> tuple[ModelFn, str]:
    """Return ``(constructor, family)`` of a registered model."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}") from None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with constructor keyword arguments ``kwargs``."""
    return get_model_entry(name)[0](**kwargs)


def _import_families() -> None:
    """Import every family module of this package, so adding a model is adding one file."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_") and module.name != "layers":
            importlib.import_module(f"{__name__}.{module.name}")


# Imported last so their @register_model calls find the registry above.
_import_families()
from ._table import model_table, param_count, select_models  # noqa: E402
