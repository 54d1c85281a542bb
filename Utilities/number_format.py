"""How a figure is written for people, one rule for pages, tables and the CLI.

Kinds: ``int`` (a count, with separators), ``money`` (two decimals, separators), ``pct``
(a fraction shown as a percentage), ``pct_points`` (already in percent), ``num`` (a
metric: four significant digits, separators from 1,000), ``input`` (the shortest text
that reads back as the same number, for form fields), ``param`` (a setting as set: twelve
significant digits, so a rate computed as 0.0001 × 3 reads 0.0003, not
0.00030000000000000003). Missing values (None, NaN) are an
em dash everywhere, so an empty cell never looks like a zero.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MISSING = "—"


def is_missing(value: Any) -> bool:
    """None or a float NaN (pandas' NaT too)."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN and NaT are the only values unequal to themselves
    except (TypeError, ValueError):
        return False


def figure(value: Any, kind: str = "num") -> str:
    """``value`` written as ``kind`` says (module docstring); text passes through."""
    if is_missing(value):
        return "" if kind == "input" else MISSING
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if not isinstance(value, int | float | np.integer | np.floating):
        return str(value)
    number = float(value)
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    return _WRITERS.get(kind, _metric)(value, number)


def _count(value: Any, number: float) -> str:
    return f"{round(number):,}"


def _money(value: Any, number: float) -> str:
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return f"{number:,.2f}"


def _metric(value: Any, number: float) -> str:
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if abs(number) >= 10_000:
        return f"{number:,.0f}"
    return f"{number:,.1f}" if abs(number) >= 1000 else f"{number:.4g}"


def _input(value: Any, number: float) -> str:
    if isinstance(value, int | np.integer):
        return str(int(value))
    text = repr(number)  # the shortest text that reads back as the same float
    return text[:-2] if text.endswith(".0") else text  # 10000.0 reads back from "10000"


def _param(value: Any, number: float) -> str:
    if isinstance(value, int | np.integer):
        return str(int(value))
    return f"{number:.12g}"


_WRITERS = {
    "int": _count,
    "money": _money,
    "pct": lambda value, number: f"{number * 100:.1f}%",
    "pct_points": lambda value, number: f"{number:.2f}%",
    "num": _metric,
    "input": _input,
    "param": _param,
}
