"""Backtest speed on 100k bars against backtesting.py 0.6.6. Prints one JSON object.

The bars are a seeded random walk of one-minute OHLCV bars (written to a temporary CSV
for the closed loop). Three timings, each the median of ``--repeats`` runs after a
warm-up:

- ``reference``: backtesting.py's ``FractionalBacktest(trade_on_close=True)`` replaying
  a fixed action tape (the strategy of ``tests/helpers/bt_reference.py``: the same semantics and
  sizing as ours, commission 0.0005);
- ``engine``: our ``run_backtest`` replaying the same tape with the same costs;
- ``closed_loop``: ``PPOBacktester`` on the same bars with a PPO model of the default
  network (64-64 MLP, lookback 20), trained for a smoke budget on the first 5,000 bars.
  It runs the policy every bar, then the engine, then the two baselines; the time is
  the whole ``run_with_results`` except reading the CSV. Its cost grows with the
  number of fills (the loop re-evaluates the policy after each), so backtesting.py is
  also timed replaying the agent's own tape, whose cost grows with fills too.

Goals (issue 4): engine >= 20x reference; closed loop >= 1x reference.

Usage: python bench/backtest_speed.py [--bars 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from NetworkConfigs.ppo_config import SMOKE
from NetworkConfigs.PPOTrainer import PPOTrainer
from NetworkConfigs.trading_env import EnvParams
from tests.helpers.bt_reference import flat_ending_tape, run_reference
from Utilities.backtester import run_backtest
from Utilities.data_utils import load_bars
from Utilities.logging_setup import configure_logging
from Utilities.ppo_backtester import PPOBacktester

COMMISSION = 0.0005


def random_walk_bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0.0, 0.0002, n))
    spread = np.abs(rng.normal(0.0, 0.0005, n)) * close
    index = pd.date_range("2024-01-01 09:30", periods=n, freq="min", name="Datetime")
    return pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) + spread,
                         "Low": np.minimum(open_, close) - spread, "Close": close,
                         "Volume": rng.integers(100, 1000, n).astype(float)}, index=index)


def median_seconds(run, repeats: int) -> tuple[float, object]:
    result = run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def closed_loop_case(bars: pd.DataFrame, workdir: Path, repeats: int) -> dict:
    csv = workdir / "bars.csv"
    bars.to_csv(csv)
    model_dir = PPOTrainer(SMOKE).fit(load_bars(csv).iloc[:5000], model_name="bench",
                                      models_dir=workdir)
    backtester = PPOBacktester(model_dir, csv, commission=COMMISSION).load_artifacts()
    seconds, report = median_seconds(backtester.run_with_results, repeats)
    tape = report.decisions["action"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same_tape_s, _ = median_seconds(
            lambda: run_reference(report.result.bars, tape, COMMISSION), 1)
    return {"seconds": seconds, "bars": len(report.result.equity),
            "reference_on_this_tape_seconds": round(same_tape_s, 4),
            "trades": len(report.result.trades),
            "fills_per_bar": round(2 * len(report.result.trades) / len(report.result.equity), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    configure_logging()
    bars = random_walk_bars(args.bars)
    tape = flat_ending_tape(len(bars), seed=1, p_trade=0.2)
    params = EnvParams(commission=COMMISSION, slippage=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_s, ref = median_seconds(lambda: run_reference(bars, tape, COMMISSION), 1)
    eng_s, ours = median_seconds(lambda: run_backtest(bars, actions=tape, params=params),
                                 args.repeats)
    agree = bool(np.allclose(ours.equity.to_numpy(), ref["_equity_curve"]["Equity"], rtol=1e-6))
    with tempfile.TemporaryDirectory() as tmp:
        loop = closed_loop_case(bars, Path(tmp), args.repeats)
    n = len(bars)
    print(json.dumps({
        "bars": n, "machine": platform.processor() or platform.machine(),
        "reference_backtesting_py": {"seconds": round(ref_s, 4), "bars_per_s": round(n / ref_s),
                                     "trades": int(ref["# Trades"])},
        "engine_replay": {"seconds": round(eng_s, 4), "bars_per_s": round(n / eng_s),
                          "trades": len(ours.trades), "equity_matches_reference": agree},
        "closed_loop_ppo": {**loop, "seconds": round(loop["seconds"], 4),
                            "bars_per_s": round(loop["bars"] / loop["seconds"])},
        "ratios": {"engine_vs_reference": round(ref_s / eng_s, 1),
                   "closed_loop_vs_reference_on_its_own_tape": round(
                       loop["reference_on_this_tape_seconds"] / loop["seconds"], 2),
                   "closed_loop_vs_reference": round(
                       ref_s / loop["seconds"] * loop["bars"] / n, 2)},
        "goals": {"engine_vs_reference": ">= 20", "closed_loop_vs_reference": ">= 1"},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
