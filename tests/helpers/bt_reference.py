"""backtesting.py 0.6.6 driven by an action tape: the reference our engine is checked
against. Dev-only; the app never imports backtesting.

The strategy follows our trading semantics (Buy steps the position up, Sell down, Hold
keeps it) and sizes an opening order as our accounting does, from backtesting.py's own
equity: ``units = equity / (price * (1 + commission))``, floored to the whole
``fractional_unit`` that FractionalBacktest trades in.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from backtesting import Strategy
from backtesting.lib import FractionalBacktest, compute_stats

from tests.helpers.paths import ROOT

BOKEH_STOCKS = ROOT.parent / "shared" / "data" / "bokeh_stocks.csv.gz"


FRACTIONAL_UNIT = 1e-8  # FractionalBacktest's default: prices are scaled by it
# Equity rounded to this many decimals (a micro-dollar): far below any real move of an
# account of 10,000, far above the ~1e-12 $ rounding noise of either engine.
NOISE_FREE_DECIMALS = 6


def ibm_bars() -> pd.DataFrame:
    """IBM's daily bars from the shared real-data file (no splits in its range)."""
    frame = pd.read_csv(BOKEH_STOCKS, parse_dates=["Date"])
    frame = frame[frame["Ticker"] == "IBM"].set_index("Date").sort_index()
    return frame[["Open", "High", "Low", "Close", "Volume"]].astype("float64")


def flat_ending_tape(n: int, seed: int, p_trade: float = 0.2) -> np.ndarray:
    """Random Hold/Buy/Sell that starts with Hold (backtesting.py cannot act on bar 0)
    and is flat from the third-last bar on, so no trade is left open for either engine."""
    rng = np.random.default_rng(seed)
    tape = rng.choice(3, n, p=[1 - p_trade, p_trade / 2, p_trade / 2])
    tape[0], tape[-3:] = 0, 0
    position = 0
    for action in tape[:-3]:
        position = max(-1, min(1, position + {0: 0, 1: 1, 2: -1}[int(action)]))
    tape[-3] = {1: 2, -1: 1, 0: 0}[position]  # the closing action
    return tape


def periodic_tape(n: int, period: int) -> np.ndarray:
    """Long for a period, flat, short for a period, flat, ...; flat at the end."""
    tape = np.zeros(n, dtype=np.int64)
    for start in range(1, n - 4, period):
        tape[start] = 1 if (start // period) % 2 == 0 else 2
        end = min(start + period - 1, n - 3)
        tape[end] = 2 if (start // period) % 2 == 0 else 1
    return tape


def run_reference(bars: pd.DataFrame, tape: np.ndarray, commission: float,
                  trade_on_close: bool = True) -> pd.Series:
    """backtesting.py's stats for the tape (``_equity_curve`` and ``_trades`` inside).

    Orders are sized at the price they will fill at, as our engine does: the close, or
    with ``trade_on_close=False`` the next bar's open (known here, since the tape is).
    """
    fill_prices = bars["Close" if trade_on_close else "Open"].to_numpy() * FRACTIONAL_UNIT
    offset = 0 if trade_on_close else 1

    class Tape(Strategy):
        def init(self) -> None:
            self.held = 0

        def next(self) -> None:
            action = int(tape[len(self.data) - 1])
            step = {0: 0, 1: 1, 2: -1}[action]
            target = max(-1, min(1, self.held + step))
            if target == self.held:
                return
            if self.held:
                self.position.close()
            else:
                price = fill_prices[len(self.data) - 1 + offset]
                size = int(self.equity / (price * (1 + commission)))
                (self.buy if target > 0 else self.sell)(size=size)
            self.held = target

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # progress and "open trades" notices
        backtest = FractionalBacktest(bars, Tape, cash=10_000, commission=commission,
                                      trade_on_close=trade_on_close,
                                      fractional_unit=FRACTIONAL_UNIT)
        return backtest.run()


def noise_free_stats(reference: pd.Series, bars: pd.DataFrame) -> pd.Series:
    """backtesting.py's own statistics of its run, recomputed (``lib.compute_stats``) on
    its equity curve rounded to a micro-dollar.

    backtesting.py reads a drawdown wherever equity is below its running peak by any
    amount, so the rounding step its own arithmetic sometimes leaves after a trade that
    closes at a new high becomes a drawdown there. Rounding removes that noise and
    nothing else; the drawdown definitions applied are backtesting.py's.
    """
    curve = reference["_equity_curve"]
    rounded = reference.copy()
    rounded["_equity_curve"] = curve.assign(Equity=curve["Equity"].round(NOISE_FREE_DECIMALS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compute_stats(stats=rounded, data=bars)
