"""Which runs just got new rows, pushed between processes by PostgreSQL's LISTEN/NOTIFY.

On PostgreSQL every transaction of :class:`~Utilities.run_store.RunStore` that appends a
run's events or metric points also sends ``NOTIFY galaxy_runs, '<run ids>'``; the
server delivers it at commit, and only then (a rolled-back batch says nothing). A
dashboard process listens on a connection of its own (:class:`RunNotices`) and wakes
the live tails of the runs named, so a viewer of one server sees what another server or
a trainer process wrote without waiting for its poll (issue 17: several servers on one
database act as one). The poll stays as the fallback: a notice lost with a dropped
connection only costs latency. SQLite has no such channel; there the poll (and the
wake of the process that wrote) is the way.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

CHANNEL = "galaxy_runs"
NOTIFY_SQL = "SELECT pg_notify('galaxy_runs', %s)"
# PostgreSQL refuses a payload of 8,000 bytes or more; run ids are 36 characters.
_PAYLOAD_BYTES = 7_000
# A quiet listening connection is pinged this often: a half-open one (a database host
# gone without a word) would otherwise look like one that hears nothing, for ever.
PING_SECONDS = 30.0


def payloads(run_ids: Iterable[str]) -> list[str]:
    """The notices naming ``run_ids``: comma-separated, each within the payload limit."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for run_id in sorted(set(run_ids)):
        if current and size + len(run_id) + 1 > _PAYLOAD_BYTES:
            out.append(",".join(current))
            current, size = [], 0
        current.append(run_id)
        size += len(run_id) + 1
    if current:
        out.append(",".join(current))
    return out


def notify(cursor: Any, run_ids: Iterable[str]) -> None:
    """Send the notices on a DB-API cursor inside the writing transaction."""
    for payload in payloads(run_ids):
        cursor.execute(NOTIFY_SQL, (payload,))


class RunNotices:
    """A thread listening for the runs that got rows; ``on_runs`` gets their ids."""

    def __init__(self, engine: Any, on_runs: Callable[[list[str]], None], *,
                 retry_seconds: float = 1.0, ping_seconds: float = PING_SECONDS) -> None:
        self.engine, self.on_runs = engine, on_runs
        self.retry_seconds, self.ping_seconds = retry_seconds, ping_seconds
        self._stop = threading.Event()
        self._wakeup_read, self._wakeup_write = os.pipe()  # stop() interrupts the select
        self.listening = threading.Event()  # set while a LISTEN connection is open
        self.backend_pid: int | None = None  # that connection's server process
        self._thread = threading.Thread(target=self._run, name="run-notices", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wakeup_write, b"x")
        self._thread.join(timeout=10)
        os.close(self._wakeup_read)
        os.close(self._wakeup_write)

    def _run(self) -> None:
        delay = self.retry_seconds
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # the database went away: the poll covers the gap
                log.warning("run notices: %s; listening again in %.0f s", exc, delay)
            if self.listening.is_set():  # it was up: the next outage starts from scratch
                delay = self.retry_seconds
            self.listening.clear()
            self._stop.wait(delay)
            delay = min(delay * 2, 30.0)

    def _listen(self) -> None:
        raw = self.engine.raw_connection()
        raw.detach()  # held for the process's life: not the pool's to hand out
        conn = raw.dbapi_connection
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
            self.backend_pid = conn.get_backend_pid()
            self.listening.set()
            heard = time.monotonic()
            while not self._stop.is_set():
                ready = select.select([conn, self._wakeup_read], [], [], self.ping_seconds)[0]
                if conn in ready:
                    conn.poll()
                    runs = {run for notice in conn.notifies for run in notice.payload.split(",")}
                    conn.notifies.clear()
                    if runs:
                        self.on_runs(sorted(runs))
                    heard = time.monotonic()
                elif time.monotonic() - heard >= self.ping_seconds:
                    with conn.cursor() as cursor:  # raises if the connection is dead
                        cursor.execute("SELECT 1")
                    heard = time.monotonic()
        finally:
            conn.close()
