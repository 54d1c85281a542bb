"""Backtest edge cases found by a cross-check against backtesting.py (issue 11): rounding
noise read as a drawdown, ruin, an unordered time index, and the training metric that
must equal the default backtest."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from tests.bt_reference import flat_ending_tape, noise_free_stats, run_reference
from tests.conftest import SAMPLE_CSV
from Utilities.accounting import EnvParams
from Utilities.backtester import run_backtest
from Utilities.performance import compute_statistics, drawdown, drawdown_periods

FREE = EnvParams(commission=0.0, slippage=0.0, episode_length=None)
DRAWDOWN_KEYS = ("Max. Drawdown [%]", "Avg. Drawdown [%]", "Max. Drawdown Duration",
                 "Avg. Drawdown Duration")


def daily_bars(closes: list[float] | np.ndarray) -> pd.DataFrame:
    closes = np.asarray(closes, dtype=float)
    index = pd.date_range("2024-01-01", periods=len(closes), freq="D")
    return pd.DataFrame({"Open": closes, "High": closes, "Low": closes, "Close": closes,
                         "Volume": 1.0}, index=index)


def assert_same_drawdowns(ours: dict[str, Any], theirs: pd.Series) -> None:
    for key in DRAWDOWN_KEYS:
        if key.endswith("[%]"):
            # The engines agree on equity to ~1e-8 relative (whole 1e-8 units there).
            assert ours[key] == pytest.approx(theirs[key], rel=1e-6, abs=1e-9), key
        else:
            assert ours[key] == theirs[key], key


# --- 1. rounding noise is not a drawdown ----------------------------------------------------

REPRODUCER = [102.74, 95.4, 90.82, 90.33, 106.27, 108.26, 102.13]


def test_the_reproducer_has_one_drawdown_as_backtesting_py_says() -> None:
    bars = daily_bars(REPRODUCER)
    ours = run_backtest(bars, positions=np.array([0, 1, 0, 1, 0, 0, 0]), params=FREE)
    stats = ours.statistics()
    # The only loss: long at 95.40, out at 90.82. The second trade closes at a new high.
    assert stats["Avg. Drawdown [%]"] == pytest.approx(-(1 - 90.82 / 95.4) * 100, rel=1e-12)
    assert stats["Avg. Drawdown [%]"] == stats["Max. Drawdown [%]"]
    assert (ours.equity_frame()["drawdown"].iloc[4:] == 0).all()
    reference = run_reference(bars, np.array([0, 1, 2, 1, 2, 0, 0]), 0.0)
    assert_same_drawdowns(stats, noise_free_stats(reference, bars))


def test_a_rounding_step_below_the_peak_is_at_the_peak() -> None:
    peak = 11199.839349823997
    values = [10_000.0, 9_519.9, peak, np.nextafter(peak, 0), np.nextafter(peak, 0)]
    assert drawdown(values)[3:].tolist() == [0.0, 0.0]
    durations, depths = drawdown_periods(drawdown(values), pd.RangeIndex(5))
    assert depths.tolist() == pytest.approx([1 - 9_519.9 / 10_000]) and len(durations) == 1
    # A real dip, however small, still counts: a cent on 10,000 is 1e-6.
    assert drawdown([10_000.0, 9_999.99])[1] == pytest.approx(1e-6)


def random_walk(n: int, seed: int) -> pd.DataFrame:
    """Daily closes in cents with an upward drift, so trades often close at new highs."""
    steps = np.random.default_rng(seed).normal(0.01, 0.02, n)
    return daily_bars(np.round(100 * np.exp(np.cumsum(steps)), 2))


def exact_avg_drawdown(equity: pd.Series) -> float:
    """Avg. Drawdown read with an exact peak comparison (the old rule)."""
    values = equity.to_numpy()
    _, depths = drawdown_periods(1 - values / np.maximum.accumulate(values), equity.index)
    return -float(depths.mean()) * 100


def test_drawdowns_agree_with_backtesting_py_on_random_tapes_without_commission() -> None:
    noisy = 0
    for seed in range(40):
        bars = random_walk(90, seed)
        tape = flat_ending_tape(len(bars), seed=seed, p_trade=0.6)
        ours = run_backtest(bars, actions=tape, params=FREE)
        stats = ours.statistics()
        assert_same_drawdowns(stats, noise_free_stats(run_reference(bars, tape, 0.0), bars))
        noisy += not math.isclose(exact_avg_drawdown(ours.equity), stats["Avg. Drawdown [%]"])
    assert noisy >= 3  # the tapes do hit the rounding case, or this would prove nothing


def test_statistics_of_a_noisy_curve_match_those_of_the_clean_one() -> None:
    clean = daily_bars([100.0, 90.0, 120.0, 120.0, 130.0, 130.0])
    noisy = clean["Close"].copy()
    noisy.iloc[[3, 5]] = [np.nextafter(120.0, 0), np.nextafter(130.0, 0)]
    trades = pd.DataFrame(columns=["entry_bar", "exit_bar", "entry_time", "exit_time", "side",
                                   "units", "entry_price", "exit_price", "pnl", "return_pct",
                                   "fees", "bars_held"])
    expected = compute_statistics(clean["Close"], trades, clean)
    got = compute_statistics(noisy, trades, clean)
    assert {k: got[k] for k in DRAWDOWN_KEYS} == {k: expected[k] for k in DRAWDOWN_KEYS}


# --- 2. ruin: the account is wiped out at -100 %, not in debt ------------------------------

RUIN_CLOSES = [100, 100, 100, 150, 300, 310, 320, 330, 340, 350]
RUIN_TAPE = np.array([0, 2, 0, 0, 0, 0, 0, 0, 0, 0])  # short at 100; the price triples


@pytest.mark.parametrize("commission", [0.0, 0.001])
def test_ruin_floors_equity_at_zero_as_backtesting_py_does(commission: float) -> None:
    bars = daily_bars(RUIN_CLOSES)
    params = EnvParams(commission=commission, slippage=0.0, episode_length=None)
    ours = run_backtest(bars, actions=RUIN_TAPE, params=params)
    reference = run_reference(bars, RUIN_TAPE, commission)
    np.testing.assert_allclose(ours.equity.to_numpy(),
                               reference["_equity_curve"]["Equity"].to_numpy(), rtol=1e-9)
    assert ours.ruin_bar == 4 and (ours.equity.iloc[4:] == 0).all()
    # The liquidating trade keeps its own loss (twice the account), as there.
    assert ours.trades["pnl"].to_list() == pytest.approx(reference["_trades"]["PnL"].to_list())
    assert ours.trades["return_pct"].iloc[0] <= -2.0


def test_statistics_of_a_wiped_out_account() -> None:
    bars = daily_bars(RUIN_CLOSES)
    stats = run_backtest(bars, actions=RUIN_TAPE, params=FREE).statistics()
    assert stats["Equity Final [$]"] == 0.0 and stats["Return [%]"] == -100.0
    assert stats["Max. Drawdown [%]"] == -100.0
    # Daily figures stop at the day it was wiped out (-100 %); a zero balance has no returns.
    assert stats["Return (Ann.) [%]"] == -100.0 and stats["Calmar Ratio"] == -1.0
    closes = np.array([10_000.0, 10_000.0, 10_000.0, 5_000.0, 0.0])
    daily = closes[1:] / closes[:-1] - 1
    assert stats["Sharpe Ratio"] == pytest.approx(daily.mean() / daily.std(ddof=1)
                                                  * math.sqrt(365))
    assert math.isfinite(stats["Volatility (Ann.) [%]"]) and math.isfinite(stats["Sortino Ratio"])


def test_a_ruined_backtest_reports_when_and_stays_valid_json(tmp_path) -> None:
    from Utilities.backtest_report import BacktestReport, Period
    from Utilities.backtester import baselines

    bars = daily_bars(RUIN_CLOSES)
    result = run_backtest(bars, actions=RUIN_TAPE, params=FREE)
    report = BacktestReport("m", "ppo", "ruin.csv", Period(0, len(bars) - 1, "whole file"),
                            result, baselines(bars, FREE), pd.DataFrame(index=bars.index))
    summary = json.loads(json.dumps(report.summary(), allow_nan=False))
    assert summary["ruined_at"] == "2024-01-05 00:00:00"
    assert summary["statistics"]["Return [%]"] == -100.0
    assert summary["statistics"]["SQN"] is None  # one trade: no dispersion, not NaN
    assert json.loads(report.write(tmp_path)["statistics.json"].read_text()) == summary


# --- 3. the API refuses bars out of time order, as the CLI does -----------------------------

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]


@pytest.mark.parametrize(("days", "message", "rows"), [
    (DAYS[:2] + DAYS[1:4], r"duplicate timestamps at position 2 \('2024-01-02 00:00:00'\); "
                           "remove the repeated bars", [2]),
    (DAYS[::-1], r"timestamps go backwards at positions 1 \('2024-01-04 00:00:00'\), 2 .* "
                 r"sort the bars by time", [1, 2, 3, 4]),
    ([DAYS[0], None, *DAYS[2:]], r"missing timestamps at position 1", [1]),
])
def test_run_backtest_refuses_an_unordered_time_index(days, message, rows) -> None:
    from Utilities.data_utils import DataError

    bars = daily_bars([100.0, 101.0, 102.0, 103.0, 104.0])
    bars.index = pd.DatetimeIndex(days)
    with pytest.raises(DataError, match=r"^bars' index: " + message) as caught:
        run_backtest(bars, actions=np.array([0, 1, 0, 2, 0]), params=FREE)
    assert caught.value.rows == rows and isinstance(caught.value, ValueError)


def test_the_cli_and_the_api_word_the_problem_alike(tmp_path) -> None:
    from Utilities.data_utils import DataError, load_bars

    bars = daily_bars([100.0, 101.0, 102.0, 103.0, 104.0]).iloc[[0, 2, 1, 3, 4]]
    bars.to_csv(tmp_path / "unsorted.csv", index_label="Date")
    with pytest.raises(DataError, match="timestamps go backwards at line 4; sort the file"):
        load_bars(tmp_path / "unsorted.csv")
    with pytest.raises(DataError, match=r"timestamps go backwards at position 2 .*; sort the bars"):
        run_backtest(bars, actions=np.zeros(5, np.int64), params=FREE)


def test_a_bar_numbered_index_must_increase_too() -> None:
    bars = daily_bars([100.0, 101.0, 102.0, 103.0]).reset_index(drop=True)
    assert run_backtest(bars, actions=np.zeros(4, np.int64), params=FREE).equity.iloc[-1] == 10_000
    bars.index = [0, 1, 1, 2]
    with pytest.raises(ValueError, match="duplicate timestamps at position 2"):
        run_backtest(bars, actions=np.zeros(4, np.int64), params=FREE)


# --- 5. the training metric is the default backtest's Return -------------------------------


class AlwaysBuy:
    """A policy that goes long on the first bar and holds to the end of the slice."""

    def policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor([[0.1, 0.8, 0.1]]), torch.zeros(1)


def test_greedy_evaluation_closes_the_last_position_and_pays_for_it(sample_bars) -> None:
    from NetworkConfigs.PPOTrainer import buy_and_hold_pct, evaluate_greedy
    from NetworkConfigs.trading_env import TradingEnvironment
    from Utilities.backtester import buy_and_hold

    bars = sample_bars.iloc[:300]
    params = EnvParams(commission=0.001, slippage=2.0, episode_length=None)
    env = TradingEnvironment(np.zeros((len(bars), 1), np.float32), bars["Close"].to_numpy(),
                             1, params=params, random_start=False)
    result = evaluate_greedy(AlwaysBuy(), env)
    held = buy_and_hold(bars, params)
    assert result["return_pct"] == pytest.approx(held.statistics()["Return [%]"], abs=1e-9)
    assert result["trades"] == 1 == len(held.trades)
    # Training's buy-and-hold figure is the same baseline (costs paid), not the price move.
    assert buy_and_hold_pct(env) == pytest.approx(held.statistics()["Return [%]"], abs=1e-12)
    assert buy_and_hold_pct(env) < held.statistics()["Price Change [%]"]
    left_open = run_backtest(bars, positions=np.ones(len(bars), np.int8), params=params,
                             finalize=False)
    assert left_open.open_trade is not None and held.open_trade is None
    # The closing fill's costs are paid, not left out as when marking it at the close.
    assert result["final_equity"] < left_open.equity.iloc[-1]


@pytest.fixture(scope="module")
def smoke_ppo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from NetworkConfigs.ppo_config import SMOKE
    from NetworkConfigs.PPOTrainer import PPOTrainer
    from Utilities.data_utils import load_bars

    torch.manual_seed(0)
    return PPOTrainer(SMOKE).fit(load_bars(SAMPLE_CSV), model_name="smoke",
                                 models_dir=tmp_path_factory.mktemp("models"),
                                 data_file=str(SAMPLE_CSV))


def test_the_test_return_of_training_is_the_default_backtests_return(smoke_ppo: Path) -> None:
    from NetworkConfigs import load_model
    from Utilities.model_backtester import backtest_model

    metrics = load_model(smoke_ppo).config["metrics"]
    report = backtest_model(smoke_ppo, SAMPLE_CSV)
    assert report.period.source == "held-out test slice"
    assert metrics["test_return_pct"] == pytest.approx(report.statistics["Return [%]"],
                                                       abs=1e-9)
    assert metrics["test_trades"] == report.statistics["# Trades"]
    # One buy-and-hold: training's test figure is the backtest's Buy & Hold column.
    assert metrics["test_buy_hold_pct"] == pytest.approx(
        report.baseline_statistics["Buy & Hold"]["Return [%]"], abs=1e-9)
