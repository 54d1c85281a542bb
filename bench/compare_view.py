"""The compare view with 20 runs of 100,000 points per series, on SQLite and PostgreSQL.
Prints one JSON object.

Goal (issue 15): the compare page opens in <= 1 s with 20 runs of 100k points each. Its
opening is two requests, timed apart and together (medians of ``--repeats`` interleaved
repeats):

* ``page_ms``: ``GET /compare?runs=...`` (the HTML: runs, hyperparameters, summary and
  backtest tables; figures from the series' statistics rows);
* ``series_ms``: ``GET /api/compare?runs=...&keys=<4 keys>&points=1000&tables=0``, what the
  page's charts fetch (80 series of 1,000 points, min/max downsampled from the rollups);
  also by environment step (``series_env_step_ms``: one more chart read per run);
* ``opens_ms`` = page_ms + series_ms (the browser sends them one after the other);
* ``export_json_ms`` / ``export_csv_ms``: the downloads;
* ``cpu_ms``: the same medians in this process's CPU time (steadier on a shared machine;
  on SQLite it includes the database's work, PostgreSQL's server runs apart).

Baseline in the same run: ``loop_metric_series_ms``, the same 80 charts read by calling
``RunStore.metric_series(..., max_points=1000)`` once per series (the run page's chart
read: each its own transaction and statistics read, 4x more rollup rows), and
``full_read_est_ms``: one run's four series read whole, times the runs — what any view
that downsampled points itself would pay.

Each run has four keys of ``--points`` points (episode/reward, train/policy_loss,
train/entropy, train/global_step), a config differing in two keys and a summary.

Usage: python bench/compare_view.py [--runs 20] [--points 100000] [--repeats 5]
       [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import Clock
from tests.helpers.engines import postgres_url
from Utilities.run_store import RunStore

KEYS = ("episode/reward", "train/policy_loss", "train/entropy", "train/global_step")
BATCH = 50_000


def fill(store: RunStore, run_id: str, index: int, points: int) -> None:
    """``points`` points per key, written in batches like a fast trainer's."""
    for start in range(0, points, BATCH):
        steps = range(start + 1, min(points, start + BATCH) + 1)
        rows = []
        for key in KEYS:
            if key == "train/global_step":
                rows += [(run_id, key, s, float(64 * s), 1.7e9 + s) for s in steps]
            else:
                rows += [(run_id, key, s, float((s * 7919 + index) % 1000) / 10.0, 1.7e9 + s)
                         for s in steps]
        store.write_batch(metrics=rows)


def add_runs(store: RunStore, count: int, points: int) -> list[str]:
    ids = []
    for index in range(count):
        run_id = store.create_run(
            name=f"run-{index}", model_type="ppo", experiment="bench",
            config={"train_params": {"learning_rate": 1e-4 * (index + 1), "gamma": 0.99,
                                     "n_envs": 4 + index % 2},
                    "model_params": {"hidden_dim": 64}})
        fill(store, run_id, index, points)
        store.update_run(run_id, summary={"test_return_pct": index * 0.5})
        store.set_status(run_id, "completed")
        ids.append(run_id)
    return ids


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000.0


def timed_both(call: Callable[[], object]) -> tuple[float, float]:
    """(wall ms, this process's CPU ms): on a shared machine the CPU time is the steadier
    figure (on SQLite it includes the database's work; PostgreSQL's server is apart)."""
    with Clock() as clock:
        call()
    return clock.wall * 1000.0, clock.cpu * 1000.0


def get_ok(client, url: str, sizes: dict[str, int], name: str) -> Callable[[], object]:
    def call() -> object:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        sizes[name] = len(response.get_data())
        return response
    return call


def bench_engine(url: str, args: argparse.Namespace, folder: Path) -> dict:
    from Main import create_app

    store = RunStore(url)
    try:
        started = time.perf_counter()
        ids = add_runs(store, args.runs, args.points)
        setup_s = time.perf_counter() - started
        app = create_app({"TESTING": True, "DATABASE_URL": url,
                          "MODELS_DIR": str(folder / "models"), "DATA_DIR": str(folder / "d"),
                          "BACKTESTS_DIR": str(folder / "bt")})
        app.instance_path = str(folder / "instance")
        client = app.test_client()
        runs, keys = ",".join(ids), ",".join(KEYS)
        sizes: dict[str, int] = {}
        cases = {
            "page_ms": get_ok(client, f"/compare?runs={runs}", sizes, "page"),
            "series_ms": get_ok(client, f"/api/compare?runs={runs}&keys={keys}&points=1000"
                                        "&tables=0", sizes, "series"),
            "series_env_step_ms": get_ok(client, f"/api/compare?runs={runs}&keys={keys}"
                                                 "&points=1000&tables=0&x=step", sizes, "step"),
            "export_json_ms": get_ok(client, f"/api/compare.json?runs={runs}", sizes, "json"),
            "export_csv_ms": get_ok(client, f"/api/compare.csv?runs={runs}", sizes, "csv"),
            "loop_metric_series_ms": lambda: [store.metric_series(r, k, max_points=1000)
                                              for r in ids for k in KEYS],
        }
        for call in cases.values():  # warm: templates compiled, caches filled
            call()
        samples: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, call in cases.items():
                wall, used = timed_both(call)
                samples[name].append(wall)
                cpu[name].append(used)
        # One run's four series read whole, times the runs (reading all 80 takes minutes).
        full_read_ms = timed(lambda: [store.metric_series(ids[0], k) for k in KEYS]) * len(ids)
        result = {name: round(statistics.median(v), 1) for name, v in samples.items()}
        opens = result["page_ms"] + result["series_ms"]
        cpu_ms = {name: round(statistics.median(v), 1) for name, v in cpu.items()}
        return {"setup_s": round(setup_s, 1), **result, "opens_ms": round(opens, 1),
                "cpu_ms": cpu_ms, "opens_cpu_ms": round(cpu_ms["page_ms"] + cpu_ms["series_ms"], 1),
                "full_read_est_ms": round(full_read_ms, 1),
                "reply_bytes": sizes, "goal_open_1s_met": opens <= 1000}
    finally:
        store.close()
        if not url.startswith("sqlite"):
            engine = sa.create_engine(url)
            meta = sa.MetaData()
            meta.reflect(engine)
            meta.drop_all(engine)
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    engines = args.engines.split(",")
    report: dict = {"python": platform.python_version(), "runs": args.runs,
                    "points_per_series": args.points, "keys": list(KEYS),
                    "repeats": args.repeats, "load_before": os.getloadavg()}
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if "sqlite" in engines:
            report["sqlite"] = bench_engine(f"sqlite:///{folder}/runs.db", args, folder)
        if "postgresql" in engines:
            url = stack.enter_context(postgres_url())
            report["postgresql"] = (bench_engine(url, args, folder) if url else
                                    "skipped: no PostgreSQL (set DATABASE_URL)")
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
