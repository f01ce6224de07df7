"""Markdown table of the registered models: parameter count and forward FLOPs."""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from . import create_model, get_model_entry, list_models

__all__ = ["count_params", "count_flops", "model_table"]

FLOPS_NOTE = (
    "Params for 10 classes; GFLOPs = forward FLOPs (multiply and add counted separately, "
    "i.e. 2x MACs) of one 1x3x32x32 image, counted with torch.utils.flop_counter.FlopCounterMode."
)


def count_params(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: torch.nn.Module, image_size: int = 32) -> int:
    """Forward FLOPs of one 3-channel ``image_size`` square image, in eval mode."""
    model.eval()
    counter = FlopCounterMode(display=False)
    # The fused attention kernels have no FLOP formula; the math backend's matmuls do.
    with counter, sdpa_kernel(SDPBackend.MATH):
        model(torch.zeros(1, 3, image_size, image_size))
    return counter.get_total_flops()


def model_table(num_classes: int = 10) -> str:
    """Markdown table ``model | family | params (M) | GFLOPs`` of every registered model."""
    rows = [FLOPS_NOTE, "", "| model | family | params (M) | GFLOPs |", "|---|---|---:|---:|"]
    for name in list_models():
        model = create_model(name, num_classes=num_classes)
        rows.append(
            f"| {name} | {get_model_entry(name)[1]} | {count_params(model) / 1e6:.3f} "
            f"| {count_flops(model) / 1e9:.3f} |"
        )
    return "\n".join(rows)
