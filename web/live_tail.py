"""What a run's live stream carries, read from the store once per run for every viewer.

A training process writes to the run store (events and metric points); the dashboard's
processes only read it. :class:`RunTail` is the one reader per run and process: a thread
that asks the store for "everything after my cursor" every ``poll_seconds`` while anyone
watches, turns what it finds into ready-to-send server-sent-event frames, keeps the
recent ones, and wakes its viewers. Twenty viewers cost one reader's queries.

A position in a run's stream is a :class:`Cursor`: the last event ``seq`` and the last
metric point id delivered. Both are store positions, so a cursor handed out by one
dashboard process is good in another (a restart, a second server on one database), and
the store hands rows out in that order (its append lock, run_store.py). A viewer whose
cursor is older than the tail's memory, or falls inside one of its frames, is brought up
to date from the store directly, bounded by the frame it meets next: no gap, no repeat.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from Utilities.run_store import TERMINAL_STATUSES, RunNotFound, RunStore, RunStoreError
from web.json_io import ApiError, hide_paths

log = logging.getLogger(__name__)

# Store event kinds as the seeds name their messages; metric points are "training_metrics".
EVENT_TYPES = {"episode": "episode", "trade": "trade", "decision": "bot_decision",
               "checkpoint": "checkpoint", "alert": "alert", "status": "training_status",
               "log": "log", "importance": "importance", "account": "account",
               "delivery": "alert_delivery", "graph": "graph_update"}
METRICS_TYPE = "training_metrics"
MESSAGE_TYPES = (METRICS_TYPE, *EVENT_TYPES.values())
PAGE = 5000  # rows of each kind per store read
STATUS_CHECK_SECONDS = 5.0  # how often a tail asks for the run (marks a dead trainer lost)


@dataclass(frozen=True)
class Cursor:
    """A position in a run's stream: the last event seq and metric point id passed."""

    seq: int = 0
    point: int = 0

    def text(self) -> str:
        return f"{self.seq}-{self.point}"

    @classmethod
    def parse(cls, text: str, field: str = "Last-Event-ID") -> Cursor:
        """A cursor from its text ``<seq>-<point>``; 400 naming ``field`` otherwise."""
        seq, sep, point = text.strip().partition("-")
        if not (sep and seq.isascii() and seq.isdigit() and point.isascii()
                and point.isdigit() and len(seq) <= 18 and len(point) <= 18):
            raise ApiError(400, f"{field} must be an event id this stream sent, "
                                f"'<seq>-<point>' (two whole numbers); got {text[:40]!r}", field)
        return cls(int(seq), int(point))

    def covers(self, other: Cursor) -> bool:
        return self.seq >= other.seq and self.point >= other.point

    def join(self, other: Cursor) -> Cursor:
        return Cursor(max(self.seq, other.seq), max(self.point, other.point))


@dataclass(frozen=True)
class Frame:
    """One message as sent: the cursor after it, its type and its encoded frame."""

    after: Cursor
    type: str
    data: bytes
    status: str | None = None  # the run's status, for a training_status message


def frame(after: Cursor, kind: str, body: dict, status: str | None = None) -> Frame:
    data = orjson.dumps(body)  # NaN and infinity become null: never a token JSON lacks
    wire = b"id: %s\nevent: %s\ndata: %s\n\n" % (after.text().encode(), kind.encode(), data)
    return Frame(after, kind, wire, status)


def read_frames(store: RunStore, run_id: str, start: Cursor, roots: list[Path],
                up_to: Cursor | None = None) -> tuple[list[Frame], Cursor, bool]:
    """One page of the run's messages after ``start`` (no later than ``up_to``): the
    frames, the cursor after them, and whether a page was full (more to read)."""
    events = store.events_after(start.seq, run_id=run_id, limit=PAGE,
                                up_to=None if up_to is None else up_to.seq)
    points, point = store.metric_points_after(run_id, start.point, limit=PAGE,
                                              up_to=None if up_to is None else up_to.point)
    frames = []
    for event in events:
        payload = hide_paths(event["payload"], roots)
        status = payload.get("status") if event["kind"] == "status" else None
        frames.append(frame(Cursor(event["seq"], start.point), EVENT_TYPES[event["kind"]],
                            {"run_id": run_id, "seq": event["seq"],
                             "wall_time": event["wall_time"], "data": payload}, status))
    seq = events[-1]["seq"] if events else start.seq
    if points:
        frames.append(frame(Cursor(seq, point), METRICS_TYPE,
                            {"run_id": run_id, "points": points}))
    full = len(events) == PAGE or sum(map(len, points.values())) == PAGE
    return frames, Cursor(seq, point), full


def stream_start(store: RunStore, run_id: str) -> Cursor:
    """The run's current end: what a viewer who asks for no history starts after."""
    return Cursor(store.event_count(run_id, EVENT_TYPES)[1], store.point_cursor(run_id))


class RunTail:
    """The one store reader of a run in this process, and its recent frames."""

    def __init__(self, store: RunStore, run_id: str, *, poll_seconds: float, backlog: int,
                 roots: list[Path], on_idle: Callable[[RunTail], bool],
                 linger_seconds: float = 10.0) -> None:
        self.store, self.run_id, self.roots = store, run_id, roots
        self.poll_seconds, self.backlog, self.linger = poll_seconds, backlog, linger_seconds
        self._on_idle = on_idle
        self._cond = threading.Condition()
        self._frames: list[Frame] = []
        self._end = stream_start(store, run_id)
        self._origin = self._end  # the cursor before the first frame kept
        self._status = store.get_run(run_id)["status"]
        self._gone = False  # the run was deleted
        self._quiet_polls = 0  # polls with nothing new since the run ended
        self._stop = threading.Event()
        self._wake = threading.Event()  # a write in this process: read now, not at the poll
        self.viewers = 0
        self._thread = threading.Thread(target=self._run, name=f"tail-{run_id[:8]}", daemon=True)
        self._thread.start()

    # ---- the reader thread ----------------------------------------------------------

    def _run(self) -> None:
        idle_since, checked = None, time.monotonic()
        while True:
            if self.viewers:  # counted under the hub's lock, which on_idle takes
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= self.linger and self._on_idle(self):
                return
            if time.monotonic() - checked >= STATUS_CHECK_SECONDS:
                checked = time.monotonic()
                self._check_run()
            if self._gone or self._stop.is_set():
                return
            if not self._poll():
                self._wake.wait(self.poll_seconds)
                # Cleared after the wait, before the next read: a wake set from here on
                # is for rows that read may miss, and it cuts the next wait short.
                self._wake.clear()

    def _poll(self) -> bool:
        try:
            frames, end, more = read_frames(self.store, self.run_id, self._end, self.roots)
        except RunStoreError as exc:  # a store outage: viewers wait, the tail retries
            log.warning("live tail of run %s: %s", self.run_id, exc)
            self._stop.wait(min(1.0, 10 * self.poll_seconds))
            return False
        with self._cond:
            for item in frames:
                self._status = item.status or self._status
            self._frames.extend(frames)
            if (trim := len(self._frames) - self.backlog) > 0:
                self._origin = self._frames[trim - 1].after
                del self._frames[:trim]
            self._end = end
            ended = self._status in TERMINAL_STATUSES
            self._quiet_polls = self._quiet_polls + 1 if ended and not frames else 0
            if frames or self._quiet_polls == 2:
                self._cond.notify_all()
        return more

    def _check_run(self) -> None:
        """Read the run: that marks a dead trainer's run lost (a status event), and a
        deleted run ends its streams."""
        try:
            self.store.get_run(self.run_id)
        except RunNotFound:
            with self._cond:
                self._gone = True
                self._cond.notify_all()
        except RunStoreError as exc:
            log.warning("live tail of run %s: %s", self.run_id, exc)

    # ---- viewers --------------------------------------------------------------------

    @property
    def status(self) -> str:
        return self._status

    def position(self) -> Cursor:
        with self._cond:
            return self._end

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._gone

    def wake(self) -> None:
        """Read the store now: rows of the run were just committed (by this process, or
        by another one that a PostgreSQL notice named; the poll finds the rest)."""
        self._wake.set()

    def stop(self) -> None:
        """End the reader and every stream following it."""
        with self._cond:
            self._stop.set()
            self._wake.set()
            self._cond.notify_all()
        self._thread.join()

    def follow(self, start: Cursor, keepalive_seconds: float) -> Iterator[Frame | None]:
        """Frames after ``start`` as they come, ``None`` for a keep-alive, until the run
        has ended and nothing more came (or it was deleted)."""
        pos = start
        while True:
            with self._cond:
                ready, boundary = self._after(pos)
                if not ready and boundary is None:
                    if self._finished():
                        return
                    self._cond.wait(keepalive_seconds)
                    ready, boundary = self._after(pos)
                    if not ready and boundary is None:
                        if self._finished():
                            return
                        yield None
                        continue
            if boundary is not None:  # behind the memory, or inside a frame: the store
                yield from self._catch_up(pos, boundary)
                pos = pos.join(boundary)
                continue
            yield from ready
            pos = ready[-1].after

    def _after(self, pos: Cursor) -> tuple[list[Frame], Cursor | None]:
        """(frames to send from memory, or the cursor to read the store up to first)."""
        frames = self._frames
        low, high = 0, len(frames)
        while low < high:  # first frame pos does not cover (covering is a prefix)
            middle = (low + high) // 2
            if pos.covers(frames[middle].after):
                low = middle + 1
            else:
                high = middle
        if low == len(frames):
            return [], None if pos.covers(self._end) else self._end
        before = frames[low - 1].after if low else self._origin
        if before == pos:
            return frames[low:], None
        return [], frames[low].after

    def _catch_up(self, pos: Cursor, boundary: Cursor) -> Iterator[Frame]:
        while not pos.covers(boundary):
            frames, end, more = read_frames(self.store, self.run_id, pos, self.roots,
                                            up_to=boundary)
            yield from frames
            pos = end if more else pos.join(boundary)

    def _finished(self) -> bool:
        return self._gone or self._quiet_polls >= 2 or self._stop.is_set()
