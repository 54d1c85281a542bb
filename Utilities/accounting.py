"""The accounting rule of the platform: positions, fills, costs and equity.

:func:`apply_actions` is the one rule; the training envs (``NetworkConfigs.trading_env``),
the backtester and the live-prediction state all call it, so they agree on every fill.
It works on raw prices only, never on scaled features. :func:`cost_errors` is the one
rule for the costs a person may choose (commission, slippage, initial balance): the
model config (:class:`EnvParams`), the backtest request and the training form ask it.

This module is foundation: it imports numpy and ``Utilities.input_errors`` only, so a
backtest or a server that books trades never imports gymnasium or torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from Utilities.input_errors import InputError, raise_collected

HOLD, BUY, SELL = 0, 1, 2
# Observation entries after the feature window (see account_features and the
# TradingEnvironment docstring).
ACCOUNT_FEATURES = 4
# Bars before an episode is cut, at most [default 256]; config_sections.LIMITS reads it.
MAX_EPISODE_LENGTH = 1_000_000_000
# The smallest starting cash. Below one unit of money the statistics lose their meaning
# (a balance of 5e-324 made every trade's return NaN), in a backtest and in training
# alike, so the model config and the web share this bound (the config used to take any
# positive number, the web at least 1; one rule now, the stricter one).
MIN_INITIAL_BALANCE = 1.0

# field: (test, what the field must be), for the costs a person chooses.
_COST_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "commission": (lambda v: 0 <= v < 1, "a fraction of the traded value in [0, 1), "
                                         "e.g. 0.0005 for 0.05 % per fill"),
    "slippage": (lambda v: 0 <= v < 1e4, "in basis points, from 0 to below 10000"),
    "initial_balance": (lambda v: v >= MIN_INITIAL_BALANCE, f"at least {MIN_INITIAL_BALANCE:g}"),
}
COSTS = tuple(_COST_RULES)


def cost_errors(**costs: Any) -> dict[str, str]:
    """A message per cost that breaks its rule (``commission=``, ``slippage=``,
    ``initial_balance=``); None means "not given" and is skipped. Numbers only: a
    string such as '0.1' is a caller's mistake to convert first."""
    unknown = sorted(set(costs) - set(_COST_RULES))
    if unknown:
        raise TypeError(f"cost_errors() takes {list(COSTS)}; got {unknown}")
    errors = {}
    for name, value in costs.items():
        if value is None:
            continue
        ok, rule = _COST_RULES[name]
        problem = _number_problem(value, name) or (
            None if ok(value) else f"{name} cannot be negative; got {value:g}" if value < 0
            else f"{name} must be {rule}; got {value:g}")  # as typed: -1, not -1.0
        if problem:
            errors[name] = problem
    return errors


def _number_problem(value: Any, name: str) -> str | None:
    """Why ``value`` is not a finite number, or None (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return f"{name} must be a number; got {value!r}"
    if not math.isfinite(value):
        return f"{name} must be a finite number; got {value!r}"
    return None


@dataclass(frozen=True)
class EnvParams:
    """Account and episode settings (``env_params`` in a model config): the costs the
    accounting rule charges, plus the episode settings the training env reads."""

    initial_balance: float = 10_000.0  # starting cash of every episode
    commission: float = 0.0005  # fraction of traded notional, charged on every fill
    slippage: float = 1.0  # basis points: buys fill at price*(1+bps/1e4), sells at *(1-bps/1e4)
    position_fraction: float = 1.0  # share of equity committed when a position opens, in (0, 1]
    allow_short: bool = True  # whether Sell from flat opens a short
    hold_penalty: float = 0.0  # subtracted from the reward when the action is Hold
    episode_length: int | None = 256  # steps before truncation; None runs to the end of data
    reward_scale: float = 100.0  # reward = scale * equity change / initial_balance - penalty

    def __post_init__(self) -> None:
        """Every bad value at once (InputErrors), each under its key."""
        errors = cost_errors(**{name: getattr(self, name) for name in COSTS})
        for name, ok, rule in (("position_fraction", lambda v: 0 < v <= 1, "in (0, 1]"),
                               ("hold_penalty", lambda v: v >= 0, ">= 0"),
                               ("reward_scale", lambda v: v > 0, "> 0")):
            value = getattr(self, name)
            problem = _number_problem(value, name)
            if problem or not ok(value):
                errors[name] = problem or f"{name} must be {rule}; got {value!r}"
        if not isinstance(self.allow_short, bool | np.bool_):
            errors["allow_short"] = f"allow_short must be true or false; got {self.allow_short!r}"
        length = self.episode_length
        if length is not None and (isinstance(length, bool) or not isinstance(length, int)
                                   or not 1 <= length <= MAX_EPISODE_LENGTH):
            errors["episode_length"] = (f"episode_length must be an integer >= 1 or None (at "
                                        f"most {MAX_EPISODE_LENGTH}); got {length!r}")
        raise_collected(errors)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnvParams:
        """Build from a config mapping; an unknown key or a bad value raises InputError
        (InputErrors for several) whose ``field`` is the key."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise InputError(f"unknown env_params key(s) {unknown}; valid keys: {valid}",
                             field=unknown[0])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Accounts:
    """State of N trading accounts as arrays (one entry per account)."""

    cash: np.ndarray  # float64 (N,)
    units: np.ndarray  # float64 (N,), signed: >0 long, <0 short
    position: np.ndarray  # int8 (N,) in {-1, 0, +1}
    entry_price: np.ndarray  # float64 (N,), fill price of the open position (0 when flat)
    entry_cost: np.ndarray  # float64 (N,), commission paid on entry
    trades: np.ndarray  # int64 (N,), closed trades
    wins: np.ndarray  # int64 (N,), closed trades with pnl > 0

    @classmethod
    def open(cls, n: int, initial_balance: float) -> Accounts:
        """N flat accounts holding ``initial_balance`` in cash."""
        zeros = np.zeros(n, dtype=np.float64)
        return cls(np.full(n, float(initial_balance)), zeros.copy(), np.zeros(n, np.int8),
                   zeros.copy(), zeros.copy(), np.zeros(n, np.int64), np.zeros(n, np.int64))

    def equity(self, price: np.ndarray | float) -> np.ndarray:
        """Cash plus the open position marked at ``price``."""
        return self.cash + self.units * price

    def reset(self, mask: np.ndarray, initial_balance: float) -> None:
        """Re-open the masked accounts: flat, fresh cash, no trades."""
        self.cash[mask] = initial_balance
        for array in (self.units, self.position, self.entry_price, self.entry_cost,
                      self.trades, self.wins):
            array[mask] = 0


@dataclass
class Fills:
    """What apply_actions did, per account (arrays of shape (N,))."""

    traded: np.ndarray  # bool: a fill happened
    side: np.ndarray  # int8: +1 bought, -1 sold, 0 none
    units: np.ndarray  # float64: absolute units traded
    price: np.ndarray  # float64: fill price (with slippage), 0 where no fill
    fee: np.ndarray  # float64: commission paid on this fill
    closed: np.ndarray  # bool: a position was closed by this fill
    pnl: np.ndarray  # float64: realised PnL net of entry and exit fees (0 if not closed)


# The next position, indexed by [position + 1, action]: rows short, flat, long; columns
# Hold, Buy, Sell. Without shorting, Sell from flat stays flat; a short that already
# exists (opened elsewhere) may still be held or closed.
_NEXT_POSITION = np.array([[-1, 0, -1], [0, 1, -1], [1, 1, 0]], dtype=np.int8)
_NEXT_POSITION_NO_SHORT = np.array([[-1, 0, -1], [0, 1, 0], [1, 1, 0]], dtype=np.int8)


def target_positions(position: np.ndarray, actions: np.ndarray, allow_short: bool) -> np.ndarray:
    """Buy steps the position up (short->flat->long), Sell steps it down, Hold keeps it;
    clipped to [-1 or 0, +1]. Raises ValueError for actions outside {0, 1, 2}."""
    actions = np.asarray(actions)
    if (actions.shape != np.shape(position) or actions.dtype.kind not in "iu"
            or ((actions < HOLD) | (actions > SELL)).any()):
        raise ValueError(f"actions must be {np.shape(position)} integers in "
                         f"{{0 Hold, 1 Buy, 2 Sell}}; got {actions!r}")
    table = _NEXT_POSITION if allow_short else _NEXT_POSITION_NO_SHORT
    return table[position + 1, actions]


def position_path(actions: np.ndarray, allow_short: bool, start: int = 0) -> np.ndarray:
    """Positions after each action of one account's tape, by :func:`target_positions`'
    table: known in advance because the table is deterministic (the backtester uses it
    to vectorise the fills). int8 array, one entry per action."""
    actions = np.asarray(actions)
    if actions.ndim != 1 or (actions.size and (
            actions.dtype.kind not in "iu" or actions.min() < HOLD or actions.max() > SELL)):
        raise ValueError("actions must be a 1-D tape of integers in {0 Hold, 1 Buy, 2 Sell}")
    table = (_NEXT_POSITION if allow_short else _NEXT_POSITION_NO_SHORT).tolist()
    out, position = [], start
    for action in actions.tolist():  # a scan over 3 states: plain Python is the fast way
        position = table[position + 1][action]
        out.append(position)
    return np.array(out, dtype=np.int8)


def position_paths(actions: np.ndarray, allow_short: bool) -> np.ndarray:
    """:func:`position_path` of many tapes at once, one tape per row, each starting
    flat: ``actions`` is (tapes, bars), the result the int8 positions of that shape.
    No loop over bars: the table's scan has a closed form (tests step
    :func:`target_positions` through every short tape to prove it). Hold keeps the
    position, so only the Buy/Sell actions count, and they are worked on alone (few,
    for a quiet policy). Long only, Buy means long and Sell flat. With shorts, a Buy or
    Sell that repeats the one before (or is a tape's first) leaves the position at its
    sign; from there the actions alternate and step it to flat and back, so an action
    of that sign leaves the position there and one of the other sign leaves it flat."""
    actions = np.asarray(actions)
    if actions.ndim != 2 or (actions.size and (
            actions.dtype.kind not in "iu" or actions.min() < HOLD or actions.max() > SELL)):
        raise ValueError("actions must be a 2-D (tapes, bars) array of integers in "
                         "{0 Hold, 1 Buy, 2 Sell}")
    tapes, bars = actions.shape
    flat = actions.ravel()
    moves = np.flatnonzero(flat != HOLD)  # Buy/Sell, tape after tape
    sign = (flat[moves] == BUY).astype(np.int8) * np.int8(2) - np.int8(1)  # +1 Buy, -1 Sell
    tape = moves // max(bars, 1)
    first = np.r_[True, tape[1:] != tape[:-1]] if moves.size else np.zeros(0, bool)
    if allow_short:
        # The sign of the latest restart, carried forward as a running sum of changes.
        restart = first | np.r_[True, sign[1:] == sign[:-1]]
        signs = sign[restart]
        carried = np.zeros(moves.size, np.int8)
        carried[restart] = signs - np.r_[np.int8(0), signs[:-1]]
        carried = np.cumsum(carried, dtype=np.int8)
        level = np.where(sign == carried, sign, np.int8(0))
    else:
        level = (sign > 0).astype(np.int8)
    before = np.r_[np.int8(0), level[:-1]]
    before[first] = 0
    change = np.zeros(tapes * bars, np.int8)
    change[moves] = level - before  # a tape's positions are the running sum of changes
    return np.cumsum(change.reshape(tapes, bars), axis=1, dtype=np.int8)


def apply_actions(accounts: Accounts, actions: np.ndarray, price: np.ndarray | float,
                  params: EnvParams) -> Fills:
    """Fill ``actions`` at ``price`` (raw price, scalar or (N,)) and update ``accounts``.

    The accounting rule, vectorized over N accounts and mutating ``accounts`` in place.
    A step moves the position by at most one, so a fill either closes a position (to
    flat) or opens one (from flat). Closing trades all units at the slipped price and
    books ``pnl = units * (fill - entry_price) - entry_cost - fee``. Opening commits
    ``position_fraction`` of the equity marked at ``price``, fee included:
    ``units = side * fraction * equity / (fill * (1 + commission))``, so a long never
    spends cash it does not have (backtesting.py sizes orders the same way). Every fill
    pays ``commission * |units| * fill``. Accounts with equity <= 0 never open a position.
    The rule is linear in equity (units and fees scale with it), which lets the
    backtester replay trades independently and chain their growth factors.
    """
    n = len(accounts.cash)
    price = np.asarray(price, dtype=np.float64)
    if price.shape != (n,):
        price = np.broadcast_to(price, (n,))
    target = target_positions(accounts.position, actions, params.allow_short)
    equity = accounts.equity(price)
    moved = target != accounts.position
    flat = accounts.position == 0
    closing = moved & ~flat
    opening = moved & flat & (equity > 0)
    traded = closing | opening
    side = (target - accounts.position) * traded  # int8; a fill moves the position by one
    fill = price * (1.0 + side * (params.slippage / 1e4))
    close_units, close_fee, pnl = _close(accounts, closing, fill, params.commission)
    open_units, open_fee = _open(accounts, opening, target, fill, equity, params)
    return Fills(traded, side, np.abs(close_units) + np.abs(open_units),
                 np.where(traded, fill, 0.0), close_fee + open_fee, closing, pnl)


def _close(acc: Accounts, closing: np.ndarray, fill: np.ndarray,
           commission: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten the closing accounts; returns (signed units closed, fee, pnl)."""
    units = np.where(closing, acc.units, 0.0)
    fee = commission * np.abs(units) * fill
    pnl = np.where(closing, units * (fill - acc.entry_price) - acc.entry_cost - fee, 0.0)
    acc.cash += units * fill - fee  # selling a long brings cash in; buying back a short pays
    acc.trades += closing
    acc.wins += closing & (pnl > 0)
    for array in (acc.units, acc.position, acc.entry_price, acc.entry_cost):
        array[closing] = 0
    return units, fee, pnl


def _open(acc: Accounts, opening: np.ndarray, target: np.ndarray, fill: np.ndarray,
          equity: np.ndarray, params: EnvParams) -> tuple[np.ndarray, np.ndarray]:
    """Enter the opening accounts (all flat, so equity == cash); returns (units, fee)."""
    units = np.where(opening, target * params.position_fraction * equity
                     / (fill * (1.0 + params.commission)), 0.0)
    fee = params.commission * np.abs(units) * fill
    acc.cash -= units * fill + fee  # a short's sale proceeds are credited to cash
    acc.units += units
    acc.position[opening] = target[opening]
    acc.entry_price[opening] = fill[opening]
    acc.entry_cost[opening] = fee[opening]
    return units, fee


def account_features(acc: Accounts, price: np.ndarray, balance: float,
                     equity: np.ndarray | None = None) -> np.ndarray:
    """The four account entries of the observation (layout in TradingEnvironment).
    ``equity``: ``acc.equity(price)`` when the caller has it already."""
    features = np.empty((len(price), ACCOUNT_FEATURES))
    features[:, 0] = (acc.equity(price) if equity is None else equity) / balance - 1.0
    features[:, 1] = acc.position
    features[:, 2] = (acc.units * (price - acc.entry_price) - acc.entry_cost) / balance
    entry = np.where(acc.position != 0, acc.entry_price, price)  # avoids 0/0 when flat
    features[:, 3] = acc.position * (price / entry - 1.0)
    return features
