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
    apply_actions,
    target_positions,
)
from Utilities.backtest_report import decision_frame
from Utilities.backtester import fill_prices
from Utilities.model_backtester import ModelBacktester

_FIRST_BLOCK, _MAX_BLOCK = 16, 2048
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
    bars at the end, from the logits and account entries the loop recorded.
    ``progress(fraction)`` hears how far the loop is, at most ``_REPORTS`` times.

    The loop runs once per fill (a quarter of the bars for an active agent), so each
    pass is kept to a few numpy calls: a flat account's entries are one row for the
    whole block (:meth:`ReplayPolicy.flat_logits`), an open one's are written straight
    into the float32 rows the network reads (:meth:`LoopAccount.position_features`).
    """
    n = len(close)
    actions = np.zeros(n, dtype=np.int64)
    logits = np.zeros((n, len(ACTION_NAMES)), dtype=np.float32)
    account = np.zeros((n, ACCOUNT_FEATURES), dtype=np.float32)
    acc = LoopAccount(fill_price, params)
    balance = params.initial_balance
    t, block = 0, _FIRST_BLOCK
    step = max(1, n // _REPORTS)
    next_report = step
    while t < n:
        if progress is not None and t >= next_report:
            progress(t / n)
            next_report = t + step
        rows = slice(t, min(n, t + block))
        if acc.side == 0:
            # The equity of a flat account is its cash at every mark.
            entry = acc.equity / balance - 1.0
            seen: np.ndarray | float = entry
            scores, equity = policy.flat_logits(rows, entry), None
        else:
            equity, seen = acc.position_features(close[rows], balance)
            scores = policy.logits(rows, seen)
        chosen = (scores + noise[rows] if noise is not None else scores).argmax(1)
        fill = acc.first_fill(chosen, equity)
        end = rows.stop if fill is None else t + fill + 1
        used = end - t
        actions[t:end], logits[t:end] = chosen[:used], scores[:used]
        if acc.side == 0:
            account[t:end, 0] = seen  # the other entries stay 0
        else:
            account[t:end] = seen[:used]
        if fill is not None and end < n:  # the last bar's decision never fills
            acc.fill(int(actions[end - 1]), end - 1)
        block = _FIRST_BLOCK if fill is not None else min(2 * block, _MAX_BLOCK)
        t = end
    return actions, softmax(logits), policy.values(slice(0, n), account)


class LoopAccount:
    """The closed loop's account, advanced fill by fill without a numpy call per fill.

    ``apply_actions`` runs once over all bars up front: a unit-equity account opened at
    every bar (per side), and the cash one unit of a position brings when closed at
    every bar. The rule is linear in equity and in position size, so a trade opened
    with equity E at bar e is E times the unit account of bar e, and closing it at bar x
    leaves E * (cash[e] + |units[e]| * close_cash[x]). A test pins the loop to stepping
    the training env.
    """

    def __init__(self, fill_price: np.ndarray, params: EnvParams) -> None:
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
        self.equity, self.side, self.entry = params.initial_balance, 0, -1
        self._rows = {side: np.zeros((_MAX_BLOCK, ACCOUNT_FEATURES), dtype=np.float32)
                      for side in (-1, 1)}
        for side, rows in self._rows.items():
            rows[:, 1] = side

    def accounts(self) -> Accounts:
        """The account now, as the one-entry ``Accounts`` the observation is built from."""
        if self.side == 0:
            return Accounts.open(1, self.equity)
        unit, bar, scale = self.opened[self.side], slice(self.entry, self.entry + 1), self.equity
        return Accounts(unit.cash[bar] * scale, unit.units[bar] * scale, unit.position[bar],
                        unit.entry_price[bar], unit.entry_cost[bar] * scale,
                        unit.trades[bar], unit.wins[bar])

    def position_features(self, close: np.ndarray, balance: float) -> tuple[np.ndarray,
                                                                             np.ndarray]:
        """(equity marked at ``close``, the observation's account entries as float32
        rows) of the open position: ``account_features(self.accounts(), close, balance)``
        term by term (the same float64 operations, then the same cast), written
        straight into the rows the network reads. A test pins the two together."""
        side, bar, scale = self.side, self.entry, self.equity
        unit = self.opened[side]
        units, entry_price = unit.units[bar] * scale, unit.entry_price[bar]
        equity = unit.cash[bar] * scale + units * close
        seen = self._rows[side][:len(close)]  # its position column is filled already
        seen[:, 0] = equity / balance - 1.0
        seen[:, 2] = (units * (close - entry_price) - unit.entry_cost[bar] * scale) / balance
        trade_return = close / entry_price - 1.0
        seen[:, 3] = trade_return if side > 0 else -trade_return  # exactly side * it
        return equity, seen

    def first_fill(self, chosen: np.ndarray, equity: np.ndarray | None) -> int | None:
        """The first offset in ``chosen`` whose action trades, or None; ``equity`` is
        the marks of an open position (None when flat). As :meth:`fill_offsets`, whose
        first entry it is, including the forced close at ruin."""
        if self.side == 0:
            if self.equity <= 0:
                return None
            trades = self.moves[1][chosen]
        else:
            if equity.min() <= 0:  # rare: test before searching
                chosen[np.flatnonzero(equity <= 0)[0]] = SELL if self.side > 0 else BUY
            trades = self.moves[self.side + 1][chosen]
        first = int(trades.argmax())  # the first True, or 0 when there is none
        return first if trades[first] else None

    def fill_offsets(self, chosen: np.ndarray, equity: np.ndarray) -> np.ndarray:
        """Where in ``chosen`` an action would trade (a flat account needs equity > 0).

        Ruin (``equity`` <= 0 at a mark while in a position) forces the closing action
        there, in ``chosen`` itself: the training env ends the episode at ruin and the
        engine liquidates, so the agent never trades on from a bankrupt account."""
        if self.side == 0:
            if self.equity <= 0:
                return np.empty(0, dtype=np.int64)
            return np.flatnonzero(self.moves[1][chosen])
        if equity.min() <= 0:  # rare: test before searching
            chosen[np.flatnonzero(equity <= 0)[0]] = SELL if self.side > 0 else BUY
        return np.flatnonzero(self.moves[self.side + 1][chosen])

    def fill(self, action: int, bar: int) -> None:
        """The action at ``bar`` trades: open from flat, or close the open trade."""
        if self.side == 0:
            self.side, self.entry = int(self.target[1][action]), bar
            return
        unit = self.opened[self.side]
        self.equity *= (unit.cash[self.entry]
                        + abs(unit.units[self.entry]) * self.close_cash[self.side][bar])
        self.side = 0


if __name__ == "__main__":
    from Utilities.run_backtest import main

    sys.exit(main())
