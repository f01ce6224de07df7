"""`trainer.precision`: the dtype the forward runs in, and the gradient scaler fp16 needs.

bf16 has fp32's exponent range, so its gradients need no scaling; fp16's small range underflows
small gradients to zero, so fp16 training multiplies the loss by a scale before backward and
divides the gradients by it before the step, skipping steps whose gradients overflowed
(`torch.amp.GradScaler`, Micikevicius et al. 2018, "Mixed Precision Training").
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from .config import Precision

__all__ = ["autocast_dtype", "autocast_for", "grad_scaler", "uses_channels_last"]


def _bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def autocast_dtype(device: torch.device, precision: Precision | str) -> torch.dtype | None:
    """The autocast dtype of the forward pass; None: plain fp32. `auto` is bf16 on a GPU that
    supports it (Ampere and later), fp16 on older GPUs (V100, T4), fp32 on a CPU."""
    precision = Precision(precision)
    if precision == Precision.auto:
        if device.type != "cuda":
            return None
        return torch.bfloat16 if _bf16_supported(device) else torch.float16
    return {Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16,
            Precision.fp32: None}[precision]


def autocast_for(device: torch.device, precision: Precision | str) -> Callable[[], Any]:
    """A context factory: autocast to the run's dtype, or nothing for fp32."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def uses_channels_last(setting: bool | None, device: torch.device) -> bool:
    """`trainer.channels_last`: `null` is on for CUDA (tensor cores prefer NHWC), off on a CPU."""
    return device.type == "cuda" if setting is None else setting


def grad_scaler(device: torch.device, precision: Precision | str) -> torch.amp.GradScaler | None:
    """The loss scaler of an fp16 run; None for bf16 and fp32, which need none."""
    if autocast_dtype(device, precision) != torch.float16:
        return None
    return torch.amp.GradScaler(device.type)
