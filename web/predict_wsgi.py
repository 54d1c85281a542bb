"""``POST /predict`` answered at the WSGI layer, in front of Flask: the serving hot path.

Flask's request handling (request and app contexts, URL matching, the session, signals,
hooks, a Response object) costs more server CPU than the prediction itself, and under
waitress's threads on a small machine it decides the requests per second. So a
prediction blueprint (:func:`web.predict.prediction_blueprint`) puts this middleware in
front of every app that mounts it (``python Api_Loader.py`` and the dashboard alike),
and it answers a plain prediction request with the very steps the Flask view takes
(:class:`web.predict.PredictRoute`); every other request goes to Flask untouched. No
rule lives here: where a step would refuse, Flask takes the request and refuses it.

Per request:

1. Only ``POST`` to the path of a prediction blueprint's ``/predict`` rule.
2. The app's before-request hooks, each through its stand-in (:func:`stand_ins`):
   :func:`web.auth.admits` (the Host check; a valid bearer token where credentials are
   required) and :func:`web.csrf.admits`. A request that one of them would answer
   itself, one with a cookie (a browser's session, which Flask may refresh or read), or
   one without a Content-Length within the body limit goes to Flask untouched, which
   answers it exactly as before.
3. The body is read and :meth:`~web.predict.PredictRoute.checked` (JSON, the request's
   shape). A refusal there reads and changes nothing else, so Flask is given the same
   request (the body put back) and refuses it in its own words.
4. :meth:`~web.predict.PredictRoute.outcome`: the hosted model, asked for once (503
   when there is none), and the prediction, made once. An answer that
   :func:`web.json_io.reply_bytes` writes is sent as Flask would send it (200,
   ``Content-Type: application/json``, ``Content-Length``); anything else (a refusal
   of the model or a stream, a batch with refused items, an answer only ``jsonify``
   writes) is handed to the Flask view in the WSGI environ (:data:`HANDED_OVER`), which
   writes it as it writes its own.

An app whose request handling it cannot vouch for never gets the fast path, and says so
in the log once: a before-request hook without a stand-in, an after-request or
teardown-request function or URL value preprocessor on the route, ``SERVER_NAME`` or
``TRUSTED_HOSTS`` set, host or subdomain matching, a rule with variables or a host, or
another middleware installed before it. Flask's ``request_started`` and
``request_finished`` signals with receivers send every request through Flask too, and
so does the app setting ``PREDICT_FAST_PATH = False`` (A/B comparisons: the tests send
the same requests both ways and compare the replies byte for byte).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Flask, Request, signals

from web import auth, csrf
from web.json_io import reply_bytes

log = logging.getLogger(__name__)

# Where the fast path leaves its outcome (an answer, or the exception to raise) for the
# Flask view to write. Environ keys with a dot come from servers and middleware, never
# from a client's headers (those are HTTP_*).
HANDED_OVER = "galaxy_models.predict_outcome"
_KEY = "predict_fast_path"
_JSON = "application/json"

Admits = Callable[[Flask, Request], bool]
StartResponse = Callable[..., Any]


def stand_ins() -> dict[Callable[..., Any], Admits]:
    """The before-request hooks the fast path knows, each with the function that says
    whether the hook lets a request through without a word."""
    return {auth.gate: auth.admits, csrf.refuse_cross_site_writes: csrf.admits}


class Route(Protocol):
    """What :class:`web.predict.PredictRoute` offers the fast path."""

    def body_limit(self, config: Any) -> int | None: ...

    def checked(self, req: Request, config: Any) -> dict[str, Any]: ...

    def outcome(self, body: dict[str, Any]) -> dict[str, Any] | Exception: ...


@dataclass(frozen=True)
class Served:
    """One ``/predict`` path the fast path answers: its route and its hooks' stand-ins."""

    route: Route
    admits: tuple[Admits, ...]


def install(app: Flask) -> FastPath:
    """The app's fast path, put in front of ``app.wsgi_app`` on first call."""
    fast = app.extensions.get(_KEY)
    if fast is None:
        fast = app.extensions[_KEY] = FastPath(app)
    return fast


class FastPath:
    """The WSGI middleware (``app.wsgi_app``); see the module's docstring."""

    def __init__(self, app: Flask) -> None:
        self.app, self.flask_app = app, app.wsgi_app
        # Another middleware already in front of Flask would be skipped: then no fast path.
        self.wraps_flask = getattr(app.wsgi_app, "__func__", None) is Flask.wsgi_app
        app.wsgi_app = self  # type: ignore[method-assign]
        self._routes: list[tuple[Callable[..., Any], Route]] = []
        self._paths: dict[str, Served] | None = None
        self._lock = threading.Lock()

    def add(self, view: Callable[..., Any], route: Route) -> None:
        """Answer ``route`` wherever the app routes ``POST`` to ``view``."""
        with self._lock:
            self._routes.append((view, route))
            self._paths = None

    def paths(self) -> dict[str, Served]:
        """The paths answered here, worked out at the first request (the app is set up
        by then: Flask refuses new hooks once it has handled one)."""
        paths = self._paths
        if paths is None:
            with self._lock:
                paths = self._paths = self._plan()
        return paths

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST":
            served = self.paths().get(environ.get("PATH_INFO", ""))
            if served is not None:
                data = self._answer(environ, served)
                if data is not None:
                    start_response("200 OK", [("Content-Type", _JSON),
                                              ("Content-Length", str(len(data)))])
                    return [data]
        return self.flask_app(environ, start_response)

    def _answer(self, environ: dict[str, Any], served: Served) -> bytes | None:
        """The reply's body, or None: Flask answers (steps 2-4 of the module's docstring)."""
        app = self.app
        if "HTTP_COOKIE" in environ or signals.request_started.receivers or \
                signals.request_finished.receivers:
            return None
        req = app.request_class(environ)
        try:
            if not all(admits(app, req) for admits in served.admits):
                return None
        except Exception:  # whatever a check trips on, the hook meets too: Flask answers
            log.debug("a stand-in failed; Flask answers", exc_info=True)
            return None
        length, limit = req.content_length, served.route.body_limit(app.config)
        if length is None or (limit is not None and length > limit):
            return None
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length))
        try:
            body = served.route.checked(req, app.config)
        except Exception:  # refused (or broken): Flask recomputes it and says it its way
            environ["wsgi.input"].seek(0)
            return None
        outcome = served.route.outcome(body)
        if not isinstance(outcome, Exception):
            try:
                data = reply_bytes(outcome)
            except ValueError:  # not finite: the view raises it where Flask reports it
                data = None
            if data is not None:
                return data
        environ[HANDED_OVER] = outcome
        return None

    def _plan(self) -> dict[str, Served]:
        app = self.app
        problem = _app_problem(app) or (None if self.wraps_flask else
                                        "another middleware is in front of Flask")
        paths: dict[str, Served] = {}
        known = stand_ins()
        for rule in app.url_map.iter_rules():
            for view, route in self._routes:
                if app.view_functions.get(rule.endpoint) is not view or \
                        "POST" not in (rule.methods or ()):
                    continue
                why = problem or _rule_problem(app, rule, known)
                if why:
                    log.info("POST %s is answered by Flask alone: %s", rule.rule, why)
                    continue
                paths[rule.rule] = Served(route, tuple(dict.fromkeys(
                    known[hook] for hook in _hooks(app.before_request_funcs, rule.endpoint))))
        return paths


def _app_problem(app: Flask) -> str | None:
    if app.config.get("PREDICT_FAST_PATH") is False:
        return "PREDICT_FAST_PATH is False"
    if app.url_map.host_matching or app.subdomain_matching:
        return "the app matches hosts or subdomains"
    for key in ("SERVER_NAME", "TRUSTED_HOSTS"):
        if app.config.get(key) is not None:
            return f"{key} is set"
    return None


def _rule_problem(app: Flask, rule: Any, known: dict[Callable[..., Any], Admits]) -> str | None:
    if rule.arguments or rule.host or rule.subdomain:
        return "its rule is not a plain path"
    unknown = [hook for hook in _hooks(app.before_request_funcs, rule.endpoint)
               if hook not in known]
    if unknown:
        return f"before-request hook(s) {[getattr(h, '__qualname__', h) for h in unknown]}"
    for kind in ("after_request_funcs", "teardown_request_funcs", "url_value_preprocessors"):
        if _hooks(getattr(app, kind), rule.endpoint):
            return f"it has {kind}"
    return None


def _hooks(registry: dict[str | None, list[Any]], endpoint: str) -> list[Any]:
    """The functions of ``registry`` that Flask runs for ``endpoint``: the app's, then
    its blueprint's and that blueprint's parents'."""
    parts = endpoint.split(".")[:-1]
    names = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    return [hook for name in (None, *names) for hook in registry.get(name, ())]
