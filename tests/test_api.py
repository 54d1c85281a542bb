"""The prediction API: every bad request is a named JSON error, never a 500; happy paths;
/info, /health, /openapi.json; the blueprint mounted elsewhere; the CLI."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
from flask import Flask

import Api_Loader
from Api_Loader import create_api_app
from NetworkConfigs import load_model
from tests.helpers.apps import error_of
from tests.helpers.models import TrainedModel
from web import predict
from web.errors import every_path, install_error_handlers
from web.predict import prediction_blueprint


@pytest.fixture(scope="module")
def model_dir(tiny_ppo: TrainedModel) -> Path:
    return tiny_ppo.folder


@pytest.fixture(scope="module")
def api(model_dir: Path) -> Flask:
    return create_api_app(model_dir, {"TESTING": True, "MAX_CONTENT_LENGTH": 64 * 1024})


@pytest.fixture()
def client(api: Flask):
    return api.test_client()


@pytest.fixture(scope="module")
def window(sample_bars: pd.DataFrame, model_dir: Path) -> list[dict]:
    """A full window (11 bars) as a client sends it."""
    features = load_model(model_dir).spec.features
    return sample_bars[list(features)].iloc[200:211].to_dict("records")


def post(client, body: object) -> object:
    return client.post("/predict", json=body)


def post_raw(client, data: bytes | str, content_type: str = "application/json") -> object:
    return client.post("/predict", data=data, content_type=content_type)


def with_row(window: list[dict], i: int, **change) -> list[dict]:
    rows = [dict(row) for row in window]
    rows[i].update(change)
    return rows


def without(window: list[dict], key: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k != key} for row in window]


def json_with_literal(body: dict, literal: str) -> str:
    """``body`` as JSON text with its one 123456.5 replaced by ``literal`` (NaN, 1e400...)
    that json.dumps would never write."""
    text = json.dumps(body)
    assert text.count("123456.5") == 1
    return text.replace("123456.5", literal)


# ------------------------------------------------------------------ malformed: 400


@pytest.mark.parametrize(("data", "content_type", "message"), [
    ("not json", "application/json", "the body is not valid JSON"),
    ("", "application/json", "the body is not valid JSON"),
    (b"\xff\xfe\xfa{", "application/json", "the body is not valid JSON"),
    ("[" * 20_000 + "]" * 20_000, "application/json", "levels deep"),
    ('{"window": []}', "text/plain", "Content-Type: application/json"),
    ("window=1", "application/x-www-form-urlencoded", "Content-Type: application/json"),
    ("[1, 2]", "application/json", "the body must be a JSON object; got a JSON list"),
    ('"text"', "application/json", "must be a JSON object; got a JSON str"),
])
def test_a_body_that_is_not_a_json_object_is_400(client, data, content_type, message) -> None:
    assert message in error_of(post_raw(client, data, content_type), 400)["error"]


@pytest.mark.parametrize(("body", "message", "field"), [
    ({"windw": []}, r"unknown field\(s\) \['windw'\]", "windw"),
    ({}, 'send either "window"', None),
    ({"window": [], "features": {}}, 'send either "window"', None),
    ({"features": {"Close": 1.0}}, '"features" is one bar of a stream: add "stream_id"',
     "stream_id"),
    ({"window": [{}], "stream_id": "s"}, '"stream_id" goes with "features"', "stream_id"),
    ({"features": {}, "stream_id": "s", "account_state": {}}, "keeps its own simulated account",
     "account_state"),
])
def test_a_wrong_top_level_shape_is_400(client, body, message: str, field) -> None:
    error = error_of(post(client, body), 400)
    assert re.search(message, error["error"]) and error.get("field") == field


def test_an_oversized_body_is_413(client, window) -> None:
    body = json.dumps({"window": window * 400})  # ~560 KB against a 64 KiB limit
    error = error_of(post_raw(client, body), 413)
    assert error["error"] == "the request body is larger than the 65,536-byte limit"


# ------------------------------------------------------------------- invalid: 422


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_422_naming_the_field(client, window, constant: str) -> None:
    text = json_with_literal({"window": with_row(window, 3, Close=123456.5)}, constant)
    error = error_of(post_raw(client, text), 422)
    assert error["field"] == "window[3].Close"
    assert error["error"].startswith(f"window[3].Close is {constant}: JSON has no NaN")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_a_nan_a_repeated_key_replaced_is_still_422(client, window, encoding: str) -> None:
    """Python's parser keeps the last of a repeated key, so the NaN is in no path of the
    parsed body; it was a 500 (a fuzz case: a UTF-16 body read by json, not orjson)."""
    text = '{"window": NaN, "window": ' + json.dumps(window) + "}"
    error = error_of(post_raw(client, text.encode(encoding)), 422)
    assert error["error"].startswith("the body holds NaN: JSON has no NaN")


def test_nan_in_a_stream_bar_is_named(client, window) -> None:
    text = json_with_literal({"features": {**window[0], "RSI_14": 123456.5}, "stream_id": "s"},
                             "NaN")
    assert error_of(post_raw(client, text), 422)["field"] == "features.RSI_14"


def test_a_number_beyond_the_float_range_is_422(client, window) -> None:
    text = json_with_literal({"window": with_row(window, 2, ATR_14=123456.5)}, "1e400")
    error = error_of(post_raw(client, text), 422)
    assert "column 'ATR_14': missing or infinite values at row 3" in error["error"]
    assert error["field"] == "window[2].ATR_14" and error["column"] == "ATR_14"


@pytest.mark.parametrize(("make", "message", "field"), [
    (lambda w: without(w, "RSI_14"), r"missing feature\(s\) \['RSI_14'\]", "window.RSI_14"),
    (lambda w: [{**r, "Spam": 1.0} for r in w], r"unexpected feature\(s\) \['Spam'\]",
     "window.Spam"),
    (lambda w: with_row(w, 4, Close="high"), r"column 'Close': non-numeric values at row 5",
     "window[4].Close"),
    (lambda w: with_row(w, 0, Volume=True), "column 'Volume': non-numeric values at row 1",
     "window[0].Volume"),
    (lambda w: with_row(w, 1, Open=None), "column 'Open': missing or infinite values at row 2",
     "window[1].Open"),
    (lambda w: with_row(w, 1, Open=[1, 2]), "column 'Open': non-numeric values at row 2",
     "window[1].Open"),
    (lambda w: w[:5], r"has 5 rows; at least 11 are needed \(lookback 10 \+ 1 warm-up", "window"),
    (lambda w: [list(r.values())[:3] for r in w], "a 2-D array with 9 columns", "window"),
    (lambda w: [*w[:-1], 7], "must be a list of rows of numbers", "window"),
    (lambda w: with_row(w, 10, EMA_12=0.0), "column 'EMA_12': the returns transform gives "
                                            "non-finite values at row 11", "window[10].EMA_12"),
])
def test_an_invalid_window_is_422_naming_the_problem(client, window, make, message,
                                                     field: str) -> None:
    error = error_of(post(client, {"window": make(window)}), 422)
    assert re.search(message, error["error"]), error
    assert error["field"] == field
    assert error.get("column") == (field.rsplit(".", 1)[1] if "." in field else None)


@pytest.mark.parametrize("value", ["abc", {"Close": 1.0}, [], 3, None])
def test_a_window_that_is_not_a_list_of_bars_is_422(client, value) -> None:
    error = error_of(post(client, {"window": value}), 422)
    assert error["field"] == "window" and "window must be a non-empty list of bars" in \
        error["error"]


@pytest.mark.parametrize(("state", "message", "column"), [
    ({"cash": 1.0, "margin": 2.0}, r"unknown field\(s\) \['margin'\]", "margin"),
    ({"position": 1}, "an open position needs units of its sign", "units"),
    ({"position": 2, "units": 1.0}, "position must be -1", "position"),
    ({"cash": "lots"}, "cash must be a number", "cash"),
    ([1, 2], "must be an object", None),
])
def test_a_bad_account_state_is_422(client, window, state, message, column) -> None:
    error = error_of(post(client, {"window": window, "account_state": state}), 422)
    assert re.search(message, error["error"])
    assert error["field"] == (f"account_state.{column}" if column else "account_state")
    assert error.get("column") == column


@pytest.mark.parametrize(("extra", "field", "message"), [
    ({"sample": "yes"}, "sample", "sample must be true or false; got 'yes'"),
    ({"sample": None}, "sample", "sample must be true or false; got None"),
    ({"seed": 3}, "seed", 'seed only applies with "sample": true'),
    ({"sample": True, "seed": -1}, "seed", "seed must be an integer >= 0; got -1"),
    ({"sample": True, "seed": True}, "seed", "seed must be an integer >= 0; got True"),
    ({"sample": True, "seed": 1.5}, "seed", "seed must be an integer >= 0; got 1.5"),
])
def test_bad_sampling_options_are_422(client, window, extra, field, message) -> None:
    error = error_of(post(client, {"window": window, **extra}), 422)
    assert error["field"] == field and error["error"] == message


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"features": [1, 2], "stream_id": "s"}, "features", "one bar must be an object"),
    ({"features": {"Close": 1.0}, "stream_id": "s"}, "features", r"missing feature\(s\)"),
    ({"features": {}, "stream_id": 12}, "stream_id", "must be 1-128 letters"),
    ({"features": {}, "stream_id": "a/b"}, "stream_id", "must be 1-128 letters"),
])
def test_a_bad_stream_request_is_422(client, body, field, message) -> None:
    error = error_of(post(client, body), 422)
    assert error["field"].startswith(field) and re.search(message, error["error"])


def test_a_bar_with_an_extra_key_is_422(client, window) -> None:
    error = error_of(post(client, {"features": {**window[0], "Spam": 1}, "stream_id": "x"}),
                     422)
    assert "unexpected feature(s) ['Spam']" in error["error"] and error["column"] == "Spam"


# --------------------------------------------------------------- unknown: 404/405


@pytest.mark.parametrize("method", ["get", "delete"])
def test_an_unknown_stream_is_404(client, method: str) -> None:
    error = error_of(getattr(client, method)("/streams/never-made"), 404)
    assert "no stream 'never-made'" in error["error"] and error["field"] == "stream_id"


def test_unknown_paths_and_methods_are_json(client) -> None:
    assert error_of(client.get("/nope"), 404)["error"] == "no such endpoint: /nope"
    assert error_of(client.get("/predict"), 405)["error"] == \
        "method GET is not allowed on /predict"


def test_an_unexpected_failure_is_a_json_500(api, client, window, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(predict, "answer", broken)
    # As served (TESTING re-raises instead): Flask logs the traceback, the client gets JSON.
    monkeypatch.setitem(api.config, "PROPAGATE_EXCEPTIONS", False)
    error = error_of(post(client, {"window": window}), 500)
    assert error["error"] == "internal error (RuntimeError); see the server log"


# --------------------------------------------------------------------- happy paths


def test_a_window_is_answered_as_the_loader_does(client, window, model_dir) -> None:
    response = post(client, {"window": window})
    assert response.status_code == 200
    expected = load_model(model_dir).predict(window).to_dict()
    assert response.get_json() == expected  # JSON floats round-trip exactly
    assert set(expected) == {"prediction", "action_name", "confidence", "probabilities",
                             "value_estimate"}


def test_rows_of_numbers_are_a_window_too(client, window) -> None:
    rows = [list(row.values()) for row in window]
    assert post(client, {"window": rows}).get_json() == post(client, {"window": window}).get_json()


def test_account_state_reaches_the_model(client, window, model_dir) -> None:
    close = window[-1]["Close"]
    state = {"position": -1, "units": -30.0, "cash": 16000.0, "entry_price": close * 1.1}
    reply = post(client, {"window": window, "account_state": state}).get_json()
    expected = load_model(model_dir).predict(window, state).to_dict()
    assert reply == expected
    assert reply["probabilities"] != post(client, {"window": window}).get_json()["probabilities"]


def test_sampling_with_a_seed_is_reproducible(client, window) -> None:
    def draws(seed: int) -> list[int]:
        return [post(client, {"window": window, "sample": True, "seed": seed + i})
                .get_json()["prediction"] for i in range(12)]

    assert draws(0) == draws(0)
    assert len(set(draws(0))) > 1


def test_a_stream_warms_up_then_predicts(client, window) -> None:
    replies = [post(client, {"features": bar, "stream_id": "happy"}).get_json()
               for bar in window]
    assert replies[0]["status"] == "warming_up"
    assert replies[0]["message"] == "warming up: 1 of 11 bars"
    assert replies[-1]["status"] == "ready" and replies[-1]["action_name"] in (
        "Hold", "Buy", "Sell")
    assert replies[-1]["account"]["equity"] > 0
    state = client.get("/streams/happy").get_json()
    assert state["bars_seen"] == 11 and state["account"] == replies[-1]["account"]
    deleted = client.delete("/streams/happy")
    assert deleted.status_code == 200 and deleted.get_json() == {"stream_id": "happy",
                                                                 "deleted": True}
    assert client.get("/streams/happy").status_code == 404


def test_info_and_health(client, model_dir) -> None:
    info = client.get("/info").get_json()
    assert info["name"] == "tiny" and info["type"] == "ppo" and info["lookback"] == 10
    assert info["window_size"] == 11 and info["action_names"] == ["Hold", "Buy", "Sell"]
    assert info["features"] == list(load_model(model_dir).spec.features)
    assert info["stream_bar_keys"] == info["features"] and info["can_sample"] is True
    assert client.get("/health").get_json() == {"status": "ok", "model": "tiny", "type": "ppo"}


# ------------------------------------------------------------------------- OpenAPI


def documented_routes(app: Flask, blueprint: str = "predict") -> set[tuple[str, str]]:
    """(path in OpenAPI form, method) of every route the blueprint registered."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(f"{blueprint}."):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            routes |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def refs_in(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in refs_in(v)]
    return [r for v in node for r in refs_in(v)] if isinstance(node, list) else []


def test_openapi_describes_every_route(api, client) -> None:
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and doc["info"]["title"] and doc["info"]["version"]
    routes = documented_routes(api)
    assert len(routes) == 6
    described = {(path, method) for path, item in doc["paths"].items() for method in item
                 if method != "parameters"}
    assert described == routes
    for path, method in routes:
        assert doc["paths"][path][method]["responses"], (path, method)
    schemas = doc["components"]["schemas"]
    for ref in refs_in(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    window = schemas["PredictRequest"]["properties"]["window"]
    assert window["minItems"] == 11
    # Clients learn how to authenticate where a token is required (beyond loopback).
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert {"bearerAuth": []} in doc["security"]
    assert window["items"]["oneOf"][0]["required"][:4] == ["Open", "High", "Low", "Close"]


# --------------------------------------------------------- mounted in another app


def test_the_blueprint_mounts_under_a_prefix_with_a_changing_model(model_dir, window) -> None:
    hosted = {"loader": None}
    app = Flask("dashboard")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024  # uploads elsewhere need more
    app.register_blueprint(prediction_blueprint(lambda: hosted["loader"], max_body_bytes=4096),
                           url_prefix="/models/live")
    install_error_handlers(app, every_path)
    client = app.test_client()
    for path in ("/models/live/info", "/models/live/streams/s"):
        assert "no model is loaded" in error_of(client.get(path), 503)["error"]
    assert error_of(client.get("/models/live/health"), 503)["status"] == "unavailable"
    assert error_of(post(client, {}), 404)  # nothing at the root
    hosted["loader"] = load_model(model_dir)
    response = client.post("/models/live/predict", json={"window": window})
    assert response.status_code == 200 and response.get_json()["action_name"]
    big = client.post("/models/live/predict", json={"window": window * 10})
    assert "4,096-byte limit" in error_of(big, 413)["error"]
    doc = client.get("/models/live/openapi.json").get_json()
    assert doc["servers"] == [{"url": "/models/live"}]
    assert {p for p, _ in documented_routes(app)} == {f"/models/live{p}" for p in doc["paths"]}


def test_an_app_without_a_model_is_503(window) -> None:
    client = create_api_app(None, {"TESTING": True}).test_client()
    assert "no model is loaded" in error_of(post(client, {"window": window}), 503)["error"]
    assert client.get("/openapi.json").status_code == 200


# ------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp: tmp / "PPO_nothing", "error: model folder not found: "),
    (lambda tmp: tmp, "expected one *_config.yaml, found no"),
])
def test_main_refuses_a_bad_model_dir_in_one_line(tmp_path: Path, capsys, make,
                                                  message: str) -> None:
    assert Api_Loader.main(["--model-dir", str(make(tmp_path)), "--port", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith("error: ") and message in captured.err


def test_main_refuses_a_broken_model_in_one_line(model_dir: Path, tmp_path: Path,
                                                 capsys) -> None:
    broken = Path(shutil.copytree(model_dir, tmp_path / model_dir.name))
    (broken / "tiny_model.pt").write_bytes(b"junk")
    assert Api_Loader.main(["--model-dir", str(broken)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "tiny_model.pt: not a readable weights file" in err


def test_main_without_a_model_dir_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        Api_Loader.main([])
    assert stopped.value.code == 2
    assert "the following arguments are required: --model-dir" in capsys.readouterr().err


def test_main_refuses_a_port_in_use_in_one_line(model_dir: Path, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert Api_Loader.main(["--model-dir", str(model_dir), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and f"cannot listen on 127.0.0.1:{port}" in err
