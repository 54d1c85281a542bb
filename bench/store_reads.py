"""Read path of the run store and the pages built on it, on SQLite and PostgreSQL.
Prints one JSON object.

Goals (issue 13), each measured as the median of ``--repeats`` interleaved repeats:

* ``chart_ms``: one 1,000-point chart of a 1,000,000-point series (``metric_series`` with
  ``max_points``, read from the rollups). Goal <= 200 ms. Baseline in the same run: reading
  the whole series (``full_read_ms``), the floor of any code that reads points to draw
  them (the store before issue 13 did, then downsampled).
* ``first_paint_ms``: the run page of that run: ``live.json`` (the snapshot its charts
  draw) and the HTML page. Goal <= 300 ms each.
* ``incremental_ms``: ``live.json?after=<cursor>`` after 10 new points. Goal <= 50 ms.
* ``list_ms``: ``GET /runs`` and ``GET /api/training-runs`` with ``--list-runs`` runs
  (10,000) in the store, the 50 on the first page having ``--list-points`` points
  (100,000) each and the others 100 each. Goal <= 300 ms. Baseline: ``list_runs`` alone
  (the runs' own rows, no metrics). Why not 100k points for all 10,000 runs: 10^9 points
  take hours to write and the list reads no run beyond its page (statements and rows
  read are independent of other runs' length, which ``statements`` shows).
* ``statements``: SQL statements of a list page of 10 and of 50 runs (must be equal).

PostgreSQL is DATABASE_URL when it names one, else a throw-away local server
(tools/local_postgres.sh) when the binaries exist, else skipped.

Usage: python bench/store_reads.py [--points 1000000] [--list-runs 10000]
       [--list-points 100000] [--repeats 5] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.engines import drop_tables, postgres_url
from Utilities.run_store import Run, RunStore, utcnow

KEY = "episode/reward"
BATCH = 50_000


def fill(store: RunStore, run_id: str, keys: dict[str, int]) -> None:
    """Write ``count`` points for each key, in batches like a fast trainer's."""
    for key, count in keys.items():
        for start in range(0, count, BATCH):
            steps = range(start + 1, min(count, start + BATCH) + 1)
            store.write_batch(metrics=[(run_id, key, s, float((s * 7919) % 1000) / 10.0,
                                        1.7e9 + s) for s in steps])


def add_runs(store: RunStore, count: int) -> list[str]:
    """``count`` completed runs inserted in bulk (the bench's set-up, not the API's path)."""
    now = utcnow()
    rows = [{"id": str(uuid.uuid4()), "name": f"agent-{i % 50}", "model_type": "ppo",
             "algorithm": "PPO", "status": "completed", "config": {}, "description": "",
             "data_file": "", "model_dir": "", "created_at": now, "started_at": now,
             "ended_at": now, "heartbeat_at": now, "summary": {}} for i in range(count)]
    with store.engine.begin() as conn:
        conn.execute(sa.insert(Run.__table__), rows)
    return [row["id"] for row in rows]


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000.0


def get_ok(client, url: str) -> Callable[[], object]:
    def call() -> object:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return response
    return call


def count_statements(store: RunStore, call: Callable[[], object]) -> int:
    seen = []

    def listener(*_args: object) -> None:
        seen.append(1)
    sa.event.listen(store.engine, "before_cursor_execute", listener)
    try:
        call()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", listener)
    return len(seen)


def median_ms(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: round(statistics.median(values), 2) for name, values in samples.items()}


def bench_engine(url: str, args: argparse.Namespace, folder: Path) -> dict:
    from Main import create_app
    from web.store import get_store

    store = RunStore(url)
    try:
        started = time.perf_counter()
        older = add_runs(store, max(0, args.list_runs - 50))
        small = older[:200]  # 100 points on a sample of the older runs: lists cost nothing extra
        for run_id in small:
            fill(store, run_id, {KEY: 100, "episode/win": 100})
        page_runs = [store.create_run(name=f"long-{i}", model_type="ppo") for i in range(49)]
        for run_id in page_runs:
            fill(store, run_id, {KEY: args.list_points})
            store.set_status(run_id, "completed")
        big = store.create_run(name="million", model_type="ppo")
        fill(store, big, {KEY: args.points, "episode/win": args.points // 10,
                          "train/policy_loss": 1000})
        store.heartbeat(big)
        setup_s = time.perf_counter() - started

        app = create_app({"TESTING": True, "DATABASE_URL": url,
                          "MODELS_DIR": str(folder / "models"), "DATA_DIR": str(folder / "d"),
                          "BACKTESTS_DIR": str(folder / "bt")})
        app.instance_path = str(folder / "instance")
        client = app.test_client()
        with app.app_context():
            counted = get_store()  # the app's own store: its statements are the page's

        cases = {
            "chart_ms": lambda: store.metric_series(big, KEY, max_points=1000),
            "live_json_ms": get_ok(client, f"/runs/{big}/live.json"),
            "run_page_ms": get_ok(client, f"/runs/{big}"),
            "list_page_ms": get_ok(client, "/runs?per_page=50"),
            "list_api_ms": get_ok(client, "/api/training-runs?limit=50"),
            "list_runs_only_ms": lambda: store.list_runs(limit=50),
        }
        for call in cases.values():  # warm: first requests compile templates, fill caches
            call()
        samples: dict[str, list[float]] = {name: [] for name in cases}
        samples["incremental_ms"] = []
        for _ in range(args.repeats):
            for name, call in cases.items():
                samples[name].append(timed(call))
            store.heartbeat(big)  # a live trainer beats while it writes
            cursor = client.get(f"/runs/{big}/live.json").get_json().get("cursor", 0)
            store.write_batch(metrics=[(big, KEY, args.points + s, 1.0, 1.8e9) for s in
                                       range(1 + len(samples["incremental_ms"]) * 10,
                                             11 + len(samples["incremental_ms"]) * 10)])
            samples["incremental_ms"].append(
                timed(get_ok(client, f"/runs/{big}/live.json?after={cursor}")))
        full_read_ms = timed(lambda: store.metric_series(big, KEY))

        statements = {}
        # A live run whose heartbeat went stale during the bench would be marked lost by
        # the next list (two more statements, once): beat as its trainer would.
        store.heartbeat(big)
        for size in (10, 50):  # the page offers 10, 20, 50 and 100 per page
            statements[f"list_page_{size}"] = count_statements(
                counted, get_ok(client, f"/runs?per_page={size}"))
            statements[f"list_api_{size}"] = count_statements(
                counted, get_ok(client, f"/api/training-runs?limit={size}"))
        result = median_ms(samples)
        return {
            "setup_s": round(setup_s, 1), **result, "full_read_ms": round(full_read_ms, 1),
            "chart_vs_full_read": round(full_read_ms / result["chart_ms"], 1),
            "list_page_vs_list_runs_only": round(
                result["list_page_ms"] / result["list_runs_only_ms"], 2),
            "statements": statements,
            "goals_met": {
                "chart_200ms": result["chart_ms"] <= 200,
                "first_paint_300ms": max(result["live_json_ms"], result["run_page_ms"]) <= 300,
                "incremental_50ms": result["incremental_ms"] <= 50,
                "list_300ms": max(result["list_page_ms"], result["list_api_ms"]) <= 300,
                "statements_flat": (statements["list_page_10"] == statements["list_page_50"]
                                    and statements["list_api_10"] == statements["list_api_50"]),
            },
        }
    finally:
        store.close()
        drop_tables(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--list-runs", type=int, default=10_000)
    parser.add_argument("--list-points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    engines = args.engines.split(",")
    report: dict = {"python": platform.python_version(), "points": args.points,
                    "list_runs": args.list_runs, "list_points": args.list_points,
                    "repeats": args.repeats}
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if "sqlite" in engines:
            report["sqlite"] = bench_engine(f"sqlite:///{folder}/runs.db", args, folder)
        if "postgresql" in engines:
            url = stack.enter_context(postgres_url())
            report["postgresql"] = (bench_engine(url, args, folder) if url else
                                    "skipped: no PostgreSQL (set DATABASE_URL)")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
