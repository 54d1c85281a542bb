"""Backtest any trained model on a CSV and write its report.

    python Utilities/run_backtest.py --model-dir Models/XGB_demo --csv_path sample.csv

The model's type (from its config) picks its backtester through the registry. Prints
the statistics beside buy-and-hold and the median of seeded random policies, the
model's percentile among them (``--random-policies``, default 300), and writes trades.csv,
equity.csv, decisions.csv, statistics.json and equity.png. Bad input: one line on
stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from NetworkConfigs import UnknownModelType
from NetworkConfigs.artifacts import ArtifactError
from Utilities.backtest_report import BacktestInputError
from Utilities.backtester import BASELINE_SEED, MAX_RANDOM_POLICIES, RANDOM_KINDS, RANDOM_POLICIES
from Utilities.data_utils import DataError
from Utilities.logging_setup import configure_logging, one_line
from Utilities.model_backtester import backtester_for


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Backtest a trained model on a CSV.")
    parser.add_argument("--model-dir", "--model_dir", required=True,
                        help="Models/<TYPE>_<name> folder or its <name>_config.yaml")
    parser.add_argument("--csv_path", "--csv-path", required=True, help="CSV of bars")
    parser.add_argument("--out", help="folder for trades.csv, equity.csv, decisions.csv, "
                                      "statistics.json and equity.png "
                                      "(default backtests/<model>-<time>)")
    parser.add_argument("--start", help="first bar date (default: see README)")
    parser.add_argument("--end", help="last bar date")
    parser.add_argument("--commission", type=float, help="fraction of notional per fill")
    parser.add_argument("--slippage", type=float, help="basis points per fill")
    parser.add_argument("--initial-balance", "--initial_balance", type=float)
    parser.add_argument("--fill", choices=("close", "next_open"), default="close")
    parser.add_argument("--sample", action="store_true",
                        help="sample actions (seeded; PPO only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-policies", type=_policy_count, default=RANDOM_POLICIES,
                        help=f"random policies to rank the model among (0 to "
                             f"{MAX_RANDOM_POLICIES}; default {RANDOM_POLICIES}; 0: none)")
    parser.add_argument("--random-kind", choices=RANDOM_KINDS, default="matched",
                        help="matched: as active as the model (default); uniform: Hold, "
                             "Buy, Sell a third each")
    parser.add_argument("--random-seed", type=int, default=BASELINE_SEED,
                        help="seed of the random policies")
    return parser.parse_args(argv)


def _policy_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= count <= MAX_RANDOM_POLICIES:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_RANDOM_POLICIES}; got {count}")
    return count


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    try:
        backtester = backtester_for(args.model_dir, args.csv_path, start=args.start,
                                    end=args.end, commission=args.commission,
                                    slippage=args.slippage,
                                    initial_balance=args.initial_balance, fill=args.fill,
                                    sample=args.sample, seed=args.seed,
                                    random_policies=args.random_policies,
                                    random_seed=args.random_seed, random_kind=args.random_kind)
        report = backtester.run_with_results()
    except (ArtifactError, DataError, BacktestInputError, UnknownModelType, OSError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or Path("backtests") / f"{report.model_name}-{stamp}")
    paths = report.write(out)
    summary = report.summary()["period"]
    print(f"{report.model_name} ({report.model_type}) on {args.csv_path}: {summary['start']} "
          f".. {summary['end']}, {summary['bars']} bars ({summary['source']})\n")
    print(report.table())
    print(f"\n{report.random_line()}")
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
