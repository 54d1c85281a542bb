"""Cost of ranking a backtest among random policies. Prints one JSON object.

Every backtest scores ``--policies`` random policies (default 300) on its bars and costs
(``Utilities.backtester.random_policies``). This bench times that on ``--bars`` (default
100k) seeded random-walk one-minute bars with the default costs, for both kinds of
random policy:

- ``uniform``: Hold/Buy/Sell a third each (~0.22 trades per bar: the most fills);
- ``matched``: as active as a model with ``--model-trades`` trades (default 1,000).

Against it, ``loop``: the same policies one at a time, each through ``run_backtest`` and
``performance.curve_summary`` (what scoring them without the batched replay costs),
timed on ``--loop-policies`` of them and scaled to the full count (the loop's cost is
linear in policies). Rounds interleave batch and loop; medians of wall and process CPU
seconds (CPU time is steadier on a shared machine), and the load average when measured.

Usage: python bench/random_baseline.py [--bars 100000] [--policies 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from bench.timing import Clock
from Utilities import performance
from Utilities.accounting import EnvParams
from Utilities.backtester import (
    BASELINE_SEED,
    random_actions,
    random_activity,
    random_policies,
    run_backtest,
)


def minute_bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    index = pd.date_range("2024-01-02 09:30", periods=n, freq="min")
    return pd.DataFrame({"Open": close, "High": close * 1.0005, "Low": close * 0.9995,
                         "Close": close, "Volume": 1_000.0}, index=index)


def loop(bars: pd.DataFrame, params: EnvParams, activity: float, count: int) -> list[float]:
    labels = performance.period_labels(bars.index)
    periods = performance.periods_per_year(bars.index)
    returns = []
    for policy in range(count):
        actions = random_actions(len(bars), activity, BASELINE_SEED, [policy])[0]
        result = run_backtest(bars, actions=actions, params=params)
        returns.append(performance.curve_summary(result.equity.to_numpy(), labels,
                                                 periods)["return_pct"])
    return returns


def measure(bars: pd.DataFrame, params: EnvParams, kind: str, args: argparse.Namespace
            ) -> dict[str, Any]:
    activity = random_activity(kind, args.model_trades, len(bars), params.allow_short)
    batch_wall, batch_cpu, loop_wall, loop_cpu = [], [], [], []
    scale = args.policies / args.loop_policies
    found = None
    for _ in range(args.repeats):
        with Clock() as clock:
            found = random_policies(bars, params, count=args.policies, kind=kind,
                                    model_trades=args.model_trades)
        batch_wall.append(clock.wall)
        batch_cpu.append(clock.cpu)
        with Clock() as clock:
            returns = loop(bars, params, activity, args.loop_policies)
        loop_wall.append(clock.wall * scale)
        loop_cpu.append(clock.cpu * scale)
    # The batch and the loop agree (the tests check every statistic; this is a spot check).
    assert np.allclose(found.scores["return_pct"][:args.loop_policies], returns, rtol=1e-9)
    batch = statistics.median(batch_wall)
    return {"activity": round(activity, 4),
            "median_trades": float(np.median(found.scores["trades"])),
            "batch_s": round(batch, 3), "batch_cpu_s": round(statistics.median(batch_cpu), 3),
            "loop_s": round(statistics.median(loop_wall), 3),
            "loop_cpu_s": round(statistics.median(loop_cpu), 3),
            "speedup": round(statistics.median(loop_wall) / batch, 1),
            "speedup_cpu": round(statistics.median(loop_cpu) / statistics.median(batch_cpu), 1),
            "per_policy_ms": round(1000 * batch / args.policies, 2),
            "rounds_batch_s": [round(v, 3) for v in batch_wall]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--policies", type=int, default=300)
    parser.add_argument("--loop-policies", type=int, default=30)
    parser.add_argument("--model-trades", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bars, params = minute_bars(args.bars), EnvParams()
    random_policies(bars.iloc[:2_000], params, count=10)  # warm-up
    load = os.getloadavg()[0]
    report = {"bars": args.bars, "policies": args.policies, "repeats": args.repeats,
              "load_average_1m": round(load, 2), "cpus": os.cpu_count(),
              "python": platform.python_version(), "numpy": np.__version__,
              **{kind: measure(bars, params, kind, args) for kind in ("matched", "uniform")}}
    report["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
