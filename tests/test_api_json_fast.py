"""orjson on the hot path (issue 13): request bodies read as Python's json reads them,
every refusal the same as before; replies strict (no NaN, no silent null)."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from flask import Flask, jsonify

from web import json_io
from web.json_io import ApiError, json_reply, parse_json


def random_json(rng: random.Random, depth: int = 0) -> object:
    """A random JSON value with the numbers orjson and json could disagree on."""
    kind = rng.choice(["int", "bigint", "float", "tiny", "str", "bool", "null", "list", "dict"]
                      if depth < 5 else ["int", "float", "str"])
    if kind == "int":
        return rng.randint(-10 ** 6, 10 ** 6)
    if kind == "bigint":  # around 64 bits, both signs, up to the 20 digits accepted
        return rng.choice((-1, 1)) * rng.randint(10 ** 17, 10 ** rng.randint(18, 20) - 1)
    if kind == "float":
        return rng.choice((-1, 1)) * rng.random() * 10 ** rng.randint(-30, 30)
    if kind == "tiny":
        return rng.choice((5e-324, 2.2250738585072014e-308, -0.0, 1e308, 0.1, 1 / 3))
    if kind == "str":
        return "".join(rng.choice("ab\"\\/é€😀\n\t ") for _ in range(rng.randint(0, 8)))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"k{i}": random_json(rng, depth + 1) for i in range(rng.randint(0, 4))}


def same(a: object, b: object) -> bool:
    """Equal, with the same types (1 is not 1.0) and the same float bits (-0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a.hex() == b.hex()
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def test_bodies_are_read_exactly_as_pythons_json_reads_them() -> None:
    rng = random.Random(13)
    for _ in range(3000):
        value = {"body": random_json(rng)}
        for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
            for raw in (text, text.encode()):
                assert same(parse_json(raw), json.loads(raw)), text


def outcome(parse, raw: bytes | str) -> object:
    try:
        return ("ok", parse(raw))
    except ApiError as exc:
        return ("refused", exc.status, str(exc), exc.field)


@pytest.mark.parametrize("raw", [
    b'{"window": [[1.0, NaN]]}', b'{"a": {"b": [Infinity]}}', b'{"a": -Infinity}',
    b'{"a": 1e400}', b'{"seed": 123456789012345678901}', b'{"a": -9223372036854775809}',
    b'{"a": 18446744073709551616}', b'{"a": 0.12345678901234567890123}',
    b"[" * 40 + b"]" * 40, b'{"a":' * 33 + b"1" + b"}" * 33, b"[" * 2000 + b"]" * 2000,
    b"\xef\xbb\xbf{}", '{"a": 1}'.encode("utf-16"), b'{"a": "\\ud800"}', b'{"a": "x\\"}',
    b"not json", b"", b"\xff\xfe\xfa{", b'{"a": 1,}', b"[1] [2]", '{"é": "€"}',
    '{"a": "\ud800"}', b'{"a": "[[[[' + b"[" * 40 + b'"}',
])
def test_every_refusal_and_oddity_is_answered_as_before(raw) -> None:
    """What orjson refuses or could read differently is read by the json path, which
    was the only path before: the same value, or the same status, message and field."""
    assert outcome(parse_json, raw) == outcome(json_io._parse_strict, raw)


def test_a_deep_body_is_refused_by_depth_as_before() -> None:
    found = outcome(parse_json, b"[" * 40 + b"]" * 40)
    assert found == ("refused", 400, "the body nests 33 levels deep; at most 32 are accepted",
                     None)


# ------------------------------------------------------------------------- replies


@pytest.fixture()
def app() -> Flask:
    app = Flask(__name__)
    app.json = json_io.StrictJSONProvider(app)
    return app


def test_a_reply_is_what_jsonify_wrote(app) -> None:
    value = {"b": [1, 2.5, -0.0, None, "é"], "a": {"z": 1e-300, "y": True}, "c": 1 / 3}
    with app.app_context():
        fast, slow = json_reply(value), jsonify(value)
        numpy = json_reply({"n": np.float32(0.25), "m": np.int64(7)})
    assert fast.mimetype == "application/json" and fast.status_code == 200
    assert same(json.loads(fast.get_data()), json.loads(slow.get_data()))
    assert list(json.loads(fast.get_data())) == ["a", "b", "c"]  # keys sorted, as jsonify
    assert json.loads(numpy.get_data()) == {"m": 7, "n": 0.25}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float64("nan"),
                                 np.array([1.0, np.inf])])
def test_a_reply_never_carries_a_non_finite_number(app, bad) -> None:
    with app.app_context(), pytest.raises(ValueError, match="not JSON compliant"):
        json_reply({"deep": [{"x": 1.0}, {"value": bad}]})


def test_a_value_orjson_cannot_write_goes_through_jsonify(app) -> None:
    with app.app_context():
        reply = json_reply({1: "integer key"}, 201)
    assert reply.status_code == 201 and json.loads(reply.get_data()) == {"1": "integer key"}
