"""Latency from a ``MetricsLogger`` call to a viewer, and the run page's reads while
viewers stream (issue 14). Prints one JSON object.

A dashboard server (``Main.create_app`` under waitress, in its own process, as ``make run``
serves it) and a writer logging through ``MetricsLogger`` into the same SQLite store (the
trainer's path: a queue, a writer thread flushing every 200 ms). Each logged value is the
wall time of its ``log_metrics`` call; a viewer's latency is when it reads that value
minus that. Viewers:

- ``sse``: N clients of ``GET /api/training-runs/<id>/events?types=training_metrics``
  (1 and 20), what the run page uses now;
- ``poll`` (the baseline, interleaved): one client of the run page's previous feed,
  ``live.json?after=<cursor>`` every 2 s.

Then the store's read goals with 20 viewers streaming: the run's page snapshot
(``live.json``) and a 1,000-point chart of a long series, against the same reads with
no viewer. Goals: p95 <= 500 ms with 1 and 20 viewers; the reads stay within issue 13's
goals (chart <= 200 ms, first paint <= 300 ms).

    .venv/bin/python bench/live_latency.py [--seconds 8] [--rounds 2] [--points 1000000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import dashboard_server  # noqa: E402
from bench.timing import Clock  # noqa: E402
from Utilities.metrics_logger import MetricsLogger  # noqa: E402
from Utilities.run_store import RunStore  # noqa: E402

KEY = "bench/sent"
def start_server(url: str, models: str, port: int) -> subprocess.Popen:
    # Closed viewers are noticed at the next write: keep-alives every second, and caps
    # above what the bench's rounds open, so its own stragglers never meet a 503.
    return dashboard_server.start_server(
        url, models, port, {"LIVE_KEEPALIVE_SECONDS": "1", "LIVE_MAX_VIEWERS_PER_RUN": "200",
                            "LIVE_MAX_VIEWERS": "300"})


class SseViewer(threading.Thread):
    """One stream client: the latency of every bench value it reads."""

    def __init__(self, port: int, run_id: str) -> None:
        super().__init__(daemon=True)
        self.port, self.run_id, self.latencies = port, run_id, []
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        conn = self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", f"/api/training-runs/{self.run_id}/events?types=training_metrics")
        response = conn.getresponse()
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
            if line.startswith(b"data: ") and b'"points"' in line:
                now = time.time()
                body = json.loads(line[6:])
                self.latencies += [now - p["value"] for p in body["points"].get(KEY, [])]
        conn.close()


    def close(self) -> None:
        """Hang up (the reader thread ends at once instead of at the next message)."""
        conn = getattr(self, "conn", None)
        if conn is not None and conn.sock is not None:
            conn.sock.shutdown(socket.SHUT_RDWR)
        self.join(10)


class PollViewer(threading.Thread):
    """The previous page feed: live.json?after=<cursor> every ``interval`` seconds."""

    def __init__(self, port: int, run_id: str, interval: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.port, self.run_id, self.interval, self.latencies = port, run_id, interval, []
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        cursor = self._get(conn, "")["cursor"]
        self.ready.set()
        while not self.stop.wait(self.interval):
            reply = self._get(conn, f"?after={cursor}")
            now, cursor = time.time(), reply["cursor"]
            self.latencies += [now - p["value"] for p in reply["series"].get(KEY, [])]
        conn.close()

    def close(self) -> None:
        self.join(10)

    def _get(self, conn: http.client.HTTPConnection, query: str) -> dict:
        conn.request("GET", f"/runs/{self.run_id}/live.json{query}")
        return json.loads(conn.getresponse().read())


def measure(viewers: list, metrics: MetricsLogger, seconds: float, rate: float) -> list[float]:
    """Start the viewers, log ``rate`` values a second for ``seconds``, their latencies."""
    for viewer in viewers:
        viewer.start()
    for viewer in viewers:
        viewer.ready.wait(30)
    step = int(time.time() * 1000)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        step += 1
        metrics.log_metrics(step, prefix="bench", sent=time.time())
        time.sleep(1 / rate)  # the trainer's pace, not a synchronisation
    time.sleep(2.5)  # the last values' flush and delivery (the poller's 2 s period)
    for viewer in viewers:
        viewer.stop.set()
        viewer.close()
    return [latency for viewer in viewers for latency in viewer.latencies]


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ms = np.array(values) * 1000
    return {"n": len(values), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1)}


def long_run(store: RunStore, points: int) -> str:
    run_id = store.create_run(name="long", model_type="ppo")
    rng = np.random.default_rng(0)
    batch = 200_000
    for first in range(0, points, batch):
        steps = np.arange(first, min(points, first + batch))
        values = rng.normal(size=len(steps)).cumsum()
        store.write_batch(metrics=[(run_id, "episode/reward", int(s), float(v), 1.7e9 + s)
                                   for s, v in zip(steps, values, strict=True)])
    return run_id


def timed_get(port: int, path: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    with Clock() as clock:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
    assert response.status == 200, path
    conn.close()
    return clock.wall


def reads_under_viewers(port: int, run_id: str, long_id: str, viewers: int,
                        rounds: int) -> dict[str, float]:
    """Median ms of the long run's page snapshot and chart, with ``viewers`` streaming
    the live run."""
    streams = [SseViewer(port, run_id) for _ in range(viewers)]
    for stream in streams:
        stream.start()
    for stream in streams:
        stream.ready.wait(30)
    snapshot, chart = [], []
    for _ in range(rounds):
        snapshot.append(timed_get(port, f"/runs/{long_id}/live.json"))
        chart.append(timed_get(port, f"/api/training-runs/{long_id}/metrics"
                                     "?keys=episode/reward&max_points=1000"))
    for stream in streams:
        stream.stop.set()
        stream.close()
    return {"live_json_ms": round(1000 * float(np.median(snapshot)), 1),
            "chart_1000_of_long_ms": round(1000 * float(np.median(chart)), 1)}


def _median_of(results: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(float(np.median([r[key] for r in results])), 1) for key in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20.0, help="values logged per second")
    parser.add_argument("--points", type=int, default=1_000_000,
                        help="points of the long run whose reads are timed")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="live-latency-"))
    url = f"sqlite:///{folder}/runs.db"
    store = RunStore(url)
    long_id = long_run(store, args.points)
    run_id = store.create_run(name="live", model_type="ppo")
    port = dashboard_server.free_port()
    server = start_server(url, str(folder / "Models"), port)
    results: dict[str, list[float]] = {"sse_1": [], "sse_20": [], "poll_1": []}
    try:
        with MetricsLogger(store, run_id) as metrics:
            for _ in range(args.rounds):  # interleaved: baseline, 1 viewer, 20 viewers
                results["poll_1"] += measure([PollViewer(port, run_id)], metrics,
                                             args.seconds, args.rate)
                results["sse_1"] += measure([SseViewer(port, run_id)], metrics,
                                            args.seconds, args.rate)
                results["sse_20"] += measure([SseViewer(port, run_id) for _ in range(20)],
                                             metrics, args.seconds, args.rate)
            reads_under_viewers(port, run_id, long_id, 0, 1)  # warm the caches
            rounds = [(reads_under_viewers(port, run_id, long_id, 0, 3),
                       reads_under_viewers(port, run_id, long_id, 20, 3))
                      for _ in range(args.rounds)]  # interleaved
            quiet, busy = (_median_of([pair[i] for pair in rounds]) for i in (0, 1))
    finally:
        server.terminate()
        server.wait(10)
    report = {
        "engine": "sqlite", "seconds_per_round": args.seconds, "rounds": args.rounds,
        "values_per_second": args.rate, "flush_interval_s": metrics.flush_interval,
        "latency": {name: percentiles(values) for name, values in results.items()},
        "reads_points": args.points, "reads_no_viewers": quiet, "reads_20_viewers": busy,
        "goals": {"p95_ms": 500, "chart_ms": 200, "first_paint_ms": 300},
    }
    sse = [report["latency"][name].get("p95_ms") for name in ("sse_1", "sse_20")]
    report["goal_met"] = all(p is not None and p <= 500 for p in sse) and \
        busy["chart_1000_of_long_ms"] <= 200 and busy["live_json_ms"] <= 300
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
