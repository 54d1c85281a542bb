"""Worker of bench/flush_cost.py: the writer's CPU per flush of a small trickle, for the
code under ``--root`` (this checkout or an unpacked older commit). Prints one JSON object.

Each flush writes what a training loop logs between two of the writer's 200 ms ticks:
``--episodes`` episodes (reward, steps, win: three metric rows and one event each) and
``--updates`` updates (loss, entropy: two metric rows each), steps increasing across
flushes as in a run. The writer thread never ticks on its own (a one-hour interval):
the flushes are called here and timed by this thread's CPU clock, so the figure is the
writer's CPU per flush (the logger's conversion and the store's transaction), nothing
else. Heartbeats are off (every fifth second's one extra UPDATE is not the question).

``--loop numpy|torch``: instead, bench/logger_overhead.py's simulated training loop
(one episode and one update per 1,000 steps, the writer on its real 200 ms grid),
plain and logged in turn, reporting the direct overhead (time in the log calls plus
the writer thread's CPU, over the plain loop's time) and the writer's CPU per flush:
with the training thread holding the GIL, every time the writer gives it up (around
each SQLite call) it waits for it again, so its cost there differs from a quiet one's.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--updates", type=int, default=0)
    parser.add_argument("--flushes", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--loop", choices=("numpy", "torch"))
    parser.add_argument("--steps", type=int, default=200_000)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.root).resolve()))
    if args.loop:
        print(json.dumps(loop(args.loop, args.steps)))
        return
    from Utilities.metrics_logger import MetricsLogger
    from Utilities.run_store import RunStore

    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(f"sqlite:///{folder}/flush.db")
        run_id = store.create_run(name="flush-cost", model_type="ppo")
        metrics = MetricsLogger(store, run_id, flush_interval=3600.0,
                                heartbeat_interval=math.inf)
        samples, episode = [], 0
        for index in range(args.warmup + args.flushes):
            for _ in range(args.episodes):
                metrics.log_episode(episode, reward=(episode % 97) / 7.0, steps=200,
                                    win=episode % 3 == 0)
                episode += 1
            for _ in range(args.updates):
                metrics.log_update(loss=0.5, entropy=1.0)
            started = time.thread_time()
            metrics.flush()
            if index >= args.warmup:
                samples.append(time.thread_time() - started)
        metrics.close()
        store.close()
    micros = sorted(s * 1e6 for s in samples)
    print(json.dumps({"flush_mean_us": round(statistics.fmean(micros), 1),
                      "flush_median_us": round(statistics.median(micros), 1),
                      "flush_p90_us": round(micros[int(0.9 * len(micros))], 1),
                      "flushes": len(micros)}))


def loop(kind: str, steps: int) -> dict[str, float]:
    """One plain and one logged run of logger_overhead's simulated loop."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from logger_overhead import simulated_loop

    from Utilities.metrics_logger import MetricsLogger
    from Utilities.run_store import RunStore

    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(f"sqlite:///{folder}/loop.db")
        run_id = store.create_run(name="flush-loop", model_type="ppo")
        plain = simulated_loop(steps, None, kind)
        with MetricsLogger(store, run_id) as metrics:
            logged = simulated_loop(steps, metrics, kind)
        stats = metrics.get_statistics()
        store.close()
    direct = logged[2] + stats["writer_cpu_s"]
    return {"overhead_pct": round(direct / plain[0] * 100.0, 3),
            "in_calls_ms": round(logged[2] * 1e3, 2),
            "writer_cpu_ms": round(stats["writer_cpu_s"] * 1e3, 2),
            "flushes": stats["flushes"],
            "writer_us_per_flush": round(stats["writer_cpu_s"] / stats["flushes"] * 1e6, 1),
            "step_cost_us": round(plain[0] / steps * 1e6, 2),
            "ab_cpu_pct": round((logged[1] - plain[1]) / plain[1] * 100.0, 2)}


if __name__ == "__main__":
    main()
