"""Client of the dashboard's metrics server (issue 17): any training loop, on any machine,
reports to ``/api/training/sessions`` over HTTP and shows up beside our own runs.

Standard library only (``http.client``, ``json``, ``threading``) and no import of this
project, so the file can be copied next to an outside training script as it is.

The training loop only appends to an in-memory buffer (a few microseconds, never any I/O,
never an exception). A background thread sends what accumulated as batches
(``POST /api/training/sessions/<id>/metrics`` with ``{"batch_id", "items"}``) when
``batch_size`` items are waiting or every ``flush_interval`` seconds. Each batch carries a
client-chosen id, so a batch whose reply was lost and is sent again is not written twice
(the server answers ``duplicate: true``). A failure (connection refused, timeout, 5xx,
429) is retried with exponential backoff and jitter; a 429's ``Retry-After`` is honoured.
While the server is away the buffer keeps at most ``max_buffer`` items: beyond that the
oldest are dropped, counted (:meth:`MetricsClient.stats`) and logged, so a dead server
cannot exhaust the trainer's memory. A batch the server refuses for good (4xx) is logged
and dropped; a 422 naming one item (``items[3].episode``) drops that item only and sends
the rest. :meth:`MetricsClient.close` sends what is left within a timeout.

The seed's integration shape (``../shared/seeds/metrics_server.md``) sits on top::

    client = MetricsClient("http://dashboard:5000", token=os.environ.get("GALAXY_TOKEN"))
    session = client.register_training_session("my_training_001", algorithm="DQN",
                                               model_generation=2, total_episodes=1000)
    session.record_episode_end(reward=15.5, episode_length=200, won=True)
    session.update_training_metrics(episode=100, current_reward=15.5, loss_value=0.05)
    session.record_decision("right", action_probabilities={"left": 0.3, "right": 0.7},
                            confidence_score=0.7)
    session.end(status="completed")
    client.close()

Registering does not wait for the server either: the session is created by the sender
thread before anything logged to it is sent (``session.wait_registered(timeout)`` returns
its id when the caller needs it).
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import math
import random
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

log = logging.getLogger(__name__)

API = "/api/training/sessions"
# The item kinds and the route each is posted to (the contract's three ingest routes).
KINDS = {"training_metrics": "metrics", "bot_decision": "bot_decision",
         "graph_update": "graph_update"}
# Statuses a 4xx answer cannot fix by being sent again; everything else is retried.
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
# A batch the server refuses for one item is sent again without that item, this many
# times at most: beyond, the items are taken to be wrong alike and the batch is dropped
# (one request per bad item of a systematically wrong batch would be a flood).
MAX_ITEM_REFUSALS = 3
# How often at most the "buffer full, dropping" warning is repeated.
DROP_LOG_SECONDS = 30.0
# Fields of a TrainingMetricsData item (the seed's model); the SB3 callback sends
# anything else as a performance graph.
TRAINING_FIELDS = (
    "episode", "total_episodes", "current_reward", "average_reward", "best_reward",
    "episode_length", "win_rate", "loss_value", "learning_rate", "epsilon",
    "model_generation", "algorithm", "training_time_elapsed", "actions_per_second",
    "frames_per_second", "memory_usage_mb")


def iso_time(seconds: float) -> str:
    """The seed's timestamp format: ISO 8601 in UTC with a ``Z``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def plain(value: Any) -> Any:
    """A JSON-safe copy: numpy scalars and arrays as Python numbers and lists (anything
    with ``tolist``), NaN and infinities as null (strict JSON has no NaN), tuples and
    sets as lists, other objects as their ``str``. Runs in the sender thread."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    return str(value)


@dataclass
class Batch:
    """Items of one kind for one session, sent (and resent) under one batch id."""

    session: TrainingSession
    kind: str
    items: list[Any]  # (queued at, item) until sent, then the JSON-ready items
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    refusals: int = 0  # items of it the server refused so far (each one dropped)


@dataclass
class Control:
    """A session call that is not an item: create (POST) or update (PUT). It is a barrier:
    everything queued before it for the session is sent first."""

    session: TrainingSession
    method: str
    body: dict[str, Any]


class Refused(Exception):
    """The server refused a request for good (a 4xx other than 408/425/429)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('error', body)}")
        self.status, self.body = status, body


class Retry(Exception):
    """A failure worth retrying; ``after`` is the server's Retry-After when it gave one."""

    def __init__(self, message: str, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class TrainingSession:
    """One training run on the server. Every method only queues and returns at once."""

    def __init__(self, client: MetricsClient, name: str) -> None:
        self.client, self.name = client, name
        self.session_id: str | None = None
        self.failed: str | None = None  # why the server would not create it
        # What the dashboard's Pause/Resume/Stop buttons ask of this training ("pause",
        # "resume", "stop"; None: nothing), as the last ingest reply said. A loop that
        # obeys it then reports its new status (end("stopped"), update(status="paused")).
        self.control: str | None = None
        self._registered = threading.Event()
        # For record_episode_end: the seed's MetricsCollector keeps these per training.
        self.episodes = 0
        self.wins = 0
        self.best_reward: float | None = None
        self.recent: deque[float] = deque(maxlen=client.average_window)
        self.started = time.monotonic()

    def wait_registered(self, timeout: float | None = None) -> str | None:
        """The server's session id once created (None on timeout or refusal)."""
        self._registered.wait(timeout)
        return self.session_id

    def update_training_metrics(self, episode: int, current_reward: float,
                                **fields: Any) -> None:
        """One TrainingMetricsData item: the episode's number and reward (the server
        requires both) and any other of its fields (:data:`TRAINING_FIELDS`: loss_value,
        learning_rate, ...); None values are left out."""
        item = {"episode": episode, "current_reward": current_reward,
                **{k: v for k, v in fields.items() if v is not None}}
        self.client.enqueue(self, "training_metrics", item)

    def record_episode_end(self, reward: float, episode_length: int | None = None,
                           won: bool | None = None, total_episodes: int | None = None,
                           **fields: Any) -> None:
        """An episode ended: counts it and sends its reward with the running average (the
        last ``average_window`` episodes), the best reward so far and the win rate (in
        percent, when ``won`` is given), as the seed's ``MetricsCollector`` does."""
        try:
            reward = float(reward)
        except (TypeError, ValueError):
            log.warning("record_episode_end: reward %r is not a number; skipped", reward)
            return
        self.episodes += 1
        self.recent.append(reward)
        if self.best_reward is None or reward > self.best_reward:
            self.best_reward = reward
        if won is not None:
            self.wins += bool(won)
        self.update_training_metrics(
            self.episodes, reward,
            average_reward=sum(self.recent) / len(self.recent), best_reward=self.best_reward,
            episode_length=episode_length, total_episodes=total_episodes,
            win_rate=100.0 * self.wins / self.episodes if won is not None else None,
            training_time_elapsed=time.monotonic() - self.started, **fields)

    def record_decision(self, selected_action: str | int, **fields: Any) -> None:
        """One BotDecisionData item: the action taken (required) and any of
        action_probabilities, state_values, q_values, confidence_score, episode, step."""
        item = {"selected_action": selected_action,
                **{k: v for k, v in fields.items() if v is not None}}
        self.client.enqueue(self, "bot_decision", item)

    def update_graph(self, graph_id: str, values: Mapping[str, float], *,
                     step: int | None = None, title: str | None = None,
                     y_label: str | None = None) -> None:
        """One point per metric of a performance graph (a PerformanceGraphData item,
        ``data_points = {metric: [{step, value}]}``; stored as ``graph/<graph_id>/<metric>``
        at ``step``, or at the time of this call in epoch milliseconds without one).
        Graph ids and metric names: 1 to 64 of ``A-Z a-z 0-9 _ . : -``."""
        point: dict[str, Any] = ({"step": step} if step is not None
                                 else {"timestamp": iso_time(time.time())})
        item: dict[str, Any] = {
            "graph_id": graph_id, "title": title or graph_id, "metrics": list(values),
            "data_points": {k: [{**point, "value": v}] for k, v in values.items()}}
        if y_label:
            item["y_label"] = y_label
        self.client.enqueue(self, "graph_update", item)

    def update(self, **fields: Any) -> None:
        """PUT the session: status (running|paused|completed|stopped|failed), error,
        description, tags, experiment, notes, summary. Sent after what was queued before."""
        self.client.control(self, "PUT", {k: v for k, v in fields.items() if v is not None})

    def end(self, status: str = "completed", error: str | None = None,
            summary: Mapping[str, Any] | None = None) -> None:
        """The training finished (or failed): its final status."""
        self.update(status=status, error=error, summary=dict(summary) if summary else None)


class MetricsClient:
    """Sends training sessions' metrics to the dashboard; never blocks or raises into the
    caller. Use as a context manager or call :meth:`close`."""

    def __init__(self, base_url: str, token: str | None = None, *, batch_size: int = 500,
                 flush_interval: float = 0.5, max_buffer: int = 100_000,
                 timeout: float = 10.0, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 close_timeout: float = 10.0, average_window: int = 100) -> None:
        """``batch_size``: most items per request (a batch is sent as soon as this many
        wait); ``flush_interval``: seconds between sends of a smaller batch;
        ``max_buffer``: most items held while the server is away (the oldest dropped
        beyond it); ``timeout``: seconds per request; ``backoff_base``/``backoff_max``:
        the first and the longest wait between retries; ``close_timeout``: how long
        close() sends what is left."""
        parts = urllib.parse.urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port], not {base_url!r}")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path
        self.token = token
        self.batch_size, self.flush_interval = max(1, batch_size), flush_interval
        self.max_buffer, self.timeout = max(1, max_buffer), timeout
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.close_timeout, self.average_window = close_timeout, average_window
        self.sessions: dict[str, TrainingSession] = {}

        self._lock = threading.Lock()
        self._queue: deque[tuple[TrainingSession, str, float, Any]] = deque()
        self._controls = 0  # control calls in the queue (not counted against max_buffer)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deadline = math.inf  # when close() gives up sending
        self._gave_up = False
        self._conn: http.client.HTTPConnection | None = None
        self._counts = dict.fromkeys(
            ("queued", "sent_items", "sent_batches", "duplicates", "retries", "dropped",
             "rejected", "unsent_at_close"), 0)
        self._done = 0  # items resolved (sent, refused or dropped): flush() waits on it
        self._done_changed = threading.Condition(self._lock)
        self._last_drop_log = -math.inf
        self.last_error: str | None = None
        self.server_up: bool | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="metrics-client", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- the caller's side

    def __enter__(self) -> MetricsClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def register_training_session(
            self, training_id: str, model_generation: int | None = None,
            algorithm: str | None = None, total_episodes: int | None = None, *,
            hyperparameters: Mapping[str, Any] | None = None, tags: Iterable[str] = (),
            experiment: str | None = None, description: str | None = None,
    ) -> TrainingSession:
        """A session named ``training_id`` (the seed's call); created on the server by the
        sender thread, before anything logged to it. Calls taking ``training_id`` find it."""
        session = TrainingSession(self, training_id)
        self.sessions[training_id] = session
        body = {"name": training_id, "algorithm": algorithm,
                "model_generation": model_generation, "total_episodes": total_episodes,
                "hyperparameters": dict(hyperparameters) if hyperparameters else None,
                "tags": list(tags) or None, "experiment": experiment,
                "description": description}
        self.control(session, "POST", {k: v for k, v in body.items() if v is not None})
        return session

    register_session = register_training_session

    def update_training_metrics(self, training_id: str, episode: int, current_reward: float,
                                **fields: Any) -> None:
        """The seed's ``update_training_metrics(training_id=..., episode=..., ...)``."""
        session = self._session(training_id)
        if session is not None:
            session.update_training_metrics(episode, current_reward, **fields)

    def record_episode_end(self, training_id: str, reward: float,
                           episode_length: int | None = None, won: bool | None = None,
                           total_episodes: int | None = None) -> None:
        """The seed's ``MetricsCollector.record_episode_end``."""
        session = self._session(training_id)
        if session is not None:
            session.record_episode_end(reward, episode_length, won, total_episodes)

    def record_decision(self, training_id: str, selected_action: str | int,
                        **fields: Any) -> None:
        session = self._session(training_id)
        if session is not None:
            session.record_decision(selected_action, **fields)

    def end_training_session(self, training_id: str, status: str = "completed",
                             error: str | None = None) -> None:
        session = self._session(training_id)
        if session is not None:
            session.end(status, error)

    def enqueue(self, session: TrainingSession, kind: str, item: Any) -> None:
        """Queue one item; drops the oldest queued item when the buffer is full."""
        if self._closed:
            return
        with self._lock:
            if len(self._queue) - self._controls >= self.max_buffer:
                self._drop_oldest()
            self._queue.append((session, kind, time.time(), item))
            self._counts["queued"] += 1
            full = len(self._queue) >= self.batch_size
        if full:
            self._wake.set()

    def control(self, session: TrainingSession, method: str, body: dict[str, Any]) -> None:
        """Queue a session create/update; never dropped for room (it is one request)."""
        if self._closed:
            return
        with self._lock:
            self._queue.append((session, "control", time.time(), Control(session, method, body)))
            self._controls += 1
            self._counts["queued"] += 1
        self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call was sent or given up on; True
        when it was within ``timeout``. For tests and the end of a script, not the loop."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._counts["queued"]
            self._wake.set()
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._done_changed.wait(min(left, 0.5))
            return True

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued (within ``timeout``, default ``close_timeout``), then stop.
        What could not be sent in time is counted in ``unsent_at_close`` and logged."""
        if self._closed:
            return
        self._closed = True
        wait = self.close_timeout if timeout is None else timeout
        self._deadline = time.monotonic() + wait
        self._stop.set()
        self._wake.set()
        self._thread.join(wait + 1.0)
        with self._lock:
            left = len(self._queue)
            self._counts["unsent_at_close"] += left
            self._queue.clear()
            self._controls = 0
        if left:
            log.warning("metrics client closed with %d item(s) not sent (%s)", left,
                        self.last_error or "timeout")
        self._disconnect()

    def stats(self) -> dict[str, Any]:
        """Counts since start: queued, sent_items, sent_batches, duplicates (batches the
        server already had), retries, dropped (buffer full), rejected (refused by the
        server), unsent_at_close; buffered (waiting now), server_up, last_error."""
        with self._lock:
            return {**self._counts, "buffered": len(self._queue), "server_up": self.server_up,
                    "last_error": self.last_error}

    def _session(self, training_id: str) -> TrainingSession | None:
        session = self.sessions.get(training_id)
        if session is None:
            log.warning("no session registered as %r; call register_training_session first",
                        training_id)
        return session

    def _drop_oldest(self) -> None:
        """Drop the oldest queued item (lock held); control calls stay (without its
        create, a session's later items could never be sent)."""
        kept = []
        while self._queue and self._queue[0][1] == "control":
            kept.append(self._queue.popleft())
        if self._queue:
            self._queue.popleft()
            self._drop(1)
        self._queue.extendleft(reversed(kept))

    def _drop(self, count: int) -> None:
        """Count items dropped for room (called with the lock held) and say so, at most
        every DROP_LOG_SECONDS."""
        self._counts["dropped"] += count
        self._done += count
        self._done_changed.notify_all()
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_SECONDS:
            self._last_drop_log = now
            log.warning("metrics buffer full (%d items): dropping the oldest; %d dropped so "
                        "far (%s)", self.max_buffer, self._counts["dropped"],
                        self.last_error or "server slow")

    def _resolve(self, count: int, counter: str | None = None) -> None:
        with self._lock:
            if counter:
                self._counts[counter] += count
            self._done += count
            self._done_changed.notify_all()

    # ----------------------------------------------------------------- the sender thread

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            if not stopping:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
            while True:
                work = self._take()
                if not work:
                    break
                for unit in work:
                    try:
                        self._deliver(unit)
                    except Exception:  # a bug here must not stop the thread for good
                        log.exception("metrics client: unexpected error; batch dropped")
                        self._resolve(len(unit.items) if isinstance(unit, Batch) else 1,
                                      "rejected")
                if self._past_deadline():
                    return
            if stopping:
                return

    def _past_deadline(self) -> bool:
        return self._gave_up or time.monotonic() >= self._deadline

    def _take(self) -> list[Batch | Control]:
        """Up to ``batch_size`` queued items, grouped into one batch per (session, kind)
        in first-seen order; a control call ends the slice (it is sent after the items
        before it, alone)."""
        with self._lock:
            if not self._queue:
                return []
            if self._queue[0][1] == "control":
                self._controls -= 1
                return [self._queue.popleft()[3]]
            groups: dict[tuple[int, str], Batch] = {}
            taken = 0
            while self._queue and taken < self.batch_size and self._queue[0][1] != "control":
                session, kind, at, item = self._queue.popleft()
                key = (id(session), kind)
                if key not in groups:
                    groups[key] = Batch(session, kind, [])
                groups[key].items.append((at, item))
                taken += 1
            return list(groups.values())

    def _deliver(self, unit: Batch | Control) -> None:
        """Send one unit until it is accepted, refused for good, or close() gives up."""
        if isinstance(unit, Control):
            self._send_control(unit)
            return
        session = unit.session
        if not self._await_session(session):
            self._resolve(len(unit.items), "rejected")
            return
        unit.items = [self._item(at, item, unit.kind) for at, item in unit.items]
        pending = [unit]
        while pending:
            batch = pending.pop(0)
            path = f"{API}/{session.session_id}/{KINDS[batch.kind]}"
            try:
                reply = self._with_retries(
                    "POST", path, {"batch_id": batch.batch_id, "items": batch.items})
            except Refused as refused:
                pending[:0] = self._after_refusal(batch, refused)
                continue
            except Retry:  # close() gave up
                left = len(batch.items) + sum(len(p.items) for p in pending)
                self._resolve(left, "unsent_at_close")
                return
            self._resolve(len(batch.items), "sent_items")
            if "control" in reply:
                session.control = reply["control"]
            with self._lock:
                self._counts["sent_batches"] += 1
                self._counts["duplicates"] += bool(reply.get("duplicate"))

    def _item(self, at: float, item: Any, kind: str) -> dict[str, Any]:
        body = plain(item)
        if kind != "graph_update":  # a graph's points carry their own timestamps
            body.setdefault("timestamp", iso_time(at))
        return body

    def _after_refusal(self, batch: Batch, refused: Refused) -> list[Batch]:
        """What is still worth sending of a refused batch: a 413 splits it in halves; a
        422 naming one item (``items[3]...``) drops that item only; else nothing."""
        items = batch.items
        if refused.status == 413 and len(items) > 1:
            half = len(items) // 2
            return [Batch(batch.session, batch.kind, items[:half]),
                    Batch(batch.session, batch.kind, items[half:])]
        bad = item_index(refused.body.get("field"))
        if (refused.status == 422 and bad is not None and bad < len(items) and len(items) > 1
                and batch.refusals < MAX_ITEM_REFUSALS):
            log.warning("metrics server refused %s item %s: %s; the rest is sent", batch.kind,
                        refused.body.get("field"), refused.body.get("error"))
            self._resolve(1, "rejected")
            rest = Batch(batch.session, batch.kind, items[:bad] + items[bad + 1:])
            rest.refusals = batch.refusals + 1
            return [rest]
        log.error("metrics server refused a batch of %d %s item(s) (%s); dropped",
                  len(items), batch.kind, refused)
        self._resolve(len(items), "rejected")
        return []

    def _await_session(self, session: TrainingSession) -> bool:
        """True once the session exists on the server (its create is queued before it)."""
        if session.session_id is None:
            # Said once, when the create was refused (_send_control); here only in debug.
            log.debug("session %r has no id; its items are dropped", session.name)
        return session.session_id is not None

    def _send_control(self, control: Control) -> None:
        session = control.session
        try:
            if control.method == "POST":
                reply = self._with_retries("POST", API, control.body)
                session.session_id = str(reply.get("session_id") or reply.get("run_id"))
                log.info("metrics session %r registered as %s", session.name,
                         session.session_id)
            elif self._await_session(session):
                reply = self._with_retries("PUT", f"{API}/{session.session_id}", control.body)
                session.control = reply.get("control")  # a new status clears the request
            self._resolve(1)
        except Refused as refused:
            if control.method == "POST":
                session.failed = str(refused)
            log.error("metrics server refused %s of session %r: %s", control.method,
                      session.name, refused)
            self._resolve(1, "rejected")
        except Retry:  # close() gave up
            self._resolve(1, "unsent_at_close")
        finally:
            if control.method == "POST":
                session._registered.set()

    def _with_retries(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request, retried until it succeeds or is refused for good; raises Retry
        only when close()'s deadline passes while retrying."""
        payload = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        for attempt in itertools.count():
            try:
                reply = self._request(method, path, payload)
                self.server_up, self.last_error = True, None
                return reply
            except Retry as failure:
                self.server_up, self.last_error = False, str(failure)
                with self._lock:
                    self._counts["retries"] += 1
                wait = self._backoff(attempt, failure.after)
                log.debug("metrics %s %s failed (%s); retry in %.2f s", method, path,
                          failure, wait)
                if time.monotonic() + wait >= self._deadline:
                    self._gave_up = True  # the rest stays queued: counted unsent
                    raise
                if self._stop.is_set():  # closing: the backoff still holds
                    time.sleep(wait)
                else:  # close() wakes it for one last try before its deadline
                    self._stop.wait(wait)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, after: float | None) -> float:
        """Exponential with jitter (half to all of base·2^attempt, at most backoff_max);
        the server's Retry-After when it gave one (never less)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** min(attempt, 30))
        wait = ceiling * (0.5 + random.random() / 2)
        return max(wait, after) if after is not None else wait

    def _request(self, method: str, path: str, payload: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn = self._connection()
            conn.request(method, self.prefix + path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            self._disconnect()  # a broken keep-alive connection is opened anew
            raise Retry(f"{type(error).__name__}: {error}") from error
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"error": raw[:200].decode("utf-8", "replace")}
        if not isinstance(body, dict):
            body = {"reply": body}
        if response.will_close:
            self._disconnect()
        if 200 <= response.status < 300:
            return body
        if response.status in RETRYABLE:
            raise Retry(f"HTTP {response.status}: {body.get('error', '')}",
                        retry_after(response.getheader("Retry-After")))
        raise Refused(response.status, body)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = (http.client.HTTPSConnection if self.scheme == "https"
                    else http.client.HTTPConnection)
            self._conn = kind(self.host, self.port, timeout=self.timeout)
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def item_index(field_path: Any) -> int | None:
    """The index in ``items[3].episode`` (the 422's field, data not a message)."""
    if not isinstance(field_path, str) or not field_path.startswith("items["):
        return None
    number = field_path[len("items["):].partition("]")[0]
    return int(number) if number.isdigit() else None


def health(base_url: str, token: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """``GET /api/training/health`` once (for scripts that check before training);
    raises OSError or ValueError when the server does not answer with JSON."""
    request = urllib.request.Request(base_url.rstrip("/") + "/api/training/health",
                                     headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())

