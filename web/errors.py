"""The app-wide error handlers of both apps (the dashboard and ``python Api_Loader.py``).

:func:`install_error_handlers` is the one place that decides how an error leaves the
app: on a JSON path (a program is the client) it is the one JSON error body of
:func:`web.json_io.error_reply`; on a page path (a person is reading) it is a styled
page (``templates/errors/error.html``) that names the problem in words, never shows a
traceback, and links home.

- :class:`~Utilities.input_errors.InputError` a view did not handle: 422 (an
  :class:`~web.json_io.ApiError`: its own status) with its ``field``; a
  :class:`~Utilities.data_loading.DataError` adds its ``column`` and ``rows``.
- Any HTTP error (404 unknown URL, 405 wrong method, 413 too large, 500 an uncaught
  exception that Flask has already logged with its traceback, 403, ...).

A blueprint may still answer one error its own way where it knows better (the Train and
Backtest forms show a 413 beside their file field); everything else comes here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from Utilities.data_loading import MAX_LISTED, DataError
from Utilities.input_errors import InputError
from web.json_io import ApiError, Reply, error_reply

log = logging.getLogger(__name__)

# Paths whose clients are programs: every error there is the JSON body.
JSON_PATHS = ("/api/", "/predict", "/info", "/health", "/streams/", "/openapi.json")
# JSON routes among the pages' paths: a run page's live data and its control buttons.
JSON_ROUTES = re.compile(r"/runs/[^/]+/(control|live\.json)")

# What a person reads for the common codes: (title, message); {path} and {method} are
# filled in. Other codes use the exception's own name and description.
PAGE_TEXT = {
    404: ("Page not found", "There is no page at {path}. The address may be mistyped, or "
                            "what it pointed to has been deleted."),
    405: ("Not allowed here", "{path} does not accept a {method} request."),
    413: ("Upload too large", "What was sent is larger than the {limit} limit. Send a "
                              "smaller file (or raise MAX_CONTENT_LENGTH)."),
    500: ("Something went wrong", "The server hit an unexpected error while answering "
                                  "{path}. It is in the server's log; try again, or go back "
                                  "home."),
}


def is_json_path(path: str) -> bool:
    """Whether errors on ``path`` are answered in JSON (else as a page)."""
    return path.startswith(JSON_PATHS) or JSON_ROUTES.fullmatch(path) is not None


def every_path(path: str) -> bool:
    """For an app with no pages (``python Api_Loader.py``): every path is JSON."""
    return True


def install_error_handlers(app: Flask | Blueprint,
                           json_path: Callable[[str], bool] = is_json_path) -> None:
    """Answer every error ``app``'s views do not: JSON where ``json_path(request.path)``,
    a styled page elsewhere. On a blueprint (the prediction routes, which any app may
    mount under any prefix) the handlers cover that blueprint's views only."""

    def input_error(exc: InputError) -> Reply | tuple[str, int]:
        status = exc.status if isinstance(exc, ApiError) else 422
        if json_path(request.path):
            return error_reply(status, str(exc), exc.field, **_data_details(exc))
        return error_page(status, "Request refused", str(exc))

    def http_error(exc: HTTPException) -> Reply | tuple[str, int] | Response:
        if json_path(request.path):
            return error_reply(exc.code or 500, json_message(exc))
        return _page_for(exc)

    app.register_error_handler(InputError, input_error)
    app.register_error_handler(HTTPException, http_error)


def _data_details(exc: InputError) -> dict[str, Any]:
    """A data error's column and first rows: a client can point at the bad cell."""
    if not isinstance(exc, DataError):
        return {}
    return {"column": exc.column, "rows": [str(r) for r in exc.rows[:MAX_LISTED]]}


def json_message(exc: HTTPException) -> str:
    """An HTTP error in the words the JSON body uses."""
    if isinstance(exc, InternalServerError) and exc.original_exception is not None:
        # An uncaught exception, already logged by Flask with its traceback.
        return f"internal error ({type(exc.original_exception).__name__}); see the server log"
    if isinstance(exc, RequestEntityTooLarge):
        limit = request.max_content_length
        return (f"the request body is larger than the {limit:,}-byte limit" if limit
                else "the request body is too large")
    message = {404: f"no such endpoint: {request.path}",
               405: f"method {request.method} is not allowed on {request.path}"}
    return message.get(exc.code, exc.description or exc.name)


def _page_for(exc: HTTPException) -> tuple[str, int] | Response:
    code = exc.code or 500
    if code < 400:  # a redirect raised as an exception (RequestRedirect): let it through
        return exc.get_response()
    title, message = PAGE_TEXT.get(code, (exc.name, exc.description or exc.name))
    message = message.format(path=request.path, method=request.method,
                             limit=size_text(request.max_content_length))
    if exc.description and exc.description != type(exc).description:
        message = exc.description  # said by the route (abort(404, "no backtest …")): exact
    return error_page(code, title, message)


def size_text(limit: int | None) -> str:
    """A byte limit as a person reads it: ``64 MiB``, ``98 KiB``, ``512 bytes``."""
    if not limit:
        return "server's"
    if limit >= 2**20:
        return f"{limit / 2**20:,.0f} MiB"
    return f"{limit / 1024:,.0f} KiB" if limit >= 1024 else f"{limit:,} bytes"


def error_page(code: int, title: str, message: str) -> tuple[str, int]:
    """The styled error page; a bare one if the page itself cannot be drawn (a broken
    store under the menu, say), so an error never turns into a second, rawer one."""
    try:
        return render_template("errors/error.html", code=code, title=title,
                               message=message), code
    except Exception:  # whatever broke, the person still gets an answer
        log.exception("the error page for %d could not be drawn", code)
        return (f"<!doctype html><title>{code}</title><h1>{code} {title}</h1>"
                f'<p><a href="/">Home</a></p>'), code
