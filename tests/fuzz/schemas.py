"""Valid examples to mutate, from the app's own descriptions.

- Prediction bodies: the OpenAPI document (``web.openapi.openapi_document``, served as
  ``GET /openapi.json``), with real bars for the numbers so a valid example predicts.
- The Train form: ``web.training_form.fields_of`` (every parameter of every type).
- The Backtest form and ``POST /api/backtest``: ``web.backtests.FIELDS``.
- Query parameter and form field names: read from the views' source, so a parameter
  someone adds tomorrow is fuzzed too.
"""

from __future__ import annotations

import inspect
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from tests.fuzz.values import edge_string

ROOT = Path(__file__).resolve().parents[2]
VIEW_SOURCES = (ROOT / "Api_Loader.py", *sorted((ROOT / "web").glob("*.py")))
# Names the views are likely to read even when the source scan misses them.
TYPICAL_QUERY_NAMES = ("limit", "offset", "status", "agent_id", "page", "per_page",
                       "max_points", "smooth", "keys", "episodes", "model", "type", "csv",
                       "end", "start", "model_type", "q", "sort", "format")
# A stream id the fuzzer creates with valid bodies and then asks about.
STREAM_IDS = ("s1", "s2", "fuzz:3")


@cache
def query_names_of(view: Callable[..., Any]) -> tuple[str, ...]:
    """The query names a view reads: names from :func:`names_read` quoted in its source
    or in the source of the module's private helpers it calls (``_int_param(...)``)."""
    try:
        source = inspect.getsource(view)
    except (OSError, TypeError):
        return ()
    module = inspect.getmodule(view)
    for helper in set(re.findall(r"\b(_\w+)\(", source)):
        func = getattr(module, helper, None)
        if inspect.isfunction(func):
            source += inspect.getsource(func)
    known = set(names_read("args"))
    return tuple(sorted(set(re.findall(r'"(\w+)"', source)) & known))


@cache
def names_read(kind: str) -> tuple[str, ...]:
    """Query (``args``) or form (``form``) names read anywhere in the views' source."""
    pattern = {
        "args": r'(?:args\.get|_int_param|_text_param)\(\s*"(\w+)"',
        "form": r'(?:request\.form\.get|form\.get)\(\s*"(\w+)"',
    }[kind]
    found: set[str] = set()
    for path in VIEW_SOURCES:
        found.update(re.findall(pattern, path.read_text()))
    if kind == "args":
        found.update(TYPICAL_QUERY_NAMES)
    return tuple(sorted(found))


# ------------------------------------------------------------------------- bars


class Bars:
    """Real bars (sample.csv) to fill windows and stream bars with plausible numbers."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.columns = list(frame.columns)
        self.rows = [{k: float(v) for k, v in row.items()}
                     for row in frame.to_dict("records")]

    def run(self, n: int, rng: random.Random) -> list[dict[str, float]]:
        """``n`` consecutive bars, ``price`` (a stream's price) as the close."""
        start = rng.randrange(max(1, len(self.rows) - n))
        return [{**row, "price": row["Close"]} for row in self.rows[start:start + n]]


# ---------------------------------------------------------------------- OpenAPI


@dataclass
class OpenApi:
    """One OpenAPI document and the bars to fill its numbers with."""

    doc: dict[str, Any]
    bars: Bars
    features: list[str] = field(default_factory=list)

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.doc["components"]["schemas"][name]
        return schema

    def request_schema(self, path: str, method: str) -> dict[str, Any]:
        body = self.doc["paths"][path][method]["requestBody"]["content"]["application/json"]
        return self.resolve(body["schema"])

    def predict_example(self, rng: random.Random) -> dict[str, Any]:
        """A valid ``POST /predict`` body: one of the request forms the description
        documents (a window, with account or sampling; one bar of a stream)."""
        schema = self.request_schema("/predict", "post")
        props = schema["properties"]
        forms = (("window",), ("window", "account_state"), ("window", "account_state"),
                 ("window", "sample", "seed"), ("features", "stream_id"),
                 ("features", "stream_id", "sample"))
        chosen = [name for name in rng.choice(forms) if name in props]
        body = {name: self.example(props[name], rng, name) for name in chosen}
        if "seed" in body:
            body["sample"] = True
        if isinstance(body.get("account_state"), dict):
            body["account_state"] = self._consistent(body["account_state"], rng)
        return body

    def _consistent(self, account: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """An account the server accepts (the schema cannot say that an open position
        needs units of its sign and an entry price), so a mutation of one field is what
        gets refused, not the example."""
        position = rng.choice((-1, 0, 1))
        close = self.bars.run(1, rng)[0]["Close"]
        fixed = {"position": position, "units": position * rng.choice((1.0, 2.5)),
                 "entry_price": close * rng.uniform(0.98, 1.02) if position else 0.0,
                 "cash": 10_000.0, "entry_cost": 1.0, "price": close}
        return {k: fixed.get(k, v) for k, v in account.items()} | \
            {k: fixed[k] for k in ("position", "units", "entry_price") if position}

    def example(self, schema: dict[str, Any], rng: random.Random, name: str = "") -> Any:
        """A value the schema describes, numbers from real bars where they are bars."""
        schema = self.resolve(schema)
        if "oneOf" in schema:
            return self.example(rng.choice(schema["oneOf"]), rng, name)
        if "enum" in schema:
            return rng.choice(schema["enum"])
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next(k for k in kind if k != "null")
        if kind == "object":
            return self._object(schema, rng, name)
        if kind == "array":
            return self._array(schema, rng)
        if kind == "integer":
            return rng.randrange(int(schema.get("minimum", 0)), 100)
        if kind == "number":
            return self._number(name, rng)
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "string":
            return rng.choice(STREAM_IDS) if "pattern" in schema else f"fuzz-{rng.randrange(9)}"
        return None

    def _object(self, schema: dict[str, Any], rng: random.Random, name: str) -> dict:
        props = schema.get("properties", {})
        required = schema.get("required", [])
        if required and set(required) <= {*self.bars.columns, "price"}:
            bar = self.bars.run(1, rng)[0]
            return {key: bar[key] for key in props if key in bar}  # time columns optional
        keys = [k for k in props if k in required or rng.random() < 0.5]
        return {key: self.example(props[key], rng, key) for key in keys}

    def _array(self, schema: dict[str, Any], rng: random.Random) -> list:
        items = self.resolve(schema.get("items", {}))
        n = int(schema.get("minItems", 1)) + rng.choice((0, 0, 1, 3))
        choices = items.get("oneOf", [items])
        row_schema = self.resolve(rng.choice(choices))  # one form for the whole window
        if row_schema.get("type") == "object" and "required" in row_schema:
            return [{k: bar[k] for k in row_schema["properties"] if k in bar}
                    for bar in self.bars.run(n, rng)]
        if row_schema.get("type") == "array" and self.features:
            return [[bar[f] for f in self.features] for bar in self.bars.run(n, rng)]
        return [self.example(row_schema, rng) for _ in range(n)]

    def _number(self, name: str, rng: random.Random) -> float:
        close = self.bars.run(1, rng)[0]["Close"]
        plausible = {"cash": 10_000.0, "equity": 10_000.0, "units": rng.choice((0.0, 1.0, 2.5)),
                     "entry_price": close, "price": close, "entry_cost": 1.0}
        return plausible.get(name, rng.uniform(-10, 10))


# --------------------------------------------------------------------- the forms


# Text a user (or a script) could type into a form's number box.
FORM_NUMBERS = ("0", "-0", "1", "-1", "0.5", "1e309", "-1e309", "1e-310", "5e-324", "nan",
                "inf", "99999999999999999999999", "100000000", "1e8", "2147483648", "1_000",
                "１２", "0x10", " 3 ", "3.", ".5", "+7", "1e", "")


def form_text(rng: random.Random) -> str:
    return rng.choice(FORM_NUMBERS) if rng.random() < 0.5 else edge_string(rng)


def train_example(type_name: str, csv_names: list[str], rng: random.Random) -> dict[str, str]:
    """A valid Train form for ``type_name``: every field at its default, some changed to
    plausible values, a new model name."""
    from web.training_form import fields_of

    form = {"model_type": type_name, "model_name": f"fz{rng.randrange(10**6)}",
            "csv": rng.choice(csv_names), "mode": rng.choice(("smoke", "full"))}
    for spec in fields_of(type_name):
        if rng.random() < 0.7:
            form[spec.name] = spec.shown(spec.default)
    return form


def mutate_form(form: dict[str, str], names: list[str], rng: random.Random) -> dict[str, str]:
    """``form`` with one to three values replaced by odd text, dropped or added."""
    form = dict(form)
    for _ in range(rng.choice((1, 1, 2, 3))):
        roll = rng.random()
        key = rng.choice(list(form) or names)
        if roll < 0.7:
            form[key] = form_text(rng)
        elif roll < 0.85:
            form.pop(key, None)
        else:
            form[rng.choice(names)] = form_text(rng)
    return form


def backtest_example(model_dirs: list[str], csv_names: list[str], period: tuple[str, str],
                     rng: random.Random, as_json: bool) -> dict[str, Any]:
    """A valid backtest request (``web.backtests.FIELDS``): form text or JSON values."""
    from web.backtests import FIELDS

    values: dict[str, Any] = {"model": rng.choice(model_dirs), "csv": rng.choice(csv_names),
                              "start": "", "end": "", "commission": 0.0005, "slippage": 1,
                              "initial_balance": 10_000, "fill": rng.choice(("close",
                                                                             "next_open"))}
    if rng.random() < 0.5:
        values["start"], values["end"] = period
    values = {k: v for k, v in values.items() if k in FIELDS}
    if as_json:
        return {k: v for k, v in values.items() if v != "" and rng.random() < 0.9}
    return {k: str(v) for k, v in values.items()}
