"""Markdown table of the registered models: parameter count and, on request, forward FLOPs.

Counting parameters needs each model's shapes, not its values, so :func:`param_count` builds the
model inside :func:`meta_build`: its parameters and buffers live on the ``meta`` device (no
memory, no initialisation), the whole zoo in about a second on one CPU core, where initialising
every model takes about 5 s; :func:`flop_count` runs the forward pass on such a model (FLOPs
follow from shapes), which computes nothing.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_parameter_registration_hook,
)
from torch.utils.flop_counter import FlopCounterMode

from . import create_model, get_model_entry, list_models

__all__ = ["meta_build", "count_params", "param_count", "count_flops", "flop_count",
           "select_models", "model_table"]

PARAMS_NOTE = "Params for {num_classes} classes"
FLOPS_NOTE = (
    PARAMS_NOTE + "; GFLOPs = forward FLOPs (multiply and add counted separately, i.e. 2x MACs) "
    "of one 1x3x32x32 image, counted with torch.utils.flop_counter.FlopCounterMode."
)


class _MetaParameter(torch.nn.Parameter):
    """A parameter on the ``meta`` device whose in-place ops (PyTorch's trailing-underscore ops:
    ``normal_``, ``uniform_``, ``zero_``, ``copy_``, every ``nn.init`` initialiser) return it
    untouched: they change no shape, and torch would run some of them through slow Python
    reference implementations. Every other op behaves as on any meta tensor."""

    KEEP = frozenset({"requires_grad_", "resize_", "resize_as_", "set_"})  # not just values

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.startswith("__") and name not in cls.KEEP:
            return args[0] if args else kwargs["tensor"]
        return super().__torch_function__(func, types, args, kwargs or {})


@contextmanager
def meta_build() -> Iterator[None]:
    """Every parameter and buffer a module registers while active is replaced by a ``meta``
    tensor of its shape (a shared parameter stays shared), so a model built inside has exactly
    the shapes, and the parameter count, of the real one, but allocates and initialises nothing.
    Tensors a constructor computes without registering them (drop-path rates, a dummy input
    that sizes a layer) stay real, so constructors that read values still work."""
    moved: dict[torch.nn.Parameter, torch.nn.Parameter] = {}

    def on_parameter(module, name, param):
        if param is None or isinstance(param, _MetaParameter):
            return None
        if param not in moved:
            moved[param] = _MetaParameter(param.to("meta"), param.requires_grad)
        return moved[param]

    def on_buffer(module, name, buffer):
        return None if buffer is None or buffer.is_meta else buffer.to("meta")

    hooks = [register_module_parameter_registration_hook(on_parameter),
             register_module_buffer_registration_hook(on_buffer)]
    try:
        with torch.no_grad():
            yield
    finally:
        for hook in hooks:
            hook.remove()


def count_params(model: torch.nn.Module) -> int:
    """Number of parameters of ``model`` (a shared parameter counts once)."""
    return sum(p.numel() for p in model.parameters())


def param_count(name: str, num_classes: int = 10) -> int:
    """Parameters of the registered model ``name`` with a ``num_classes`` head, counted on a
    :func:`meta_build` (exactly the initialised model's count)."""
    with meta_build():
        model = create_model(name, num_classes=num_classes)
    return count_params(model)


@torch.no_grad()
def count_flops(model: torch.nn.Module, image_size: int = 32) -> int:
    """Forward FLOPs of one 3-channel ``image_size`` square image, in eval mode (on the device of
    the model's first parameter: a :func:`meta_build` model counts without computing)."""
    model.eval()
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    # The fused attention kernels have no FLOP formula; the math backend's matmuls do.
    with counter, sdpa_kernel(SDPBackend.MATH):
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    return counter.get_total_flops()


def flop_count(name: str, num_classes: int = 10) -> int:
    """Forward FLOPs of the registered model ``name``, counted on a :func:`meta_build`: FLOPs
    follow from shapes alone, so nothing is initialised or computed (the zoo in about 9 s on one
    CPU core, where real forward passes take 30 s or more)."""
    with meta_build():
        model = create_model(name, num_classes=num_classes)
    return count_flops(model)


def select_models(pattern: str = "") -> list[str]:
    """Registered models whose name or family contains ``pattern`` (case-insensitive), sorted."""
    text = pattern.lower()
    return [name for name in list_models()
            if text in name.lower() or text in get_model_entry(name)[1].lower()]


def model_table(num_classes: int = 10, flops: bool = True, pattern: str = "") -> str:
    """Markdown table ``model | family | params (M) [| GFLOPs]`` of the registered models whose
    name or family contains ``pattern``, each counted on a :func:`meta_build`."""
    note = (FLOPS_NOTE if flops else PARAMS_NOTE + ".").format(num_classes=num_classes)
    columns = ["model", "family", "params (M)"] + ["GFLOPs"] * flops
    rows = [note, "", f"| {' | '.join(columns)} |", "|---|---|" + "---:|" * (len(columns) - 2)]
    for name in select_models(pattern):
        cells = [name, get_model_entry(name)[1], f"{param_count(name, num_classes) / 1e6:.3f}"]
        if flops:
            cells.append(f"{flop_count(name, num_classes) / 1e9:.3f}")
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)
