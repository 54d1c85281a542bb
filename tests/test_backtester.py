"""The backtest engine: same equity as the env, same fills as backtesting.py, clear errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from NetworkConfigs.trading_env import TradingEnvironment, VecTradingEnv
from tests.bt_reference import flat_ending_tape, ibm_bars, periodic_tape, run_reference
from Utilities.accounting import BUY, HOLD, SELL, Accounts, EnvParams, apply_actions
from Utilities.backtester import baselines, buy_and_hold, random_policy, run_backtest
from Utilities.data_utils import load_bars

COSTLY = EnvParams(commission=0.001, slippage=5.0, episode_length=None)
NO_SLIP = EnvParams(commission=0.001, slippage=0.0, episode_length=None)


def env_equity(bars: pd.DataFrame, tape: np.ndarray, params: EnvParams) -> np.ndarray:
    """Equity the training env reports (info['equity'] after each step), from bar 0."""
    features = np.zeros((len(bars), 1), np.float32)  # features do not move the account
    env = TradingEnvironment(features, bars["Close"].to_numpy(), 1, params=params)
    env.reset(options={"start": 0})
    equity = [params.initial_balance]
    for action in tape[:-1]:
        *_, terminated, truncated, info = env.step(int(action))
        equity.append(info["equity"])
        if terminated or truncated:
            break
    return np.array(equity)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_env_and_engine_give_the_same_equity(sample_bars: pd.DataFrame, seed: int) -> None:
    bars = sample_bars.iloc[:800]
    tape = np.random.default_rng(seed).choice(3, len(bars), p=[0.7, 0.15, 0.15])
    result = run_backtest(bars, actions=tape, params=COSTLY, finalize=False)
    expected = env_equity(bars, tape, COSTLY)
    assert len(expected) == len(bars)
    np.testing.assert_allclose(result.equity.to_numpy(), expected, rtol=1e-10)


def test_vector_env_agrees_too(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:300]
    tapes = np.random.default_rng(5).choice(3, (4, len(bars)), p=[0.6, 0.2, 0.2])
    params = replace(COSTLY, allow_short=False)
    env = VecTradingEnv(np.zeros((len(bars), 1), np.float32), bars["Close"].to_numpy(), 1,
                        params=params, num_envs=4)
    env.reset(options={"start": 0})
    last = None
    for t in range(len(bars) - 1):
        *_, info = env.step(tapes[:, t])
        last = info.get("final_equity", info.get("equity"))
    for row in range(4):
        result = run_backtest(bars, actions=tapes[row], params=params, finalize=False)
        assert result.equity.iloc[-1] == pytest.approx(last[row], rel=1e-10)


def bt_cases() -> list[tuple[str, str, float]]:
    return [(data, tape, c) for data in ("ibm", "nq") for tape in ("random", "periodic")
            for c in (0.0, 0.001)]


@pytest.fixture(scope="module")
def data_files(nq_path) -> dict[str, pd.DataFrame]:
    nq = load_bars(nq_path)[["Open", "High", "Low", "Close", "Volume"]]
    return {"ibm": ibm_bars(), "nq": nq}


def make_tape(kind: str, n: int) -> np.ndarray:
    return flat_ending_tape(n, seed=n) if kind == "random" else periodic_tape(n, 17)


@pytest.mark.parametrize(("data", "tape_kind", "commission"), bt_cases())
def test_engine_matches_backtesting_py(data_files, data: str, tape_kind: str,
                                       commission: float) -> None:
    bars = data_files[data]
    tape = make_tape(tape_kind, len(bars))
    reference = run_reference(bars, tape, commission)
    ours = run_backtest(bars, actions=tape, params=replace(NO_SLIP, commission=commission))
    expected = reference["_equity_curve"]["Equity"].to_numpy()
    # backtesting.py trades whole 1e-8 units; the difference is far below a cent.
    np.testing.assert_allclose(ours.equity.to_numpy(), expected, rtol=1e-7)
    assert_same_trades(ours.trades, reference["_trades"])
    np.testing.assert_allclose(ours.equity_frame()["drawdown"],
                               reference["_equity_curve"]["DrawdownPct"], atol=1e-7)


def assert_same_trades(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert len(ours) == len(theirs) > 5
    np.testing.assert_array_equal(ours["entry_bar"], theirs["EntryBar"])
    np.testing.assert_array_equal(ours["exit_bar"], theirs["ExitBar"])
    np.testing.assert_array_equal(ours["side"], np.sign(theirs["Size"]))
    np.testing.assert_allclose(ours["entry_price"], theirs["EntryPrice"], rtol=1e-12)
    np.testing.assert_allclose(ours["exit_price"], theirs["ExitPrice"], rtol=1e-12)
    np.testing.assert_allclose(ours["pnl"], theirs["PnL"], rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(ours["return_pct"], theirs["ReturnPct"], rtol=1e-6, atol=1e-9)
    assert (ours["pnl"] > 0).mean() == (theirs["PnL"] > 0).mean()  # win rate


def test_next_open_fills_match_backtesting_py(data_files) -> None:
    bars = data_files["nq"]
    tape = make_tape("random", len(bars))
    reference = run_reference(bars, tape, 0.0005, trade_on_close=False)
    ours = run_backtest(bars, actions=tape, params=replace(NO_SLIP, commission=0.0005),
                        fill="next_open")
    np.testing.assert_allclose(ours.equity.to_numpy(),
                               reference["_equity_curve"]["Equity"].to_numpy(), rtol=1e-7)
    assert_same_trades(ours.trades, reference["_trades"])


def sequential_equity(bars: pd.DataFrame, positions: np.ndarray,
                      params: EnvParams) -> np.ndarray:
    """A bar-by-bar reference through apply_actions: a reversal is a close, then an open."""
    acc, close = Accounts.open(1, params.initial_balance), bars["Close"].to_numpy()
    equity = []
    for t, target in enumerate(positions):
        equity.append(acc.equity(close[t])[0])
        for _ in range(2):  # a reversal: close, then open (refused once equity <= 0)
            if t == len(bars) - 1 or acc.position[0] == target:
                break
            action = BUY if target > acc.position[0] else SELL
            apply_actions(acc, np.array([action]), close[t], params)
    return np.array(equity)


def test_target_positions_with_reversals(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:500]
    positions = np.random.default_rng(3).choice([-1, 0, 1], len(bars), p=[0.1, 0.8, 0.1])
    positions = np.repeat(positions[::5], 5)[:len(bars)]  # hold each target for 5 bars
    result = run_backtest(bars, positions=positions, params=COSTLY, finalize=False)
    np.testing.assert_allclose(result.equity.to_numpy(),
                               sequential_equity(bars, positions, COSTLY), rtol=1e-10)
    reversals = result.trades["exit_bar"].to_numpy()[:-1] == result.trades["entry_bar"][1:]
    assert reversals.any()  # a reversal closes and reopens at the same bar


def test_trade_table_is_consistent(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:600]
    result = run_backtest(bars, actions=periodic_tape(len(bars), 30), params=COSTLY)
    trades = result.trades
    assert len(trades) > 10 and result.open_trade is None
    assert (trades["bars_held"] == trades["exit_bar"] - trades["entry_bar"]).all()
    assert (trades["entry_time"] == bars.index[trades["entry_bar"]]).all()
    assert (trades["fees"] > 0).all() and (trades["units"] > 0).all()
    # Total PnL of the closed trades is the whole change of equity (flat at the end).
    assert trades["pnl"].sum() == pytest.approx(result.equity.iloc[-1] - 10_000, rel=1e-9)


def test_a_position_open_at_the_end_is_reported_not_listed(sample_bars) -> None:
    bars = sample_bars.iloc[:50]
    tape = np.zeros(len(bars), np.int64)
    tape[[5, 10, 20]] = [BUY, SELL, SELL]  # long, flat, then short to the end
    result = run_backtest(bars, actions=tape, params=COSTLY, finalize=False)
    assert len(result.trades) == 1
    assert result.open_trade["side"] == -1 and result.open_trade["entry_bar"] == 20
    assert result.position[-1] == -1


@pytest.mark.parametrize("fill", ["close", "next_open"])
def test_finalize_closes_at_the_last_close(sample_bars, fill: str) -> None:
    bars = sample_bars.iloc[:50]
    tape = np.zeros(len(bars), np.int64)
    tape[[5, 20]] = [BUY, SELL]
    tape[30] = SELL  # short from bar 30 (31 at the next open) to the end
    open_end = run_backtest(bars, actions=tape, params=COSTLY, fill=fill, finalize=False)
    final = run_backtest(bars, actions=tape, params=COSTLY, fill=fill)
    assert final.open_trade is None and len(final.trades) == 2
    last = final.trades.iloc[-1]
    assert (last["side"], last["exit_bar"]) == (-1, len(bars) - 1)
    assert last["exit_price"] == pytest.approx(bars["Close"].iloc[-1] * (1 + 5e-4))
    np.testing.assert_array_equal(final.equity.iloc[:-1], open_end.equity.iloc[:-1])
    # The last mark pays the closing fill's slippage and commission.
    unrealized = open_end.equity.iloc[-1]
    assert final.equity.iloc[-1] == pytest.approx(unrealized - last["fees"] / 2 - (
        last["units"] * bars["Close"].iloc[-1] * 5e-4), rel=1e-3)
    assert final.equity.iloc[-1] - 10_000 == pytest.approx(final.trades["pnl"].sum())


def test_ruin_liquidates_and_stays_flat() -> None:
    index = pd.date_range("2024-01-01", periods=8, freq="D")
    close = np.array([100, 100, 150, 300, 310, 320, 330, 340], dtype=float)
    bars = pd.DataFrame({"Open": close, "Close": close}, index=index)
    tape = np.array([SELL, HOLD, HOLD, BUY, SELL, BUY, HOLD, HOLD])
    result = run_backtest(bars, actions=tape, params=COSTLY)
    assert result.equity.iloc[3] <= 0  # the short lost everything when the price tripled
    assert len(result.trades) == 1 and result.open_trade is None
    assert (result.position[4:] == 0).all()
    assert result.equity.iloc[4:].nunique() == 1


def test_no_trades_keeps_the_balance(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:30]
    result = run_backtest(bars, actions=np.zeros(len(bars), np.int64), params=COSTLY)
    assert (result.equity == 10_000).all() and result.trades.empty
    assert list(result.trades.columns)[:2] == ["entry_bar", "exit_bar"]


def test_baselines(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:400]
    free = EnvParams(commission=0.0, slippage=0.0)
    held = buy_and_hold(bars, free)
    close = bars["Close"].to_numpy()
    assert held.equity.iloc[-1] == pytest.approx(10_000 * close[-1] / close[0])
    first = random_policy(bars, COSTLY, seed=7)
    np.testing.assert_array_equal(first.equity, random_policy(bars, COSTLY, seed=7).equity)
    assert not np.array_equal(first.equity, random_policy(bars, COSTLY, seed=8).equity)
    assert set(baselines(bars, COSTLY)) == {"Buy & Hold", "Random"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"actions": np.zeros(9, np.int64)}, "one entry per bar"),
    ({"actions": np.full(10, 3)}, "integers in {0 Hold"),
    ({"actions": np.full(10, 0.5)}, "integers in {0 Hold"),
    ({"positions": np.full(10, 2)}, "positions must be in"),
    ({"actions": np.zeros(10, np.int64), "positions": np.zeros(10)}, "exactly one"),
    ({}, "exactly one"),
    ({"actions": np.zeros(10, np.int64), "fill": "vwap"}, "fill must be one of"),
])
def test_bad_tapes_are_refused(sample_bars, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{")):
        run_backtest(sample_bars.iloc[:10], params=COSTLY, **kwargs)


def test_shorts_refused_when_shorting_is_off(sample_bars) -> None:
    with pytest.raises(ValueError, match="shorting off"):
        run_backtest(sample_bars.iloc[:10], positions=np.full(10, -1),
                     params=replace(COSTLY, allow_short=False))


def test_bad_bars_are_refused(sample_bars) -> None:
    bars = sample_bars.iloc[:10]
    with pytest.raises(ValueError, match=r"lack column\(s\) \['Open'\]"):
        run_backtest(bars[["Close"]], actions=np.zeros(10, np.int64), fill="next_open")
    with pytest.raises(ValueError, match="at least 2 bars"):
        run_backtest(bars.iloc[:1], actions=np.zeros(1, np.int64))
    broken = bars.copy()
    broken.iloc[3, broken.columns.get_loc("Close")] = -1.0
    with pytest.raises(ValueError, match="finite and positive"):
        run_backtest(broken, actions=np.zeros(10, np.int64))


def test_ruin_on_the_last_bar_with_next_open_fills_is_liquidated_at_the_close() -> None:
    index = pd.date_range("2024-01-01", periods=4, freq="D")
    close = np.array([100.0, 100.0, 100.0, 300.0])
    bars = pd.DataFrame({"Open": close, "Close": close}, index=index)
    tape = np.array([SELL, HOLD, HOLD, HOLD])
    result = run_backtest(bars, actions=tape, params=COSTLY, fill="next_open", finalize=False)
    assert np.isfinite(result.equity).all() and result.equity.iloc[-1] == 0
    assert result.ruin_bar == 3 and result.trades["pnl"].iloc[0] < -10_000
    assert len(result.trades) == 1 and np.isfinite(result.trades["pnl"]).all()


def test_a_reversal_out_of_ruin_does_not_open() -> None:
    index = pd.date_range("2024-01-01", periods=6, freq="D")
    close = np.array([100.0, 100.0, 199.99, 150.0, 100.0, 100.0])
    bars = pd.DataFrame({"Open": close, "Close": close}, index=index)
    positions = np.array([-1, -1, 1, 1, 1, 0])
    result = run_backtest(bars, positions=positions, params=NO_SLIP, finalize=False)
    expected = sequential_equity(bars, positions, NO_SLIP)
    assert expected[3] < 0  # closing the short left less than nothing: no open, and ...
    expected[3:] = 0  # ... the account is wiped out, not in debt
    np.testing.assert_allclose(result.equity.to_numpy(), expected, rtol=1e-10)
    assert len(result.trades) == 1 and (result.position[3:] == 0).all()
    assert result.ruin_bar == 3
