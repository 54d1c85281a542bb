"""A run's live stream: ``GET /api/training-runs/<run_id>/events`` (server-sent events).

Every message is one store row or one read's metric points, sent as ``event: <type>``
with ``id: <seq>-<point>`` (:class:`web.live_tail.Cursor`) and a JSON ``data`` line:

- ``training_metrics``: ``{"run_id", "points": {key: [{"step", "value", "wall_time"}]}}``
- ``episode``, ``trade``, ``bot_decision``, ``checkpoint``, ``alert``,
  ``training_status``, ``log``, ``importance``, ``account``, ``graph_update`` (an outside
  trainer's graph): ``{"run_id", "seq", "wall_time", "data": <the event's payload>}``
- ``connection_status`` first (no id): the run's status and where the stream starts;
  ``end`` last, once the run has ended and nothing more came (or it was deleted);
  ``error`` instead, when the store fails while the stream catches up (it reconnects).

An outside trainer's session streams the same way under its own path
(``/api/training/sessions/<id>/stream``, web/sessions_api.py: :func:`stream_reply`).

``?types=a,b`` picks message types (default all). A reconnect sends ``Last-Event-ID``
(browsers do it themselves) and gets everything after it, no gap and no repeat; a first
connection may pass ``?last_event_id=`` (a page's snapshot cursor). Without either the
stream starts at the run's current end. A comment line every ``LIVE_KEEPALIVE_SECONDS``
keeps proxies from closing a quiet stream and finds viewers that have gone.

Why server-sent events and not a WebSocket (which the seeds name): the feature is a push
from server to browser with sub-second latency; SSE is plain HTTP that waitress serves
as a streamed reply, with the browser's EventSource reconnecting and resuming by
``Last-Event-ID`` on its own, and the same sign-in, Host check and error bodies as every
other route. Controls go the other way as ordinary POSTs, so nothing needs a socket.

Each viewer holds one waitress thread: ``LIVE_MAX_VIEWERS_PER_RUN`` (50, as in the seed)
and ``LIVE_MAX_VIEWERS`` (100) cap them, with a JSON 503 when full, and Main.py sizes
waitress's thread pool for the cap.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson
from flask import Blueprint, Flask, Response, current_app, request

from Utilities.run_notices import RunNotices
from Utilities.run_store import RunNotFound, RunStore, RunStoreError
from web.json_io import ApiError, path_roots
from web.live_tail import MESSAGE_TYPES, Cursor, RunTail
from web.query_params import is_run_id
from web.store import get_store

bp = Blueprint("live_stream", __name__)

_KEY = "live_hub"
# Settings (app config, else the environment, else these).
DEFAULTS = {"LIVE_MAX_VIEWERS_PER_RUN": 50, "LIVE_MAX_VIEWERS": 100,
            "LIVE_POLL_SECONDS": 0.1, "LIVE_KEEPALIVE_SECONDS": 15.0, "LIVE_BACKLOG": 5000,
            "LIVE_OVERVIEW_SECONDS": 1.0}
RETRY_MS = 1000  # how soon a browser reconnects (its default is about 3 s)


def setting(config: dict, name: str) -> float:
    """A live-stream setting: app config, else the environment, else DEFAULTS."""
    value = config.get(name, os.environ.get(name, DEFAULTS[name]))
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if number <= 0:
        raise ValueError(f"{name} must be above 0, not {value!r}")
    return number


class LiveHub:
    """This process's run tails and viewer counts (one per app)."""

    def __init__(self, config: dict) -> None:
        self.per_run = int(setting(config, "LIVE_MAX_VIEWERS_PER_RUN"))
        self.total = int(setting(config, "LIVE_MAX_VIEWERS"))
        self.poll_seconds = setting(config, "LIVE_POLL_SECONDS")
        self.keepalive_seconds = setting(config, "LIVE_KEEPALIVE_SECONDS")
        self.backlog = int(setting(config, "LIVE_BACKLOG"))
        self._lock = threading.Lock()
        self._tails: dict[str, RunTail] = {}
        self.viewers = 0
        self.notices: RunNotices | None = None  # PostgreSQL: other processes' writes
        self._closed = False

    def attach(self, store: RunStore, run_id: str, roots: list[Path]) -> RunTail:
        """Count one more viewer of the run (its tail started if none runs); 503 when
        either cap is reached."""
        with self._lock:
            self._check_total()
            tail = self._tails.get(run_id)
            if tail is not None and not tail.alive:
                tail = None
            if tail is not None and tail.viewers >= self.per_run:
                raise ApiError(503, f"run {run_id} already has {tail.viewers} viewers "
                                    f"(LIVE_MAX_VIEWERS_PER_RUN={self.per_run}); "
                                    "try again later")
            if tail is None:
                tail = RunTail(store, run_id, poll_seconds=self.poll_seconds,
                               backlog=self.backlog, roots=roots, on_idle=self._idle)
                self._tails[run_id] = tail
            if self.notices is None and not self._closed and \
                    store.engine.dialect.name == "postgresql":
                self.notices = RunNotices(store.engine, self.wake_runs)
            tail.viewers += 1
            self.viewers += 1
            return tail

    def detach(self, tail: RunTail) -> None:
        with self._lock:
            tail.viewers -= 1
            self.viewers -= 1

    def reserve(self) -> None:
        """Count a viewer of another stream (the overview) against LIVE_MAX_VIEWERS."""
        with self._lock:
            self._check_total()
            self.viewers += 1

    def _check_total(self) -> None:
        if self.viewers >= self.total:
            raise ApiError(503, f"this server already streams to {self.viewers} viewers "
                                f"(LIVE_MAX_VIEWERS={self.total}); try again later")

    def release(self) -> None:
        with self._lock:
            self.viewers -= 1

    def close(self) -> None:
        """Stop every tail (their streams end): an app's shutdown, a test's end."""
        with self._lock:  # no listener starts after this
            self._closed, notices = True, self.notices
        if notices is not None:
            notices.stop()
        for tail in self.tails().values():
            tail.stop()

    def wake_runs(self, run_ids: list[str]) -> None:
        """:meth:`wake` each run (the ids a PostgreSQL notice named)."""
        for run_id in run_ids:
            self.wake(run_id)

    def wake(self, run_id: str) -> None:
        """The run's tail, if one runs here, reads the store now: a write this process
        just committed reaches its viewers without waiting for the poll (issue 17's
        ingest-to-viewer latency)."""
        tail = self._tails.get(run_id)  # no lock: attach() holds it over store reads
        if tail is not None:
            tail.wake()

    def tails(self) -> dict[str, RunTail]:
        with self._lock:
            return dict(self._tails)

    def _idle(self, tail: RunTail) -> bool:
        """A tail with no viewers for a while asks to stop: yes, unless one came."""
        with self._lock:
            if tail.viewers:
                return False
            if self._tails.get(tail.run_id) is tail:
                del self._tails[tail.run_id]
            return True


def init_app(app: Flask) -> None:
    app.extensions[_KEY] = LiveHub(app.config)
    app.register_blueprint(bp)


def close_streams(app: Flask) -> None:
    """End every live stream of the app and stop their readers (shutdown, a test's end)."""
    for key in (_KEY, "live_overview"):
        if (feed := app.extensions.get(key)) is not None:
            feed.close()


def hub() -> LiveHub:
    return current_app.extensions[_KEY]


# Sent whatever ?types= asks (a client may name them): where the stream starts, a store
# failure that ends it, and its end.
CONTROL_TYPES = ("connection_status", "error", "end")


def _types() -> frozenset[str]:
    raw = request.args.get("types", "")
    wanted = {name.strip() for name in raw.split(",") if name.strip()} - set(CONTROL_TYPES)
    unknown = sorted(wanted - set(MESSAGE_TYPES))
    if unknown:
        raise ApiError(422, f"unknown message type(s) {', '.join(unknown)}; known: "
                            f"{', '.join(MESSAGE_TYPES + CONTROL_TYPES)}", "types")
    return frozenset(wanted or MESSAGE_TYPES)


def _cursor() -> Cursor | None:
    """Where to resume: the Last-Event-ID header (a reconnect) wins over the query."""
    if (header := request.headers.get("Last-Event-ID")) is not None:
        return Cursor.parse(header)
    if (query := request.args.get("last_event_id")) is not None:
        return Cursor.parse(query, "last_event_id")
    return None


def _message(kind: str, body: dict) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps(body))


@bp.get("/api/training-runs/<run_id>/events")
def events(run_id: str) -> Response:
    if not is_run_id(run_id):
        raise ApiError(404, f"no training run has the id {run_id!r}", "run_id")
    return stream_reply(run_id)


def stream_reply(run_id: str, extra: dict | None = None) -> Response:
    """The live stream of an existing run (``events``, and an outside trainer's session
    stream in web/sessions_api.py); ``extra`` joins its connection_status message."""
    types, start = _types(), _cursor()
    store = get_store()
    try:
        store.get_run(run_id)
        live = hub()
        tail = live.attach(store, run_id, path_roots())
    except RunNotFound:
        raise ApiError(404, f"no training run has the id {run_id!r}", "run_id") from None
    except RunStoreError as exc:
        raise ApiError(503, f"run store unavailable: {exc}") from exc
    start = start or tail.position()
    keepalive = live.keepalive_seconds

    def stream():
        yield b"retry: %d\n\n" % RETRY_MS
        yield _message("connection_status", {"run_id": run_id, "status": tail.status,
                                             "cursor": start.text(), "types": sorted(types),
                                             **(extra or {})})
        try:
            for item in tail.follow(start, keepalive):
                if item is None:
                    yield b": keep-alive\n\n"
                elif item.type in types:
                    yield item.data
        except RunStoreError as exc:  # a catch-up read failed: the client reconnects
            yield _message("error", {"run_id": run_id, "error": f"run store unavailable: "
                                                                 f"{exc}"})
            return
        yield _message("end", {"run_id": run_id, "status": tail.status})

    response = Response(stream(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    # On close, whether or not the stream was ever read (a generator's finally would not
    # run for a reply that was never iterated).
    response.call_on_close(lambda: live.detach(tail))
    return response
