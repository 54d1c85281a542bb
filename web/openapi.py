"""The OpenAPI 3.1 document of the prediction routes (``GET /openapi.json``).

:func:`openapi_document` describes what :mod:`web.predict` serves, with the hosted
model's features filled in (any feature names while none is hosted), so clients and the
fuzz suite generate valid requests from it.
"""

from __future__ import annotations

from typing import Any

from NetworkConfigs.base import ACCOUNT_FIELDS, ACTION_NAMES, ModelLoader
from NetworkConfigs.streams import PRICE

API_VERSION = "1.1"  # 1.1: the batch form of POST /predict
# web.predict.MAX_BATCH, which passes its own (it imports this module, not the reverse).
DEFAULT_MAX_BATCH = 256


def _json_content(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def _reply(description: str, schema: str = "Error") -> dict[str, Any]:
    return {"description": description, "content": _json_content(schema)}


_STREAM_PARAMETER = {"name": "stream_id", "in": "path", "required": True,
                     "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"}}
_NO_MODEL = _reply("no model is loaded")


def _openapi_paths() -> dict[str, Any]:
    predict = {
        "summary": "Predict from a full window, from one bar of a named stream, or for a "
                   "batch of either",
        "requestBody": {"required": True, "content": _json_content("PredictRequest")},
        "responses": {
            "200": {"description": "the prediction (a stream's also carries its account); "
                                   "for a batch, every item's answer in item order",
                    "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/Prediction"},
                        {"$ref": "#/components/schemas/StreamReply"},
                        {"$ref": "#/components/schemas/BatchReply"}]}}}},
            "400": _reply("not JSON, not an object, or unknown/conflicting fields"),
            "413": _reply("the body is larger than the limit, or a batch has more items "
                          "than maxItems"),
            "422": {"description": "invalid values: features, types, NaN/Infinity, prices, "
                                   "bar times, a short window, account_state, sample or "
                                   "seed, or an output that is not finite; for a batch, "
                                   "every refused item by index, and the other answers",
                    "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/Error"},
                        {"$ref": "#/components/schemas/BatchRefused"}]}}}},
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


def _openapi_schemas(loader: ModelLoader | None, max_batch: int) -> dict[str, Any]:
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
    item = {
        "window": {"type": "array", "minItems": window_rows, "items": {"oneOf": [
            _bar_schema(loader), {"type": "array", "items": _number()}]}},
        "features": stream_bar, "stream_id": _STREAM_PARAMETER["schema"],
        "account_state": {"type": "object", "additionalProperties": False,
                          "properties": {k: _number() for k in (*ACCOUNT_FIELDS, "price")}}}
    answer = {"oneOf": [{"$ref": "#/components/schemas/Prediction"},
                        {"$ref": "#/components/schemas/StreamReply"}]}
    return {
        "PredictRequest": {"type": "object", "additionalProperties": False, "properties": {
            **item, "sample": {"type": "boolean"}, "seed": {"type": "integer", "minimum": 0},
            "batch": {"type": "array", "minItems": 1, "maxItems": max_batch,
                      "description": "many requests in one: each item a window (with its "
                                     "account_state) or one bar of a stream; sample and "
                                     "seed, beside batch, apply to all",
                      "items": {"$ref": "#/components/schemas/PredictItem"}}}},
        "PredictItem": {"type": "object", "additionalProperties": False, "properties": item},
        "BatchReply": {"type": "object", "required": ["predictions"], "properties": {
            "predictions": {"type": "array", "items": answer}}},
        "BatchRefused": {"type": "object", "required": ["error", "errors", "predictions"],
                         "properties": {
            "error": {"type": "string"}, "field": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["index", "error", "field", "status"],
                "properties": {"index": {"type": "integer"}, "error": {"type": "string"},
                               "field": {"type": "string"}, "status": {"type": "integer"},
                               "column": {"type": "string"}, "rows": {"type": "array"}}}},
            "predictions": {"type": "array", "items": {"oneOf": [answer, {"type": "null"}]}}}},
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


def openapi_document(loader: ModelLoader | None, base: str = "",
                     max_batch: int = DEFAULT_MAX_BATCH) -> dict[str, Any]:
    """OpenAPI 3.1 description of the prediction routes, mounted under ``base``, whose
    batches hold at most ``max_batch`` items."""
    title = f"Galaxy Models prediction API: {loader.name}" if loader else \
        "Galaxy Models prediction API"
    return {"openapi": "3.1.0",
            "info": {"title": title, "version": API_VERSION},
            "servers": [{"url": base or "/"}],
            "paths": _openapi_paths(),
            # A bearer token is required beyond loopback only, hence the empty alternative.
            "security": [{"bearerAuth": []}, {}],
            "components": {"schemas": _openapi_schemas(loader, max_batch),
                           "securitySchemes": {"bearerAuth": {
                               "type": "http", "scheme": "bearer",
                               "description": "an API token (python Main.py tokens create "
                                              "NAME, or /settings)"}}}}
