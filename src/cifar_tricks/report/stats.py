"""Numbers for the tables: a cell read as a finite float, mean ± sample std over seeds, and how
both are written (`—` for no value). Settings' values are shortened by display.py."""
from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

__all__ = ["MISSING", "finite", "format_mean_std", "format_plain", "mean_std"]

MISSING = "—"  # a cell without a value


def finite(value: Any) -> float | None:
    """`value` as a float when it is a finite number (or a string of one), else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def mean_std(values: Sequence[Any]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation (n-1; None below 2 values) of the finite values, and n."""
    xs = [x for v in values if (x := finite(v)) is not None]
    if not xs:
        return None, None, 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None), len(xs)


def format_mean_std(values: Sequence[Any], digits: int = 2) -> str:
    """`mean ± std` over the values, just the value for one of them, `—` for none."""
    mean, std, n = mean_std(values)
    if mean is None:
        return MISSING
    if n == 1 or std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_plain(values: Sequence[Any], fmt: str) -> str:
    """The mean, formatted with `fmt`, of values that normally agree across seeds (params,
    epochs, memory): a std would be noise. `—` for none."""
    mean, _, _ = mean_std(values)
    return MISSING if mean is None else format(mean, fmt)

