"""Performance statistics of a backtest as pure functions of (equity, trades, bars).

Nothing here runs a simulation, so the same numbers can be recomputed at any time from a
stored run: the equity curve (one float per bar, indexed like the bars), the closed
trades (columns :data:`TRADE_COLUMNS`, ``return_pct`` a fraction net of both fees) and
the OHLC bars.

Definitions follow backtesting.py 0.6.6 ``_stats.compute_stats``, so our reports can be
checked against it key by key (``tests/test_performance.py`` does): drawdown and its
durations and peaks, exposure (bars from entry to exit, both included), the annualised
return (geometric mean of daily returns, compounded over a year), Calmar, the trade
statistics (``Avg. Trade`` is a geometric mean, Profit Factor and Expectancy use trade
returns, SQN and Win Rate use cash PnL), the price change from the first Close to the
last, and the drawdowns reported as negative percentages. Durations are rounded up to the
resolution of the bar spacing, as backtesting.py does.

Deliberate differences:

* ``Price Change [%]`` is what backtesting.py calls "Buy & Hold Return [%]": the first
  Close to the last, no costs. Ours is named for what it is, because the app has one
  buy-and-hold: :func:`Utilities.backtester.buy_and_hold`, bought at the strategy's
  first fill with the strategy's costs and sold at the end (its Return [%] is the
  "Buy & Hold" column of every report).

* ``Volatility (Ann.)``, ``Sharpe Ratio`` and ``Sortino Ratio`` use the conventional
  (empyrical / quantstats) definitions, risk-free rate 0: volatility = std(daily
  returns, ddof=1) × √periods; Sharpe = mean / std × √periods; Sortino = mean /
  downside deviation × √periods with downside deviation = √mean(min(r, 0)²). Users
  compare our numbers with those tools; backtesting.py's geometric variants differ on
  purpose and would not match them.
* Equity within ``PEAK_TOLERANCE`` (1e-10) of its running peak is at the peak.
  backtesting.py compares exactly, so an account left a rounding step (~1e-16) below
  the peak by the trade that made it starts a "drawdown" there, halving Avg. Drawdown.
* A ratio whose denominator is zero or undefined is NaN, never inf (backtesting.py and
  empyrical give inf for a Sortino with no losing day).
* A geometric mean over a return of -100 % or worse is -100 % (backtesting.py returns
  0 %, which would show a wiped-out account as flat).
* Daily returns after a zero equity (0/0 or x/0) are dropped rather than kept as inf.
  So after ruin (the engine floors equity at 0 and keeps it there) the daily
  statistics are those of the account until it was wiped out: its last day counts as
  -100 %, which makes Return (Ann.) -100 % and Calmar -1; nothing is computed from the
  days of a zero balance. Statistics with no value are None in JSON, never NaN.
* Volatility, Sharpe and Sortino need at least two daily returns (NaN otherwise): a
  single return says nothing about dispersion (a Sortino from it is ±√periods).
* Undefined durations and timestamps are ``None``; undefined numbers are NaN. (When a
  curve has no drawdown period, backtesting.py reports a drawdown depth as its
  "duration".)
* ``Commissions [$]`` is always present (backtesting.py leaves it out when it is 0).
* Trade durations are measured on the bars' index from ``entry_bar`` to ``exit_bar``:
  the same as ``exit_time - entry_time`` for trades made on these bars, and it also
  counts bars on a RangeIndex.

With a non-datetime index (e.g. a RangeIndex) the annualised statistics are NaN and
durations count bars.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from Utilities.number_format import figure, is_missing
from Utilities.serialization import to_plain

log = logging.getLogger(__name__)

STAT_KEYS: tuple[str, ...] = (
    "Start", "End", "Duration", "Exposure Time [%]", "Equity Final [$]", "Equity Peak [$]",
    "Commissions [$]", "Return [%]", "Price Change [%]", "Return (Ann.) [%]",
    "Volatility (Ann.) [%]", "Sharpe Ratio", "Sortino Ratio", "Calmar Ratio",
    "Max. Drawdown [%]", "Avg. Drawdown [%]", "Max. Drawdown Duration",
    "Avg. Drawdown Duration", "# Trades", "Win Rate [%]", "Best Trade [%]",
    "Worst Trade [%]", "Avg. Trade [%]", "Max. Trade Duration", "Avg. Trade Duration",
    "Profit Factor", "Expectancy [%]", "SQN",
)

TRADE_COLUMNS: tuple[str, ...] = (
    "entry_bar", "exit_bar", "entry_time", "exit_time", "side", "units", "entry_price",
    "exit_price", "pnl", "return_pct", "fees", "bars_held",
)

# backtesting.py's _data_period: the median spacing of the last 100 bars tells the data's
# frequency; a spacing of 7, 31 or 365 days means weekly, monthly or yearly data.
_PERIOD_SAMPLE = 100
_CALENDARS: dict[int, tuple[float, str]] = {7: (52.0, "W"), 31: (12.0, "ME"), 365: (1.0, "YE")}
# More than 60 % of the weekend's natural share of bars: the market trades every day.
_WEEKEND_SHARE = 2 / 7 * 0.6
# Equity this close to its running peak (as a fraction of the peak) is at the peak.
# Float64 arithmetic leaves an account that closed a trade at a new high a few ulps
# (~1e-16) below the mark it was valued at a bar earlier; read exactly, that dip would
# start a "drawdown" lasting until the next high and halve Avg. Drawdown. 1e-10 is a
# millionth of a cent on 10,000: a million times above such noise, and far below any
# real move (a one-tick price change moves an invested account by 1e-7 or more).
PEAK_TOLERANCE = 1e-10


def drawdown(equity: pd.Series | np.ndarray) -> np.ndarray:
    """Fraction of equity below its running peak at each bar (0 at a new high).

    Equity within :data:`PEAK_TOLERANCE` of its peak counts as at the peak: rounding
    noise is not a drawdown."""
    values = np.asarray(equity, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        below = 1 - values / np.maximum.accumulate(values)
    return np.where(below < PEAK_TOLERANCE, 0.0, below)  # NaN stays NaN


def max_drawdown(equity: pd.Series | np.ndarray) -> float:
    """Deepest drawdown as a positive fraction (0 when equity never falls)."""
    values = np.asarray(equity, dtype=float)
    # A positive start (the running peak is never 0) and all finite: no 0/0 or inf/inf.
    if values.size and values[0] > 0 and math.isfinite(np.add.reduce(values)):
        # The deepest of drawdown()'s values without building them (an episode's score
        # is mostly fixed costs per numpy call): at or above the tolerance it is the
        # deepest "below", else every bar reads as at its peak.
        deepest = (1 - values / np.maximum.accumulate(values)).max()
        if not math.isnan(deepest):
            return float(deepest) if deepest >= PEAK_TOLERANCE else 0.0
    dd = drawdown(values)
    finite = dd[np.isfinite(dd)]
    return float(finite.max()) if finite.size else 0.0


def max_drawdown_pct(equity: pd.Series | np.ndarray) -> float:
    """Max. Drawdown [%] as reports show it: a percentage, negative or zero."""
    # Subtracting from 0.0 keeps a flat curve's drawdown at 0.0 rather than -0.0.
    return 0.0 - max_drawdown(equity) * 100


def drawdown_periods(dd: np.ndarray, index: pd.Index) -> tuple[pd.Series, np.ndarray]:
    """Duration (index units) and depth of each drawdown, as backtesting.py measures them.

    A drawdown runs from a bar at a peak to the next bar at a peak, or to the last bar.
    Like backtesting.py, a one-bar dip on the very last bar is not a period of its own;
    when there are no periods at all, the depths are the non-zero drawdowns left.
    """
    stops = np.unique(np.r_[np.flatnonzero(dd == 0), len(dd) - 1])
    starts, ends = stops[:-1], stops[1:]
    keep = ends > starts + 1
    starts, ends = starts[keep], ends[keep]
    if not starts.size:
        return _spans(index, starts, ends), dd[(dd != 0) & ~np.isnan(dd)]
    depths = np.array([np.nanmax(dd[s:e + 1]) for s, e in zip(starts, ends, strict=True)])
    return _spans(index, starts, ends), depths


def return_pct(equity: pd.Series | np.ndarray) -> float:
    """Return [%]: the last equity over the first, less 1, in percent (NaN from 0)."""
    values = np.asarray(equity, dtype=float)
    return _ratio(values[-1] - values[0], values[0]) * 100


def price_change_pct(close: pd.Series | np.ndarray) -> float:
    """Price Change [%]: the last close over the first, less 1, in percent; no costs.
    Not a buy-and-hold return (that one pays the costs: ``backtester.buy_and_hold``)."""
    values = np.asarray(close, dtype=float)
    return _ratio(values[-1] - values[0], values[0]) * 100


def exposure(trades: pd.DataFrame, n_bars: int) -> float:
    """Share of bars with an open position, entry and exit bars included.

    Counted in bars, not index time, as backtesting.py does (bars may be irregular).
    """
    held = np.zeros(n_bars, dtype=bool)
    for entry, exit_ in zip(trades["entry_bar"], trades["exit_bar"], strict=True):
        held[int(entry):int(exit_) + 1] = True
    return float(held.mean()) if n_bars else math.nan


def periods_per_year(index: pd.Index) -> float:
    """Return periods in a year for ``index``'s frequency (NaN if it is not datetime)."""
    return _calendar(index)[0]


def daily_returns(equity: pd.Series) -> pd.Series:
    """Simple returns per day (per week/month/year for such data) of a datetime-indexed curve.

    Intraday equity is reduced to each day's last value; days without bars are skipped.
    Empty for a non-datetime index. Indexed by the time of the later day's last bar.
    (:func:`period_labels` and :func:`period_returns` are the rule, in two steps, so a
    caller with many curves on the same bars finds the days once.)
    """
    labels = period_labels(equity.index)
    if labels is None:
        return pd.Series(dtype=float)
    values = equity.to_numpy(dtype=float)
    returns, rows = _period_returns(values, labels)
    return pd.Series(returns, index=equity.index[rows])


def period_labels(index: pd.Index) -> np.ndarray | None:
    """The return period (day; week, month or year for such data) of each bar, as
    numbers 0, 1, 2, ... of the periods that have bars, in pandas' resampling of
    :func:`_calendar`'s rule: bars sharing a number share a period. None for a
    non-datetime index (no periods, so no daily statistics)."""
    rule = _calendar(index)[1]
    if rule is None:
        return None
    grouper = pd.Series(np.zeros(len(index)), index=index).groupby(pd.Grouper(freq=rule))
    bins = grouper.ngroup().to_numpy(dtype=np.int64)  # numbers empty bins too
    return np.concatenate([[0], np.cumsum(bins[1:] != bins[:-1])]).astype(np.int64)


def period_returns(values: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """:func:`daily_returns` of a curve whose bars' :func:`period_labels` are known
    (any contiguous slice of them): each period's last non-NaN value, their simple
    returns, non-finite ones dropped. Empty when ``labels`` is None."""
    if labels is None:
        return np.empty(0)
    return _period_returns(np.asarray(values, dtype=float), labels)[0]


def _period_returns(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(returns, the row of each return's closing value). Few numpy calls on the common
    path (finite values; with daily bars every bar its own period): an episode's score
    is mostly their fixed cost."""
    if not labels.size:
        return np.empty(0), np.empty(0, dtype=np.int64)
    if math.isfinite(np.add.reduce(values)):  # no NaN, no infinity
        return _ratios(values, labels, careful=False)
    if np.isnan(values).any():  # resample().last() skips NaN: use the other rows
        rows = np.flatnonzero(~np.isnan(values))
        returns, at = _period_returns(values[rows], labels[rows])
        return returns, rows[at]
    return _ratios(values, labels, careful=True)


def _ratios(values: np.ndarray, labels: np.ndarray,
            careful: bool) -> tuple[np.ndarray, np.ndarray]:
    """_period_returns of NaN-free values; ``careful``: infinities among them."""
    if labels[-1] - labels[0] == labels.size - 1:  # dense labels: one bar per period
        closes, closes_at = values, None
    else:  # the last row of each period: where the next row's period differs, and the end
        closes_at = np.append(np.flatnonzero(labels[1:] != labels[:-1]), labels.size - 1)
        closes = values[closes_at]
    if careful or closes.min() <= 0:  # x/0, inf/inf: no warnings, dropped below
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = closes[1:] / closes[:-1] - 1
    else:
        returns = closes[1:] / closes[:-1] - 1  # pandas' pct_change, the same arithmetic
    rows = np.arange(1, labels.size) if closes_at is None else closes_at[1:]
    finite = np.isfinite(returns)
    if finite.all():
        return returns, rows
    return returns[finite], rows[finite]


def curve_summary(values: np.ndarray, labels: np.ndarray | None,
                  periods: float) -> dict[str, float]:
    """Return [%], Sharpe Ratio and Max. Drawdown [%] of an equity curve, as
    :func:`compute_statistics` reports them, from its values, its bars'
    :func:`period_labels` and :func:`periods_per_year`: what a training episode's equity
    path is scored with, at a few microseconds per curve."""
    values = np.asarray(values, dtype=float)
    return {"return_pct": return_pct(values),
            "sharpe": sharpe_ratio(period_returns(values, labels), periods),
            "max_drawdown": max_drawdown_pct(values)}


def geometric_mean(returns: pd.Series | np.ndarray) -> float:
    """Per-period return that compounds to the same total; NaN returns count as 0."""
    values = np.asarray(returns, dtype=float)
    growth = np.where(np.isnan(values), 0.0, values) + 1
    if not growth.size:
        return math.nan
    if (growth <= 0).any():
        return -1.0
    # Same operation order as backtesting.py, so the two agree to the last bits.
    return float(np.exp(np.log(growth).sum() / growth.size) - 1)


def annual_return(returns: pd.Series | np.ndarray, periods: float) -> float:
    """Geometric mean return compounded over ``periods`` periods."""
    with np.errstate(over="ignore"):
        return float(np.power(1 + geometric_mean(returns), periods) - 1)


def annual_volatility(returns: pd.Series | np.ndarray, periods: float) -> float:
    """Sample standard deviation of the returns scaled by √periods (empyrical)."""
    return _sample_std(returns) * math.sqrt(periods)


def sharpe_ratio(returns: pd.Series | np.ndarray, periods: float) -> float:
    """Mean over sample standard deviation, scaled by √periods; risk-free rate 0."""
    values = np.asarray(returns, dtype=float)
    if values.size < 2:
        return math.nan
    mean = np.add.reduce(values) / values.size  # ndarray.mean's operations (see _sample_std)
    return _ratio(mean, _sample_std(values, mean)) * math.sqrt(periods)


def sortino_ratio(returns: pd.Series | np.ndarray, periods: float) -> float:
    """Mean over downside deviation √mean(min(r, 0)²), scaled by √periods (empyrical)."""
    values = np.asarray(returns, dtype=float)
    if values.size < 2:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(values, 0.0) ** 2)))
    return _ratio(values.mean(), downside) * math.sqrt(periods)


def calmar_ratio(annual: float, deepest_drawdown: float) -> float:
    """Annualised return over the maximum drawdown (a positive fraction)."""
    return _ratio(annual, deepest_drawdown)


def profit_factor(returns: pd.Series) -> float:
    """Sum of winning trade returns over the absolute sum of losing ones (NaN if no loss)."""
    return _ratio(returns[returns > 0].sum(), abs(returns[returns < 0].sum()))


def system_quality_number(pnl: pd.Series) -> float:
    """Van Tharp's SQN: √n × mean PnL / sample std of PnL."""
    return _ratio(math.sqrt(len(pnl)) * pnl.mean(), pnl.std())


def compute_statistics(
    equity: pd.Series, trades: pd.DataFrame, bars: pd.DataFrame
) -> dict[str, Any]:
    """All of :data:`STAT_KEYS`, in order, for one backtest."""
    _validate(equity, trades, bars)
    values = equity.to_numpy(dtype=float)
    stats = {
        **_span_stats(equity.index, trades),
        **_equity_stats(values, trades, bars),
        **_risk_stats(equity, values),
        **_drawdown_stats(values, equity.index),
        **_trade_return_stats(trades),
        **_trade_duration_stats(trades, equity.index),
    }
    return {key: stats[key] for key in STAT_KEYS}


def jsonable_statistics(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The same keys with JSON-safe values: ISO timestamps, "3 days 04:00:00", None."""
    return {key: None if is_missing(value) else to_plain(value) for key, value in stats.items()}


def format_statistics(
    stats: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]] | None = None
) -> str:
    """A plain-text table: one row per statistic, the strategy then each baseline."""
    columns = {"Strategy": stats, **(baselines or {})}
    rows = [["", *columns]]
    rows += [[key, *(figure(col[key], _kind(key)) if key in col else ""
                     for col in columns.values())] for key in stats]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(_format_row(row, widths) for row in rows)


def _format_row(cells: list[str], widths: list[int]) -> str:
    """Names left-aligned, values right-aligned so decimals line up."""
    values = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
    return "  ".join([cells[0].ljust(widths[0]), *values]).rstrip()


def _calendar(index: pd.Index) -> tuple[float, str | None]:
    """(periods per year, resample rule) of a datetime index; (NaN, None) otherwise."""
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        return math.nan, None
    days = _bar_period(index).days
    if days in _CALENDARS:
        return _CALENDARS[days]
    weekend_share = float(np.isin(index.day_of_week, (5, 6)).mean())
    return (365.0 if weekend_share > _WEEKEND_SHARE else 252.0), "D"


def _bar_period(index: pd.Index) -> Any:
    """Median spacing of the last bars: a Timedelta, a number, or NaN/NaT for one bar."""
    return pd.Series(index[-_PERIOD_SAMPLE:]).diff().dropna().median()


def _span_stats(index: pd.Index, trades: pd.DataFrame) -> dict[str, Any]:
    return {
        "Start": _plain(index[0]),
        "End": _plain(index[-1]),
        "Duration": _plain(index[-1] - index[0]),
        "Exposure Time [%]": exposure(trades, len(index)) * 100,
    }


def _equity_stats(values: np.ndarray, trades: pd.DataFrame, bars: pd.DataFrame) -> dict:
    return {
        "Equity Final [$]": float(values[-1]),
        "Equity Peak [$]": float(values.max()),
        "Commissions [$]": float(trades["fees"].sum()),
        "Return [%]": return_pct(values),
        "Price Change [%]": price_change_pct(bars["Close"]),
    }


def _risk_stats(equity: pd.Series, values: np.ndarray) -> dict[str, float]:
    returns = daily_returns(equity)
    periods = periods_per_year(equity.index)
    annual = annual_return(returns, periods)
    return {
        "Return (Ann.) [%]": annual * 100,
        "Volatility (Ann.) [%]": annual_volatility(returns, periods) * 100,
        "Sharpe Ratio": sharpe_ratio(returns, periods),
        "Sortino Ratio": sortino_ratio(returns, periods),
        "Calmar Ratio": calmar_ratio(annual, max_drawdown(values)),
    }


def _drawdown_stats(values: np.ndarray, index: pd.Index) -> dict[str, Any]:
    durations, depths = drawdown_periods(drawdown(values), index)
    period = _bar_period(index)
    return {
        "Max. Drawdown [%]": max_drawdown_pct(values),
        "Avg. Drawdown [%]": -_mean(depths) * 100,
        "Max. Drawdown Duration": _duration(durations.max(), period),
        "Avg. Drawdown Duration": _duration(durations.mean(), period),
    }


def _trade_return_stats(trades: pd.DataFrame) -> dict[str, Any]:
    returns = trades["return_pct"].astype(float)
    pnl = trades["pnl"].astype(float)
    return {
        "# Trades": len(trades),
        "Win Rate [%]": float((pnl > 0).mean()) * 100 if len(trades) else math.nan,
        "Best Trade [%]": float(returns.max()) * 100,
        "Worst Trade [%]": float(returns.min()) * 100,
        "Avg. Trade [%]": geometric_mean(returns) * 100,
        "Profit Factor": profit_factor(returns),
        "Expectancy [%]": float(returns.mean()) * 100,
        "SQN": system_quality_number(pnl),
    }


def _trade_duration_stats(trades: pd.DataFrame, index: pd.Index) -> dict[str, Any]:
    entries = trades["entry_bar"].to_numpy(dtype=int)
    durations = _spans(index, entries, trades["exit_bar"].to_numpy(dtype=int))
    period = _bar_period(index)
    return {
        "Max. Trade Duration": _duration(durations.max(), period),
        "Avg. Trade Duration": _duration(durations.mean(), period),
    }


def _spans(index: pd.Index, starts: np.ndarray, ends: np.ndarray) -> pd.Series:
    """Index distance from each start bar to its end bar (Timedeltas, or bar counts)."""
    return pd.Series(index[ends] - index[starts])


def _validate(equity: pd.Series, trades: pd.DataFrame, bars: pd.DataFrame) -> None:
    if not len(equity):
        raise ValueError("equity is empty: statistics need at least one bar")
    if len(equity) != len(bars):
        raise ValueError(f"equity has {len(equity)} values but bars has {len(bars)} rows")
    missing = [column for column in TRADE_COLUMNS if column not in trades.columns]
    if missing:
        raise ValueError(f"trades lacks columns {missing}")
    if len(trades) and (trades["exit_bar"].max() >= len(equity) or trades["entry_bar"].min() < 0):
        raise ValueError("trades refer to bars outside the equity curve")


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN where the denominator is zero or not finite."""
    if not math.isfinite(denominator) or denominator == 0:
        return math.nan
    return float(numerator / denominator)


def _sample_std(values: pd.Series | np.ndarray, mean: float | None = None) -> float:
    """``std(ddof=1)`` by numpy's own operations in its order (sum / n, deviations,
    their squares summed / (n - 1), square root), so the same bits, without the ~10 µs
    of Python around them in ndarray.std: a training run scores every episode's curve.
    ``mean``: the array's mean, when the caller has it already."""
    array = np.asarray(values, dtype=float)
    n = array.size
    if n < 2:
        return math.nan
    if mean is None:
        mean = np.add.reduce(array) / n
    deviations = array - mean
    return math.sqrt(np.add.reduce(deviations * deviations) / (n - 1))


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _duration(value: Any, period: Any) -> Any:
    """A Timedelta rounded up to the bars' resolution; bar counts as numbers; None if undefined."""
    if is_missing(value):
        return None
    if isinstance(value, pd.Timedelta) and isinstance(period, pd.Timedelta):
        return value.ceil(period.resolution_string)
    return _plain(value)


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones; Timestamps and Timedeltas kept."""
    return value.item() if isinstance(value, np.generic) else value


def _kind(key: str) -> str:
    """How a statistic is written (:func:`Utilities.number_format.figure`), by the unit
    in its name: [$] money, [%] percent points, # a count, anything else a metric."""
    if key.endswith("[$]"):
        return "money"
    if key.endswith("[%]"):
        return "pct_points"
    return "int" if key.startswith("#") else "num"
