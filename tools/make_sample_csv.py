"""Build sample.csv: IBM daily bars 2000-03-01 … 2013-03-01 with our own indicators.

Source: ../shared/data/bokeh_stocks.csv.gz (Quandl WIKI prices as shipped in the
bokeh-sampledata package; public domain). IBM has no stock split in this range, so
its unadjusted OHLC is continuous (AAPL and MSFT show 2:1 splits as 50% drops).

Usage: python tools/make_sample_csv.py [--source PATH] [--ticker IBM] [--out sample.csv]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from Utilities.data_utils import load_bars  # noqa: E402
from Utilities.indicators import add_indicators  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "bokeh_stocks.csv.gz"


def build(source: Path, ticker: str) -> pd.DataFrame:
    """One ticker's bars plus indicators, warm-up rows (empty RSI/ATR) removed."""
    raw = pd.read_csv(source)
    one = raw[raw["Ticker"] == ticker].drop(columns=["Ticker", "Adj Close"])
    if one.empty:
        raise SystemExit(f"error: ticker {ticker!r} not in {source}")
    bars = add_indicators(one.set_index("Date")).dropna()
    return bars.round({"EMA_12": 4, "EMA_26": 4, "RSI_14": 4, "ATR_14": 4})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--ticker", default="IBM")
    parser.add_argument("--out", type=Path, default=ROOT / "sample.csv")
    args = parser.parse_args()
    bars = build(args.source, args.ticker)
    bars.to_csv(args.out, index_label="Date")
    checked = load_bars(args.out)  # the file must pass our own data contract
    print(f"wrote {args.out}: {len(checked)} rows, {checked.index[0]:%Y-%m-%d} … "
          f"{checked.index[-1]:%Y-%m-%d}, columns {list(checked.columns)}")


if __name__ == "__main__":
    main()
