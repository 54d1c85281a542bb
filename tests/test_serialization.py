"""to_plain: one conversion for every value that leaves the process."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import numpy as np
import yaml

from Utilities.serialization import to_plain


def test_numpy_nonfinite_and_odd_types_become_plain() -> None:
    value = {"a": np.float32(1.5), "b": np.int64(3), "c": np.array([[1, 2], [3, 4]]),
             "d": float("nan"), "e": np.inf, "f": (1, "x"), "g": Path("Models/x"),
             "h": datetime(2024, 1, 2, 3, 4), "i": date(2024, 1, 2), "j": np.bool_(True),
             7: object.__new__(type("Thing", (), {"__str__": lambda self: "thing"}))}
    plain = to_plain(value)
    assert plain == {"a": 1.5, "b": 3, "c": [[1, 2], [3, 4]], "d": None, "e": None,
                     "f": [1, "x"], "g": "Models/x", "h": "2024-01-02T03:04:00",
                     "i": "2024-01-02", "j": True, "7": "thing"}
    assert type(plain["b"]) is int and type(plain["j"]) is bool
    json.dumps(plain, allow_nan=False)  # strict JSON, as PostgreSQL wants
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain
