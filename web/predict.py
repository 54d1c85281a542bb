"""The prediction routes: ``POST /predict`` and its companions, for whatever model is hosted.

:func:`prediction_blueprint` serves the model a callable returns, so the dashboard mounts
it for the model it hosts (``web/hosting.py``) and ``python Api_Loader.py`` for the one
model it loaded. Nothing is loaded at import.

Routes (``/openapi.json``, built by :mod:`web.openapi`, describes them):

- ``POST /predict``: ``{"window": [...]}`` (a full window of bars; optional
  ``account_state``) or ``{"features": {...}, "stream_id": "..."}`` (one bar of a named
  stream, created on first use; see ``NetworkConfigs/streams.py``). Optional
  ``"sample": true`` (+ ``"seed"``) draws the action instead of taking the most likely.
  The batch form ``{"batch": [item, ...]}`` (at most MAX_BATCH items, each a body of
  either form without ``sample``/``seed``, which apply to the whole batch) answers
  ``{"predictions": [...]}`` in item order; its windows go through the model in one
  call. A batch with refused items is a 422 whose body still carries every answer
  (``predictions``, null where refused) and ``errors``: one per refused item, with its
  ``index`` and its field (``batch[3].window[2].High``). A sampled batch draws for its
  windows first, then for its stream bars, each in item order.
- ``GET /info``, ``GET /health``, ``GET|DELETE /streams/<stream_id>``, ``GET /openapi.json``.

Every app that mounts the blueprint also gets ``POST /predict``'s WSGI fast path
(:mod:`web.predict_wsgi`) in front of Flask: it answers well-formed predictions through
the steps of :class:`PredictRoute`, the ones the Flask view takes, and leaves every
refusal to Flask.

Status codes: 400 malformed request (not JSON, not an object, unknown or conflicting
top-level fields), 413 body too large or a batch of more than MAX_BATCH items, 422
well-formed but invalid values (missing or extra features, wrong types, NaN/Infinity,
prices the data contract refuses, bar times out of order, a short window, a bad or
out-of-range account_state, an output that is not finite), 404 unknown stream, 503 no
model hosted. The body is checked before the model is asked for. Errors are raised as
:class:`~web.json_io.ApiError` or :class:`~Utilities.input_errors.InputError` with their
field (``window[3].High``, ``features.Close``, ``account_state.cash``);
:func:`web.errors.install_error_handlers` writes the one JSON body.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from flask import Blueprint, Request, Response, current_app, jsonify, request, url_for
from flask.blueprints import BlueprintSetupState

from NetworkConfigs.base import ACCOUNT_FIELDS, ModelLoader
from NetworkConfigs.streams import PRICE, StreamNotFound, StreamRegistry
from Utilities.data_loading import MAX_LISTED, DataError
from Utilities.input_errors import InputError
from web import predict_wsgi
from web.errors import every_path, install_error_handlers
from web.json_io import ApiError, Reply, error_reply, json_body, json_reply
from web.openapi import openapi_document
from web.predict_wsgi import HANDED_OVER

# 4 MiB: a 1,000-bar window of ten features is about 200 KB of JSON, a batch of
# MAX_BATCH windows of 31 bars as objects about 1.7 MB.
MAX_BODY_BYTES = 4 << 20
MAX_STREAMS = 1000
# Items of one batch: ~256 predictions take ~50 ms, so a request stays short.
MAX_BATCH = 256
ITEM_FIELDS = ("window", "features", "stream_id", "account_state")
BODY_FIELDS = (*ITEM_FIELDS, "sample", "seed", "batch")
BATCH_FIELDS = ("batch", "sample", "seed")
# The 503 of the standalone server; the dashboard passes its own (see web/hosting.py).
NO_MODEL = "no model is loaded: start the server with --model-dir"


def _check_shape(body: dict[str, Any]) -> None:
    """The top level: known fields, and one of the request forms (else 400)."""
    unknown = [k for k in body if k not in BODY_FIELDS]
    if unknown:
        raise ApiError(400, f"unknown field(s) {unknown}; valid: {list(BODY_FIELDS)}",
                       unknown[0])
    if "batch" in body:
        stray = [k for k in body if k not in BATCH_FIELDS]
        if stray:
            raise ApiError(400, f'"{stray[0]}" goes inside each item of "batch"; beside it '
                                f"only {list(BATCH_FIELDS[1:])}", stray[0])
        return
    _check_form(body)


def _check_form(body: dict[str, Any]) -> None:
    """One request (or one batch item): a window, or one bar of a stream (else 400)."""
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


def _check_window_list(body: dict[str, Any]) -> None:
    window = body.get("window")
    if "window" in body and (not isinstance(window, list) or not window):
        raise ApiError(422, "window must be a non-empty list of bars: objects of feature -> "
                            "number, or rows of numbers in the order of /info's features",
                       "window")


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
    sampling, the window being a list, a batch's size. Routes call it before a model is
    loaded, so an invalid body never costs (or triggers) a model load."""
    _check_shape(body)
    _sampling(body)
    _check_window_list(body)
    if "batch" in body:
        batch = body["batch"]
        if not isinstance(batch, list) or not batch:
            raise ApiError(422, "batch must be a non-empty list of requests, each "
                                '{"window": [...]} or {"features": {...}, "stream_id": "..."}',
                           "batch")
        if len(batch) > MAX_BATCH:
            raise ApiError(413, f"a batch holds at most {MAX_BATCH} items; got {len(batch)}: "
                                "send it in several requests", "batch")


def answer(body: dict[str, Any], loader: ModelLoader, streams: StreamRegistry) -> dict[str, Any]:
    """The reply to one ``POST /predict`` body; a DataError names its place in the body,
    a batch with refused items is a :class:`BatchRefused`."""
    check_request(body)
    sample, rng = _sampling(body)
    try:
        if "batch" in body:
            return _answer_batch(body["batch"], loader, streams, sample, rng)
        if "features" in body:
            return streams.push(body["stream_id"], body["features"], sample=sample, rng=rng)
        return loader.predict_with(body["window"], body.get("account_state"), sample=sample,
                                   rng=rng).to_dict()
    except DataError as exc:
        if exc.field is None:
            exc.field = body_field(exc)
        raise


def reply(body: dict[str, Any], loader: ModelLoader, streams: StreamRegistry) -> Response | Reply:
    """:func:`answer` as the HTTP reply (orjson); a batch with refused items is the one
    error body with every answer and every item's error beside it."""
    return reply_of(settle(body, loader, streams))


def settle(body: dict[str, Any], loader: ModelLoader,
           streams: StreamRegistry) -> dict[str, Any] | Exception:
    """:func:`answer`, or the exception it raised: what :func:`reply_of` answers. Apart,
    so that ``POST /predict``'s fast path (:mod:`web.predict_wsgi`) computes an answer
    once and hands a refusal to Flask to write, never asking the model twice."""
    try:
        return answer(body, loader, streams)
    except Exception as exc:  # re-raised by reply_of, inside Flask's error handling
        return exc


def reply_of(outcome: dict[str, Any] | Exception) -> Response | Reply:
    """The HTTP reply to what :func:`settle` gave: the answer, or its refusal (raised
    for the error handlers, except a batch's, whose body carries every item)."""
    if isinstance(outcome, BatchRefused):
        return error_reply(422, str(outcome), outcome.field, errors=outcome.item_errors,
                           predictions=outcome.predictions)
    if isinstance(outcome, Exception):
        raise outcome
    return json_reply(outcome)


class BatchRefused(ApiError):
    """Some items of a batch were refused: their errors (each with its ``index``) and
    the answers of all items (None where refused)."""

    def __init__(self, errors: list[dict[str, Any]], predictions: list[Any]) -> None:
        first = errors[0]
        super().__init__(422, f"{len(errors)} of {len(predictions)} batch items refused; "
                              f"the first, batch[{first['index']}]: {first['error']}",
                         first["field"])
        self.item_errors, self.predictions = errors, predictions


def _answer_batch(batch: list[Any], loader: ModelLoader, streams: StreamRegistry,
                  sample: bool, rng: np.random.Generator | None) -> dict[str, Any]:
    """Every item's answer, in item order: the windows through the model in one call,
    then the stream bars one by one. BatchRefused when any item was refused."""
    answers: list[Any] = [None] * len(batch)
    errors: dict[int, dict[str, Any]] = {}
    windows, bars = [], []
    for i, item in enumerate(batch):
        try:
            if not isinstance(item, dict):
                raise ApiError(422, "each batch item must be an object: a request body "
                                    "without sample/seed")
            unknown = [k for k in item if k not in ITEM_FIELDS]
            if unknown:
                raise ApiError(400, f"unknown field(s) {unknown}; an item takes "
                                    f"{list(ITEM_FIELDS)}", unknown[0])
            _check_form(item)
            _check_window_list(item)
        except ApiError as exc:
            errors[i] = _item_error(i, exc)
            continue
        (windows if "window" in item else bars).append(i)
    outcomes = loader.predict_many([(batch[i]["window"], batch[i].get("account_state"))
                                    for i in windows], sample=sample, rng=rng)
    for i, outcome in zip(windows, outcomes, strict=True):
        if isinstance(outcome, DataError):
            errors[i] = _item_error(i, outcome)
        else:
            answers[i] = outcome.to_dict()
    for i in bars:
        try:
            answers[i] = streams.push(batch[i]["stream_id"], batch[i]["features"],
                                      sample=sample, rng=rng)
        except InputError as exc:
            errors[i] = _item_error(i, exc)
    if errors:
        raise BatchRefused([errors[i] for i in sorted(errors)], answers)
    return {"predictions": answers}


def _item_error(index: int, exc: InputError) -> dict[str, Any]:
    """One refused batch item: where (its index and the field inside the body), why."""
    field = body_field(exc) if isinstance(exc, DataError) and exc.field is None else exc.field
    error = {"index": index, "error": str(exc),
             "field": f"batch[{index}].{field}" if field else f"batch[{index}]",
             "status": exc.status if isinstance(exc, ApiError) else 422}
    if isinstance(exc, DataError):
        error |= {"column": exc.column, "rows": [str(r) for r in exc.rows[:MAX_LISTED]]}
    return {k: v for k, v in error.items() if v not in (None, [])}


def body_field(exc: DataError) -> str | None:
    """Where in the body the problem is: ``window[3].High`` (rows count from 1 in
    messages, from 0 in JSON), ``features.High``, ``account_state.cash``; else the
    top-level field."""
    if exc.source == "window" and exc.column and exc.rows and isinstance(exc.rows[0], int):
        return f"window[{exc.rows[0] - 1}].{exc.column}"
    if exc.source in ("window", "features", "account_state") and exc.column:
        return f"{exc.source}.{exc.column}"
    return exc.source


def model_info(loader: ModelLoader, max_streams: int = MAX_STREAMS) -> dict[str, Any]:
    """``GET /info``: what a client needs to build requests for this model."""
    info = loader.info()
    extra = [] if PRICE in info["features"] else [PRICE]
    return {**info, "stream_bar_keys": [*info["features"], *extra],
            "account_state_fields": [*ACCOUNT_FIELDS, "price"],
            "can_sample": loader.can_sample, "max_streams": max_streams}


class Hosted:
    """The model a blueprint serves, and the streams that belong to that model."""

    def __init__(self, get_loader: Callable[[], ModelLoader | None], max_streams: int,
                 no_model: str) -> None:
        self.get_loader, self.max_streams, self.no_model = get_loader, max_streams, no_model
        self._streams: StreamRegistry | None = None
        self._lock = threading.Lock()

    def loader(self) -> ModelLoader:
        loader = self.get_loader()
        if loader is None:
            raise ApiError(503, self.no_model)
        return loader

    def streams(self, loader: ModelLoader) -> StreamRegistry:
        """The loader's streams; a newly hosted model starts with none."""
        with self._lock:
            if self._streams is None or self._streams.loader is not loader:
                self._streams = StreamRegistry(loader, self.max_streams)
            return self._streams


class PredictRoute:
    """``POST /predict`` of one blueprint: the steps its Flask view and its WSGI fast
    path (:mod:`web.predict_wsgi`) share, so both apply the same rules."""

    def __init__(self, hosted: Hosted, max_body_bytes: int | None) -> None:
        self.hosted, self.max_body_bytes = hosted, max_body_bytes

    def body_limit(self, config: Any) -> int | None:
        """The body size limit: the blueprint's own, else the app's MAX_CONTENT_LENGTH."""
        return self.max_body_bytes if self.max_body_bytes is not None else \
            config.get("MAX_CONTENT_LENGTH")

    def checked(self, req: Request, config: Any) -> dict[str, Any]:
        """The request's body, checked (:func:`check_request`) before its model is asked
        for. Reads nothing else and changes nothing: a refusal here can be recomputed."""
        body = json_body(req, self.body_limit(config))
        check_request(body)
        return body

    def outcome(self, body: dict[str, Any]) -> dict[str, Any] | Exception:
        """:func:`settle` with the hosted model, asked for once (the 503 when none is)."""
        try:
            loader = self.hosted.loader()
        except ApiError as exc:
            return exc
        return settle(body, loader, self.hosted.streams(loader))

    def view(self) -> Response | Reply:
        """The Flask view; it writes the fast path's outcome when it was handed one."""
        outcome = request.environ.pop(HANDED_OVER, None)
        if outcome is None:
            outcome = self.outcome(self.checked(request, current_app.config))
        return reply_of(outcome)


def _stream_call(call: Callable[[str], Any], stream_id: str) -> Any:
    try:
        return call(stream_id)
    except StreamNotFound as exc:
        raise ApiError(404, str(exc), "stream_id") from None


def prediction_blueprint(get_loader: Callable[[], ModelLoader | None], *,
                         name: str = "predict", max_streams: int = MAX_STREAMS,
                         max_body_bytes: int | None = None,
                         no_model: str = NO_MODEL) -> Blueprint:
    """The prediction routes for whatever model ``get_loader()`` returns (None: 503
    saying ``no_model``, which tells the client what to do).

    ``max_body_bytes`` caps ``POST /predict`` bodies below the app's
    ``MAX_CONTENT_LENGTH`` (an app that also takes uploads allows far more). Its views'
    errors are JSON wherever it is mounted (the app's own handlers answer the rest:
    unknown URLs, wrong methods).
    """
    bp = Blueprint(name, __name__)
    hosted = Hosted(get_loader, max_streams, no_model)
    route = PredictRoute(hosted, max_body_bytes)

    @bp.post("/predict")
    def predict() -> Response | Reply:
        return route.view()

    @bp.record
    def fast_path(state: BlueprintSetupState) -> None:  # every app mounting it: see above
        predict_wsgi.install(state.app).add(predict, route)

    @bp.get("/info")
    def info() -> Response:
        return jsonify(model_info(hosted.loader(), max_streams))

    @bp.get("/health")
    def health() -> Response | Reply:
        loader = hosted.get_loader()
        if loader is None:
            return error_reply(503, hosted.no_model, status="unavailable")
        return jsonify({"status": "ok", "model": loader.name, "type": loader.config["Type"]})

    @bp.get("/streams/<stream_id>")
    def get_stream(stream_id: str) -> Response:
        streams = hosted.streams(hosted.loader())
        return jsonify(_stream_call(streams.get, stream_id))

    @bp.delete("/streams/<stream_id>")
    def delete_stream(stream_id: str) -> Response:
        _stream_call(hosted.streams(hosted.loader()).delete, stream_id)
        return jsonify({"stream_id": stream_id, "deleted": True})

    @bp.get("/openapi.json")
    def openapi() -> Response:
        base = url_for(".health")[: -len("/health")]
        return jsonify(openapi_document(hosted.get_loader(), base, MAX_BATCH))

    install_error_handlers(bp, every_path)
    return bp
