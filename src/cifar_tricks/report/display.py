"""How a setting's value is written where a person reads it (report.md, plot labels): short.

report.csv keeps every value whole; report.md and the plots shorten what would make a column or
a label unreadably wide:

- a long sampled float (Optuna's `0.012345678901`) to 4 significant digits (`0.01235`);
- a long list (`[autoaugment,random_erase,mixup]`) to its first and last entries around an
  ellipsis (`[autoaugment,…,mixup]`);
- a long path to its first and last components (`/data/…/cifar10/batches`);
- any other long text to its head and tail around an ellipsis.

Shortening must not make two settings look alike: `readable_values` writes every value of an
axis whole when shortening would merge two of them.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from .stats import finite

__all__ = ["ELLIPSIS", "MAX_WIDTH", "readable_axes", "readable_value", "readable_values"]

ELLIPSIS = "…"
MAX_WIDTH = 28  # characters: a model name (`shake_resnet26_2x64d`) fits, a path does not
LONG_NUMBER = 8  # characters: a float written with more is cut to 4 significant digits


def readable_value(value: str, width: int = MAX_WIDTH) -> str:
    """`value` (as typed on the command line) shortened to about `width` characters."""
    number = finite(value)
    if number is not None:
        is_integer = value.lstrip("+-").isdigit()
        return f"{number:.4g}" if len(value) > LONG_NUMBER and not is_integer else value
    if value.startswith("[") and value.endswith("]") and len(value) > 2:
        return _short_list([readable_value(v, width) for v in value[1:-1].split(",")], width)
    if len(value) <= width:
        return value
    if "/" in value.strip("/"):
        return _short_path(value, width)
    return _middle_ellipsis(value, width)


def readable_values(values: Iterable[str], width: int = MAX_WIDTH) -> dict[str, str]:
    """Each distinct value and how it is shown: shortened, unless that would show two different
    values alike (then all of them whole, so a reader can tell the rows apart)."""
    distinct = list(dict.fromkeys(values))
    shown = {v: readable_value(v, width) for v in distinct}
    return shown if len(set(shown.values())) == len(distinct) else {v: v for v in distinct}


def readable_axes(overrides: Sequence[Mapping[str, str]],
                  axes: Sequence[str]) -> dict[str, dict[str, str]]:
    """For each axis, its values over the configurations' `overrides` and how each is shown."""
    return {axis: readable_values(o[axis] for o in overrides if axis in o) for axis in axes}


def _short_list(entries: list[str], width: int) -> str:
    """`[first,…,last]`: as many whole entries from both ends as fit in `width`."""
    whole = "[" + ",".join(entries) + "]"
    if len(whole) <= width or len(entries) < 3:  # two entries have no middle to leave out
        return whole
    head, tail = entries[:1], entries[-1:]
    rest = entries[1:-1]
    while rest:  # grow from the ends alternately while the result still fits
        candidate_head, candidate_tail = (head + rest[:1], tail) if len(head) <= len(tail) \
            else (head, rest[-1:] + tail)
        if len("[" + ",".join([*candidate_head, ELLIPSIS, *candidate_tail]) + "]") > width:
            break
        head, tail = candidate_head, candidate_tail
        rest = entries[len(head):len(entries) - len(tail)]
    if not rest:
        return whole
    return "[" + ",".join([*head, ELLIPSIS, *tail]) + "]"


def _short_path(path: str, width: int) -> str:
    """The first component and as many last components as fit, the middle elided: the end of
    a path (the file, its folder) is what tells paths apart."""
    parts = path.split("/")
    head, tail = parts[:2] if parts[0] == "" else parts[:1], parts[-1:]
    for part in reversed(parts[len(head):-1]):
        if len("/".join([*head, ELLIPSIS, part, *tail])) > width:
            break
        tail.insert(0, part)
    if len(head) + len(tail) >= len(parts):  # no middle component: cut inside the text
        return _middle_ellipsis(path, width)
    shown = "/".join([*head, ELLIPSIS, *tail])
    return shown if len(shown) <= width else _middle_ellipsis(path, width)


def _middle_ellipsis(text: str, width: int) -> str:
    keep = width - 1
    return text[:(keep + 1) // 2] + ELLIPSIS + text[len(text) - keep // 2:]
