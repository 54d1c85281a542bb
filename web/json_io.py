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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flask import Response, current_app, has_app_context, jsonify, request
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
    if max_bytes is not None:  # before the body is first read
        request.max_content_length = max_bytes
    if not request.is_json:
        raise ApiError(400, "send a JSON body with Content-Type: application/json")
    body = parse_json(request.get_data(cache=False))
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object; got a JSON {type(body).__name__}")
    return body


def parse_json(raw: bytes | str) -> Any:
    """Strict JSON: NaN, Infinity, huge integers and deep nesting are refused, naming
    where they were."""
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
        path, name = _constant_path(body)
        raise ApiError(422, f"{path} is {name}: JSON has no NaN or Infinity; send finite "
                            "numbers", field=path)
    return body


class _HugeInteger(Exception):
    pass


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > MAX_INT_DIGITS:
        raise _HugeInteger(f"{text[:12]}... ({len(digits)} digits)")
    return int(text)


def _nesting_depth(raw: bytes | str) -> int:
    """The deepest ``[``/``{`` nesting outside strings, by one linear scan (no parser
    recursion, so a 100,000-level body costs a scan, not the stack)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if "[" not in text and "{" not in text:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def _constant_path(body: Any) -> tuple[str, str]:
    """Path (``window[3].Close``) and name of the first NaN/Infinity, without recursion."""
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
    raise AssertionError("parse_constant was called but no constant is in the body")


def error_reply(code: int, message: str, field: str | None = None, **extra: Any) -> Reply:
    """The one error body: ``{"error": message, "field": ..., ...}``, empty keys left out,
    no absolute paths (messages often start with the file they are about), no lone
    surrogates."""
    body = {"error": message, "field": field, **extra}
    return jsonify(hide_paths({k: v for k, v in body.items() if v not in (None, [])})), code


def path_roots() -> list[Path]:
    """The folders replies name files relative to: the app's models and data folders."""
    config = current_app.config if has_app_context() else {}
    return [Path(config[key]) for key in ("MODELS_DIR", "DATA_DIR") if config.get(key)]


def hide_paths(value: Any, roots: Iterable[Path | str] | None = None) -> Any:
    """``value`` (JSON-ready) with the absolute paths of ``roots`` (default
    :func:`path_roots`) and of the current folder, wherever they occur in its strings,
    written as :func:`~Utilities.safe_paths.shown` writes them (``Models/PPO_x``)."""
    prefixes = _path_prefixes(path_roots() if roots is None else list(roots))
    return _replace_in(value, prefixes)


def _path_prefixes(roots: list[Path | str]) -> list[tuple[str, str]]:
    """(absolute folder as text, how it is shown), longest first: a models folder inside
    the current folder is replaced before the current folder is."""
    labels = {}
    for root in [*roots, Path.cwd()]:
        label = shown(root, roots) if root in roots else ""
        for form in (Path(root).absolute(), Path(root).resolve()):
            if len(form.parts) > 1:  # never "/": every path would lose its slashes
                labels.setdefault(str(form), "" if label == "." else label)
    return sorted(labels.items(), key=lambda item: -len(item[0]))


def _replace_in(value: Any, prefixes: list[tuple[str, str]]) -> Any:
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


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, but a NaN or infinity in a reply raises instead of writing a token
    that is not JSON (every client's parser would choke on it)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)
