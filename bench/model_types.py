"""Every registered type side by side: training time, predict latency, backtest speed.
Prints one JSON object.

For each type: train on sample.csv with its smoke preset and with its default budget
(wall seconds, epochs run, best epoch, validation accuracy beside the majority-class
baseline), then ``predict`` p50/p99 over ``--calls`` calls on a list-of-dicts window
(the API's form), then a backtest of the held-out test slice and of ``--bars``
synthetic one-minute bars (seconds, bars/s). Default budgets use early stopping, so
their time is what a user waits for.

Usage: python bench/model_types.py [--types xgboost transformer ppo] [--calls 1000]
           [--bars 100000] [--skip-full]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from NetworkConfigs import get_model_type, load_model  # noqa: E402
from NetworkConfigs.artifacts import read_config  # noqa: E402
from NetworkConfigs.base import deep_merge  # noqa: E402
from Utilities.data_utils import load_bars  # noqa: E402
from Utilities.model_backtester import backtest_model  # noqa: E402

SAMPLE = ROOT / "sample.csv"


def minute_bars(n: int, seed: int = 0) -> pd.DataFrame:
    """A random walk of one-minute OHLCV bars (cost of a backtest, not its quality)."""
    rng = np.random.default_rng(seed)
    close = 15_000 * np.exp(np.cumsum(rng.normal(0, 4e-4, n)))
    open_ = np.r_[close[0], close[:-1]]
    index = pd.date_range("2024-01-02 09:30", periods=n, freq="min", name="Datetime")
    return pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) * 1.0002,
                         "Low": np.minimum(open_, close) * 0.9998, "Close": close,
                         "Volume": rng.integers(1, 100, n).astype(float)}, index=index)


def train(type_name: str, config: dict[str, Any], bars: pd.DataFrame, folder: Path,
          name: str, csv: Path) -> tuple[Path, float]:
    trainer = get_model_type(type_name).trainer_class()(config)
    started = time.perf_counter()
    model_dir = trainer.fit(bars, model_name=name, models_dir=folder, data_file=str(csv))
    return model_dir, time.perf_counter() - started


def predict_latency(model_dir: Path, bars: pd.DataFrame, calls: int) -> dict[str, float]:
    loader = load_model(model_dir)
    n = loader.window_size
    windows = [bars.iloc[i:i + n].reset_index(drop=True).to_dict("records")
               for i in range(0, min(len(bars) - n, 200))]
    for window in windows[:20]:
        loader.predict(window)
    times = []
    for i in range(calls):
        window = windows[i % len(windows)]
        started = time.perf_counter()
        loader.predict(window)
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def backtest_speed(model_dir: Path, csv: Path, **options: Any) -> dict[str, float]:
    started = time.perf_counter()
    report = backtest_model(model_dir, csv, **options)
    seconds = time.perf_counter() - started
    bars = len(report.result.equity)
    return {"bars": bars, "seconds": round(seconds, 3), "bars_per_s": round(bars / seconds),
            "trades": int(report.statistics["# Trades"]),
            "return_pct": round(float(report.statistics["Return [%]"]), 2)}


def bench_type(type_name: str, args: argparse.Namespace, folder: Path,
               big_csv: Path) -> dict[str, Any]:
    bars = load_bars(SAMPLE)
    trainer_class = get_model_type(type_name).trainer_class()
    out: dict[str, Any] = {}
    budgets = {"smoke": trainer_class.smoke_config}
    if not args.skip_full:
        budgets["default"] = {}
    for budget, config in budgets.items():
        model_dir, seconds = train(type_name, config, bars, folder, f"{type_name}_{budget}",
                                   SAMPLE)
        metrics = read_config(model_dir)["metrics"]
        out[f"train_{budget}"] = {"seconds": round(seconds, 2), **{
            k: metrics.get(k) for k in ("epochs", "best_epoch", "validation_accuracy",
                                        "validation_majority_accuracy", "timesteps")
            if k in metrics}}
    out["predict"] = predict_latency(model_dir, bars, args.calls)
    out["backtest_sample_test_slice"] = backtest_speed(model_dir, SAMPLE)
    # A threshold under the minute bars' typical move, so the model trades; the whole
    # file is replayed (start given), not just the test slice of the training file.
    big_config = deep_merge(trainer_class.smoke_config, {"model_params": {"threshold": 1e-4}})
    big_dir, _ = train(type_name, big_config, load_bars(big_csv), folder, f"{type_name}_big",
                       big_csv)
    out[f"backtest_{args.bars}_bars"] = backtest_speed(big_dir, big_csv, start="2000-01-01")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--types", nargs="+", default=["xgboost", "transformer"])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--skip-full", action="store_true", help="smoke budgets only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        big_csv = folder / "minutes.csv"
        minute_bars(args.bars).to_csv(big_csv)
        results = {t: bench_type(t, args, folder / t, big_csv) for t in args.types}
    print(json.dumps({"machine": platform.processor() or platform.machine(),
                      "torch_threads": torch.get_num_threads(), "types": results}, indent=2))


if __name__ == "__main__":
    main()
