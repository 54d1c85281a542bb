"""Technical indicators computed from bars (pure pandas, no look-ahead: each value at
bar t uses bars <= t only)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def ema(close: pd.Series, span: int) -> pd.Series:
    """Exponential moving average, recursive form (``adjust=False``) as charting tools use."""
    return close.ewm(span=span, adjust=False).mean()


def rsi(close: pd.Series, period: int = 14) -> pd.Series:
    """Wilder's relative strength index (0..100); NaN until ``period`` changes are seen."""
    change = close.diff()
    gain = change.clip(lower=0.0).ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()
    loss = (-change.clip(upper=0.0)).ewm(alpha=1.0 / period, adjust=False,
                                         min_periods=period).mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        strength = gain / loss
    return (100.0 - 100.0 / (1.0 + strength)).where(loss > 0, 100.0).where(gain.notna())


def atr(bars: pd.DataFrame, period: int = 14) -> pd.Series:
    """Wilder's average true range, in price units."""
    prev_close = bars["Close"].shift(1)
    true_range = pd.concat(
        [bars["High"] - bars["Low"], (bars["High"] - prev_close).abs(),
         (bars["Low"] - prev_close).abs()], axis=1,
    ).max(axis=1, skipna=False)
    return true_range.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()


def add_indicators(bars: pd.DataFrame) -> pd.DataFrame:
    """The indicator columns shipped in sample.csv: EMA_12, EMA_26, RSI_14, ATR_14."""
    out = bars.copy()
    out["EMA_12"] = ema(bars["Close"], 12)
    out["EMA_26"] = ema(bars["Close"], 26)
    out["RSI_14"] = rsi(bars["Close"], 14)
    out["ATR_14"] = atr(bars, 14)
    return out
