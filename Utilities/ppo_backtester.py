"""PPOBacktester: a trained PPO agent played bar by bar on a CSV, then scored.

Closed loop: at every bar the policy sees the market window and its own account
(position, equity, open PnL), exactly as in training, and its action fills through the
env's accounting rule. The resulting action tape goes through the shared engine
(:mod:`Utilities.backtester`) for equity, trades and statistics, beside buy-and-hold and
a seeded random policy on the same bars and costs.

Speed: the account only changes when a fill happens, so the policy is evaluated on
blocks of bars at once with the account held fixed; the first bar of a block whose
action would fill is where the block ends, the fill is applied, and the next block
starts after it. Argmax and pre-drawn Gumbel noise (``sample=True``) make every
action a pure function of its observation, so this equals stepping bar by bar.

The command line for every type is ``python Utilities/run_backtest.py``; this file's
``__main__`` runs the same CLI, for the command users already know.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from NetworkConfigs.base import ACTION_NAMES
from NetworkConfigs.PPO_loader import PPOModelLoader
from NetworkConfigs.ppo_replay_policy import ReplayPolicy, softmax
from Utilities.accounting import (
    ACCOUNT_FEATURES,
    BUY,
    HOLD,
    SELL,
    Accounts,
    EnvParams,
    account_features,
    apply_actions,
    target_positions,
)
from Utilities.backtest_report import decision_frame
from Utilities.backtester import fill_prices
from Utilities.model_backtester import ModelBacktester

_FIRST_BLOCK, _MAX_BLOCK = 8, 2048  # a block after a fill: 8 bars measured best
_REPORTS = 50  # progress reports per closed loop, at most (a check per block, not per bar)


class PPOBacktester(ModelBacktester):
    """``PPOBacktester(config_or_model_dir, csv_path).load_artifacts().run_with_results()``;
    options as :class:`~Utilities.model_backtester.ModelBacktester`."""

    def _load(self, model_dir: Path) -> PPOModelLoader:
        return PPOModelLoader.load(model_dir)

    def decide(self, windows: np.ndarray, bars: pd.DataFrame,
               params: EnvParams) -> tuple[np.ndarray, pd.DataFrame]:
        policy = ReplayPolicy(self.loader.agent, windows)
        close, fill_price = fill_prices(bars, self.fill)
        noise = (np.random.default_rng(self.seed).gumbel(size=(len(bars), len(ACTION_NAMES)))
                 if self.sample else None)
        actions, probs, values = play(policy, close, fill_price, params, noise,
                                      progress=self.deciding)
        named = {name: probs[:, i] for i, name in enumerate(ACTION_NAMES)}
        return actions, decision_frame(bars.index, actions, {**named, "value": values})


def play(policy: ReplayPolicy, close: np.ndarray, fill_price: np.ndarray, params: EnvParams,
         noise: np.ndarray | None = None, progress: Callable[[float], None] | None = None
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The closed loop over ``len(close)`` bars: (actions, probabilities, values).

    Bar ``i`` is the policy's row ``i``; its account entries are those of
    ``accounting.account_features`` for the :class:`LoopAccount`, whose fills follow
    ``apply_actions``, so the agent sees exactly what the training env would show it.
    Only the actor runs inside the loop; probabilities and values are computed for all
    bars at the end, from the logits the loop recorded and the account entries rebuilt
    from its fills (:meth:`LoopAccount.rows`).

    The loop runs once per fill (a quarter of the bars for an active agent), so each
    pass is kept to a dozen numpy calls: a flat account's entries are one row for the
    whole block (:meth:`ReplayPolicy.flat_logits`); an open position's are affine in
    the bar's close (:meth:`LoopAccount.affine_entries`), so their share of the first
    layer is two vectors per trade (:meth:`ReplayPolicy.affine_logits`), and the fill
    is found in the block's actions as a list. ``progress(fraction)`` hears how far the
    loop is, at most ``_REPORTS`` times.
    """
    n = len(close)
    actions = np.zeros(n, dtype=np.int64)
    logits = np.zeros((n, len(ACTION_NAMES)), dtype=np.float32)
    acc = LoopAccount(fill_price, params, close)
    basis = np.column_stack((np.ones(n), close))  # the [1, close] rows of affine_logits
    balance = params.initial_balance
    terms = np.empty(0)
    t, block = 0, _FIRST_BLOCK
    step = max(1, n // _REPORTS)
    next_report = step
    while t < n:
        if progress is not None and t >= next_report:
            progress(t / n)
            next_report = t + step
        # The block's logits and actions go straight into the outputs; rows past the
        # fill are rewritten by the next pass, which starts there.
        stop = min(n, t + block)
        scores = logits[t:stop]
        if acc.side == 0:
            policy.flat_logits(slice(t, stop), acc.equity / balance - 1.0, out=scores)
        else:
            policy.affine_logits(t, stop, terms, basis, out=scores)
        chosen = (scores + noise[t:stop] if noise is not None else scores).argmax(
            1, out=actions[t:stop])
        if acc.side != 0 and not acc.safe_from_ruin(t):
            acc.close_at_ruin(chosen, close[t:stop])
        fill = acc.first_fill(chosen)
        end = stop if fill is None else t + fill + 1
        if fill is not None and end < n:  # the last bar's decision never fills
            acc.fill(int(actions[end - 1]), end - 1)
            if acc.side != 0:
                terms = policy.account_terms(acc.affine_entries(balance))
        block = _FIRST_BLOCK if fill is not None else min(2 * block, _MAX_BLOCK)
        t = end
    return actions, softmax(logits), policy.values(slice(0, n), acc.rows(close, balance))


class LoopAccount:
    """The closed loop's account, advanced fill by fill without a numpy call per fill.

    ``apply_actions`` runs once over all bars up front: a unit-equity account opened at
    every bar (per side), and the cash one unit of a position brings when closed at
    every bar. The rule is linear in equity and in position size, so a trade opened
    with equity E at bar e is E times the unit account of bar e, and closing it at bar x
    leaves E * (cash[e] + |units[e]| * close_cash[x]). A test pins the loop to stepping
    the training env. Every state the account takes is kept (:meth:`rows` rebuilds the
    observation's account entries of every bar from them at the end).
    """

    def __init__(self, fill_price: np.ndarray, params: EnvParams, close: np.ndarray) -> None:
        """``fill_price``: the price each bar's decision fills at; ``close``: the marks."""
        n, price = len(fill_price), np.where(np.isfinite(fill_price), fill_price, 1.0)
        self.opened: dict[int, Accounts] = {}
        self.close_cash: dict[int, np.ndarray] = {}
        for side, enter, leave in ((1, BUY, SELL), (-1, SELL, BUY)):
            self.opened[side] = Accounts.open(n, 1.0)
            apply_actions(self.opened[side], np.full(n, enter), price, params)
            unit = Accounts.open(n, 0.0)
            unit.units[:], unit.position[:], unit.entry_price[:] = side, side, price
            apply_actions(unit, np.full(n, leave), price, params)
            self.close_cash[side] = unit.cash
        positions = np.repeat(np.array([-1, 0, 1], dtype=np.int8), 3)
        self.target = target_positions(positions, np.tile([HOLD, BUY, SELL], 3),
                                       params.allow_short).reshape(3, 3)
        self.moves = self.target != positions.reshape(3, 3)
        # per side: does each action trade (plain bools, read per pass)
        self._trades = {side: tuple(bool(m) for m in self.moves[side + 1]) for side in (-1, 0, 1)}
        self.equity, self.side, self.entry = params.initial_balance, 0, -1
        self._states = [(0, 0, -1, self.equity)]  # (first bar, side, entry bar, equity)
        # The highest and lowest close from each bar on: an open position whose ruin
        # price the rest of the data never reaches needs no check per block.
        self._ruin_price, self._safe = np.nan, False
        self._highest = np.maximum.accumulate(close[::-1])[::-1].copy()
        self._lowest = np.minimum.accumulate(close[::-1])[::-1].copy()

    def accounts(self) -> Accounts:
        """The account now, as the one-entry ``Accounts`` the observation is built from."""
        if self.side == 0:
            return Accounts.open(1, self.equity)
        unit, bar, scale = self.opened[self.side], slice(self.entry, self.entry + 1), self.equity
        return Accounts(unit.cash[bar] * scale, unit.units[bar] * scale, unit.position[bar],
                        unit.entry_price[bar], unit.entry_cost[bar] * scale,
                        unit.trades[bar], unit.wins[bar])

    def affine_entries(self, balance: float) -> np.ndarray:
        """(2, account entries) float64 of the open position: its observation entries at
        a close p are ``row 0 + p * row 1`` (``account_features`` with the account's
        cash, units, entry price and cost, the terms grouped by p)."""
        side, bar, scale = self.side, self.entry, self.equity
        unit = self.opened[side]
        units, entry_price = unit.units.item(bar) * scale, unit.entry_price.item(bar)
        cash, cost = unit.cash.item(bar) * scale, unit.entry_cost.item(bar) * scale
        return np.array([[cash / balance - 1.0, side, -(units * entry_price + cost) / balance,
                          -side],
                         [units / balance, 0.0, units / balance, side / entry_price]])

    def safe_from_ruin(self, bar: int) -> bool:
        """True when the open position cannot reach zero equity at any close from
        ``bar`` on (with a margin: a near miss is checked exactly, per block)."""
        if not self._safe:  # a NaN ruin price compares False: checked every block
            if self.side > 0:
                self._safe = self._lowest.item(bar) > self._ruin_price * (1 + 1e-9)
            else:
                self._safe = self._highest.item(bar) < self._ruin_price * (1 - 1e-9)
        return self._safe

    def close_at_ruin(self, chosen: np.ndarray, close: np.ndarray) -> None:
        """Ruin (equity <= 0 at a mark while in a position) forces the closing action
        there, in ``chosen`` itself: the training env ends the episode at ruin and the
        engine liquidates, so the agent never trades on from a bankrupt account."""
        unit, bar, scale = self.opened[self.side], self.entry, self.equity
        equity = unit.cash[bar] * scale + (unit.units[bar] * scale) * close
        if equity.min() <= 0:  # rare: test before searching
            chosen[np.flatnonzero(equity <= 0)[0]] = SELL if self.side > 0 else BUY

    def first_fill(self, chosen: np.ndarray) -> int | None:
        """The first offset in ``chosen`` whose action trades, or None (a flat account
        needs equity > 0). Short blocks are searched as a list, long ones by numpy."""
        if self.side == 0 and self.equity <= 0:
            return None
        if len(chosen) > 64:
            trades = self.moves[self.side + 1][chosen]
            first = int(trades.argmax())  # the first True, or 0 when there is none
            return first if trades[first] else None
        trades = self._trades[self.side]
        for offset, action in enumerate(chosen.tolist()):
            if trades[action]:
                return offset
        return None

    def fill(self, action: int, bar: int) -> None:
        """The action at ``bar`` trades: open from flat, or close the open trade."""
        if self.side == 0:
            self.side, self.entry = int(self.target[1][action]), bar
            unit = self.opened[self.side]
            cash, units = unit.cash.item(bar), unit.units.item(bar)
            # Equity E * (cash + units * p) is <= 0 at closes p at or below this price
            # when long (never, for cash >= 0: it is <= 0), at or above it when short
            # (always, for cash <= 0: the check then never passes).
            self._ruin_price = -cash / units if units else np.nan
            self._safe = False
        else:
            unit = self.opened[self.side]
            self.equity *= (unit.cash.item(self.entry) + abs(unit.units.item(self.entry))
                            * self.close_cash[self.side].item(bar))
            self.side = 0
        self._states.append((bar + 1, self.side, self.entry, self.equity))

    def rows(self, close: np.ndarray, balance: float) -> np.ndarray:
        """The observation's account entries (bars, entries) float32 of every bar the
        loop played, from the states it passed through: ``account_features`` of each
        bar's account, as the loop saw them."""
        n = len(close)
        starts, sides, entries, equities = (np.array(column) for column in
                                            zip(*self._states, strict=True))
        keep = starts < n
        starts, sides, entries, equities = (a[keep] for a in (starts, sides, entries,
                                                                equities))
        lengths = np.diff(np.r_[starts, n])
        side, entry, scale = (np.repeat(a, lengths) for a in (sides, entries, equities))
        seen = np.zeros((n, ACCOUNT_FEATURES), dtype=np.float32)
        flat = side == 0
        seen[flat, 0] = scale[flat] / balance - 1.0
        for held in (-1, 1):
            bars = np.flatnonzero(side == held)
            if bars.size:
                unit, at, e = self.opened[held], entry[bars], scale[bars]
                account = Accounts(unit.cash[at] * e, unit.units[at] * e, unit.position[at],
                                   unit.entry_price[at], unit.entry_cost[at] * e,
                                   unit.trades[at], unit.wins[at])
                seen[bars] = account_features(account, close[bars], balance)
        return seen


if __name__ == "__main__":
    from Utilities.run_backtest import main

    sys.exit(main())
