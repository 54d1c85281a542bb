"""What the live monitor costs a PPO run, and how much it writes. Prints one JSON object.

Three modes of the same training (sample.csv, train part, ``bench/ppo_throughput.py``'s
settings: 8 envs x 256 steps, 64-64 MLP, one torch thread, CPU), run interleaved
(none, off, on, none, off, on, ...; ``--repeats`` each, after one unmeasured warm-up):

- ``none``: no run store at all (the env still scores every episode: that is the env);
- ``off``: a SQLite run store with the run's ``StoreLogger`` (episodes, updates) and
  ``monitor.featured_accounts: 0``;
- ``on``: the same with the monitor at its defaults (4 featured accounts, 4 account
  snapshots + equity points and 2 decisions per account per second, every trade up to
  20 per account per second).

Throughput is env steps / wall seconds of ``learn``; ``cpu_us_per_step`` is the
process's CPU (both threads: training and the logger's writer) per env step, steadier
than wall time on a shared machine. Overheads compare medians, and each on-run with
the off-run just before it. The store growth is counted in the ``on`` runs' own SQLite
files: rows (metric points and events, by kind) and bytes (the file after a WAL
checkpoint, less an empty store's), per second of training and per million env steps
at the measured speed and at 20k steps/s. ``episode_stats_us``: the env's cost to score
one finished episode (Return, Sharpe, Max. Drawdown of its equity path).

The A/B difference is within the noise of a shared machine, so the cost is also
measured directly (``direct``), as ``bench/logger_overhead.py`` does: one more ``on``
run with CPU timers (the calling thread's CPU, not wall time, which would also count
the writer thread's turns at the GIL) around the monitor's calls, the env's per-step
bookkeeping for monitors and statistics (fills, fees, equity path) and its episode
scoring, plus the logger's writer CPU beyond the ``off`` runs', each as a share of that
run's process CPU. The timers' own cost per call (~1 µs, measured on an empty method)
is subtracted.

Usage: python bench/monitor_overhead.py [--steps 65536] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ppo_throughput import LOOKBACK, N_ENVS, our_config  # noqa: E402
from bench.timing import Clock  # noqa: E402
from NetworkConfigs.base import deep_merge  # noqa: E402
from NetworkConfigs.callbacks import StoreLogger  # noqa: E402
from NetworkConfigs.live_monitor import LiveMonitor  # noqa: E402
from NetworkConfigs.PPOTrainer import PPOTrainer  # noqa: E402
from NetworkConfigs.trading_env import VecTradingEnv, bar_times, env_arrays  # noqa: E402
from Utilities.data_utils import build_feature_spec, load_bars, prepare_data  # noqa: E402
from Utilities.performance import curve_summary, period_labels, periods_per_year  # noqa: E402
from Utilities.run_store import RunStore  # noqa: E402

MODES = ("none", "off", "on")
TARGET_SPEED = 20_000  # steps/s: the reference run
EVENT_KINDS = ("episode", "account", "trade", "decision")


def load_market(csv: Path) -> tuple[np.ndarray, np.ndarray, Any, int]:
    bars = load_bars(csv)
    data = prepare_data(bars, build_feature_spec(bars), lookback=LOOKBACK)
    features, prices = env_arrays(data, "train")
    return features, prices, bar_times(data, "train"), features.shape[1]


class Timed:
    """Wraps methods of a class with a total of the calling thread's CPU time, for one
    run (``with``). CPU, not wall: a call's wall time also counts the moments the
    logger's writer thread held the GIL, which are the writer's cost (measured apart)."""

    def __init__(self, owner: type, names: tuple[str, ...]) -> None:
        self.owner, self.names, self.seconds = owner, names, dict.fromkeys(names, 0.0)
        self.calls = dict.fromkeys(names, 0)

    def __enter__(self) -> Timed:
        self.saved = {name: getattr(self.owner, name) for name in self.names}
        for name, method in self.saved.items():
            setattr(self.owner, name, self._timed(name, method))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, method in self.saved.items():
            setattr(self.owner, name, method)

    def _timed(self, name: str, method: Any) -> Any:
        clock = time.thread_time

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name] += clock() - start
                self.calls[name] += 1
        return timed


class _Probe:
    def call(self) -> None:
        return None


def timer_cost(n: int = 200_000) -> float:
    """CPU seconds a :class:`Timed` wrapper adds to one call (subtracted from totals)."""
    probe = _Probe()
    start = time.process_time()
    for _ in range(n):
        probe.call()
    bare = time.process_time() - start
    with Timed(_Probe, ("call",)):
        start = time.process_time()
        for _ in range(n):
            probe.call()
        wrapped = time.process_time() - start
    return max(0.0, (wrapped - bare) / n)


def direct_cost(market: tuple, steps: int, folder: Path,
                writer_off_s_per_step: float) -> dict[str, Any]:
    """What the monitor and the env's new bookkeeping cost one ``on`` run, as shares of
    its process CPU: the monitor's calls, the logger's extra writing (its writer CPU
    beyond the ``off`` runs'), the env's per-step bookkeeping and episode scoring."""
    hooks = ("on_rollout_step", "on_episode_end", "on_training_end")
    with Timed(LiveMonitor, hooks) as monitor, \
            Timed(VecTradingEnv, ("_keep", "_episode_stats")) as env:
        run = run_once(market, steps, "on", folder)
    cpu = run["cpu_us_per_step"] * steps / 1e6
    per_call = timer_cost()

    def pct(timed: Timed, *names: str) -> float:
        seconds = sum(timed.seconds[n] - timed.calls[n] * per_call for n in names)
        return round(max(0.0, seconds) / cpu * 100, 3)

    writer_extra = run["writer_cpu_s"] - writer_off_s_per_step * steps
    parts = {"monitor_calls_pct": pct(monitor, *hooks),
             "monitor_writes_pct": round(max(0.0, writer_extra) / cpu * 100, 3),
             "env_step_bookkeeping_pct": pct(env, "_keep"),
             "episode_scoring_pct": pct(env, "_episode_stats")}
    training_thread = sum(v for k, v in parts.items() if k != "monitor_writes_pct")
    return {"steps_per_s": round(run["steps_per_s"]), **parts,
            # What slows training itself: the writer thread runs beside it (another core,
            # taking the GIL only around Python code), so its CPU is listed apart.
            "training_thread_pct": round(training_thread, 3),
            "total_pct": round(sum(parts.values()), 3),
            "monitor_us_per_vector_step": round(
                (monitor.seconds["on_rollout_step"] / monitor.calls["on_rollout_step"]
                 - per_call) * 1e6, 2),
            "timer_us_per_call_subtracted": round(per_call * 1e6, 2),
            "episode_scoring_calls": env.calls["_episode_stats"]}


def run_once(market: tuple, steps: int, mode: str, folder: Path) -> dict[str, Any]:
    features, prices, times, n_features = market
    config = deep_merge(our_config(steps, seed=1),
                        {"monitor": {"featured_accounts": 4 if mode == "on" else 0}})
    store = run_id = None
    callbacks: list[Any] = []
    if mode != "none":
        store = RunStore(f"sqlite:///{folder / f'{mode}-{time.monotonic_ns()}.db'}")
        run_id = store.create_run(name=f"bench-{mode}", model_type="ppo")
        callbacks.append(StoreLogger(store, run_id, heartbeat_interval=math.inf))
    trainer = PPOTrainer(config, callbacks)
    envs = VecTradingEnv(features, prices, LOOKBACK, trainer.env_params, num_envs=N_ENVS,
                         times=times)
    with Clock() as clock:  # learn() ends with the logger's close: its last flush counts
        trainer.learn(envs, network_kwargs={"lookback": LOOKBACK, "n_features": n_features})
    assert trainer.algorithm.global_step == steps
    result = {"steps_per_s": steps / clock.wall, "cpu_us_per_step": clock.cpu / steps * 1e6,
              "wall_s": clock.wall,
              "writer_cpu_s": callbacks[0].metrics.get_statistics()["writer_cpu_s"]
              if callbacks else 0.0}
    if store is not None:
        result["store"] = store_growth(store, run_id, folder)
        store.close()
    return result


def store_growth(store: RunStore, run_id: str, folder: Path) -> dict[str, Any]:
    points = {key: len(store.metric_series(run_id, key)) for key in store.metric_keys(run_id)}
    events = {kind: store.event_count(run_id, [kind])[0] for kind in EVENT_KINDS}
    with store.engine.begin() as connection:  # fold the WAL into the file before sizing it
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = Path(store.engine.url.database)
    return {"metric_points": sum(points.values()),
            "monitor_points": sum(n for k, n in points.items() if k.startswith("agents/")),
            "events": events, "bytes": path.stat().st_size}


def empty_store_bytes(folder: Path) -> int:
    store = RunStore(f"sqlite:///{folder / 'empty.db'}")
    store.create_run(name="empty", model_type="ppo")
    with store.engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    size = Path(store.engine.url.database).stat().st_size
    store.close()
    return size


def episode_stats_cost(market: tuple, length: int = 256, n: int = 2000) -> float:
    """Microseconds to score one episode's equity path, as the env does."""
    _, prices, times, _ = market
    labels, periods = period_labels(times), periods_per_year(times)
    path = prices[:length + 1] / prices[0] * 10_000
    start = time.perf_counter()
    for _ in range(n):
        curve_summary(path, labels[:length + 1], periods)
    return (time.perf_counter() - start) / n * 1e6


def summarise(runs: dict[str, list[dict]], steps: int, empty: int) -> dict[str, Any]:
    speed = {m: statistics.median(r["steps_per_s"] for r in runs[m]) for m in MODES}
    cpu = {m: statistics.median(r["cpu_us_per_step"] for r in runs[m]) for m in MODES}
    paired = [1 - on["steps_per_s"] / off["steps_per_s"]
              for on, off in zip(runs["on"], runs["off"], strict=True)]
    out: dict[str, Any] = {
        "steps_per_s": {m: round(v) for m, v in speed.items()},
        "cpu_us_per_step": {m: round(v, 2) for m, v in cpu.items()},
        "runs": {m: [round(r["steps_per_s"]) for r in runs[m]] for m in MODES},
        "monitor_cost_pct": {
            "wall_median_on_vs_off": round((1 - speed["on"] / speed["off"]) * 100, 2),
            "wall_paired_on_vs_off": [round(p * 100, 2) for p in paired],
            "cpu_on_vs_off": round((cpu["on"] / cpu["off"] - 1) * 100, 2),
            "wall_median_on_vs_none": round((1 - speed["on"] / speed["none"]) * 100, 2),
            "cpu_on_vs_none": round((cpu["on"] / cpu["none"] - 1) * 100, 2)},
    }
    for mode in ("off", "on"):
        grown = [r["store"] for r in runs[mode]]
        wall = statistics.median(r["wall_s"] for r in runs[mode])
        rows = statistics.median(g["metric_points"] + sum(g["events"].values()) for g in grown)
        size = statistics.median(g["bytes"] for g in grown) - empty
        monitor_rows = statistics.median(g["monitor_points"] + g["events"]["account"]
                                          + g["events"]["trade"] + g["events"]["decision"]
                                          for g in grown)
        per_million = 1e6 / steps
        out[f"store_{mode}"] = {
            "rows_per_run": rows, "bytes_per_run": size, "events": grown[-1]["events"],
            "rows_per_million_steps": round(rows * per_million),
            "bytes_per_million_steps": round(size * per_million),
            "monitor_rows_per_s": round(monitor_rows / wall, 1),
            # Monitor rows are per second, episode/update rows per step: at 20k steps/s a
            # million steps is 50 s of monitor rows.
            "monitor_rows_per_million_steps_at_20k": round(monitor_rows / wall * 1e6
                                                           / TARGET_SPEED),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=65_536)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    market = load_market(ROOT / "sample.csv")
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        empty = empty_store_bytes(folder)
        for mode in MODES:  # warm-up: imports, allocator, first SQLite file
            run_once(market, 2 * N_ENVS * 256, mode, folder)
        for _ in range(args.repeats):
            for mode in MODES:
                runs[mode].append(run_once(market, args.steps, mode, folder))
        writer_off = statistics.median(r["writer_cpu_s"] for r in runs["off"]) / args.steps
        direct = direct_cost(market, args.steps, folder, writer_off)
    result = {"bench": "monitor_overhead", "steps": args.steps, "repeats": args.repeats,
              "n_envs": N_ENVS, "machine": platform.machine(), "python": platform.python_version(),
              "episode_stats_us": round(episode_stats_cost(market), 1),
              **summarise(runs, args.steps, empty), "direct": direct}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
