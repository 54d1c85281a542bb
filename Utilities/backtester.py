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
    position_paths,
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


# --------------------------------------------------------------------------- random policies
#
# One seeded random policy is a single draw: on IBM's test slice it sat at the 11th
# percentile of 300 of them, so a model no better than random looked better. Every
# backtest is therefore ranked among many random policies on the same bars and costs.
#
# A random policy: at every bar, independently, Buy with probability p/2, Sell with p/2,
# Hold otherwise, from its own generator (``default_rng([seed, i])`` for policy i, so a
# policy is the same whatever the count or the chunking). ``kind`` picks p:
#
# - ``"matched"`` (the default): p such that the policy's expected number of trades
#   equals the model's. The actions are a Markov chain over the positions; from flat a
#   trade opens with probability p (long only: p/2, Sell keeps it flat) and the chain
#   is flat a third (long only: half) of the time, so trades per bar are p/3 (long only
#   p/4). It asks "does the model time its trades better than chance, at the same
#   turnover and so the same costs?": a model that trades ten times is not flattered by
#   random policies that trade a thousand times and pay a thousand times the costs.
#   Direction is not matched (half long, half short); buy-and-hold, beside it, is the
#   benchmark for a long bias.
# - ``"uniform"``: p = 2/3, Hold, Buy and Sell a third each (the old single "Random").

RANDOM_POLICIES = 300
RANDOM_KINDS = ("matched", "uniform")
MAX_RANDOM_POLICIES = 10_000
# Policy-bars replayed at once: the chunk's arrays stay near 100 MB whatever the count.
_CHUNK_CELLS = 2_000_000


def random_activity(kind: str, model_trades: int, n_bars: int, allow_short: bool) -> float:
    """p, the chance that a random policy's action is Buy or Sell (see above); the
    last bar's decision never fills, so ``n_bars - 1`` decisions count."""
    if kind not in RANDOM_KINDS:
        raise ValueError(f"kind must be one of {RANDOM_KINDS}; got {kind!r}")
    if kind == "uniform":
        return 2 / 3
    per_bar = model_trades / max(n_bars - 1, 1)
    return min(1.0, (3 if allow_short else 4) * per_bar)


def random_actions(n_bars: int, activity: float, seed: int, policies: Any) -> np.ndarray:
    """(len(policies), n_bars) int8 actions of the random policies numbered ``policies``."""
    out = np.empty((len(policies), n_bars), np.int8)
    for row, policy in enumerate(policies):
        draw = np.random.default_rng([seed, int(policy)]).random(n_bars)
        # Buy below p/2, Sell from p/2 to p, Hold above (HOLD, BUY, SELL = 0, 1, 2).
        out[row] = draw < activity
        out[row] += draw >= activity / 2
        out[row] *= draw < activity
    return out


def score_tapes(bars: pd.DataFrame, actions: np.ndarray, params: EnvParams | None = None,
                fill: str = "close") -> dict[str, np.ndarray]:
    """Return [%], Sharpe Ratio, Max. Drawdown [%] and # Trades of every tape (a row of
    ``actions``, (tapes, bars)) as :func:`run_backtest` (``finalize=True``) and
    :func:`Utilities.performance.curve_summary` score it, without a loop over tapes
    or bars in the replay. Tapes are replayed a chunk at a time through the same
    accounting rule as :func:`_replay`: positions by
    :func:`~Utilities.accounting.position_paths`, every trade in its own unit account
    (one :func:`apply_actions` opens them all, one closes them), equity chained per tape.
    A tape whose account is ruined (rare: a short that loses everything) is replayed
    alone by :func:`run_backtest`, which liquidates it as everywhere else."""
    params = params or EnvParams()
    check_time_order(bars.index)
    close, fill_price = fill_prices(bars, fill)
    fill_price = np.r_[fill_price[:-1], close[-1]]
    actions = np.asarray(actions)
    if actions.ndim != 2 or actions.shape[1] != len(bars):
        raise ValueError(f"actions must be (tapes, {len(bars)} bars); got {actions.shape}")
    labels = performance.period_labels(bars.index)
    periods = performance.periods_per_year(bars.index)
    scores = {key: np.empty(len(actions)) for key in ("return_pct", "sharpe", "max_drawdown")}
    scores["trades"] = np.empty(len(actions), np.int64)
    rows = max(1, _CHUNK_CELLS // len(bars))
    for first in range(0, len(actions), rows):
        chunk = actions[first:first + rows]
        equity, trades, ruined = _replay_tapes(chunk, close, fill_price, params)
        for row in range(len(chunk)):
            if ruined[row]:
                alone = run_backtest(bars, actions=chunk[row], params=params, fill=fill)
                curve, count = alone.equity.to_numpy(), len(alone.trades)
            else:
                curve, count = equity[row], trades[row]
            summary = performance.curve_summary(curve, labels, periods)
            for key in ("return_pct", "sharpe", "max_drawdown"):
                scores[key][first + row] = summary[key]
            scores["trades"][first + row] = count
    return scores


def _replay_tapes(actions: np.ndarray, close: np.ndarray, fill_price: np.ndarray,
                  params: EnvParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(equity (tapes, bars), closed trades per tape, ruined per tape) of a chunk."""
    tapes, n = actions.shape
    initial = params.initial_balance
    desired = position_paths(actions, params.allow_short)
    desired[:, -1] = 0  # the last decision never fills; finalize closes at the last close
    starts, exits = _trade_bars(desired.ravel())  # tape after tape, each ending flat
    if not len(starts):  # nobody traded: every mark is the initial cash
        return np.full(desired.shape, initial), np.zeros(tapes, np.int64), np.zeros(tapes, bool)
    side = desired.ravel()[starts]
    acc = Accounts.open(len(starts), 1.0)
    apply_actions(acc, np.where(side > 0, BUY, SELL), fill_price[starts % n], params)
    cash, units = acc.cash.copy(), acc.units.copy()
    apply_actions(acc, np.where(side > 0, SELL, BUY), fill_price[exits % n], params)
    growth, tape = acc.cash, starts // n
    # Equity at each trade's start: the growth of the tape's earlier trades, chained in
    # logs (a product over a chunk's thousands of trades would underflow).
    logs = np.log(np.where(growth > 0, growth, 1.0))
    before = np.cumsum(logs) - logs
    first = np.searchsorted(tape, np.arange(tapes))
    start_equity = initial * np.exp(before - before[first[tape]])
    # Marks are A + B * close, with (A, B) fixed on stretches between fills: per tape,
    # flat (the initial cash), then per trade held (its unit account's cash and units
    # times its start equity) and flat again (the equity it left). A stretch begins at
    # a tape's first bar and the bar after each fill's decision (a mark sees the
    # decisions before its bar). A close decided on a tape's last bar (finalize) would
    # begin its flat stretch where the next tape begins: that bar counts twice, so the
    # unseen stretch is skipped, and the last mark is set to the final equity below.
    trade = np.arange(len(starts))
    held_at, flat_at = tape + 1 + 2 * trade, tape + 2 + 2 * trade
    coefficient_a = np.empty(tapes + 2 * len(starts))
    coefficient_b = np.zeros_like(coefficient_a)
    coefficient_a[np.arange(tapes) + 2 * first] = initial
    coefficient_a[held_at], coefficient_b[held_at] = start_equity * cash, start_equity * units
    end_equity = start_equity * growth
    coefficient_a[flat_at] = end_equity
    begins = np.zeros(desired.size + 1, np.int8)
    begins[np.arange(tapes) * n] = 1
    begins[starts + 1] = 1
    begins[exits + 1] += 1  # a last-bar exit's stretch begins where the next tape's does
    stretch = np.cumsum(begins[:-1], dtype=np.int32).reshape(tapes, n)
    stretch -= 1
    equity = coefficient_a[stretch] + coefficient_b[stretch] * close
    last = np.searchsorted(tape, np.arange(tapes), side="right") - 1
    equity[:, -1] = np.where(last >= first, end_equity[last], initial)
    ruined = (equity <= 0).any(axis=1)
    ruined[tape[growth <= 0]] = True
    return equity, np.bincount(tape, minlength=tapes), ruined


def percentile_of(value: Any, sample: np.ndarray) -> float | None:
    """The percentage of ``sample`` below ``value``, ties counting half (mid-rank): 50
    when every random policy did exactly as well; NaN in ``sample`` is left out. None
    when ``value`` is not a number or nothing is left to compare with."""
    sample = np.asarray(sample, dtype=float)
    sample = sample[~np.isnan(sample)]
    if value is None or not np.isfinite(value) or not sample.size:
        return None
    below, tied = np.count_nonzero(sample < value), np.count_nonzero(sample == value)
    return float(100.0 * (below + 0.5 * tied) / sample.size)


@dataclass
class RandomPolicies:
    """The random policies a backtest is ranked among, and their scores (arrays, one
    entry per policy, numbered from 0)."""

    kind: str
    activity: float  # p: the chance of a Buy or Sell at each bar
    seed: int
    scores: dict[str, np.ndarray]

    @property
    def count(self) -> int:
        return len(self.scores["return_pct"])

    def median_policy(self) -> int:
        """The policy at the middle rank by return (the lower one of an even count)."""
        order = np.argsort(self.scores["return_pct"], kind="stable")
        return int(order[(self.count - 1) // 2])

    def summary(self, statistics: dict[str, Any]) -> dict[str, Any]:
        """JSON-ready: what a random policy was, the model's percentile of Return and
        Sharpe among them, their median and 5-95 % band, and a histogram of returns."""
        figures = {}
        for key, stat in (("return_pct", "Return [%]"), ("sharpe", "Sharpe Ratio"),
                          ("max_drawdown", "Max. Drawdown [%]"), ("trades", "# Trades")):
            values = self.scores[key].astype(float)
            finite = values[np.isfinite(values)]
            model = statistics.get(stat)
            band = np.percentile(finite, [5, 50, 95]) if finite.size else [None] * 3
            figures[key] = {"statistic": stat, "model": _plain_number(model),
                            "percentile": percentile_of(model, values) if key in (
                                "return_pct", "sharpe") else None,
                            "p5": _plain_number(band[0]), "median": _plain_number(band[1]),
                            "p95": _plain_number(band[2]), "defined": int(finite.size)}
        return {"kind": self.kind, "policies": self.count, "seed": self.seed,
                "activity": self.activity, "hold_probability": 1.0 - self.activity,
                "median_policy": self.median_policy(), **figures,
                "histogram": histogram(self.scores["return_pct"],
                                       statistics.get("Return [%]"))}


def _plain_number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def histogram(values: np.ndarray, marker: Any = None, bins: int = 30) -> dict[str, Any]:
    """Counts of ``values`` in ``bins`` equal bins. Their range also holds ``marker``
    (the model's figure) when it lies within one range's width of the values, so the
    page draws it among them; a marker further out would squash the distribution into
    a bar or two, so the page draws it at the edge instead (``marker_outside``)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    marked = marker is not None and np.isfinite(marker)
    if not values.size:
        return {"edges": [], "counts": [], "marker_outside": False}
    low, high = float(values.min()), float(values.max())
    width = max(high - low, 1e-9)
    outside = marked and not low - width <= marker <= high + width
    if marked and not outside:
        low, high = min(low, float(marker)), max(high, float(marker))
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
            "marker_outside": bool(outside)}


def random_policies(bars: pd.DataFrame, params: EnvParams | None = None, fill: str = "close",
                    *, count: int = RANDOM_POLICIES, seed: int = BASELINE_SEED,
                    kind: str = "matched", model_trades: int = 0) -> RandomPolicies:
    """Score ``count`` random policies (see above) on ``bars`` with ``params``' costs."""
    params = params or EnvParams()
    if isinstance(count, bool) or not isinstance(count, int | np.integer) \
            or not 1 <= count <= MAX_RANDOM_POLICIES:
        raise ValueError(f"the number of random policies must be an integer from 1 to "
                         f"{MAX_RANDOM_POLICIES}; got {count!r}")
    activity = random_activity(kind, model_trades, len(bars), params.allow_short)
    scores: dict[str, list[np.ndarray]] = {}
    rows = max(1, _CHUNK_CELLS // max(len(bars), 1))
    for first in range(0, count, rows):  # actions a chunk at a time, like the replay
        actions = random_actions(len(bars), activity, seed, range(first, min(count, first + rows)))
        for key, values in score_tapes(bars, actions, params, fill).items():
            scores.setdefault(key, []).append(values)
    return RandomPolicies(kind, activity, seed, {k: np.concatenate(v) for k, v in scores.items()})


def random_policy(bars: pd.DataFrame, params: EnvParams | None = None, fill: str = "close",
                  seed: int = BASELINE_SEED, policy: int = 0,
                  activity: float = 2 / 3) -> BacktestResult:
    """One random policy (number ``policy`` of the family ``seed``, ``activity`` p) as
    a full backtest, the same tape :func:`random_policies` scores."""
    actions = random_actions(len(bars), activity, seed, [policy])[0]
    return run_backtest(bars, actions=actions, params=params, fill=fill)


def baselines(bars: pd.DataFrame, params: EnvParams | None = None, fill: str = "close",
              seed: int = BASELINE_SEED, random: RandomPolicies | None = None
              ) -> dict[str, BacktestResult]:
    """The baselines every backtest is shown beside, on the same bars and costs:
    buy-and-hold, and "Random": the random policy at the median rank of ``random``
    (else policy 0 of the uniform family ``seed``)."""
    chosen = random_policy(bars, params, fill, seed) if random is None else random_policy(
        bars, params, fill, random.seed, random.median_policy(), random.activity)
    return {"Buy & Hold": buy_and_hold(bars, params, fill), "Random": chosen}
