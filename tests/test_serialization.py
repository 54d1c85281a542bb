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


class Key(str):
    """A str subclass: not plain, to_plain makes it a str."""


def test_flat_dicts_take_the_shortcut_only_when_already_plain() -> None:
    # Flat dicts of plain values (event payloads) come back as equal copies; anything
    # else still goes through the full conversion.
    plain = {"episode": 3, "reward": -1.5, "steps": 200, "win": True, "note": None, "k": "x"}
    copy = to_plain(plain)
    assert copy == plain and copy is not plain
    assert [type(v) for v in copy.values()] == [type(v) for v in plain.values()]
    odd = {"a": float("nan"), "b": float("-inf"), "c": np.float64(2.0), "d": np.int64(4),
           Key("e"): 1, 5: True, "f": np.bool_(False)}
    converted = to_plain(odd)
    assert converted == {"a": None, "b": None, "c": 2.0, "d": 4, "e": 1, "5": True, "f": False}
    assert [type(v) for v in converted.values()] == [type(None), type(None), float, int, int,
                                                     bool, bool]
    assert all(type(k) is str for k in converted)
    assert to_plain({"nested": {"x": float("inf")}}) == {"nested": {"x": None}}
