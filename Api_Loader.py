"""Model serving: ``load_model``, the prediction blueprint and ``python Api_Loader.py``.

``load_model(model_dir)`` loads any saved model through the registry (no branching on
type names). :func:`prediction_blueprint` serves whichever model a callable returns, so
the dashboard can mount it for a model it hosts; :func:`create_api_app` is the one-model
app that ``python Api_Loader.py --model-dir Models/PPO_x`` serves with waitress.
Nothing is loaded at import.

Routes (the blueprint's; ``/openapi.json`` describes them):

- ``POST /predict``: ``{"window": [...]}`` (a full window of bars; optional
  ``account_state``) or ``{"features": {...}, "stream_id": "..."}`` (one bar of a named
  stream, created on first use; see ``NetworkConfigs/streams.py``). Optional
  ``"sample": true`` (+ ``"seed"``) draws the action instead of taking the most likely.
- ``GET /info``, ``GET /health``, ``GET|DELETE /streams/<stream_id>``, ``GET /openapi.json``.

Status codes: 400 malformed request (not JSON, not an object, unknown or conflicting
top-level fields), 413 body too large, 422 well-formed but invalid values (missing or
extra features, wrong types, NaN/Infinity, prices the data contract refuses, bar times
out of order, a short window, a bad or out-of-range account_state, an output that is
not finite), 404 unknown stream, 503 no model loaded. The body is checked before the
model is asked for. Every error is JSON: ``{"error": ..., "field": ...}``, the field
naming the place (``window[3].High``, ``features.Close``, ``account_state.cash``).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, Flask, Response, jsonify, request, url_for
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from NetworkConfigs import load_model as _registry_load
from NetworkConfigs.base import ACCOUNT_FIELDS, ACTION_NAMES, ModelLoader
from NetworkConfigs.streams import PRICE, StreamNotFound, StreamRegistry
from Utilities.data_utils import DataError
from Utilities.logging_setup import configure_logging, one_line
from web import auth, csrf
from web.json_io import ApiError, Reply, StrictJSONProvider, error_reply, read_json_body

log = logging.getLogger(__name__)

# 1 MiB: a 1,000-bar window of ten features is about 200 KB of JSON.
MAX_BODY_BYTES = 1 << 20
MAX_STREAMS = 1000
API_VERSION = "1.0"
BODY_FIELDS = ("window", "features", "stream_id", "account_state", "sample", "seed")



def load_model(model_dir: str | Path) -> ModelLoader:
    """Load the model saved in ``model_dir`` with its registered type's loader."""
    return _registry_load(model_dir)


def _check_shape(body: dict[str, Any]) -> None:
    """The top level: known fields, and one of the two request forms (else 400)."""
    unknown = [k for k in body if k not in BODY_FIELDS]
    if unknown:
        raise ApiError(400, f"unknown field(s) {unknown}; valid: {list(BODY_FIELDS)}",
                       unknown[0])
    if ("window" in body) == ("features" in body):
        raise ApiError(400, 'send either "window" (a full window of bars) or "features" and '
                            '"stream_id" (one bar of a named stream)')
    if "features" in body and "stream_id" not in body:
        raise ApiError(400, '"features" is one bar of a stream: add "stream_id"', "stream_id")
    if "window" in body and "stream_id" in body:
        raise ApiError(400, '"stream_id" goes with "features" (one bar); a "window" is '
                            "answered on its own", "stream_id")
    if "features" in body and "account_state" in body:
        raise ApiError(400, 'a stream keeps its own simulated account: "account_state" goes '
                            'with "window" only', "account_state")


def _sampling(body: dict[str, Any]) -> tuple[bool, np.random.Generator | None]:
    """(sample, rng) from the optional ``sample`` and ``seed`` fields (else 422)."""
    sample, seed = body.get("sample", False), body.get("seed")
    if not isinstance(sample, bool):
        raise ApiError(422, f"sample must be true or false; got {sample!r}", "sample")
    if seed is None:
        return sample, None
    if not sample:
        raise ApiError(422, 'seed only applies with "sample": true', "seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ApiError(422, f"seed must be an integer >= 0; got {seed!r}", "seed")
    return True, np.random.default_rng(seed)


def check_request(body: dict[str, Any]) -> None:
    """What can be checked of a ``POST /predict`` body without its model: the shape,
    sampling and the window being a list. Routes call it before a model is loaded, so
    an invalid body never costs (or triggers) a model load."""
    _check_shape(body)
    _sampling(body)
    window = body.get("window")
    if "window" in body and (not isinstance(window, list) or not window):
        raise ApiError(422, "window must be a non-empty list of bars: objects of feature -> "
                            "number, or rows of numbers in the order of /info's features",
                       "window")


def answer(body: dict[str, Any], loader: ModelLoader, streams: StreamRegistry) -> dict[str, Any]:
    """The reply to one ``POST /predict`` body."""
    check_request(body)
    sample, rng = _sampling(body)
    if "features" in body:
        return streams.push(body["stream_id"], body["features"], sample=sample, rng=rng)
    return loader.predict_with(body["window"], body.get("account_state"), sample=sample,
                               rng=rng).to_dict()


# ------------------------------------------------------------------------ errors


def _api_error(exc: ApiError) -> Reply:
    return error_reply(exc.status, str(exc), exc.field)


def _data_error(exc: DataError) -> Reply:
    return error_reply(422, str(exc), _field_of(exc), column=exc.column,
                       rows=[str(r) for r in exc.rows[:5]])


def _field_of(exc: DataError) -> str | None:
    """Where in the body the problem is: ``window[3].High`` (rows count from 1 in
    messages, from 0 in JSON), ``features.High``, ``account_state.cash``; else the
    top-level field."""
    if exc.source == "window" and exc.column and exc.rows and isinstance(exc.rows[0], int):
        return f"window[{exc.rows[0] - 1}].{exc.column}"
    if exc.source in ("window", "features", "account_state") and exc.column:
        return f"{exc.source}.{exc.column}"
    return exc.source


def _stream_not_found(exc: StreamNotFound) -> Reply:
    return error_reply(404, str(exc), "stream_id")


def json_http_error(exc: HTTPException) -> Reply:
    """An HTTP error (404, 405, 413, …) as the API's JSON body."""
    return _http_error(exc)


def _http_error(exc: HTTPException) -> Reply:
    if isinstance(exc, InternalServerError) and exc.original_exception is not None:
        # An app's uncaught exception, already logged by Flask with its traceback.
        return error_reply(500, f"internal error ({type(exc.original_exception).__name__}); "
                                "see the server log")
    if isinstance(exc, RequestEntityTooLarge):
        limit = request.max_content_length
        return error_reply(413, f"the request body is larger than the {limit:,}-byte limit"
                           if limit else "the request body is too large")
    message = {404: f"no such endpoint: {request.path}",
               405: f"method {request.method} is not allowed on {request.path}"}
    return error_reply(exc.code or 500, message.get(exc.code, exc.description or exc.name))


def _internal_error(exc: Exception) -> Reply:
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error_reply(500, f"internal error ({type(exc).__name__}); see the server log")


def register_json_errors(target: Flask | Blueprint) -> None:
    """Every error from ``target``'s views (an app: from any route) is a JSON body."""
    for exc_type, handler in ((ApiError, _api_error), (DataError, _data_error),
                              (StreamNotFound, _stream_not_found),
                              (HTTPException, _http_error), (Exception, _internal_error)):
        target.register_error_handler(exc_type, handler)


# --------------------------------------------------------------------- blueprint


class _Hosted:
    """The model a blueprint serves, and the streams that belong to that model."""

    def __init__(self, get_loader: Callable[[], ModelLoader | None], max_streams: int) -> None:
        self.get_loader, self.max_streams = get_loader, max_streams
        self._streams: StreamRegistry | None = None
        self._lock = threading.Lock()

    def loader(self) -> ModelLoader:
        loader = self.get_loader()
        if loader is None:
            raise ApiError(503, "no model is loaded: start the server with --model-dir, or "
                                "choose a model to host")
        return loader

    def streams(self, loader: ModelLoader) -> StreamRegistry:
        """The loader's streams; a newly hosted model starts with none."""
        with self._lock:
            if self._streams is None or self._streams.loader is not loader:
                self._streams = StreamRegistry(loader, self.max_streams)
            return self._streams


def prediction_blueprint(get_loader: Callable[[], ModelLoader | None], *,
                         name: str = "predict", max_streams: int = MAX_STREAMS,
                         max_body_bytes: int | None = None) -> Blueprint:
    """The prediction routes for whatever model ``get_loader()`` returns (None: 503).

    ``max_body_bytes`` caps ``POST /predict`` bodies below the app's
    ``MAX_CONTENT_LENGTH`` (an app that also takes uploads allows far more).
    """
    bp = Blueprint(name, __name__)
    hosted = _Hosted(get_loader, max_streams)

    @bp.post("/predict")
    def predict() -> Response:
        body = read_json_body(max_body_bytes)
        check_request(body)
        loader = hosted.loader()
        return jsonify(answer(body, loader, hosted.streams(loader)))

    @bp.get("/info")
    def info() -> Response:
        return jsonify(model_info(hosted.loader(), max_streams))

    @bp.get("/health")
    def health() -> Response | Reply:
        loader = hosted.get_loader()
        if loader is None:
            return error_reply(503, "no model is loaded", status="unavailable")
        return jsonify({"status": "ok", "model": loader.name, "type": loader.config["Type"]})

    @bp.get("/streams/<stream_id>")
    def get_stream(stream_id: str) -> Response:
        loader = hosted.loader()
        return jsonify(hosted.streams(loader).get(stream_id))

    @bp.delete("/streams/<stream_id>")
    def delete_stream(stream_id: str) -> Response:
        loader = hosted.loader()
        hosted.streams(loader).delete(stream_id)
        return jsonify({"stream_id": stream_id, "deleted": True})

    @bp.get("/openapi.json")
    def openapi() -> Response:
        base = url_for(".health")[: -len("/health")]
        return jsonify(openapi_document(hosted.get_loader(), base))

    register_json_errors(bp)
    return bp


def model_info(loader: ModelLoader, max_streams: int = MAX_STREAMS) -> dict[str, Any]:
    """``GET /info``: what a client needs to build requests for this model."""
    info = loader.info()
    extra = [] if PRICE in info["features"] else [PRICE]
    return {**info, "stream_bar_keys": [*info["features"], *extra],
            "account_state_fields": [*ACCOUNT_FIELDS, "price"],
            "can_sample": loader.can_sample, "max_streams": max_streams}


# ----------------------------------------------------------------------- OpenAPI


def _json_content(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def _reply(description: str, schema: str = "Error") -> dict[str, Any]:
    return {"description": description, "content": _json_content(schema)}


_STREAM_PARAMETER = {"name": "stream_id", "in": "path", "required": True,
                     "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"}}
_NO_MODEL = _reply("no model is loaded")


def _openapi_paths() -> dict[str, Any]:
    predict = {
        "summary": "Predict from a full window, or from one bar of a named stream",
        "requestBody": {"required": True, "content": _json_content("PredictRequest")},
        "responses": {
            "200": {"description": "the prediction (a stream's also carries its account)",
                    "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/Prediction"},
                        {"$ref": "#/components/schemas/StreamReply"}]}}}},
            "400": _reply("not JSON, not an object, or unknown/conflicting fields"),
            "413": _reply("the body is larger than the limit"),
            "422": _reply("invalid values: features, types, NaN/Infinity, prices, bar "
                          "times, a short window, account_state, sample or seed, or an "
                          "output that is not finite"),
            "503": _NO_MODEL}}
    stream = {"parameters": [_STREAM_PARAMETER],
              "responses": {"404": _reply("no such stream"), "503": _NO_MODEL}}
    return {
        "/predict": {"post": predict},
        "/info": {"get": {"summary": "The hosted model and what requests need",
                          "responses": {"200": _reply("model information", "Info"),
                                        "503": _NO_MODEL}}},
        "/health": {"get": {"summary": "Whether a model is loaded",
                            "responses": {"200": _reply("ready", "Health"),
                                          "503": _NO_MODEL}}},
        "/streams/{stream_id}": {
            "get": {"summary": "A stream's status and account", **stream,
                    "responses": {"200": _reply("the stream", "StreamReply"),
                                  **stream["responses"]}},
            "delete": {"summary": "Forget a stream", **stream,
                       "responses": {"200": _reply("deleted", "Deleted"),
                                     **stream["responses"]}}},
        "/openapi.json": {"get": {"summary": "This description",
                                  "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    }


def _number() -> dict[str, Any]:
    return {"type": "number"}


# A bar copied from a CSV may keep its time (not a feature; checked to increase).
_TIME_KEYS = {key: {"type": ["string", "integer"]} for key in ("Date", "Time", "Datetime",
                                                                 "timestamp")}


def _bar_schema(loader: ModelLoader | None) -> dict[str, Any]:
    """One bar: the hosted model's features by name (any names when none is loaded)."""
    if loader is None:
        return {"type": "object", "additionalProperties": _number()}
    features = list(loader.spec.features)
    return {"type": "object", "required": features, "additionalProperties": False,
            "properties": {**_TIME_KEYS, **{name: _number() for name in features}}}


def _openapi_schemas(loader: ModelLoader | None) -> dict[str, Any]:
    window_rows = loader.window_size if loader is not None else 1
    probabilities = {"type": "object", "properties": {a: _number() for a in ACTION_NAMES}}
    account = {"type": "object", "properties": {
        **{k: _number() for k in ("units", "cash", "equity", "entry_price", "entry_cost")},
        "position": {"enum": [-1, 0, 1]}, "trades": {"type": "integer"},
        "wins": {"type": "integer"}, "price": {"type": ["number", "null"]}}}
    stream_bar = _bar_schema(loader)
    if loader is not None and PRICE not in loader.spec.features:
        stream_bar = {**stream_bar, "required": [*stream_bar["required"], PRICE],
                      "properties": {**stream_bar["properties"], PRICE: _number()}}
    return {
        "PredictRequest": {"type": "object", "additionalProperties": False, "properties": {
            "window": {"type": "array", "minItems": window_rows, "items": {"oneOf": [
                _bar_schema(loader), {"type": "array", "items": _number()}]}},
            "features": stream_bar, "stream_id": _STREAM_PARAMETER["schema"],
            "account_state": {"type": "object", "additionalProperties": False,
                              "properties": {k: _number() for k in (*ACCOUNT_FIELDS, "price")}},
            "sample": {"type": "boolean"}, "seed": {"type": "integer", "minimum": 0}}},
        "Prediction": {"type": "object", "required": ["prediction", "action_name",
                                                      "confidence"], "properties": {
            "prediction": _number(), "action_name": {"enum": list(ACTION_NAMES)},
            "confidence": _number(), "value_estimate": _number(),
            "probabilities": probabilities, "predicted_return": _number()}},
        "StreamReply": {"type": "object", "required": ["stream_id", "status", "bars_seen",
                                                       "bars_needed", "account"], "properties": {
            "stream_id": {"type": "string"}, "status": {"enum": ["warming_up", "ready"]},
            "message": {"type": "string"}, "bars_seen": {"type": "integer"},
            "bars_needed": {"type": "integer"}, "account": account,
            "action_name": {"enum": list(ACTION_NAMES)}, "confidence": _number(),
            "prediction": _number(), "probabilities": probabilities}},
        "Info": {"type": "object", "properties": {
            "name": {"type": "string"}, "type": {"type": "string"},
            "features": {"type": "array", "items": {"type": "string"}},
            "lookback": {"type": "integer"}, "window_size": {"type": "integer"},
            "action_names": {"type": "array", "items": {"type": "string"}}}},
        "Health": {"type": "object", "properties": {"status": {"type": "string"},
                                                    "model": {"type": "string"}}},
        "Deleted": {"type": "object", "properties": {"stream_id": {"type": "string"},
                                                     "deleted": {"type": "boolean"}}},
        "Error": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "string"}, "field": {"type": "string"},
            "column": {"type": "string"}, "rows": {"type": "array"}}},
    }


def openapi_document(loader: ModelLoader | None, base: str = "") -> dict[str, Any]:
    """OpenAPI 3.1 description of the prediction routes, mounted under ``base``."""
    title = f"Galaxy Models prediction API: {loader.name}" if loader else \
        "Galaxy Models prediction API"
    return {"openapi": "3.1.0",
            "info": {"title": title, "version": API_VERSION},
            "servers": [{"url": base or "/"}],
            "paths": _openapi_paths(),
            # A bearer token is required beyond loopback only, hence the empty alternative.
            "security": [{"bearerAuth": []}, {}],
            "components": {"schemas": _openapi_schemas(loader),
                           "securitySchemes": {"bearerAuth": {
                               "type": "http", "scheme": "bearer",
                               "description": "an API token (python Main.py tokens create "
                                              "NAME, or /settings)"}}}}


# -------------------------------------------------------------- standalone server


def create_api_app(model_dir: str | Path | None, config: dict[str, Any] | None = None) -> Flask:
    """A one-model app serving the prediction blueprint at ``/``; JSON errors everywhere.

    Loads the model now (from ``main()`` or a test, never at import); ``None`` serves
    no model (503). ``config`` overrides ``MAX_CONTENT_LENGTH``, ``MAX_STREAMS`` and the
    access settings of :mod:`web.auth` (``BIND_HOST``, ``AUTH``, ``ALLOWED_HOSTS``,
    ``TOKEN_FILE``, ``DATABASE_URL``): beyond loopback every route needs a bearer token.
    """
    loader = load_model(model_dir) if model_dir is not None else None
    app = Flask(__name__, static_folder=None)
    app.json = StrictJSONProvider(app)
    app.config.from_mapping(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, MAX_STREAMS=MAX_STREAMS,
                            **auth.env_config())
    app.config.update(config or {})
    auth.init_token_server(app)  # the Host check and tokens come before everything
    csrf.init_app(app)
    app.register_blueprint(prediction_blueprint(lambda: loader,
                                                max_streams=app.config["MAX_STREAMS"]))
    register_json_errors(app)  # unknown URLs and wrong methods never reach the blueprint
    return app


def _int_in(low: int, high: int = sys.maxsize) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (waitress wraps a port above 65535)."""
    def integer(text: str) -> int:  # argparse names the type by this function's name
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low}"
                                             + (f" to {high}" if high < sys.maxsize else "")
                                             + f"; got {value}")
        return value
    return integer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="Api_Loader.py",
                                     description="Serve one trained model over HTTP (JSON).")
    parser.add_argument("--model-dir", required=True, help="a model folder, e.g. Models/PPO_x")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_int_in(0, 65535), default=8001,
                        help="0 picks a free port")
    parser.add_argument("--threads", type=_int_in(1), default=8)
    parser.add_argument("--max-streams", type=_int_in(1), default=MAX_STREAMS)
    return parser


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket for waitress. Bound here, so a failure leaves nothing open
    (waitress binding itself leaks its wake-up pipe when the port is taken)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


def _usage_error(message: str) -> int:
    """One line on stderr (messages may quote multi-line errors), exit status 2."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Load the model, then serve it with waitress until Ctrl+C. Bad input: exit 2."""
    parser = _parser()
    auth.add_arguments(parser, token_file=True)
    args = parser.parse_args(argv)
    import torch
    import waitress

    # One intra-op thread: a request's tensors are tiny, and waitress already runs
    # requests on their own threads; torch's second thread only added contention.
    torch.set_num_threads(1)

    try:
        app = create_api_app(args.model_dir, {"MAX_STREAMS": args.max_streams,
                                              **auth.config_from_args(args)})
    except (ValueError, OSError) as exc:  # ArtifactError, ModelNotFound, UnknownModelType,
        return _usage_error(str(exc))     # AuthConfigError, TokenFileError
    problem = auth.startup_problem(app)  # beyond loopback with no token: refused
    if problem:
        return _usage_error(problem)
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        return _usage_error(f"cannot listen on {args.host}:{args.port}: "
                            f"{exc.strerror or exc}")
    server = waitress.create_server(app, sockets=[sock], threads=args.threads)
    configure_logging()
    print(f"Serving {args.model_dir} on http://{args.host}:{server.effective_port}  "
          "(Ctrl+C stops)", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
