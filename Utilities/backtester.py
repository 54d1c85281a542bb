"""Backtest engine shared by every model type: bars + per-bar actions (or target
positions) → fills → equity marked every bar → trade list.

Timing, the same as the training env and as backtesting.py with ``trade_on_close=True``:

- the decision at bar ``t`` fills at ``close[t]`` (``fill="close"``) or at ``open[t+1]``
  (``fill="next_open"``), with commission and slippage;
- ``equity[t]`` is marked at ``close[t]`` and includes every fill decided before bar
  ``t``, so ``equity[t+1] - equity[t]`` is what the env rewards for the action at ``t``;
- the decision at the last bar is ignored: no later mark could ever show it. With
  ``finalize=True`` (the default) a position still open there is closed at the last
  close instead, and the last mark shows the cash after that fill, so every trade is
  scored and the final equity is what the account could actually be liquidated for
  (backtesting.py's ``finalize_trades=True``). With ``finalize=False`` it is left open
  and reported as ``open_trade``.

Accounting goes through :func:`Utilities.accounting.apply_actions`, the env's own
rule. Because the position path of a tape is known in advance and the rule is linear in
equity, trades are replayed all at once: every trade runs in its own account of unit
equity (one vectorised call opens them all, one closes them all) and the real account's
equity is chained through the trades' growth factors. No Python loop runs per bar.

Ruin: at the first mark with equity <= 0 the position is liquidated at that bar's fill
and the account stays flat afterwards (backtesting.py stops the run there too). An
account cannot lose more than it has: equity is floored at 0 from the first mark at or
below 0 and stays 0, so Return is -100 % at worst (``BacktestResult.ruin_bar`` says
where). The liquidating trade keeps its own figures in the trade list (a short that
lost 150 % shows -150 %), as in backtesting.py. For what the statistics make of a
wiped-out account, see :mod:`Utilities.performance`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from Utilities import performance
from Utilities.accounting import (
    BUY,
    HOLD,
    SELL,
    Accounts,
    EnvParams,
    apply_actions,
    position_path,
)
from Utilities.data_loading import MAX_LISTED, DataError, describe_rows, time_order_problem

FILL_MODES = ("close", "next_open")
TRADE_COLUMNS = ("entry_bar", "exit_bar", "entry_time", "exit_time", "side", "units",
                 "entry_price", "exit_price", "pnl", "return_pct", "fees", "bars_held")
BASELINE_SEED = 0


@dataclass
class BacktestResult:
    """Equity per bar, closed trades and the position still open at the end (if any)."""

    bars: pd.DataFrame
    equity: pd.Series
    position: np.ndarray  # int8 position held at each mark
    trades: pd.DataFrame
    open_trade: dict[str, Any] | None
    params: EnvParams
    fill: str
    ruin_bar: int | None = None  # the first mark at 0 after ruin; equity is 0 from there
    _stats: dict[str, Any] | None = field(default=None, repr=False)

    def statistics(self) -> dict[str, Any]:
        """The performance table (see :mod:`Utilities.performance`), computed once."""
        if self._stats is None:
            self._stats = performance.compute_statistics(self.equity, self.trades, self.bars)
        return self._stats

    def equity_frame(self) -> pd.DataFrame:
        """Equity, drawdown (fraction below the running peak) and position per bar."""
        return pd.DataFrame({"equity": self.equity.to_numpy(),
                             "drawdown": performance.drawdown(self.equity),
                             "position": self.position}, index=self.equity.index)


def run_backtest(bars: pd.DataFrame, *, actions: Any = None, positions: Any = None,
                 params: EnvParams | None = None, fill: str = "close",
                 finalize: bool = True) -> BacktestResult:
    """Replay a tape: ``actions`` (0 Hold, 1 Buy, 2 Sell per bar) or ``positions`` (the
    position wanted after each bar's decision, -1/0/+1; a reversal is a close and an open
    at the same fill). ``bars`` must be in strictly increasing time order, as a loaded
    file is. Raises ValueError (DataError for the bars' index) naming what is wrong."""
    params = params or EnvParams()
    check_time_order(bars.index)
    close, fill_price = fill_prices(bars, fill)
    desired = _desired_positions(len(bars), actions, positions, params)
    if finalize:
        desired[-1] = 0
    # A fill forced on the last bar (finalize, or ruin there) can only be at its close.
    fill_price = np.r_[fill_price[:-1], close[-1]]
    delay = FILL_MODES.index(fill)  # bars between a decision and its fill
    replay = _replay(desired, close, fill_price, params, delay)
    ruin = replay.first_ruin()
    if ruin is not None:  # liquidate there, then stay flat
        desired[ruin:] = 0
        replay = _replay(desired, close, fill_price, params, delay)
    result = replay.result(bars, params, fill)
    result.ruin_bar = _floor_at_ruin(result.equity)
    if finalize:
        result.position[-1] = 0  # the last mark is after the liquidating fill
    return result


def check_time_order(index: pd.Index) -> None:
    """Raise DataError unless ``index`` strictly increases: a repeated or earlier bar
    would give negative durations and fills out of order. The message names the
    positions, as load_bars names a file's lines."""
    if index.hasnans:
        _order_error(index, np.asarray(pd.isna(index)), "missing timestamps",
                     "drop or fill those bars")
    if index.is_unique and index.is_monotonic_increasing:
        return
    found = time_order_problem(index.to_numpy())
    if found:
        mask, problem, advice = found
        _order_error(index, mask, problem, advice or "sort the bars by time (bars.sort_index())")


def _order_error(index: pd.Index, mask: np.ndarray, problem: str, advice: str) -> None:
    positions = np.flatnonzero(mask).tolist()
    shown = [str(index[i]) for i in positions[:MAX_LISTED]]
    raise DataError(f"bars' index: {problem} at {describe_rows(positions, shown, 'position')}; "
                    f"{advice}", source=None, column=index.name, rows=positions)


def _floor_at_ruin(equity: pd.Series) -> int | None:
    """Equity 0 from the first mark at or below 0 on (the account is flat there: the
    replay liquidated it); that bar, or None when the account survived."""
    broke = np.flatnonzero(equity.to_numpy() <= 0)
    if not broke.size:
        return None
    equity.iloc[broke[0]:] = 0.0
    return int(broke[0])


def fill_prices(bars: pd.DataFrame, fill: str) -> tuple[np.ndarray, np.ndarray]:
    """(close for marks, raw price a decision at each bar fills at; NaN where none can)."""
    if fill not in FILL_MODES:
        raise ValueError(f"fill must be one of {FILL_MODES}; got {fill!r}")
    needed = ["Close"] + (["Open"] if fill == "next_open" else [])
    missing = [c for c in needed if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack column(s) {missing} needed to fill at {fill!r}")
    if len(bars) < 2:
        raise ValueError(f"a backtest needs at least 2 bars; got {len(bars)}")
    close = bars["Close"].to_numpy(dtype=np.float64)
    prices = close if fill == "close" else np.r_[bars["Open"].to_numpy(np.float64)[1:], np.nan]
    checked = np.r_[close, prices[:-1]]
    if not (np.isfinite(checked) & (checked > 0)).all():
        raise ValueError("bar prices must be finite and positive (raw prices, not features)")
    return close, prices


def _desired_positions(n: int, actions: Any, positions: Any, params: EnvParams) -> np.ndarray:
    """The position after each bar's decision; the last bar's decision never fills."""
    if (actions is None) == (positions is None):
        raise ValueError("give exactly one of actions or positions")
    tape = np.asarray(actions if positions is None else positions)
    if tape.shape != (n,):
        raise ValueError(f"the tape must have one entry per bar ({n}); got shape {tape.shape}")
    if positions is None:
        desired = position_path(tape, params.allow_short)
    else:
        desired = _checked_positions(tape, params.allow_short)
    desired[-1] = desired[-2]
    return desired


def _checked_positions(tape: np.ndarray, allow_short: bool) -> np.ndarray:
    allowed = (-1, 0, 1) if allow_short else (0, 1)
    if tape.dtype.kind not in "iuf" or not np.isin(tape, allowed).all():
        raise ValueError(f"positions must be in {allowed} (shorting "
                         f"{'allowed' if allow_short else 'off'}); got {np.unique(tape)[:5]}")
    return tape.astype(np.int8)


@dataclass
class _Replay:
    """Arrays of one vectorised replay, before they become a BacktestResult."""

    equity: np.ndarray
    held: np.ndarray
    trades: dict[str, np.ndarray]
    open_trade: dict[str, Any] | None
    broke_starts: np.ndarray  # decision bars where a trade would open with equity <= 0

    def first_ruin(self) -> int | None:
        """The first bar with equity <= 0 at its mark or at a trade's opening (a reversal
        whose close leaves nothing: apply_actions would refuse that open)."""
        bars = np.r_[np.flatnonzero(self.equity <= 0), self.broke_starts]
        return int(bars.min()) if bars.size else None

    def result(self, bars: pd.DataFrame, params: EnvParams, fill: str) -> BacktestResult:
        index = bars.index
        trades = pd.DataFrame({c: self.trades[c] for c in TRADE_COLUMNS if c in self.trades})
        trades.insert(2, "entry_time", index[trades["entry_bar"].to_numpy()])
        trades.insert(3, "exit_time", index[trades["exit_bar"].to_numpy()])
        if self.open_trade is not None:
            self.open_trade["entry_time"] = index[self.open_trade["entry_bar"]]
        return BacktestResult(bars, pd.Series(self.equity, index=index, name="equity"),
                              self.held, trades.loc[:, list(TRADE_COLUMNS)], self.open_trade,
                              params, fill)


def _replay(desired: np.ndarray, close: np.ndarray, fill_price: np.ndarray,
            params: EnvParams, delay: int) -> _Replay:
    starts, exits = _trade_bars(desired)
    side = desired[starts].astype(np.int8)
    acc = Accounts.open(len(starts), 1.0)
    opened = apply_actions(acc, np.where(side > 0, BUY, SELL), fill_price[starts], params)
    cash, units = acc.cash.copy(), acc.units.copy()
    n_closed = len(exits)
    is_closed = np.arange(len(starts)) < n_closed
    exit_price = np.where(is_closed, fill_price[np.r_[exits, starts[n_closed:]]], 1.0)
    closing = np.where(is_closed, np.where(side > 0, SELL, BUY), HOLD)
    closed = apply_actions(acc, closing, exit_price, params)
    scale = params.initial_balance * np.r_[1.0, np.cumprod(acc.cash[:n_closed])]
    equity = _marks(desired, close, starts, exits, cash, units, scale)
    last = len(desired) - 1
    if n_closed and exits[-1] == last:  # finalized: the last mark is the cash after the fill
        equity[-1] = scale[-1]
    exit_bars = np.minimum(exits + delay, last)  # a finalizing fill is on the last bar itself
    trades = _trade_table(starts[:n_closed] + delay, exit_bars, side, opened, closed, scale)
    open_trade = (_open_trade(starts[-1] + delay, side[-1], units[-1], opened, scale[-1],
                              close[-1])
                  if len(starts) > n_closed else None)
    held = np.r_[0, desired[:-1]].astype(np.int8)
    return _Replay(equity, held, trades, open_trade, starts[scale[:len(starts)] <= 0])


def _trade_bars(desired: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(decision bars that open a trade, decision bars that close them); a trade still
    open at the end has no exit, so ``len(exits)`` is ``len(starts)`` or one less."""
    changes = np.flatnonzero(desired != np.r_[0, desired[:-1]])
    opens = np.flatnonzero(desired[changes] != 0)
    following = opens + 1
    return changes[opens], changes[following[following < len(changes)]]


def _marks(desired: np.ndarray, close: np.ndarray, starts: np.ndarray, exits: np.ndarray,
           cash: np.ndarray, units: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Equity at every close: a trade's unit account scaled by the equity it started
    with while it is held; between trades, the equity the last closed trade left."""
    previous = np.arange(len(desired)) - 1  # marks see decisions made before their bar
    held = np.r_[0, desired[:-1]] != 0
    trade = np.searchsorted(starts, previous, side="right") - 1
    done = np.searchsorted(exits, previous, side="right")
    k = np.where(held, trade, 0)
    in_trade = scale[k] * (cash[k] + units[k] * close) if len(starts) else 0.0
    return np.where(held, in_trade, scale[done]).astype(np.float64)


def _trade_table(entries: np.ndarray, exits: np.ndarray, side: np.ndarray, opened: Any,
                 closed: Any, scale: np.ndarray) -> dict[str, np.ndarray]:
    """Closed trades in cash terms (each unit-equity trade times its starting equity);
    ``entries``/``exits`` are the fill bars."""
    n = len(exits)
    start_equity = scale[:n]
    units = start_equity * opened.units[:n]
    fees = start_equity * (opened.fee[:n] + closed.fee[:n])
    entry_price, exit_price = opened.price[:n], closed.price[:n]
    gross = side[:n] * (exit_price / entry_price - 1.0)
    return {"entry_bar": entries, "exit_bar": exits, "side": side[:n],
            "units": units, "entry_price": entry_price, "exit_price": exit_price,
            "pnl": start_equity * closed.pnl[:n],
            "return_pct": gross - fees / (units * entry_price), "fees": fees,
            "bars_held": exits - entries}


def _open_trade(entry: int, side: int, units: float, opened: Any, scale: float,
                last_close: float) -> dict[str, Any]:
    """The position held at the end, valued at the last close (not in the trade list)."""
    entry_price, entry_fee = float(opened.price[-1]), float(opened.fee[-1])
    return {"entry_bar": int(entry), "side": int(side), "units": float(abs(units) * scale),
            "entry_price": entry_price,
            "unrealized_pnl": float(scale * (units * (last_close - entry_price) - entry_fee))}


def buy_and_hold(bars: pd.DataFrame, params: EnvParams | None = None,
                 fill: str = "close") -> BacktestResult:
    """The app's one buy-and-hold: buy at the first decision bar's fill (its close, or
    the next open), with the same commission, slippage and sizing as the strategy, hold,
    and sell at the last close. Its Return [%] is every "Buy & Hold" figure (report
    column, page card, a trained model's ``*_buy_hold_pct``); the move of the price
    alone is ``performance.price_change_pct``."""
    return run_backtest(bars, positions=np.ones(len(bars), np.int8), params=params, fill=fill)


def random_policy(bars: pd.DataFrame, params: EnvParams | None = None, fill: str = "close",
                  seed: int = BASELINE_SEED) -> BacktestResult:
    """Baseline: uniformly random Hold/Buy/Sell from a seeded generator, same costs."""
    actions = np.random.default_rng(seed).integers(0, 3, len(bars))
    return run_backtest(bars, actions=actions, params=params, fill=fill)


def baselines(bars: pd.DataFrame, params: EnvParams | None = None, fill: str = "close",
              seed: int = BASELINE_SEED) -> dict[str, BacktestResult]:
    """The baselines every backtest is shown beside, on the same bars and costs."""
    return {"Buy & Hold": buy_and_hold(bars, params, fill),
            "Random": random_policy(bars, params, fill, seed)}
