"""Write throughput of the run store, and of MetricsLogger into it. Prints one JSON object.

The rows are what a training logs: per episode three metric rows (``episode/reward``,
``episode/steps``, ``episode/win``) and one ``episode`` event (its record as a JSON
payload), i.e. what ``log_episode(i, reward=, steps=, win=)`` stores.

For each engine (SQLite in a temporary file; PostgreSQL too when ``DATABASE_URL`` names
one, e.g. ``export DATABASE_URL=$(tools/local_postgres.sh start)``), interleaved, every
repeat measuring all three in turn so a busy machine hits them alike:

1. ``baseline``: the engine's ceiling: the same rows through the bare driver (sqlite3
   ``executemany``; psycopg2 ``execute_values``) into plain tables shaped like the
   store's (points: id, series_id, step, value, wall_time, indexed on (series_id,
   step); events: seq, run_id, kind, payload as JSON text, wall_time, indexed on
   run_id), one transaction per ``--batch`` rows, SQLite with the store's PRAGMAs
   (WAL, synchronous=NORMAL). No series statistics, no rollups, no validation: what
   the store adds to this is its price for reads that do not grow with a series.
2. ``write_batch``: ``RunStore.write_batch`` of the same rows in the same slices: the
   store as it is in this checkout (whatever its tables, rollups and checks).
3. ``logger``: ``MetricsLogger.log_episode`` in a tight loop for ``--episodes``
   episodes, then ``close()``: from the first call until every row is stored. It must
   drop nothing (``dropped`` 0, ``complete``: the logger wrote 3 metric rows and one
   event per episode, the store's event sequence grew by one per episode and its latest
   ``episode/reward`` step is the last episode). ``log_loop_s`` is the training
   thread's time in the loop, ``behind_peak`` the most rows that waited.

Each reports rows/s (wall clock) and rows per CPU second of this process (both threads;
it says less about PostgreSQL, whose server's CPU is not counted); the ratios compare
the medians with the baseline. On a machine shared with other work the wall-clock rate
falls with the CPU share this process gets; the CPU rate much less. Goal: the logger
end to end >= 200,000 rows/s into SQLite (issue 13).

Usage: python bench/store_writes.py [--episodes 1000000] [--rows 400000]
           [--batch 20000] [--repeats 3] [--engine sqlite|postgresql|all]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from Utilities.metrics_logger import MetricsLogger
from Utilities.run_store import RunStore

GOAL_LOGGER_ROWS_PER_S = 200_000
METRIC_KEYS = ("episode/reward", "episode/steps", "episode/win")
ROWS_PER_EPISODE = len(METRIC_KEYS) + 1


def episode_rows(run_id: str, episodes: int) -> tuple[list[tuple], list[tuple]]:
    """The metric and event rows log_episode(i, reward=, steps=200, win=) stores."""
    metrics, events = [], []
    start = time.time()
    for i in range(episodes):
        now, reward, win = start + i * 1e-3, (i % 97) / 7.0, i % 3 == 0
        metrics += [(run_id, "episode/reward", i, reward, now),
                    (run_id, "episode/steps", i, 200.0, now),
                    (run_id, "episode/win", i, float(win), now)]
        events.append((run_id, "episode", {"episode": i, "reward": reward, "steps": 200,
                                           "win": win}, now))
    return metrics, events


def slices(metrics: list[tuple], events: list[tuple],
           batch: int) -> Iterator[tuple[list[tuple], list[tuple]]]:
    """Batches of about ``batch`` rows, each with its episodes' metrics and events."""
    per = max(1, batch // ROWS_PER_EPISODE)
    for start in range(0, len(events), per):
        yield (metrics[start * len(METRIC_KEYS):(start + per) * len(METRIC_KEYS)],
               events[start:start + per])


@contextmanager
def clocks() -> Iterator[dict[str, float]]:
    """Wall and process-CPU seconds of the block, filled in when it ends."""
    spent: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield spent
    spent["wall_s"] = time.perf_counter() - wall
    spent["cpu_s"] = time.process_time() - cpu


def rates(rows: int, spent: dict[str, float]) -> dict[str, float]:
    return {"rows": rows, "wall_s": round(spent["wall_s"], 3),
            "rows_per_s": round(rows / spent["wall_s"]),
            "rows_per_cpu_s": round(rows / max(spent["cpu_s"], 1e-9))}


# ------------------------------------------------------------------------- baselines

SQLITE_TABLES = (
    "CREATE TABLE bench_points (id INTEGER PRIMARY KEY, series_id INTEGER, step INTEGER, "
    "value REAL, wall_time REAL)",
    "CREATE INDEX bench_points_series_step ON bench_points (series_id, step)",
    "CREATE TABLE bench_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, "
    "kind TEXT, payload TEXT, wall_time REAL)",
    "CREATE INDEX bench_events_run ON bench_events (run_id)",
)
POSTGRES_TABLES = (
    "CREATE TABLE bench_points (id BIGSERIAL PRIMARY KEY, series_id BIGINT, step BIGINT, "
    "value DOUBLE PRECISION, wall_time DOUBLE PRECISION)",
    "CREATE INDEX bench_points_series_step ON bench_points (series_id, step)",
    "CREATE TABLE bench_events (seq BIGSERIAL PRIMARY KEY, run_id TEXT, kind TEXT, "
    "payload JSON, wall_time DOUBLE PRECISION)",
    "CREATE INDEX bench_events_run ON bench_events (run_id)",
)
POINTS_SQL = "INSERT INTO bench_points (series_id, step, value, wall_time) VALUES "
EVENTS_SQL = "INSERT INTO bench_events (run_id, kind, payload, wall_time) VALUES "


def point_rows(metrics: list[tuple]) -> list[tuple]:
    """The metric rows as the store's points: (series_id, step, value, wall_time)."""
    series = {key: number for number, key in enumerate(METRIC_KEYS, start=1)}
    return [(series[key], step, value, wall) for _, key, step, value, wall in metrics]


def baseline_batches(points: list[tuple], events: list[tuple],
                     batch: int) -> Iterator[tuple[list[tuple], list[tuple]]]:
    """Slices of points and events; the payloads are encoded as the slices are taken,
    inside the timing (storing an event is writing its JSON); the points are made
    before it (the ceiling)."""
    for metric_rows, event_rows in slices(points, events, batch):
        yield metric_rows, [(run, kind, json.dumps(payload), wall)
                            for run, kind, payload, wall in event_rows]


def sqlite_baseline(folder: str, metrics: list[tuple], events: list[tuple],
                    batch: int) -> dict[str, float]:
    """sqlite3 executemany of the rows into fresh plain tables, the store's PRAGMAs."""
    path = Path(folder) / "baseline.db"
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):
            connection.execute(f"PRAGMA {pragma}")
        for statement in SQLITE_TABLES:
            connection.execute(statement)
        connection.commit()
        batches = baseline_batches(point_rows(metrics), events, batch)
        with clocks() as spent:
            for point_batch, event_batch in batches:
                connection.executemany(POINTS_SQL + "(?, ?, ?, ?)", point_batch)
                connection.executemany(EVENTS_SQL + "(?, ?, ?, ?)", event_batch)
                connection.commit()
    finally:
        connection.close()
    return rates(len(metrics) + len(events), spent)


def postgres_baseline(store: RunStore, metrics: list[tuple], events: list[tuple],
                      batch: int) -> dict[str, float]:
    """psycopg2 execute_values of the rows into fresh plain tables (dropped after)."""
    from psycopg2.extras import execute_values

    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("DROP TABLE IF EXISTS bench_points, bench_events")
        for statement in POSTGRES_TABLES:
            cursor.execute(statement)
        raw.commit()
        batches = baseline_batches(point_rows(metrics), events, batch)
        with clocks() as spent:
            for point_batch, event_batch in batches:
                execute_values(cursor, POINTS_SQL + "%s", point_batch, page_size=5000)
                execute_values(cursor, EVENTS_SQL + "%s", event_batch, page_size=5000)
                raw.commit()
        cursor.execute("DROP TABLE bench_points, bench_events")
        raw.commit()
    finally:
        raw.close()
    return rates(len(metrics) + len(events), spent)


# ------------------------------------------------------------------------ the store

def store_write_batch(store: RunStore, episodes: int, batch: int) -> dict[str, float]:
    """RunStore.write_batch of one new run's episode rows, ``batch`` rows per call."""
    run_id = store.create_run(name="bench-write-batch", model_type="ppo")
    metrics, events = episode_rows(run_id, episodes)
    try:
        with clocks() as spent:
            for metric_rows, event_rows in slices(metrics, events, batch):
                store.write_batch(metrics=metric_rows, events=event_rows)
    finally:
        store.delete_run(run_id)
    return rates(len(metrics) + len(events), spent)


def logger_end_to_end(store: RunStore, episodes: int) -> dict[str, Any]:
    """log_episode in a tight loop, then close(): the time until every row is stored."""
    run_id = store.create_run(name="bench-logger", model_type="ppo")
    said = _Said()
    logging.getLogger("Utilities.metrics_logger").addHandler(said)
    full_collections = [0]

    def count_full(phase: str, info: dict[str, int]) -> None:
        full_collections[0] += phase == "start" and info["generation"] == 2

    gc.callbacks.append(count_full)
    try:
        seq_before = store.last_seq()
        with clocks() as spent:
            metrics = MetricsLogger(store, run_id)
            log_episode = metrics.log_episode
            loop_start = time.perf_counter()
            for i in range(episodes):
                log_episode(i, reward=(i % 97) / 7.0, steps=200, win=i % 3 == 0)
            loop_s = time.perf_counter() - loop_start
            metrics.close()
        stats = metrics.get_statistics()
        latest = store.latest_metrics(run_id).get("episode/reward") or {}
        complete = (stats["written_metrics"] == len(METRIC_KEYS) * episodes
                    and stats["written_events"] == episodes
                    and store.last_seq() - seq_before == episodes
                    and latest.get("step") == episodes - 1)
    finally:
        gc.callbacks.remove(count_full)
        logging.getLogger("Utilities.metrics_logger").removeHandler(said)
        store.delete_run(run_id)
    rows = stats["written_metrics"] + stats["written_events"]
    return {**rates(rows, spent), "episodes": episodes, "log_loop_s": round(loop_s, 3),
            "log_episode_mean_us": round(loop_s / episodes * 1e6, 3),
            "dropped": stats["dropped"], "write_failures": stats["write_failures"],
            "behind_peak": stats["behind_peak"], "said_falling_behind": said.behind,
            "flushes": stats["flushes"], "full_gc_collections": full_collections[0],
            "complete": complete}


class _Said(logging.Handler):
    """Counts the logger's 'falling behind' warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.behind = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.behind += "falling behind" in record.getMessage()


# ---------------------------------------------------------------------------- running

def engine_urls(choice: str, folder: str) -> dict[str, str]:
    urls = {}
    if choice in ("sqlite", "all"):
        urls["sqlite"] = f"sqlite:///{folder}/store.db"
    database_url = os.environ.get("DATABASE_URL", "")
    if choice in ("postgresql", "all") and database_url.startswith("postgresql"):
        urls["postgresql"] = database_url
    if choice == "postgresql" and not urls:
        raise SystemExit("--engine postgresql needs DATABASE_URL=postgresql+psycopg2://…")
    return urls


def median_of(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric field over the repeats (the samples listed beside)."""
    out: dict[str, Any] = {}
    for key, value in samples[0].items():
        if isinstance(value, bool):
            out[key] = all(s[key] for s in samples)
        elif key in ("dropped", "write_failures"):  # any loss in any repeat counts
            out[key] = max(s[key] for s in samples)
        elif isinstance(value, int | float):
            out[key] = statistics.median(s[key] for s in samples)
        else:
            out[key] = value
    out["rows_per_s_samples"] = [s["rows_per_s"] for s in samples]
    return out


def bench_engine(name: str, url: str, folder: str, args: argparse.Namespace) -> dict[str, Any]:
    store = RunStore(url)
    try:
        episodes_direct = max(1, args.rows // ROWS_PER_EPISODE)
        metrics, events = episode_rows("baseline-run", episodes_direct)
        baseline: Callable[[], dict[str, float]] = (
            (lambda: sqlite_baseline(folder, metrics, events, args.batch)) if name == "sqlite"
            else (lambda: postgres_baseline(store, metrics, events, args.batch)))
        samples: dict[str, list[dict[str, Any]]] = {"baseline": [], "write_batch": [],
                                                    "logger": []}
        for _ in range(args.repeats):
            samples["baseline"].append(baseline())
            samples["write_batch"].append(store_write_batch(store, episodes_direct, args.batch))
            samples["logger"].append(logger_end_to_end(store, args.episodes))
    finally:
        store.close()
    result = {key: median_of(runs) for key, runs in samples.items()}
    base = result["baseline"]
    for key in ("write_batch", "logger"):
        result[key]["vs_baseline"] = round(result[key]["rows_per_s"] / base["rows_per_s"], 3)
        result[key]["vs_baseline_cpu"] = round(
            result[key]["rows_per_cpu_s"] / base["rows_per_cpu_s"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="run store write throughput benchmark")
    parser.add_argument("--episodes", type=int, default=1_000_000,
                        help="episodes the logger logs per repeat (4 rows each)")
    parser.add_argument("--rows", type=int, default=400_000,
                        help="rows per repeat for write_batch and the baseline")
    parser.add_argument("--batch", type=int, default=20_000, help="rows per transaction")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "all"), default="all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engines = {name: bench_engine(name, url, folder, args)
                   for name, url in engine_urls(args.engine, folder).items()}
    logger_sqlite = engines.get("sqlite", {}).get("logger", {})
    print(json.dumps({
        "benchmark": "store_writes", "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version, "episodes": args.episodes, "rows": args.rows,
        "batch": args.batch, "repeats": args.repeats, "engines": engines,
        "goals": {"logger_sqlite_rows_per_s_min": GOAL_LOGGER_ROWS_PER_S, "dropped": 0},
        "meets_goals": {
            "logger_sqlite_rows_per_s": (logger_sqlite.get("rows_per_s", 0)
                                         >= GOAL_LOGGER_ROWS_PER_S) if logger_sqlite else None,
            "nothing_dropped": all(e["logger"]["dropped"] == 0 and e["logger"]["complete"]
                                   for e in engines.values()),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
