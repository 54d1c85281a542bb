"""One conversion of Python/numpy values to plain JSON/YAML-safe data.

Used wherever values leave the process: model configs (YAML), run-store JSON columns
(config, summary, event payloads), logger exports. PostgreSQL's JSON type rejects NaN
and inf while SQLite accepts them, so non-finite floats always become None here: the
same data is stored the same way on both engines.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time
from enum import Enum
from pathlib import PurePath
from typing import Any

import numpy as np


def to_plain(value: Any) -> Any:
    """Dicts, lists, str, int, float (finite), bool and None only; never raises.

    numpy scalars/arrays → Python numbers/lists; tuples/sets → lists; paths, dates and
    enums → strings; NaN/inf → None; anything else → ``str(value)``.
    """
    if value.__class__ is dict and _flat_and_plain(value):
        return value.copy()  # the common case (event payloads): no walk, no new values
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer | np.bool_):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return to_plain(value.value)
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})


def _flat_and_plain(mapping: dict) -> bool:
    """Every key a str and every value a str, int, bool, None or finite float (exact
    types, no subclasses): what to_plain would return unchanged."""
    for key, value in mapping.items():
        kind = value.__class__
        if key.__class__ is not str or (
                kind not in _PLAIN_SCALARS and not (kind is float and value - value == 0.0)):
            return False
    return True
