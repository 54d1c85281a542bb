"""Statistics: cross-checked against backtesting.py 0.6.6 on real data, plus edge cases.

backtesting.py runs each action tape itself (FractionalBacktest, fills at the close);
its trades and equity curve are converted to our format and every statistic whose
definition we share must agree. Sharpe, Sortino and volatility follow the conventional
definitions instead, so they are checked against a direct numpy computation here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.bt_reference import flat_ending_tape, noise_free_stats, periodic_tape, run_reference
from tests.bt_reference import ibm_bars as ibm_daily_bars
from Utilities.data_loading import load_bars
from Utilities.performance import (
    STAT_KEYS,
    TRADE_COLUMNS,
    compute_statistics,
    daily_returns,
    drawdown,
    drawdown_periods,
    format_statistics,
    geometric_mean,
    jsonable_statistics,
    periods_per_year,
)

OURS_ONLY = ("Volatility (Ann.) [%]", "Sharpe Ratio", "Sortino Ratio")
# Our names for backtesting.py's statistics where they differ: its "Buy & Hold Return"
# is the price change (no costs); ours is the Buy & Hold baseline, costs paid.
REFERENCE_NAMES = {"Price Change [%]": "Buy & Hold Return [%]"}
# backtesting.py reads a rounding step below a peak as a drawdown (we do not: see
# performance.PEAK_TOLERANCE); these are checked against its noise-free figures.
DRAWDOWN_KEYS = ("Max. Drawdown [%]", "Avg. Drawdown [%]", "Max. Drawdown Duration",
                 "Avg. Drawdown Duration")
OHLCV = ["Open", "High", "Low", "Close", "Volume"]
REL_TOL = 1e-9
TAPES = {"random": lambda n: flat_ending_tape(n, seed=7, p_trade=0.2),
         "periodic": lambda n: periodic_tape(n, 23)}


# --- backtesting.py reference runs (tests/bt_reference.py) ---------------------------------


def our_trades(reference: pd.DataFrame) -> pd.DataFrame:
    size = reference["Size"].to_numpy(dtype=float)
    entry_bar = reference["EntryBar"].to_numpy(dtype=int)
    exit_bar = reference["ExitBar"].to_numpy(dtype=int)
    return pd.DataFrame({
        "entry_bar": entry_bar, "exit_bar": exit_bar,
        "entry_time": reference["EntryTime"].to_numpy(),
        "exit_time": reference["ExitTime"].to_numpy(),
        "side": np.sign(size).astype(int), "units": np.abs(size),
        "entry_price": reference["EntryPrice"].to_numpy(dtype=float),
        "exit_price": reference["ExitPrice"].to_numpy(dtype=float),
        "pnl": reference["PnL"].to_numpy(dtype=float),
        "return_pct": reference["ReturnPct"].to_numpy(dtype=float),
        "fees": reference["Commission"].to_numpy(dtype=float),
        "bars_held": exit_bar - entry_bar,
    })


@pytest.fixture(scope="module")
def ibm_bars() -> pd.DataFrame:
    return ibm_daily_bars()


@pytest.fixture(scope="module")
def nq_bars(nq_path: Path) -> pd.DataFrame:
    return load_bars(nq_path)[OHLCV]


CASES = [(data, tape, commission) for data in ("ibm", "nq") for tape in ("random", "periodic")
         for commission in (0.0, 0.001)]


@pytest.fixture(scope="module", params=CASES, ids=lambda case: "-".join(map(str, case)))
def case(request: pytest.FixtureRequest) -> dict[str, Any]:
    data, tape_name, commission = request.param
    bars = request.getfixturevalue(f"{data}_bars")
    tape = TAPES[tape_name](len(bars))
    reference = run_reference(bars, tape, commission)
    equity = reference["_equity_curve"]["Equity"]
    trades = our_trades(reference["_trades"])
    return {"reference": reference, "equity": equity, "trades": trades, "bars": bars,
            "ours": compute_statistics(equity, trades, bars), "data": data}


def same(ours: Any, theirs: Any, abs_tol: float = 1e-12) -> bool:
    if isinstance(theirs, float | np.floating) and math.isnan(theirs):
        return ours is None or (isinstance(ours, float) and math.isnan(ours))
    if isinstance(theirs, float | np.floating | int | np.integer):
        return math.isclose(ours, theirs, rel_tol=REL_TOL, abs_tol=abs_tol)
    return ours == theirs


# --- agreement with backtesting.py -----------------------------------------------------------


def test_reference_run_trades_both_sides(case: dict[str, Any]) -> None:
    trades = case["trades"]
    assert len(trades) > 10
    assert set(trades["side"]) == {-1, 1}
    assert (trades["exit_bar"] < len(case["bars"]) - 1).all()


def test_shared_definitions_match_backtesting_py(case: dict[str, Any]) -> None:
    reference, ours = case["reference"], case["ours"]
    clean = noise_free_stats(reference, case["bars"])
    shared = [key for key in STAT_KEYS if key not in OURS_ONLY and key != "Commissions [$]"]
    expected = {key: (clean if key in DRAWDOWN_KEYS else reference)[REFERENCE_NAMES.get(key, key)]
                for key in shared}
    # Rounding to a micro-dollar moves a drawdown of 10,000 by up to 1e-8 %.
    mismatches = {key: (ours[key], expected[key]) for key in shared
                  if not same(ours[key], expected[key], 1e-7 if key in DRAWDOWN_KEYS else 1e-12)}
    assert not mismatches


def test_commissions_match_backtesting_py(case: dict[str, Any]) -> None:
    # backtesting.py shows the key only when some commission was paid.
    expected = case["reference"].get("Commissions [$]", 0.0)
    assert same(case["ours"]["Commissions [$]"], expected)


def test_conventional_risk_ratios_match_numpy(case: dict[str, Any]) -> None:
    equity, ours = case["equity"], case["ours"]
    closes = equity.groupby(equity.index.normalize()).last().to_numpy()
    returns = closes[1:] / closes[:-1] - 1
    periods = {"ibm": 252, "nq": 365}[case["data"]]  # NQ trades on Sundays
    if len(returns) < 2:  # the NQ file spans two days: one daily return, no dispersion
        assert all(math.isnan(ours[key]) for key in OURS_ONLY)
        return
    std = returns.std(ddof=1)
    assert same(ours["Volatility (Ann.) [%]"], std * np.sqrt(periods) * 100)
    assert same(ours["Sharpe Ratio"], returns.mean() / std * np.sqrt(periods))
    downside = np.sqrt(np.mean(np.minimum(returns, 0) ** 2))
    assert same(ours["Sortino Ratio"], returns.mean() / downside * np.sqrt(periods))


def test_statistics_are_ordered_and_json_safe(case: dict[str, Any]) -> None:
    stats = case["ours"]
    assert tuple(stats) == STAT_KEYS
    json.dumps(jsonable_statistics(stats), allow_nan=False)


# --- helpers for hand-made cases -------------------------------------------------------------


def curve(values: list[float], index: pd.Index | None = None) -> tuple[pd.Series, pd.DataFrame]:
    """Equity and matching bars (Close = equity) on weekdays, or on ``index``."""
    if index is None:
        index = pd.bdate_range("2024-01-01", periods=len(values))
    equity = pd.Series(values, index=index, dtype=float)
    bars = pd.DataFrame({column: equity.to_numpy() for column in OHLCV[:4]}, index=index)
    return equity, bars


def make_trades(*rows: tuple[int, int, float, float]) -> pd.DataFrame:
    """Trades from (entry_bar, exit_bar, pnl, return_pct); the other columns are filler."""
    frame = pd.DataFrame(rows, columns=["entry_bar", "exit_bar", "pnl", "return_pct"])
    frame = frame.assign(entry_time=pd.NaT, exit_time=pd.NaT, side=1, units=1.0,
                         entry_price=100.0, exit_price=100.0, fees=0.5)
    frame["bars_held"] = frame["exit_bar"] - frame["entry_bar"]
    return frame[list(TRADE_COLUMNS)]


NO_TRADES = pd.DataFrame(columns=list(TRADE_COLUMNS))


# --- building blocks ----------------------------------------------------------------------------


def test_drawdown_is_the_fraction_below_the_running_peak() -> None:
    assert drawdown(np.array([100, 120, 90, 120, 130.0])) == pytest.approx([0, 0, 0.25, 0, 0])


def test_drawdown_periods_run_from_peak_to_recovery_or_the_last_bar() -> None:
    equity, _ = curve([100, 90, 95, 100, 110, 99, 105])
    durations, depths = drawdown_periods(drawdown(equity), equity.index)
    assert list(durations) == [pd.Timedelta(days=3), pd.Timedelta(days=4)]  # Mon→Thu, Fri→Tue
    assert depths == pytest.approx([0.1, 0.1])


def test_a_one_bar_dip_at_the_end_is_a_depth_but_no_period() -> None:
    # backtesting.py's rule: no period without a bar strictly inside it.
    equity, _ = curve([100, 110, 104.5])
    durations, depths = drawdown_periods(drawdown(equity), equity.index)
    assert len(durations) == 0
    assert depths == pytest.approx([0.05])


@pytest.mark.parametrize(("index", "expected"), [
    (pd.bdate_range("2024-01-01", periods=300), 252),
    (pd.date_range("2024-01-01", periods=300, freq="D"), 365),
    (pd.date_range("2024-01-01", periods=300, freq="min"), 252),
    (pd.date_range("2024-01-05", periods=120, freq="W-FRI"), 52),
    (pd.date_range("2010-01-31", periods=120, freq="ME"), 12),
    (pd.date_range("1990-12-31", periods=30, freq="YE"), 1),
])
def test_periods_per_year_follows_the_bar_spacing(index: pd.Index, expected: float) -> None:
    assert periods_per_year(index) == expected


def test_periods_per_year_is_nan_without_dates() -> None:
    assert math.isnan(periods_per_year(pd.RangeIndex(50)))
    assert math.isnan(periods_per_year(pd.DatetimeIndex(["2024-01-01"])))


def test_daily_returns_take_each_days_last_equity() -> None:
    index = pd.date_range("2024-01-01 09:00", periods=3 * 24, freq="h")
    equity = pd.Series(np.arange(100.0, 100.0 + len(index)), index=index)
    expected = np.array([114.0, 138.0, 162.0, 171.0])  # 23:00 of each day, 08:00 of the last
    assert daily_returns(equity).to_numpy() == pytest.approx(expected[1:] / expected[:-1] - 1)


def test_weekly_returns_keep_weekly_bars() -> None:
    index = pd.date_range("2024-01-05", periods=10, freq="W-FRI")
    equity = pd.Series(np.linspace(100, 120, 10), index=index)
    assert daily_returns(equity).to_numpy() == pytest.approx(equity.pct_change().iloc[1:])


def test_geometric_mean_compounds_and_floors_at_total_loss() -> None:
    assert geometric_mean([0.1, -0.5]) == pytest.approx(math.sqrt(1.1 * 0.5) - 1)
    assert geometric_mean([0.21, np.nan]) == pytest.approx(math.sqrt(1.21) - 1)
    assert geometric_mean([0.2, -1.0]) == -1.0
    assert math.isnan(geometric_mean([]))


# --- degenerate inputs (warnings are errors under pytest, so none may be raised) ---------------


def test_flat_equity_and_no_trades() -> None:
    equity, bars = curve([10_000.0] * 30)
    stats = compute_statistics(equity, NO_TRADES, bars)
    assert tuple(stats) == STAT_KEYS
    assert stats["# Trades"] == 0 and stats["Exposure Time [%]"] == 0
    assert stats["Return [%]"] == 0 and stats["Max. Drawdown [%]"] == 0
    assert stats["Commissions [$]"] == 0 and stats["Volatility (Ann.) [%]"] == 0
    assert stats["Max. Drawdown Duration"] is None and stats["Avg. Trade Duration"] is None
    undefined = ["Sharpe Ratio", "Sortino Ratio", "Calmar Ratio", "Avg. Drawdown [%]",
                 "Win Rate [%]", "Best Trade [%]", "Avg. Trade [%]", "Profit Factor", "SQN"]
    assert all(math.isnan(stats[key]) for key in undefined)


def test_one_winning_trade() -> None:
    equity, bars = curve([100, 100, 110, 121, 121])
    stats = compute_statistics(equity, make_trades((1, 3, 21.0, 0.21)), bars)
    assert stats["# Trades"] == 1 and stats["Win Rate [%]"] == 100
    assert stats["Exposure Time [%]"] == pytest.approx(60)  # bars 1..3 of 5
    assert stats["Avg. Trade [%]"] == pytest.approx(21) and stats["Expectancy [%]"] == 21
    assert stats["Max. Trade Duration"] == pd.Timedelta(days=2)
    assert math.isnan(stats["SQN"]) and math.isnan(stats["Profit Factor"])


def test_all_winners_have_no_profit_factor() -> None:
    equity, bars = curve([100, 101, 102, 104, 106, 107])
    stats = compute_statistics(equity, make_trades((0, 2, 2.0, 0.02), (3, 4, 2.0, 0.02)), bars)
    assert math.isnan(stats["Profit Factor"])
    assert stats["Win Rate [%]"] == 100 and stats["Exposure Time [%]"] == pytest.approx(500 / 6)


def test_mixed_trades() -> None:
    equity, bars = curve([100.0] * 10)
    trades = make_trades((0, 1, 10.0, 0.1), (2, 3, -5.0, -0.05), (4, 6, 3.0, 0.03))
    stats = compute_statistics(equity, trades, bars)
    assert stats["Profit Factor"] == pytest.approx(0.13 / 0.05)
    assert stats["Win Rate [%]"] == pytest.approx(200 / 3)
    assert stats["Best Trade [%]"] == pytest.approx(10) and stats["Worst Trade [%]"] == -5
    assert stats["Avg. Trade [%]"] == pytest.approx(((1.1 * 0.95 * 1.03) ** (1 / 3) - 1) * 100)
    pnl = np.array([10.0, -5.0, 3.0])
    assert stats["SQN"] == pytest.approx(math.sqrt(3) * pnl.mean() / pnl.std(ddof=1))
    assert stats["Commissions [$]"] == pytest.approx(1.5)
    assert stats["Avg. Trade Duration"] == pd.Timedelta(days=2)  # (1+1+4)/3 days, Thu-Tue


def test_a_single_day_of_minutes_has_no_annualised_statistics() -> None:
    index = pd.date_range("2024-03-04 09:30", periods=390, freq="min")
    equity, bars = curve(list(np.linspace(100, 90, 390)), index)
    stats = compute_statistics(equity, NO_TRADES, bars)
    annualised = ["Return (Ann.) [%]", "Volatility (Ann.) [%]", "Sharpe Ratio",
                  "Sortino Ratio", "Calmar Ratio"]
    assert all(math.isnan(stats[key]) for key in annualised)
    assert stats["Return [%]"] == pytest.approx(-10)
    assert stats["Max. Drawdown Duration"] == pd.Timedelta(minutes=389)


def test_equity_wiped_out() -> None:
    equity, bars = curve([100, 50, 0, 0, 0])
    stats = compute_statistics(equity, NO_TRADES, bars)
    assert stats["Return [%]"] == -100 and stats["Max. Drawdown [%]"] == -100
    assert stats["Return (Ann.) [%]"] == -100 and stats["Calmar Ratio"] == -1
    assert stats["Max. Drawdown Duration"] == pd.Timedelta(days=4)


def test_a_range_index_counts_bars() -> None:
    equity, bars = curve([100, 90, 95, 101, 100], pd.RangeIndex(5))
    stats = compute_statistics(equity, make_trades((1, 3, 5.0, 0.05)), bars)
    assert (stats["Start"], stats["End"], stats["Duration"]) == (0, 4, 4)
    assert stats["Max. Drawdown Duration"] == 3 and stats["Max. Trade Duration"] == 2
    assert math.isnan(stats["Return (Ann.) [%]"]) and math.isnan(stats["Sharpe Ratio"])
    json.dumps(jsonable_statistics(stats), allow_nan=False)


def test_intraday_risk_ratios_use_daily_closes() -> None:
    index = pd.date_range("2024-01-01", periods=14 * 24, freq="h")  # weekends included
    values = 100 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.01, len(index))))
    equity, bars = curve(list(values), index)
    stats = compute_statistics(equity, NO_TRADES, bars)
    closes = values[23::24]
    returns = closes[1:] / closes[:-1] - 1
    assert same(stats["Sharpe Ratio"], returns.mean() / returns.std(ddof=1) * np.sqrt(365))
    downside = np.sqrt(np.mean(np.minimum(returns, 0) ** 2))
    assert same(stats["Sortino Ratio"], returns.mean() / downside * np.sqrt(365))


@pytest.mark.parametrize(("equity", "trades", "message"), [
    (pd.Series([1.0, 2.0]), NO_TRADES, "bars has 3 rows"),
    (pd.Series([1.0, 2.0, 3.0]), NO_TRADES.drop(columns="fees"), "fees"),
    (pd.Series([1.0, 2.0, 3.0]), make_trades((1, 3, 1.0, 0.1)), "outside"),
])
def test_inconsistent_inputs_are_refused(equity: pd.Series, trades: pd.DataFrame,
                                         message: str) -> None:
    bars = pd.DataFrame({"Close": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=message):
        compute_statistics(equity, trades, bars)


# --- presentation ---------------------------------------------------------------------------


def sample_stats() -> dict[str, Any]:
    equity, bars = curve([100, 90, 95, 101, 100, 120])
    return compute_statistics(equity, make_trades((3, 5, 19.0, 0.19)), bars)


def test_jsonable_statistics() -> None:
    stats = {**sample_stats(), "Max. Trade Duration": pd.Timedelta(days=12, hours=3),
             "# Trades": np.int64(2), "Profit Factor": np.inf, "SQN": np.float64("nan")}
    plain = jsonable_statistics(stats)
    assert list(plain) == list(STAT_KEYS)
    assert plain["Start"] == "2024-01-01T00:00:00"
    assert plain["Max. Trade Duration"] == "12 days 03:00:00"
    assert plain["# Trades"] == 2 and type(plain["# Trades"]) is int
    assert plain["Profit Factor"] is None and plain["SQN"] is None
    json.dumps(plain, allow_nan=False)


def test_format_statistics_is_one_row_per_key_with_a_column_per_baseline() -> None:
    stats = sample_stats()
    baselines = {"Buy & Hold": {**stats, "Return [%]": 2.005}, "Random": {"# Trades": 40}}
    lines = format_statistics(stats, baselines).splitlines()
    assert lines[0].split() == ["Strategy", "Buy", "&", "Hold", "Random"]
    rows = {line[:24].strip(): line[24:].split() for line in lines[1:]}
    assert list(rows) == list(STAT_KEYS)
    assert rows["# Trades"] == ["1", "1", "40"]
    assert rows["Return [%]"] == ["20.00%", "2.00%"]  # number_format.figure's rule
    assert rows["SQN"] == ["—", "—"]
    assert rows["Start"] == ["2024-01-01", "00:00:00"] * 2
