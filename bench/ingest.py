"""Sustained ingest through the metrics server's HTTP batch API, and ingest-to-viewer
latency while it ingests (issue 17). Prints one JSON object.

A dashboard server (``Main.create_app`` under waitress in its own process, the default
metrics-server settings: rate limit, batch and body caps) on SQLite and on PostgreSQL
(DATABASE_URL when it names one, else a throw-away local server as bench/store_reads.py
starts, else skipped). In this process, for ``--seconds`` each:

- ``--senders`` threads POST ``{"batch_id", "items"}`` batches of ``--batch``
  TrainingMetricsData items to ``/api/training/sessions/<id>/metrics`` back to back; each
  item has 11 metric fields, so it is 11 metric rows (points) and 1 event row. Measured:
  metric rows per second the server accepted (``accepted`` × 11), after a 1 s warm-up;
  goal >= 20,000 rows/s on this 2-core machine;
- at the same time a probe POSTs one item every 100 ms whose ``memory_usage_mb`` is the
  wall time it was sent, and a viewer follows ``GET /api/training/sessions/<id>/stream``
  (``types=training_metrics``): the latency of a probe is when the viewer reads it minus
  when it was sent (a probe never delivered within ``--drain`` s counts as infinitely
  late). Two probes and viewers: one on the session being ingested
  (``viewer_same_session``: the viewer receives all of its 20k+ rows/s too) and one on
  another, quiet session (``viewer_other_session``). On PostgreSQL a second dashboard
  process shares the database and a viewer of the quiet session follows it there
  (``viewer_other_server``: a write reaches another server's viewers by its poll).
  Goal: p95 <= 500 ms;
- ``client``: the same through :class:`Utilities.metrics_client.MetricsClient` (its
  batching thread, JSON encoding and retries), the training loop logging as fast as
  it can: the rows per second the client got accepted (its own cost included).

    .venv/bin/python bench/ingest.py [--seconds 10] [--batch 500] [--senders 1]
        [--engines sqlite,postgresql] [--no-client]

One sender of 500-item batches is what one MetricsClient sends (one thread, batch_size
500) and, on SQLite, more than two senders of 1,000: they only queue for the one writer
(load 8-11 on 2 cores: 26.9k rows/s and 157 ms a request for 1×500 against 19.5k and
850 ms for 2×1000; the probes' p95 1.3 s against 6.8 s).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import dashboard_server  # noqa: E402
from tests.helpers.engines import postgres_url  # noqa: E402
from Utilities.metrics_client import MetricsClient  # noqa: E402

# Every metric field of TrainingMetricsData but memory_usage_mb (the probe's).
FIELDS = ("current_reward", "average_reward", "best_reward", "episode_length", "win_rate",
          "loss_value", "learning_rate", "epsilon", "actions_per_second",
          "frames_per_second", "training_time_elapsed")
ROWS_PER_ITEM = len(FIELDS)
PROBE_KEY = "train/memory_usage_mb"
WARMUP_S = 1.0
def start_server(url: str, models: str, port: int) -> subprocess.Popen:
    return dashboard_server.start_server(url, models, port, {"LIVE_KEEPALIVE_SECONDS": "1"})


def call(conn: http.client.HTTPConnection, method: str, path: str,
         body: dict | bytes | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def items(first_episode: int, count: int) -> list[dict]:
    return [{"episode": e, **{f: float(e % 97) + 0.5 for f in FIELDS}, "episode_length": 200}
            for e in range(first_episode, first_episode + count)]


class Sender(threading.Thread):
    """Back-to-back batches; counts the rows accepted after the warm-up."""

    def __init__(self, port: int, session: str, batch: int, first: int, until: float,
                 count_from: float) -> None:
        super().__init__(daemon=True)
        self.port, self.session, self.batch, self.episode = port, session, batch, first
        self.until, self.count_from = until, count_from
        self.rows = 0
        self.requests_ms: list[float] = []
        self.errors: dict[int, int] = {}
        self.last_error: dict | None = None

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        number = 0
        while time.monotonic() < self.until:
            number += 1
            body = json.dumps({"batch_id": f"{self.name}-{number}",
                               "items": items(self.episode, self.batch)}).encode()
            self.episode += self.batch
            started = time.monotonic()
            status, reply = call(conn, "POST",
                                 f"/api/training/sessions/{self.session}/metrics", body)
            if status != 200:
                self.errors[status] = self.errors.get(status, 0) + 1
                self.last_error = reply
                time.sleep(0.1)  # a 429/503: the bench's own backoff
                continue
            if started >= self.count_from:
                self.rows += reply["accepted"] * ROWS_PER_ITEM
                self.requests_ms.append((time.monotonic() - started) * 1000)
        conn.close()


class Viewer(threading.Thread):
    """A stream client: the latency of every probe value it reads."""

    def __init__(self, port: int, session: str) -> None:
        super().__init__(daemon=True)
        self.port, self.session = port, session
        self.latencies: list[float] = []
        self.ready, self.stop = threading.Event(), threading.Event()

    def run(self) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.conn.request("GET", f"/api/training/sessions/{self.session}/stream"
                                 "?types=training_metrics")
        response = self.conn.getresponse()
        assert response.status == 200, response.read()
        while not self.stop.is_set():
            try:
                line = response.fp.readline()
            except (OSError, ValueError):  # hung up by close()
                return
            if not line:
                return
            if line.startswith(b"event: connection_status"):
                self.ready.set()
            if line.startswith(b"data: ") and PROBE_KEY.encode() in line:
                now = time.time()
                points = json.loads(line[6:])["points"]
                self.latencies += [now - p["value"] for p in points.get(PROBE_KEY, [])]

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None and conn.sock is not None:
            conn.sock.shutdown(socket.SHUT_RDWR)
        self.join(10)


def probe(port: int, session: str, until: float, sent: list[float]) -> None:
    """One item every 100 ms whose memory_usage_mb is its send time."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    episode = 0
    while time.monotonic() < until:
        episode += 1
        now = time.time()
        status, _ = call(conn, "POST", f"/api/training/sessions/{session}/metrics",
                         {"episode": episode, "current_reward": 0.0, "memory_usage_mb": now})
        if status == 200:
            sent.append(now)
        time.sleep(0.1)  # the probe's pace, not a synchronisation
    conn.close()


def percentiles(values: list[float], sent: int) -> dict[str, float | int | None]:
    """Of every probe sent: one never delivered counts as infinitely late."""
    if not sent:
        return {"sent": 0}
    ms = np.array(values + [np.inf] * max(0, sent - len(values))) * 1000

    def figure(q: float) -> float | None:  # "higher": no interpolation towards infinity
        value = float(np.percentile(ms, q, method="higher"))
        return round(value, 1) if np.isfinite(value) else None
    return {"sent": sent, "delivered": len(values), "p50_ms": figure(50),
            "p95_ms": figure(95),
            "max_ms": round(float(max(values) * 1000), 1) if values else None}


def create_session(conn: http.client.HTTPConnection, name: str) -> str:
    status, created = call(conn, "POST", "/api/training/sessions",
                           {"name": name, "algorithm": "bench"})
    assert status == 201, created
    return created["session_id"]


def raw_http(port: int, args: argparse.Namespace, other_port: int | None = None) -> dict:
    """Senders into one session; probes into it (``viewer_same_session``) and into a
    quiet session (``viewer_other_session``), each followed by a viewer; given
    ``other_port`` (a second server on the same database), a viewer of the quiet session
    there too (``viewer_other_server``: the probes posted to the first server)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    busy, quiet = create_session(conn, "bench-ingest"), create_session(conn, "bench-quiet")
    viewers = {"viewer_same_session": Viewer(port, busy),
               "viewer_other_session": Viewer(port, quiet)}
    if other_port is not None:
        viewers["viewer_other_server"] = Viewer(other_port, quiet)
    for viewer in viewers.values():
        viewer.start()
    for viewer in viewers.values():
        assert viewer.ready.wait(30), "the stream never said connection_status"
    start = time.monotonic()
    until, count_from = start + WARMUP_S + args.seconds, start + WARMUP_S
    senders = [Sender(port, busy, args.batch, 1 + n * 10**9, until, count_from)
               for n in range(args.senders)]
    sent: dict[str, list[float]] = {session: [] for session in (busy, quiet)}
    probes = [threading.Thread(target=probe, args=(port, session, until, times), daemon=True)
              for session, times in sent.items()]
    for thread in (*senders, *probes):
        thread.start()
    for thread in (*senders, *probes):
        thread.join()
    finished = time.monotonic()
    deadline = finished + args.drain
    for viewer in viewers.values():
        while len(viewer.latencies) < len(sent[viewer.session]) and \
                time.monotonic() < deadline:
            time.sleep(0.05)  # the last probes' delivery (or the viewer's backlog)
    for viewer in viewers.values():
        viewer.stop.set()
        viewer.close()
    elapsed = finished - count_from  # senders finish their last batch after `until`
    rows = sum(s.rows for s in senders)
    request_ms = [ms for s in senders for ms in s.requests_ms]
    for session in (busy, quiet):
        call(conn, "PUT", f"/api/training/sessions/{session}", {"status": "completed"})
    conn.close()
    return {
        "metric_rows_per_second": round(rows / elapsed),
        "event_rows_per_second": round(rows / ROWS_PER_ITEM / elapsed),
        "requests": len(request_ms),
        "request_ms_median": round(float(np.median(request_ms)), 1) if request_ms else None,
        "errors": {str(k): v for s in senders for k, v in s.errors.items()},
        "last_error": next((s.last_error for s in senders if s.last_error), None),
        **{name: percentiles(viewer.latencies, len(sent[viewer.session]))
           for name, viewer in viewers.items()},
    }


def through_client(port: int, args: argparse.Namespace) -> dict:
    """The training loop's view: log as fast as possible through MetricsClient."""
    with MetricsClient(f"http://127.0.0.1:{port}", batch_size=args.batch,
                       max_buffer=50 * args.batch, close_timeout=60) as client:
        session = client.register_training_session("bench-client", algorithm="bench")
        assert session.wait_registered(30)
        values = {f: 1.5 for f in FIELDS if f != "current_reward"} | {"episode_length": 200}
        started = time.monotonic()
        episode = 0
        while time.monotonic() - started < args.seconds:
            for _ in range(1000):
                episode += 1
                session.update_training_metrics(episode, 1.0, **values)
            while client.stats()["buffered"] > 10 * args.batch:
                time.sleep(0.01)  # keeps the buffer from overflowing: measure, not drop
        logged_s = time.monotonic() - started
        client.flush(60)
        elapsed = time.monotonic() - started
        stats = client.stats()
    return {"metric_rows_per_second": round(stats["sent_items"] * ROWS_PER_ITEM / elapsed),
            "items_sent": stats["sent_items"], "dropped": stats["dropped"],
            "retries": stats["retries"], "loop_seconds": round(logged_s, 2),
            "seconds_to_flushed": round(elapsed, 2)}


def bench_engine(url: str, folder: Path, args: argparse.Namespace) -> dict:
    """One engine's figures. On a server database a second dashboard process shares it
    (several servers behind a load balancer): its viewer sees the first one's ingest."""
    shared = not url.startswith("sqlite")
    ports = [dashboard_server.free_port() for _ in range(2 if shared else 1)]
    servers = []
    try:
        for port in ports:
            servers.append(start_server(url, str(folder / "Models"), port))
        result = {"http_batches": raw_http(ports[0], args, ports[1] if shared else None)}
        if not args.no_client:
            result["metrics_client"] = through_client(ports[0], args)
        batches = result["http_batches"]
        result["goals_met"] = {"rows_20000_per_s": batches["metric_rows_per_second"] >= 20_000}
        for name in ("viewer_same_session", "viewer_other_session", "viewer_other_server"):
            if name in batches:
                p95 = batches[name].get("p95_ms")
                result["goals_met"][f"{name}_p95_500ms"] = p95 is not None and p95 <= 500
        return result
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
        if not url.startswith("sqlite"):
            import sqlalchemy as sa

            engine = sa.create_engine(url)
            meta = sa.MetaData()
            meta.reflect(engine)
            meta.drop_all(engine)
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=500,
                        help="items per request (500: the client's batch_size)")
    parser.add_argument("--senders", type=int, default=1,
                        help="concurrent posting threads (1: one client's sender thread)")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--drain", type=float, default=30.0,
                        help="seconds the viewers may take to catch up after the senders")
    parser.add_argument("--no-client", action="store_true",
                        help="skip the MetricsClient measurement")
    args = parser.parse_args()
    engines = args.engines.split(",")
    report: dict = {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_before": list(os.getloadavg()), "seconds": args.seconds,
                    "batch_items": args.batch, "senders": args.senders,
                    "rows_per_item": ROWS_PER_ITEM}
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if "sqlite" in engines:
            report["sqlite"] = bench_engine(f"sqlite:///{folder}/runs.db", folder, args)
        if "postgresql" in engines:
            url = stack.enter_context(postgres_url())
            report["postgresql"] = (bench_engine(url, folder, args) if url else
                                    "skipped: no PostgreSQL (set DATABASE_URL)")
    report["load_after"] = list(os.getloadavg())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
