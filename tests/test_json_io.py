"""The one request-body parser: what Python's json reads but a route must never meet."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from web.json_io import MAX_DEPTH, ApiError, StrictJSONProvider, error_reply, parse_json


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 981, 100_000])
def test_deep_nesting_is_a_400_not_a_crash(depth: int) -> None:
    with pytest.raises(ApiError) as caught:
        parse_json("[" * depth + "]" * depth)
    assert caught.value.status == 400 and "levels deep" in str(caught.value)


def test_nesting_at_the_limit_and_brackets_inside_strings_are_fine() -> None:
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert parse_json(json.dumps({"a": "[[[[" * 100})) == {"a": "[[[[" * 100}


def test_an_integer_beyond_any_float_is_a_422() -> None:
    with pytest.raises(ApiError) as caught:
        parse_json(b'{"commission": 1' + b"0" * 309 + b"}")
    assert caught.value.status == 422 and "too large" in str(caught.value)
    assert parse_json(b'{"seed": 18446744073709551615}') == {"seed": 2**64 - 1}


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constants_name_their_place(token: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_json(f'{{"window": [{{"Close": 1}}, {{"Close": {token}}}]}}')
    assert caught.value.status == 422 and caught.value.field == "window[1].Close"


def test_replies_never_carry_nan_tokens() -> None:
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)
    with app.app_context(), pytest.raises(ValueError):
        app.json.dumps({"x": float("nan")})


def test_an_echoed_lone_surrogate_does_not_make_the_reply_invalid() -> None:
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)
    with app.test_request_context():
        response, status = error_reply(400, "unknown field(s) ['\ud800']", "\ud800",
                                       rows={"\udcff": ["\ud83d"]})
    text = response.get_data().decode("utf-8")
    body = json.loads(text)
    assert status == 400 and body["field"] == "?" and "['?']" in body["error"]
    assert body["rows"] == {"?": ["?"]}
