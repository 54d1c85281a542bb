"""The metrics server for outside trainers (issue 17): the seed's sessions API in the
dashboard app, over the one run store.

A session is a run whose model type is ``external`` (Utilities/session_ingest.py says
how items become rows), so an outside trainer's run has every page, alert and comparison
our own runs have. Routes (JSON; errors are the one body ``{"error", "field"}``):

- ``POST /api/training/sessions``: create (name, algorithm, model_generation,
  total_episodes, hyperparameters, tags, experiment, description) → 201 with its id.
- ``GET /api/training/sessions``: list (``status``, ``tag``, ``experiment``, ``limit``,
  ``offset``); ``GET|PUT|DELETE /api/training/sessions/<id>``.
- ``POST /api/training/sessions/<id>/metrics`` | ``/bot_decision`` | ``/graph_update``:
  one item, or ``{"batch_id", "items": [...]}``; a batch id already stored for the
  session answers ``{"accepted": 0, "duplicate": true}`` and writes nothing again.
  Any ingest (an empty batch too) is the session's heartbeat; the reply names the
  session's status and the control the run page's buttons ask for (pause, resume, stop).
- ``GET /api/training/sessions/<id>/history``: stored items by type, episode or time
  range, after a seq cursor, with limit/offset.
- ``GET /api/training/sessions/<id>/stream``: the run's live stream
  (web/live_stream.py), the seed's ``WS /ws/{session_id}`` as server-sent events.
- ``POST /api/training/sessions/<id>/token``: a new API token scoped to the session.
- ``GET /api/training/health`` (the server is up and its store answers; open to load
  balancers) and ``GET /api/training/status``. Model serving keeps ``/health``.

Security is the app's: web/auth.py's rule (open on loopback without configuration, a
token whenever auth is on), tokens scoped to one session (:func:`scope_allows`), an
allow-list of CORS origins, and a per-token rate limit (429 with ``Retry-After``).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError

from Utilities.input_errors import InputError
from Utilities.run_store import (
    ACTIVE_STATUSES,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    TRANSITIONS,
    InvalidTransition,
    RunBusy,
    RunNotFound,
    RunStore,
    RunStoreError,
    StoreUnavailable,
)
from Utilities.session_ingest import EXTERNAL, graph_keys, read_ingest
from Utilities.session_ingest import event_rows as ingest_events
from Utilities.session_ingest import metric_rows as ingest_metrics
from Utilities.session_store import (
    HISTORY_TYPES,
    MAX_HISTORY_PAGE,
    clean_expired,
    history,
    revoke_scoped_tokens,
    session_counts,
)
from web import live_stream
from web.json_io import ApiError, error_reply, json_reply, read_json_body
from web.query_params import int_param, is_run_id, status_param, text_param
from web.store import get_store

log = logging.getLogger(__name__)
bp = Blueprint("sessions_api", __name__)

PREFIX = "/api/training/"
SESSIONS = "/api/training/sessions"
MAX_CREATE_BYTES = 256 * 1024
BATCH_ID_SECONDS = 7 * 86400.0  # a retry comes within minutes; ids are kept a week
RATE_WINDOW_SECONDS = 60.0
_KEY = "sessions_api"
_DEFAULTS = {"CORS_ORIGINS": (), "METRICS_CLEANUP_SECONDS": 300.0,
             "METRICS_RETENTION_DAYS": 30.0, "METRICS_RATE_PER_SECOND": 50.0,
             "METRICS_RATE_BURST": 200, "METRICS_MAX_BATCH_ITEMS": 10_000,
             "METRICS_MAX_INGEST_MB": 32.0}
_SCOPED_PATH = re.compile(r"/api/training/sessions/([0-9a-f-]{36})(/.*)?")


def _version() -> str:
    try:
        return package_metadata.version("galaxy-models")
    except package_metadata.PackageNotFoundError:  # run from a checkout, not installed
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]


# ------------------------------------------------------------------- app state


class RateLimiter:
    """A token bucket per client (its API token's name, else its address): ``rate``
    requests a second on average, bursts of ``burst``. Per process: behind a load
    balancer each server keeps its own buckets."""

    def __init__(self, rate: float, burst: int, clock: Any = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait_for(self, key: str) -> float:
        """0 when the request may go (one token taken), else seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > 10_000:  # forget full buckets of idle clients
                    self._forget_full(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        for key, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self.rate >= self.burst:
                del self._buckets[key]


class IngestMeter:
    """Items and rows accepted in the last minute (the status page's ingest rate)."""

    def __init__(self) -> None:
        self._recent: deque[tuple[float, int, int]] = deque()
        self._lock = threading.Lock()
        self.totals = {"requests": 0, "items": 0, "rows": 0, "duplicates": 0}

    def add(self, items: int, rows: int, duplicate: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self.totals["requests"] += 1
            self.totals["duplicates"] += int(duplicate)
            if not duplicate:
                self.totals["items"] += items
                self.totals["rows"] += rows
                self._recent.append((now, items, rows))
            self._trim(now)

    def rates(self) -> dict[str, float]:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            items = sum(i for _, i, _ in self._recent)
            rows = sum(r for _, _, r in self._recent)
        return {"items_per_second": round(items / RATE_WINDOW_SECONDS, 3),
                "rows_per_second": round(rows / RATE_WINDOW_SECONDS, 3)}

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - RATE_WINDOW_SECONDS:
            self._recent.popleft()


class SessionsState:
    """The metrics server's settings and counters in one app."""

    def __init__(self, config: dict) -> None:
        self.settings = {key: config.get(key, default) for key, default in _DEFAULTS.items()}
        self.cors_origins = frozenset(self.settings["CORS_ORIGINS"] or ())
        self.limiter = RateLimiter(float(self.settings["METRICS_RATE_PER_SECOND"]),
                                   int(self.settings["METRICS_RATE_BURST"]))
        self.meter = IngestMeter()
        self.started = time.monotonic()
        self.version = _version()
        self.cleaner: RetentionCleaner | None = None

    @property
    def max_ingest_bytes(self) -> int:
        return int(float(self.settings["METRICS_MAX_INGEST_MB"]) * 2**20)

    @property
    def retention_seconds(self) -> float | None:
        days = float(self.settings["METRICS_RETENTION_DAYS"])
        return days * 86400.0 if days > 0 else None


def state() -> SessionsState:
    return current_app.extensions[_KEY]


def init_app(app: Flask) -> None:
    """Register the routes, the scope rule of session tokens, CORS and the rate limit."""
    app.extensions[_KEY] = SessionsState(app.config)
    app.extensions["token_scopes"] = scope_allows
    app.extensions["cors_trusted"] = cors_trusted
    # CORS is this blueprint's alone (hooks of the app would also take POST /predict off
    # its fast path, web/predict_wsgi.py); web/auth.py lets preflights past its gate.
    app.register_blueprint(bp)


def scope_allows(scope: str, path: str) -> bool:
    """A token scoped to session ``scope`` reaches that session's routes (not its
    token route) and the health check, nothing else."""
    if path == f"{PREFIX}health":
        return True
    match = _SCOPED_PATH.fullmatch(path)
    return bool(match) and match[1] == scope and match[2] != "/token"


# ------------------------------------------------------------------------ CORS

_CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID"


def _allowed_origin(req: Any) -> str | None:
    """The request's Origin when CORS_ORIGINS allows it on this path, else None."""
    origin = req.headers.get("Origin")
    if not origin or not req.path.startswith(PREFIX):
        return None
    origins = current_app.extensions[_KEY].cors_origins
    return origin if origin in origins or "*" in origins else None


def cors_trusted(req: Any) -> bool:
    """Whether a cross-site write comes from an allowed origin (web/csrf.py lets it in:
    its session cookie is SameSite=Lax, so such a request authenticates by token)."""
    return _allowed_origin(req) is not None


@bp.before_request
def _preflight() -> Response | tuple[Response, int] | None:
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    if _allowed_origin(request) is None:
        return error_reply(403, f"the origin {request.headers.get('Origin')!r} is not in "
                                "CORS_ORIGINS", "Origin")
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = _CORS_METHODS
    response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
    response.headers["Access-Control-Max-Age"] = "600"
    return response


@bp.after_request
def _cors_headers(response: Response) -> Response:
    origin = _allowed_origin(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        response.vary.add("Origin")
    return response


# ----------------------------------------------------------------- rate limit


@bp.before_request
def _rate_limit() -> tuple[Response, int] | None:
    if request.endpoint == "sessions_api.health" or request.method == "OPTIONS":
        return None
    principal = g.get("principal")
    key = f"{principal.kind}:{principal.name}" if principal else f"addr:{request.remote_addr}"
    wait = state().limiter.wait_for(key)
    if not wait:
        return None
    seconds = max(1, math.ceil(wait))
    reply, status = error_reply(429, f"too many requests: at most "
                                     f"{state().limiter.rate:g} a second on average (bursts "
                                     f"of {state().limiter.burst}); retry in {seconds} s")
    reply.headers["Retry-After"] = str(seconds)
    return reply, status


# ------------------------------------------------------------------- sessions


def _session(run: dict) -> dict[str, Any]:
    """A run as the seed's session."""
    config = run.get("config") or {}
    run_id = run["run_id"]
    return {
        "session_id": run_id, "run_id": run_id, "name": run["name"],
        "algorithm": run["algorithm"], "status": run["status"],
        "model_generation": config.get("model_generation"),
        "total_episodes": config.get("total_episodes"),
        "hyperparameters": config.get("hyperparameters") or {},
        "tags": run["tags"], "experiment": run["experiment"],
        "description": run["description"], "notes": run["notes"], "error": run["error"],
        "summary": run["summary"], "created_at": run["created_at"],
        "started_at": run["started_at"], "ended_at": run["ended_at"],
        "heartbeat_at": run["heartbeat_at"],
        "urls": {"run_page": f"/runs/{run_id}", "stream": f"{SESSIONS}/{run_id}/stream",
                 "history": f"{SESSIONS}/{run_id}/history"},
    }


def _store_call(call: Any, *args: Any, **kwargs: Any) -> Any:
    """A store call whose failures are HTTP errors (503 down, 422 a value it refused)."""
    try:
        return call(*args, **kwargs)
    except StoreUnavailable as exc:
        raise ApiError(503, f"run store unavailable: {exc}") from exc
    except RunNotFound as exc:
        raise ApiError(404, str(exc), "session_id") from None
    except InvalidTransition as exc:  # it moved meanwhile (ended, marked lost)
        raise ApiError(409, str(exc), "status") from None
    except RunBusy as exc:
        raise ApiError(409, str(exc), "status") from None
    except ValueError as exc:  # the store's checks of a value (a tag, a name)
        raise ApiError(422, str(exc)) from None


def _find(session_id: str) -> dict:
    """The session's run; 404 naming ``session_id`` for anything else."""
    missing = ApiError(404, f"no training session has the id {session_id!r}", "session_id")
    if not is_run_id(session_id):
        raise missing
    try:
        run = _store_call(get_store().get_run, session_id)
    except ApiError as exc:
        raise missing if exc.status == 404 else exc from None
    if run["model_type"] != EXTERNAL:
        raise ApiError(404, f"{session_id} is a run of this dashboard ({run['model_type']}), "
                            "not an outside trainer's session", "session_id")
    return run


def _fields(body: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed), key=str)
    if unknown:
        raise ApiError(422, f"{unknown[0]} is not a field here (known: "
                            f"{', '.join(allowed)})", str(unknown[0]))


def _text_field(body: dict, key: str, *, required: bool = False, limit: int = 200) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(422, f"{key} must be a{' non-empty' if required else ''} string",
                       key)
    if len(value) > limit:
        raise ApiError(422, f"{key} has {len(value)} characters; at most {limit}", key)
    return value


def _tags(body: dict) -> list[str] | None:
    tags = body.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, list) or len(tags) > 50 or not all(
            isinstance(t, str) and t.strip() and len(t) <= 64 for t in tags):
        raise ApiError(422, "tags must be a list of at most 50 non-empty strings of at most "
                            "64 characters", "tags")
    return tags


def _whole_field(body: dict, key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ApiError(422, f"{key} must be a whole number >= 0; got {value!r}", key)
    return value


_CREATE_FIELDS = ("name", "algorithm", "model_generation", "total_episodes",
                  "hyperparameters", "tags", "experiment", "description")


@bp.post(SESSIONS)
def create() -> Response:
    body = read_json_body(MAX_CREATE_BYTES)
    _fields(body, _CREATE_FIELDS)
    name = _text_field(body, "name", required=True, limit=128)
    hyperparameters = body.get("hyperparameters") or {}
    if not isinstance(hyperparameters, dict):
        raise ApiError(422, "hyperparameters must be an object of name → value",
                       "hyperparameters")
    config = {"hyperparameters": hyperparameters,
              "model_generation": _whole_field(body, "model_generation"),
              "total_episodes": _whole_field(body, "total_episodes"),
              "source": "metrics server"}
    run_id = _store_call(get_store().create_run, name=name, model_type=EXTERNAL,
                         algorithm=_text_field(body, "algorithm", limit=64), config=config,
                         tags=_tags(body) or (),
                         experiment=_text_field(body, "experiment", limit=128),
                         description=_text_field(body, "description", limit=10_000))
    log.info("session %s created (%s)", run_id, name)
    return json_reply(_session(_find(run_id)), 201)


@bp.get(SESSIONS)
def list_sessions() -> Response:
    limit = int_param("limit", 50, 1, 1000)
    offset = int_param("offset", 0, 0, 10**9)
    runs, total = _store_call(get_store().list_runs, model_type=EXTERNAL,
                              status=status_param(), tag=text_param("tag"),
                              experiment=text_param("experiment"), archived=None,
                              limit=limit, offset=offset)
    return json_reply({"sessions": [_session(run) for run in runs], "total": total,
                       "limit": limit, "offset": offset})


@bp.get(f"{SESSIONS}/<session_id>")
def get_session(session_id: str) -> Response:
    run = _find(session_id)
    body = _session(run)
    body["latest"] = _store_call(get_store().latest_metrics, session_id)
    return json_reply(body)


_UPDATE_FIELDS = ("status", "error", "description", "tags", "experiment", "notes", "summary")


@bp.put(f"{SESSIONS}/<session_id>")
def update_session(session_id: str) -> Response:
    run = _find(session_id)
    body = read_json_body(MAX_CREATE_BYTES)
    _fields(body, _UPDATE_FIELDS)
    status = body.get("status")
    if status is not None and status not in RUN_STATUSES:
        raise ApiError(422, f"status must be one of {', '.join(RUN_STATUSES)}; got "
                            f"{status!r}", "status")
    error = body.get("error")
    if error is not None:
        _text_field(body, "error", limit=10_000)
    summary = body.get("summary")
    if summary is not None and not isinstance(summary, dict):
        raise ApiError(422, "summary must be an object", "summary")
    # Every field is checked, and the move too, before anything is written.
    if status is not None and status != run["status"] and \
            status not in TRANSITIONS[run["status"]]:
        moves = ", ".join(sorted(TRANSITIONS[run["status"]])) or "none (it has ended)"
        raise ApiError(409, f"session {session_id} is {run['status']}: it cannot become "
                            f"{status} (allowed: {moves})", "status")
    texts = {key: _text_field(body, key, limit=10_000) for key in
             ("description", "experiment", "notes") if body.get(key) is not None}
    store = get_store()
    if texts or summary is not None or body.get("tags") is not None:
        _store_call(store.update_run, session_id, summary=summary, tags=_tags(body), **texts)
    if status is not None and status != run["status"]:
        _store_call(store.set_status, session_id, status, error=error)
    elif run["status"] in ACTIVE_STATUSES:
        _store_call(store.heartbeat, session_id)
    if status is not None and run.get("control") and status != run["status"]:
        _store_call(store.clear_control, session_id)  # the trainer has acted on it
    live_stream.hub().wake(session_id)
    return json_reply(_session(_find(session_id)))


@bp.delete(f"{SESSIONS}/<session_id>")
def delete_session(session_id: str) -> Response:
    """End the session (stopped, if it was live) and delete it with its data."""
    run = _find(session_id)
    store = get_store()
    if run["status"] not in TERMINAL_STATUSES:
        try:
            _store_call(store.set_status, session_id, "stopped")
        except ApiError as exc:
            if exc.status != 409:  # 409: it ended meanwhile
                raise
    _store_call(store.delete_run, session_id)
    _store_call(revoke_scoped_tokens, store, [session_id])
    log.info("session %s deleted", session_id)
    return json_reply({"deleted": session_id})


# --------------------------------------------------------------------- ingest


@bp.post(f"{SESSIONS}/<session_id>/<any(metrics, bot_decision, graph_update):kind>")
def ingest(session_id: str, kind: str) -> Response:
    settings = state()
    body = read_json_body(settings.max_ingest_bytes)
    try:
        batch = read_ingest(kind, body, time.time(),
                            int(settings.settings["METRICS_MAX_BATCH_ITEMS"]))
    except InputError as exc:
        raise ApiError.of(exc, 422) from None
    run = _find(session_id)
    store = get_store()
    last_steps = {}
    if kind == "graph_update" and batch.items:
        wanted = graph_keys(batch)
        stats = _store_call(store.series_statistics, [session_id]).get(session_id, {})
        last_steps = {key: st["last_step"] for key, st in stats.items()
                      if key in wanted and st["last_step"] is not None}
    metrics = ingest_metrics(session_id, kind, batch, last_steps)
    events = ingest_events(session_id, kind, batch)
    heartbeat = [session_id] if run["status"] in ACTIVE_STATUSES else []
    key = None if batch.batch_id is None else (session_id, batch.batch_id)
    written = _store_call(store.write_batch, metrics, events, heartbeat, batch=key)
    live_stream.hub().wake(session_id)
    settings.meter.add(len(batch.items), len(metrics) + len(events), duplicate=not written)
    accepted = len(batch.items) if written else 0
    # ``control``: what the dashboard's Pause/Resume/Stop buttons ask of the trainer
    # (None: nothing); an outside trainer obeys it, then PUTs its new status.
    return json_reply({"accepted": accepted, "duplicate": not written,
                       "status": run["status"], "control": run["control"],
                       "batch_id": batch.batch_id})


# -------------------------------------------------------------------- history


def _time_param(name: str) -> float | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO-8601 time or epoch seconds; got "
                            f"{raw[:40]!r}", name) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _history_types() -> list[str]:
    raw = request.args.get("type", "") or request.args.get("types", "")
    wanted = list(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    unknown = [t for t in wanted if t not in HISTORY_TYPES]
    if unknown:
        raise ApiError(422, f"unknown type {unknown[0]!r}; known: "
                            f"{', '.join(HISTORY_TYPES)}", "type")
    return wanted or list(HISTORY_TYPES)


@bp.get(f"{SESSIONS}/<session_id>/history")
def session_history(session_id: str) -> Response:
    types = _history_types()
    after = int_param("after", 0, 0, 2**63 - 1)
    limit = int_param("limit", 100, 1, MAX_HISTORY_PAGE)
    offset = int_param("offset", 0, 0, 10**9)
    episode_from = int_param("episode_from", None, 0, 2**53)
    episode_to = int_param("episode_to", None, 0, 2**53)
    since, until = _time_param("since"), _time_param("until")
    _find(session_id)
    items, more = _store_call(history, get_store(), session_id, types, after=after,
                              limit=limit, offset=offset, episode_from=episode_from,
                              episode_to=episode_to, since=since, until=until)
    for item in items:
        item["timestamp"] = datetime.fromtimestamp(item["wall_time"], UTC).isoformat() \
            .replace("+00:00", "Z")
    return json_reply({"session_id": session_id, "items": items, "more": more,
                       "next_after": items[-1]["seq"] if items else after,
                       "limit": limit, "offset": offset})


# --------------------------------------------------------------------- stream


@bp.get(f"{SESSIONS}/<session_id>/stream")
def stream(session_id: str) -> Response:
    _find(session_id)
    return live_stream.stream_reply(session_id, {"session_id": session_id})


# --------------------------------------------------------------------- tokens


@bp.post(f"{SESSIONS}/<session_id>/token")
def session_token(session_id: str) -> Response:
    """A new API token that reaches this session only (shown once)."""
    from web.auth_store import AuthStore, CredentialError

    principal = g.get("principal")
    if principal is not None and principal.scope is not None:
        raise ApiError(403, "a scoped token cannot make tokens")
    run = _find(session_id)
    body = read_json_body(4096) if request.content_length else {}
    _fields(body, ("name",))
    name = body.get("name") or f"session {session_id[:8]} {int(time.time() * 1000) % 10**9}"
    try:
        info, token = AuthStore(get_store().engine).create_token(str(name), scope=session_id)
    except CredentialError as exc:
        raise ApiError(422, str(exc), "name") from None
    except StoreUnavailable as exc:
        raise ApiError(503, str(exc)) from exc
    log.info("token %r scoped to session %s (%s) created", info.name, session_id, run["name"])
    return json_reply({"token": token, "name": info.name, "id": info.id,
                       "scope": session_id}, 201)


# ------------------------------------------------------------ health, status


@bp.get(f"{PREFIX}health")
def health() -> Response | tuple[Response, int]:
    """Up, and the store answers a query (a load balancer's check: no credential)."""
    store = get_store()
    try:
        with store.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (SQLAlchemyError, RunStoreError) as exc:
        log.warning("health: the store does not answer: %s", exc)
        return error_reply(503, "the run store does not answer", status="unavailable")
    return json_reply({"status": "ok", "store": "ok", "engine": store.engine.dialect.name})


@bp.get(f"{PREFIX}status")
def server_status() -> Response:
    settings = state()
    store = get_store()
    hub = live_stream.hub()
    streams = {run_id: tail.viewers for run_id, tail in hub.tails().items() if tail.viewers}
    return json_reply({
        "status": "ok", "version": settings.version,
        "uptime_seconds": round(time.monotonic() - settings.started, 3),
        "store": {"engine": store.engine.dialect.name},
        "sessions": _store_call(session_counts, store),
        "streams": {"open": hub.viewers, "by_run": streams,
                    "max_per_session": hub.per_run, "max_total": hub.total},
        "ingest": {**settings.meter.rates(), **settings.meter.totals},
        "rate_limit": {"requests_per_second": settings.limiter.rate,
                       "burst": settings.limiter.burst},
        "retention": {"session_retention_days": float(
            settings.settings["METRICS_RETENTION_DAYS"]),
            "cleanup_interval_seconds": float(settings.settings["METRICS_CLEANUP_SECONDS"])},
    })


# ----------------------------------------------------------------- retention


class RetentionCleaner:
    """Every cleanup interval: sessions that ended more than the retention ago are
    deleted with their data and tokens, and old batch ids forgotten. Any server
    process may run it; two at once delete each thing once."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.settings = app.extensions[_KEY]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="session-retention")

    def start(self) -> RetentionCleaner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def clean(self) -> dict[str, int]:
        with self.app.app_context():
            store: RunStore = get_store()
            return clean_expired(store, retention_seconds=self.settings.retention_seconds,
                                 batch_id_seconds=BATCH_ID_SECONDS)

    def _loop(self) -> None:
        interval = float(self.settings.settings["METRICS_CLEANUP_SECONDS"])
        if interval <= 0:
            return
        while not self._stop.wait(interval):
            try:
                self.clean()
            except (RunStoreError, SQLAlchemyError) as exc:
                log.warning("session retention: %s", exc)


def start_cleaner(app: Flask) -> RetentionCleaner:
    cleaner = RetentionCleaner(app).start()
    app.extensions[_KEY].cleaner = cleaner
    return cleaner
