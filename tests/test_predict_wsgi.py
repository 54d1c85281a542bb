"""``POST /predict``'s WSGI fast path (web/predict_wsgi.py) against the Flask view it
stands in front of. Every request goes to two apps of one configuration serving the same
model: one as served (the fast path in front), one with ``PREDICT_FAST_PATH = False``
(Flask alone). Status, every header and every byte of the body must be equal, and who
answered is checked too: the fast path answers well-formed predictions, and Flask every
refusal (untouched before the body is read, recomputed or handed the outcome after)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask import Flask

from Api_Loader import create_api_app
from NetworkConfigs import load_model
from tests.helpers.apps import drop_all, make_auth_app
from tests.helpers.models import TrainedModel, copy_model
from web import predict
from web.auth_store import AuthStore
from web.errors import every_path, install_error_handlers
from web.predict import MAX_BATCH, prediction_blueprint
from web.predict_wsgi import FastPath
from web.store import close_store, get_store

TOKEN = "t" * 32


class Pair:
    """Two apps made by ``make``: ``fast`` (as served) and ``flask`` (fast path off); the
    paths the fast app's Flask was asked for are in ``to_flask``."""

    def __init__(self, make: Callable[[dict[str, Any]], Flask]) -> None:
        self.fast_app, self.flask_app = make({}), make({"PREDICT_FAST_PATH": False})
        self.fast_path: FastPath = self.fast_app.extensions["predict_fast_path"]
        self.to_flask: list[str] = []
        inner = self.fast_path.flask_app

        def flask(environ: dict[str, Any], start_response: Any) -> Any:
            self.to_flask.append(environ["PATH_INFO"])
            return inner(environ, start_response)

        self.fast_path.flask_app = flask
        self.fast, self.flask = self.fast_app.test_client(), self.flask_app.test_client()

    def with_cookie(self) -> Pair:
        """Both clients send a cookie from now on (as a browser with a session does)."""
        for client in (self.fast, self.flask):
            client.set_cookie("session", "x")
        return self

    def same(self, method: str, path: str = "/predict", **kw: Any) -> Any:
        """Send the request to both apps; their replies must be identical."""
        a, b = getattr(self.fast, method)(path, **kw), getattr(self.flask, method)(path, **kw)
        assert (a.status, a.headers.to_wsgi_list(), a.data) == \
            (b.status, b.headers.to_wsgi_list(), b.data)
        return a

    def answered_fast(self, method: str = "post", path: str = "/predict", **kw: Any) -> Any:
        """:meth:`same`, answered by the fast path alone."""
        before = len(self.to_flask)
        reply = self.same(method, path, **kw)
        assert reply.status_code == 200 and len(self.to_flask) == before, reply.data
        return reply

    def answered_by_flask(self, status: int, method: str = "post", path: str = "/predict",
                          **kw: Any) -> Any:
        """:meth:`same`, with ``status``, written by Flask."""
        before = len(self.to_flask)
        reply = self.same(method, path, **kw)
        assert reply.status_code == status, reply.data
        assert self.to_flask[before:] == [path]
        return reply


@pytest.fixture(scope="module")
def model_dir(tiny_ppo: TrainedModel) -> Path:
    return tiny_ppo.folder


@pytest.fixture(scope="module")
def window(sample_bars: pd.DataFrame, model_dir: Path) -> list[dict]:
    features = load_model(model_dir).spec.features
    return sample_bars[list(features)].iloc[200:211].to_dict("records")


@pytest.fixture(scope="module")
def bars(sample_bars: pd.DataFrame, model_dir: Path) -> list[dict]:
    """14 consecutive bars for a stream: warming up, then predicting."""
    features = load_model(model_dir).spec.features
    return sample_bars[list(features)].iloc[300:314].to_dict("records")


@pytest.fixture()
def pair(model_dir: Path) -> Pair:
    return Pair(lambda extra: create_api_app(model_dir, {
        "TESTING": True, "MAX_CONTENT_LENGTH": 64 * 1024, **extra}))


def raw(text: str | bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {"data": text, "content_type": content_type}


# ------------------------------------------------------------------- answered fast


def test_a_window_in_every_form_is_answered_fast(pair: Pair, window, model_dir) -> None:
    loader = load_model(model_dir)
    rows = [list(row.values()) for row in window]
    state = {"position": 1, "units": 2.0, "cash": 9000.0, "entry_price": window[-1]["Close"]}
    for body, expected in (
            ({"window": window}, loader.predict(window)),
            ({"window": rows}, loader.predict(window)),
            ({"window": window, "account_state": state}, loader.predict(window, state)),
            ({"window": window, "sample": True, "seed": 7},
             loader.predict_with(window, sample=True, rng=np.random.default_rng(7)))):
        reply = pair.answered_fast(json=body)
        assert reply.headers["Content-Type"] == "application/json"
        assert reply.get_json() == expected.to_dict()  # JSON floats round-trip exactly


def test_a_stream_and_a_batch_are_answered_fast(pair: Pair, window, bars) -> None:
    replies = [pair.answered_fast(json={"features": bar, "stream_id": "s1"}).get_json()
               for bar in bars]
    assert replies[0]["status"] == "warming_up" and replies[-1]["status"] == "ready"
    batch = [{"window": window}, {"window": window[::-1][::-1]},
             {"features": bars[0], "stream_id": "s2"}]
    reply = pair.answered_fast(json={"batch": batch, "sample": True, "seed": 3})
    assert len(reply.get_json()["predictions"]) == 3


@pytest.fixture()
def token_file(tmp_path: Path) -> Path:
    """A token file holding TOKEN, private to its owner as the server requires."""
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{TOKEN}\n")
    tokens.chmod(0o600)
    return tokens


def test_a_same_site_page_and_a_bearer_token_are_answered_fast(model_dir: Path, window,
                                                               token_file: Path) -> None:
    pair = Pair(lambda extra: create_api_app(model_dir, {
        "TESTING": True, "AUTH": "required", "TOKEN_FILE": str(token_file), **extra}))
    pair.answered_fast(json={"window": window}, headers={
        "Authorization": f"Bearer {TOKEN}", "Origin": "http://localhost"})


# ------------------------------------------------------------ refused, by Flask


@pytest.mark.parametrize(("kw", "status"), [
    (raw("not json"), 400),
    (raw(""), 400),
    (raw(b"\xff\xfe{"), 400),
    (raw("[" * 40 + "]" * 40), 400),  # deeper than json_io.MAX_DEPTH
    (raw('{"window": []}', "text/plain"), 400),
    (raw("window=1", "application/x-www-form-urlencoded"), 400),
    (raw("[1, 2]"), 400),
    ({"json": {"windw": []}}, 400),
    ({"json": {}}, 400),
    ({"json": {"window": "abc"}}, 422),
    ({"json": {"window": [{"Close": 1.0}]}}, 422),
    ({"json": {"sample": "yes", "window": [{}]}}, 422),
    ({"json": {"batch": [{"window": []}] * (MAX_BATCH + 1)}}, 413),
    ({"json": {"features": {}, "stream_id": "a/b"}}, 422),
    (raw('{"window": [], "seed": 123456789012345678901234}'), 422),  # orjson's fallback
])
def test_a_malformed_request_is_refused_by_flask_in_its_words(pair: Pair, kw, status) -> None:
    error = pair.answered_by_flask(status, **kw).get_json()
    assert error["error"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e400"])
def test_a_non_finite_number_is_refused_by_flask(pair: Pair, window, literal: str) -> None:
    rows = [dict(row) for row in window]
    rows[3]["Close"] = 123456.5
    text = json.dumps({"window": rows}).replace("123456.5", literal)
    assert pair.answered_by_flask(422, **raw(text)).get_json()["field"] == "window[3].Close"


def test_an_invalid_window_and_a_refused_batch_item_are_handed_to_flask(pair: Pair,
                                                                        window) -> None:
    short = pair.answered_by_flask(422, json={"window": window[:5]}).get_json()
    assert short["field"] == "window"
    bad = [dict(row) for row in window]
    bad[4]["High"] = -1.0
    reply = pair.answered_by_flask(422, json={"batch": [{"window": window}, {"window": bad}]})
    body = reply.get_json()
    assert body["errors"][0]["field"] == "batch[1].window[4].High"
    assert body["predictions"][0] is not None and body["predictions"][1] is None


def test_an_oversized_body_is_refused_by_flask_unread(pair: Pair, window) -> None:
    body = json.dumps({"window": window * 400})  # ~200 KB against a 64 KiB limit
    error = pair.answered_by_flask(413, **raw(body)).get_json()
    assert error["error"] == "the request body is larger than the 65,536-byte limit"


def test_other_methods_and_paths_are_flasks(pair: Pair, window) -> None:
    pair.answered_by_flask(405, "get")
    pair.answered_by_flask(404, "post", "/predict/", json={"window": window})
    pair.answered_by_flask(200, "get", "/health")


def test_a_wrong_host_a_cross_site_page_and_a_cookie_go_to_flask(pair: Pair, window) -> None:
    body = {"json": {"window": window}}
    assert "evil.example" in pair.answered_by_flask(
        400, headers={"Host": "evil.example"}, **body).get_json()["error"]
    pair.answered_by_flask(403, headers={"Origin": "http://evil.example"}, **body)
    pair.answered_by_flask(403, headers={"Sec-Fetch-Site": "cross-site"}, **body)
    pair.with_cookie().answered_by_flask(200, **body)


def test_a_missing_or_wrong_token_is_refused_by_flask(model_dir: Path, window,
                                                      token_file: Path) -> None:
    pair = Pair(lambda extra: create_api_app(model_dir, {
        "TESTING": True, "BIND_HOST": "0.0.0.0", "TOKEN_FILE": str(token_file), **extra}))
    for headers in ({}, {"Authorization": "Bearer " + "u" * 32}, {"Authorization": TOKEN}):
        reply = pair.answered_by_flask(401, json={"window": window}, headers=headers)
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_no_model_is_a_503_from_flask(window) -> None:
    pair = Pair(lambda extra: create_api_app(None, {"TESTING": True, **extra}))
    assert "no model is loaded" in pair.answered_by_flask(
        503, json={"window": window}).get_json()["error"]


def test_a_failure_inside_the_prediction_is_flasks_500(pair: Pair, window,
                                                       monkeypatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(predict, "answer", broken)
    for app in (pair.fast_app, pair.flask_app):  # as served: Flask logs it, the client
        monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)  # gets JSON
    error = pair.answered_by_flask(500, json={"window": window}).get_json()
    assert error["error"] == "internal error (RuntimeError); see the server log"


# --------------------------------------------------------- where it is (not) used


@pytest.fixture()
def dashboards(tiny_ppo: TrainedModel, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Dashboards (Main.create_app), each in its own folder and SQLite store, hosting the
    tiny PPO model; ``tokens`` gets one API token per dashboard made."""
    made: list[Flask] = []

    def dashboard(extra: dict[str, Any], tokens: list[str] | None = None,
                  **config: Any) -> Flask:
        folder = tmp_path / f"dashboard{len(made)}"
        models = folder / "Models"
        models.mkdir(parents=True)
        name = copy_model(tiny_ppo.folder, models).name
        url = f"sqlite:///{folder}/runs.db"
        app = make_auth_app(url, models, folder, **config, **extra)
        made.append(app)
        with app.app_context():
            app.extensions["hosting"].host(models, name)
            if tokens is not None:
                tokens.append(AuthStore(get_store().engine).create_token("bot")[1])
        return app

    yield dashboard
    for app in made:
        with app.app_context():
            drop_all(get_store())
        close_store(app)


def test_the_dashboard_answers_its_hosted_model_fast(dashboards, window) -> None:
    pair = Pair(lambda extra: dashboards(extra, AUTH="auto"))
    assert set(pair.fast_path.paths()) == {"/predict"}
    pair.answered_fast(json={"window": window})
    pair.answered_by_flask(422, json={"window": window[:3]})
    pair.with_cookie().answered_by_flask(200, json={"window": window})


def test_the_dashboard_checks_api_tokens_in_its_store(dashboards, window) -> None:
    tokens: list[str] = []
    pair = Pair(lambda extra: dashboards(extra, tokens))  # AUTH=required
    # One token per dashboard, each valid in its own store only: send each its own.
    fast = pair.fast.post("/predict", json={"window": window},
                          headers={"Authorization": f"Bearer {tokens[0]}"})
    flask = pair.flask.post("/predict", json={"window": window},
                            headers={"Authorization": f"Bearer {tokens[1]}"})
    assert fast.status_code == 200 and pair.to_flask == []
    assert (fast.headers.to_wsgi_list(), fast.data) == (flask.headers.to_wsgi_list(), flask.data)
    for headers in ({}, {"Authorization": "Bearer " + "u" * 32}):
        reply = pair.answered_by_flask(401, json={"window": window}, headers=headers)
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_another_before_request_hook_turns_the_fast_path_off(model_dir: Path, window) -> None:
    app = create_api_app(model_dir, {"TESTING": True})
    seen: list[str] = []
    app.before_request(lambda: seen.append("hook") and None)
    reply = app.test_client().post("/predict", json={"window": window})
    assert reply.status_code == 200 and seen == ["hook"]
    assert app.extensions["predict_fast_path"].paths() == {}


def test_an_after_request_function_turns_the_fast_path_off(model_dir: Path, window) -> None:
    app = create_api_app(model_dir, {"TESTING": True})
    app.after_request(lambda response: response)
    assert app.test_client().post("/predict", json={"window": window}).status_code == 200
    assert app.extensions["predict_fast_path"].paths() == {}


def test_the_blueprint_under_a_prefix_is_answered_fast_there(model_dir: Path, window) -> None:
    def mounted(extra: dict[str, Any]) -> Flask:
        app = Flask("elsewhere")
        app.config.update({"MAX_CONTENT_LENGTH": 64 * 1024 * 1024, **extra})
        loader = load_model(model_dir)
        app.register_blueprint(prediction_blueprint(lambda: loader, max_body_bytes=4096),
                               url_prefix="/models/live")
        install_error_handlers(app, every_path)
        return app

    pair = Pair(mounted)
    pair.answered_fast(path="/models/live/predict", json={"window": window})
    big = json.dumps({"window": window * 10})
    assert "4,096-byte limit" in pair.answered_by_flask(
        413, path="/models/live/predict", **raw(big)).get_json()["error"]
    pair.answered_by_flask(404, json={"window": window})
