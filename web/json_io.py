"""JSON in and out of HTTP, one path for every route: strict request bodies and the one
error shape (``{"error": message, "field": ..., ...}``).

Request bodies are read by :func:`read_json_body` / :func:`parse_json` only. Python's
``json`` reads things JSON has not (NaN, Infinity) and things the app cannot hold
(integers beyond a float, nesting that exhausts the stack when walked): each is refused
here with a 400/422 naming where it was, so no route meets them. Replies go through
:class:`StrictJSONProvider` (``allow_nan=False``): a route that would send a ``NaN``
token fails loudly in tests instead of handing clients invalid JSON. Replies and error
messages name files as :func:`Utilities.safe_paths.shown` does (``Models/PPO_x``), never by
the server's absolute paths: :func:`hide_paths`, which :func:`error_reply` applies.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from flask import Request, Response, current_app, has_app_context, jsonify, request
from flask.json.provider import DefaultJSONProvider

from Utilities.input_errors import InputError
from Utilities.safe_paths import shown

Reply = tuple[Response, int]

# Deeper bodies are refused before anything walks them (no route needs more than 4).
MAX_DEPTH = 32
# A JSON integer with more digits than this cannot be a count, a seed or a price.
MAX_INT_DIGITS = 20


class ApiError(InputError):
    """A refused request: its HTTP status, a message naming the problem, the field.
    The one HTTP error class; domain errors become it through :meth:`of`. Raised, it
    is answered by :func:`web.errors.install_error_handlers` (JSON or a styled page)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message, field)
        self.status = status

    @classmethod
    def of(cls, exc: InputError, status: int = 422) -> ApiError:
        """A domain :class:`InputError` (its field kept as data) as a refused request."""
        return exc if isinstance(exc, ApiError) else cls(status, str(exc), exc.field)


class _Constant:
    """Where a body had NaN or Infinity (Python's json reads them; JSON has none)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def read_json_body(max_bytes: int | None = None) -> dict[str, Any]:
    """The request's JSON object; ApiError (400/422) or 413 for anything else."""
    return json_body(request, max_bytes)


def json_body(req: Request, max_bytes: int | None = None) -> dict[str, Any]:
    """:func:`read_json_body` of a given request object: the same rules for a route and
    for ``POST /predict``'s WSGI fast path (:mod:`web.predict_wsgi`), which has no
    request context."""
    if max_bytes is not None:  # before the body is first read
        req.max_content_length = max_bytes
    if not req.is_json:
        raise ApiError(400, "send a JSON body with Content-Type: application/json")
    body = parse_json(req.get_data(cache=False))
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object; got a JSON {type(body).__name__}")
    return body


def parse_json(raw: bytes | str) -> Any:
    """Strict JSON: NaN, Infinity, huge integers and deep nesting are refused, naming
    where they were.

    orjson reads the usual body (~20x faster than ``json``); whatever it refuses or
    might read differently from ``json`` (NaN, Infinity, 1e400, lone surrogates, a BOM
    or UTF-16, integers of 19 or more digits, which orjson turns into floats, nesting
    beyond MAX_DEPTH) is read again by :func:`_parse_strict`, so every answer, error
    message included, is the one ``json`` gives.
    """
    if not _has_long_digits(raw):
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            if _within_depth(body, MAX_DEPTH):
                return body
    return _parse_strict(raw)


# Digits as "0", every other byte as " ": a run of LONG_DIGITS digits is then a
# substring search (C speed; a regex took ~1 ms per 100 KB).
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
# orjson reads an integer beyond 64 bits (19 digits and more) as a float where json
# reads an int; long fractions match too, and merely take the slower path.
_LONG_DIGITS = b"0" * 19


def _has_long_digits(raw: bytes | str) -> bool:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    return _LONG_DIGITS in data.translate(_DIGITS_AS_ZERO)


def _within_depth(body: Any, limit: int) -> bool:
    """Whether no list or object in ``body`` sits deeper than ``limit`` (no recursion).
    Level by level: the cells of every container of a level are typed in one C-level
    pass, so a window of 31 rows costs a few passes, not one per row."""
    level, depth = ([body] if type(body) in (dict, list) else []), 1
    while level:
        if depth > limit:
            return False
        dicts = [value for value in level if type(value) is dict]
        lists = [value for value in level if type(value) is list]
        cells = chain(chain.from_iterable(map(dict.values, dicts)), chain.from_iterable(lists))
        kinds = set(map(type, cells))
        if dict not in kinds and list not in kinds:
            return True
        level = [cell for cell in chain(chain.from_iterable(map(dict.values, dicts)),
                                        chain.from_iterable(lists))
                 if type(cell) in (dict, list)]
        depth += 1
    return True


def _parse_strict(raw: bytes | str) -> Any:
    """:func:`parse_json` by Python's ``json``, every refusal named."""
    depth = _nesting_depth(raw)
    if depth > MAX_DEPTH:
        raise ApiError(400, f"the body nests {depth} levels deep; at most {MAX_DEPTH} are "
                            "accepted")
    found: list[str] = []

    def constant(name: str) -> _Constant:
        found.append(name)
        return _Constant(name)

    try:
        body = json.loads(raw, parse_constant=constant, parse_int=_bounded_int)
    except _HugeInteger as exc:
        raise ApiError(422, f"the number {exc} is too large; send at most {MAX_INT_DIGITS} "
                            "digits") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if found:
        # A constant a later duplicate key replaced is in no path of the body, and still
        # not JSON: named by what it was.
        path, name = _constant_path(body) or (None, found[0])
        where = f"{path} is {name}" if path else f"the body holds {name}"
        raise ApiError(422, f"{where}: JSON has no NaN or Infinity; send finite numbers",
                       field=path)
    return body


class _HugeInteger(Exception):
    pass


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > MAX_INT_DIGITS:
        raise _HugeInteger(f"{text[:12]}... ({len(digits)} digits)")
    return int(text)


def _nesting_depth(raw: bytes | str) -> int:
    """The deepest ``[``/``{`` nesting outside strings (MAX_DEPTH + 1 for anything
    deeper), without parser recursion: strings (and an unterminated one's rest) are cut
    out by one regex, the brackets left are counted by numpy (a 4 MiB body costs
    milliseconds, not a Python loop per character)."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    if b"[" not in data and b"{" not in data:
        return 0
    codes = np.frombuffer(_STRINGS.sub(b"", data), dtype=np.uint8)
    steps = np.isin(codes, _OPENS).astype(np.int64) - np.isin(codes, _CLOSES)
    deepest = int(np.cumsum(steps).max(initial=0))
    return min(max(deepest, 0), MAX_DEPTH + 1)


# A JSON string: a quote, then anything but a quote or a backslash, or a backslash and
# the byte it escapes; to the end of the body when it is never closed.
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_OPENS = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSES = np.frombuffer(b"]}", dtype=np.uint8)


def _constant_path(body: Any) -> tuple[str, str] | None:
    """Path (``window[3].Close``) and name of the first NaN/Infinity, without recursion;
    None when the body holds none."""
    stack: list[tuple[str, Any]] = [("body", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _Constant):
            return path, value.name
        if isinstance(value, dict):
            prefix = "" if path == "body" else f"{path}."
            stack.extend((f"{prefix}{k}", v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return None


def error_reply(code: int, message: str, field: str | None = None, **extra: Any) -> Reply:
    """The one error body: ``{"error": message, "field": ..., ...}``, empty keys left out,
    no absolute paths (messages often start with the file they are about), no lone
    surrogates."""
    body = {"error": message, "field": field, **extra}
    return jsonify(hide_paths({k: v for k, v in body.items() if v not in (None, [])})), code


def accepted_reply(job_id: str, status: str, status_url: str, page_url: str) -> Response:
    """202 for work started in the background: its id and state, where to poll
    (``status_url``, also the ``Location`` header) and its page."""
    response = current_app.response_class(json.dumps({
        "id": job_id, "status": status, "status_url": status_url, "url": page_url}),
        status=202, mimetype="application/json")
    response.headers["Location"] = status_url
    return response


def path_roots() -> list[Path]:
    """The folders replies name files relative to: the app's models and data folders."""
    config = current_app.config if has_app_context() else {}
    return [Path(config[key]) for key in ("MODELS_DIR", "DATA_DIR") if config.get(key)]


def hide_paths(value: Any, roots: Iterable[Path | str] | None = None) -> Any:
    """``value`` (JSON-ready) with the absolute paths of ``roots`` (default
    :func:`path_roots`) and of the current folder, wherever they occur in its strings,
    written as :func:`~Utilities.safe_paths.shown` writes them (``Models/PPO_x``)."""
    folders = path_roots() if roots is None else list(roots)
    prefixes = _path_prefixes(tuple(folders), os.getcwd())
    return _replace_in(value, prefixes)


@lru_cache(maxsize=64)
def _path_prefixes(roots: tuple[Path | str, ...], _cwd: str) -> tuple[tuple[str, str], ...]:
    """(absolute folder as text, how it is shown), longest first: a models folder inside
    the current folder is replaced before the current folder is. Cached by the roots and
    the current folder: resolving them costs ~0.5 ms, paid by every event a live stream
    sends otherwise (half a stream's read time at 20k rows/s)."""
    roots = list(roots)
    labels = {}
    for root in [*roots, Path.cwd()]:
        label = shown(root, roots) if root in roots else ""
        for form in (Path(root).absolute(), Path(root).resolve()):
            if len(form.parts) > 1:  # never "/": every path would lose its slashes
                labels.setdefault(str(form), "" if label == "." else label)
    return tuple(sorted(labels.items(), key=lambda item: -len(item[0])))


def _replace_in(value: Any, prefixes: tuple[tuple[str, str], ...]) -> Any:
    if isinstance(value, str):
        # Text echoed from a request loses lone surrogates ("\ud800" is legal for
        # Python's json, but strict parsers refuse the whole reply).
        value = value.encode("utf-8", "replace").decode("utf-8")
        for prefix, label in prefixes:
            if prefix in value:
                value = value.replace(prefix + "/", f"{label}/" if label else "")
                value = value.replace(prefix, label or ".")
        return value
    if isinstance(value, dict):
        return {_replace_in(key, prefixes): _replace_in(item, prefixes)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_in(item, prefixes) for item in value]
    return value


def json_reply(value: Any, status: int = 200) -> Response:
    """``jsonify(value)`` by orjson (the hot routes' replies: ~10x faster), as strict:
    a NaN or infinity raises ValueError instead of becoming ``null`` (orjson's way)
    or a ``NaN`` token. Keys sorted, as Flask's provider writes them; a value orjson
    cannot write (a non-text key, a lone surrogate) goes through ``jsonify``."""
    data = reply_bytes(value)
    if data is None:
        return _with_status(jsonify(value), status)
    return Response(data, status, mimetype="application/json")


def reply_bytes(value: Any) -> bytes | None:
    """The body :func:`json_reply` sends for ``value``, or None where only ``jsonify``
    can write it; ValueError for a NaN or infinity."""
    try:
        data = orjson.dumps(value, default=_numpy_scalar,
                            option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        return None
    if b"null" in data:  # a None, or a NaN/inf that orjson wrote as null
        _refuse_non_finite(value)
    return data


def _with_status(response: Response, status: int) -> Response:
    response.status_code = status
    return response


def _numpy_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _refuse_non_finite(value: Any) -> None:
    """ValueError (as ``json.dumps(..., allow_nan=False)`` raises) for a NaN or
    infinity anywhere in ``value``; no recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, np.ndarray):
            if item.dtype.kind in "fc" and not np.isfinite(item).all():
                raise ValueError("Out of range float values are not JSON compliant")
        elif isinstance(item, float | np.floating) and not math.isfinite(item):
            raise ValueError(f"Out of range float values are not JSON compliant: {item!r}")


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, but a NaN or infinity in a reply raises instead of writing a token
    that is not JSON (every client's parser would choke on it)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)
