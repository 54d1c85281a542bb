"""PPOBacktester: a trained PPO agent played bar by bar on a CSV, then scored.

Closed loop: at every bar the policy sees the market window and its own account
(position, equity, open PnL), exactly as in training, and its action fills through the
env's accounting rule. The resulting action tape goes through the shared engine
(:mod:`Utilities.backtester`) for equity, trades and statistics, beside buy-and-hold and
a seeded random policy on the same bars and costs.

Speed: the loop is sequential (a bar's account depends on every earlier action). Played
one fill at a time, each fill cost a dozen numpy calls on a few rows, and numpy's fixed
cost per call was the whole price (~31k fills for 100k bars of an active agent).
:class:`WindowLoop` instead guesses a window of bars at a time, evaluates the policy on
the whole window in one batch, and keeps the prefix the guess got right.

Decided for issue 13: the loop's logits equal the network's per-bar forward within
float32 rounding, not bit for bit. The first layer's sum is split into a market part,
done once for all bars, and an account part per window, and the batches run through
the kernels torch picks for their size, so the last bits of a logit depend on how the
rows were batched. The actions are the per-bar loop's unless two logits of a bar are
within a few float32 ulps of each other; ``tests/test_ppo_closed_loop.py`` checks
trades, equity and logits against a plain per-bar torch loop on random policies, costs
and seeds, and measures how close the nearest tie comes.

The command line for every type is ``python Utilities/run_backtest.py``; this file's
``__main__`` runs the same CLI, for the command users already know.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from NetworkConfigs.base import ACTION_NAMES
from NetworkConfigs.PPO_loader import PPOModelLoader
from NetworkConfigs.ppo_replay_policy import ReplayPolicy, Rows, softmax
from Utilities.accounting import (
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

_WINDOW = 1024  # bars guessed and evaluated at once, at most
_MIN_WINDOW = 32  # and at least (the width follows the prefixes the guesses verify)
_SEED = 1024  # bars seeded at once with a first guess (3 rows each, see WindowLoop)
_REPORTS = 50  # progress reports per closed loop, at most (a check per window, not per bar)
_NO_COUNTS = np.zeros(0, dtype=np.int64)  # trades/wins: account_features never reads them


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

    Bar ``i`` is the policy's row ``i``; its account entries are ``account_features``
    of the account the loop holds there (:class:`LoopAccount`, whose fills follow
    ``apply_actions``), so the agent sees what the training env would show it. The
    actions are argmax of the logits (plus the pre-drawn Gumbel ``noise`` when
    sampling): each is a pure function of its observation.

    The loop solves the bars a window at a time (:class:`WindowLoop`); probabilities
    and values are computed for all bars at the end, from the logits it kept and the
    account entries rebuilt from its states. ``progress(fraction)`` hears how far the
    loop is, at most ``_REPORTS`` times.
    """
    n = len(close)
    book = LoopAccount(fill_price, params, close)
    actions, logits = WindowLoop(policy, book, close, noise).run(progress)
    return actions, softmax(logits), policy.values(slice(0, n), book.rows(close))


class WindowLoop:
    """The closed loop solved a window of bars at a time.

    Per window starting at bar ``t`` (whose account is known): a guess says what the
    agent does at each bar for each side of the account (flat, long, short). The
    accounts each bar would see follow from the guess; the policy is evaluated on the
    whole window in one batch with those accounts, and the chosen actions give the side
    after each bar. Where that side is the one the guess assumed, the next bar's account
    was right, so the evaluated actions are the true ones up to and including the
    first bar whose fill the guess missed (a fill it did not have, or one that did not
    happen). That prefix is kept, its last fill booked, and the next window starts
    after it.

    The guess for a bar and side is what the policy chose the last time it saw that
    bar with that side. Bars not seen yet are seeded in large batches ahead of the
    windows (:meth:`_seed`): each side with a made-up account (the trade opened the
    bar before, the equity of the moment). An agent's choices depend on its account
    mostly through the side, so the guesses hold for long stretches: on the bench's
    100k bars the windows verify ~97 % of their rows, and the loop evaluates 4.1 rows
    per bar in all (3 of them the seeds) in ~210 batches of 1,000-3,000 rows, where
    one evaluation per fill took ~31k batches of 8. An agent that trades on its equity
    or its open profit misses more: the width follows the verified prefixes (down to
    ``_MIN_WINDOW``), and after a miss the window also plays the account held as it is
    (:meth:`_window`'s ``hedge``), so it reaches at least the next true fill.
    """

    def __init__(self, policy: ReplayPolicy, book: LoopAccount, close: np.ndarray,
                 noise: np.ndarray | None) -> None:
        self.policy, self.book, self.close, self.noise = policy, book, close, noise
        self.n = len(close)
        # the guessed action per side + 1 and bar (Hold until seeded)
        self.guess = np.full((3, self.n), HOLD, dtype=np.int64)
        self.seeded = 0  # bars [0, seeded) have a guess for every side
        self._bars = np.arange(self.n)
        self._sides = np.arange(3)[:, None]
        self.batches = self.rows = 0  # policy batches and rows evaluated (for the bench)

    def run(self, progress: Callable[[float], None] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """(actions (bars,), logits (bars, actions)) of the closed loop, from the book's
        last state at bar 0; the book keeps every state the account passes through."""
        n = self.n
        actions = np.zeros(n, dtype=np.int64)
        logits = np.zeros((n, len(ACTION_NAMES)), dtype=np.float32)
        state = self.book.state()
        t, width, missed = 0, _WINDOW, False
        step = max(1, n // _REPORTS)
        next_report = step
        while t < n:
            if progress is not None and t >= next_report:
                progress(t / n)
                next_report = t + step
            end = min(n, t + width)
            if end > self.seeded:
                self._seed(end, state[2])
            verified, state, missed = self._window(t, end, state, actions, logits, missed)
            t += verified
            # twice what the last window verified: a whole window grows the next one,
            # a missed guess shrinks it, so few rows are wasted past the misses
            width = min(_WINDOW, max(_MIN_WINDOW, 2 * verified))
        return actions, logits

    def _seed(self, stop: int, equity: float) -> None:
        """A first guess for every side at the bars from ``seeded`` to ``stop`` (at
        least ``_SEED`` bars): the policy's choice there for a flat account of
        ``equity``, and for a long and a short trade opened with it the bar before."""
        span = slice(self.seeded, min(self.n, max(stop, self.seeded + _SEED)))
        sides = self.book.sides
        bars = np.tile(self._bars[span], len(sides))
        side = np.repeat(sides, span.stop - span.start)
        account = self.book.accounts(side, np.maximum(bars - 1, 0), np.full(len(bars), equity))
        chosen = self._choose([span] * len(sides), bars, account, self.close[bars])[1]
        self.guess[side + 1, bars] = chosen
        self.seeded = span.stop
        self.batches += 1
        self.rows += len(bars)

    def _choose(self, rows: Rows, bars: np.ndarray, account: Accounts, close: np.ndarray,
                equity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(logits, chosen actions) at ``bars`` (as ranges: ``rows``) for ``account``
        (one per row) marked at ``close`` (where its ``equity`` is, when known)."""
        scores = self.policy.logits(rows, account_features(account, close, self.book.balance,
                                                           equity))
        noisy = scores if self.noise is None else scores + self.noise[bars]
        return scores, noisy.argmax(1)

    def _window(self, t: int, end: int, state: tuple[int, int, float], actions: np.ndarray,
                logits: np.ndarray, hedge: bool) -> tuple[int, tuple[int, int, float], bool]:
        """Evaluate bars ``[t, end)`` from the account ``state`` (side, entry bar,
        equity) at ``t``; write the verified prefix and return its length, the account
        after it, and whether the guess missed.

        With ``hedge`` (the last guess missed) the batch also holds the account as it
        is past the guess's first fill: that branch is the truth up to its own first
        fill, so a window gets at least to the next true fill however wrong the guess
        (an agent that trades on its open profit, which the seeds cannot guess)."""
        k, book = end - t, self.book
        starts, sides, entries, equities = self._guessed_path(t, end, state)
        stretch = np.repeat(np.arange(len(starts)), np.diff(starts, append=k))
        bars = self._bars[t:end]
        held = int(starts[1]) if hedge and len(starts) > 1 else k
        rows: Rows = slice(t, end)
        if held < k:  # the held branch's rows follow the window's
            stretch = np.concatenate([stretch, np.zeros(k - held, dtype=np.int64)])
            bars = np.concatenate([bars, bars[held:]])
            rows = [rows, slice(t + held, end)]
        account = book.accounts(sides[stretch], entries[stretch], equities[stretch])
        close = self.close[bars]
        equity = account.equity(close)
        scores, chosen = self._choose(rows, bars, account, close, equity)
        side = sides[stretch]
        after = book.after(side, chosen, equity, bars)  # with ruin's forced closes
        self.guess[side[:k] + 1, bars[:k]] = chosen[:k]
        self.batches += 1
        self.rows += len(bars)
        missed = np.flatnonzero(after[:k - 1] != side[1:k])
        verified = k if missed.size == 0 else int(missed[0]) + 1
        if held < k:
            self.guess[side[k:] + 1, bars[k:]] = chosen[k:]
            branch = np.r_[0:held, k:len(bars)]  # the held account's rows, in bar order
            moved = np.flatnonzero(after[branch] != side[0])
            reach = k if moved.size == 0 else int(moved[0]) + 1
            if reach > verified:
                kept = branch[:reach]
                actions[t:t + reach] = chosen[kept]
                logits[t:t + reach] = scores[kept]
                if moved.size:
                    state = book.fill(state, int(after[kept[-1]]), t + reach - 1)
                return reach, state, True
        actions[t:t + verified] = chosen[:verified]
        logits[t:t + verified] = scores[:verified]
        # the stretches begun inside the prefix were the true ones: keep them
        last = int(stretch[verified - 1])
        if last:
            book.keep(t + starts[1:last + 1], sides[1:last + 1], entries[1:last + 1],
                      equities[1:last + 1])
        now = (int(sides[last]), int(entries[last]), float(equities[last]))
        if after[verified - 1] != now[0]:  # the prefix's last bar fills
            now = book.fill(now, int(after[verified - 1]), t + verified - 1)
        return verified, now, missed.size > 0

    def _guessed_path(self, t: int, end: int, state: tuple[int, int, float]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The accounts the guess leads to over bars ``[t, end)`` from ``state``, one per
        stretch between fills: (first offset, side, entry bar, equity) arrays.

        The fills come from tables over the window's offsets: each side's next guessed
        fill, where a trade opened at each offset would close, and so where a flat
        account is flat again after one round trip. Only that last chain is followed in
        Python, one list read per trade. The equity after each close is one running
        product (numpy's is sequential: the floats :meth:`LoopAccount.fill` gives one
        close at a time)."""
        k, book = end - t, self.book
        limit = min(k, self.n - 1 - t)  # the last bar's decision never fills
        ahead = np.full((3, k + 1), k)
        np.copyto(ahead[:, :limit], self._bars[:limit],
                  where=book.moves[self._sides, self.guess[:, t:t + limit]])
        # per side + 1: the first offset >= i whose guessed action fills (k: none)
        nearest = np.minimum.accumulate(ahead[:, ::-1], axis=1)[:, ::-1]
        opened = book.target[1, self.guess[1, t:end]]  # the side a flat account opens
        # a trade opened at offset o closes at its side's next fill from o + 1 on
        closes = np.append(np.where(opened > 0, nearest[2, 1:], nearest[0, 1:]), k)
        trip = (closes[nearest[1]] + 1).tolist()  # flat at i: flat again at trip[i]
        side, entry, equity = state
        flats = []
        at = 0 if side == 0 else int(nearest[side + 1, 0]) + 1
        if side != 0 or equity > 0:  # a ruined flat account never trades again
            while at < k:
                flats.append(at)
                at = trip[at]
        flat_at = np.array(flats, dtype=np.int64)
        open_at = nearest[1, flat_at]  # k: the last flat stretch never opens
        # stretches: the held trade at t (if any), then flat and held in turn
        offsets = np.column_stack((flat_at, open_at + 1)).ravel()
        sides = np.column_stack((np.zeros_like(flat_at),
                                 opened[np.minimum(open_at, k - 1)])).ravel()
        entries = np.column_stack((np.full_like(flat_at, -1), t + open_at)).ravel()
        inside = offsets < k
        offsets, sides, entries = offsets[inside], sides[inside], entries[inside]
        if side != 0 or not flats:  # held from t, or flat and ruined
            offsets, sides, entries = (np.concatenate(([first], rest)) for first, rest in (
                (0, offsets), (side, sides), (entry, entries)))
        starts, side_of, entry_of = offsets, sides, entries
        closing = np.flatnonzero(side_of[:-1])  # stretch i held, so i + 1 is flat
        if not closing.size:
            return starts, side_of, entry_of, np.full(len(starts), equity)
        factors = np.ones(len(starts))
        factors[0] = equity
        factors[closing + 1] = book.close_factors(side_of[closing], entry_of[closing],
                                                  t + starts[closing + 1] - 1)
        equities = np.cumprod(factors)
        ruined = np.flatnonzero(equities[closing + 1] <= 0)
        if ruined.size:  # flat and ruined after that close: nothing fills after it
            keep = int(closing[ruined[0]]) + 2
            return starts[:keep], side_of[:keep], entry_of[:keep], equities[:keep]
        return starts, side_of, entry_of, equities


class LoopAccount:
    """The closed loop's account: every trade it can make, booked up front.

    ``apply_actions`` runs once over all bars: a unit-equity account opened at every bar
    (per side), and the cash one unit of a position brings when closed at every bar.
    The rule is linear in equity and in position size, so a trade opened with equity E
    at bar e is E times the unit account of bar e, and closing it at bar x leaves
    E * (cash[e] + |units[e]| * close_cash[x]). The tables are indexed by side + 1
    (row 1, flat: cash 1 and nothing else, so a flat account of equity E is E times
    it). The account's states are kept in order (:meth:`keep`: first bar, side, entry
    bar, equity); :meth:`rows` rebuilds every bar's observation entries from them.
    """

    def __init__(self, fill_price: np.ndarray, params: EnvParams, close: np.ndarray) -> None:
        """``fill_price``: the price each bar's decision fills at; ``close``: the marks."""
        n, price = len(fill_price), np.where(np.isfinite(fill_price), fill_price, 1.0)
        self.balance = params.initial_balance
        tables = {name: np.zeros((3, n)) for name in ("cash", "units", "entry_price",
                                                      "entry_cost", "close_cash")}
        tables["cash"][1] = 1.0
        for side, enter, leave in ((1, BUY, SELL), (-1, SELL, BUY)):
            opened = Accounts.open(n, 1.0)
            apply_actions(opened, np.full(n, enter), price, params)
            for name in ("cash", "units", "entry_price", "entry_cost"):
                tables[name][side + 1] = getattr(opened, name)
            unit = Accounts.open(n, 0.0)
            unit.units[:], unit.position[:], unit.entry_price[:] = side, side, price
            apply_actions(unit, np.full(n, leave), price, params)
            tables["close_cash"][side + 1] = unit.cash
        self.cash, self.units = tables["cash"], tables["units"]
        self.entry_price, self.entry_cost = tables["entry_price"], tables["entry_cost"]
        self.close_cash = tables["close_cash"]
        positions = np.repeat(np.array([-1, 0, 1], dtype=np.int8), 3)
        # by [side + 1, action]: the side after it, and whether that is a fill
        self.target = target_positions(positions, np.tile([HOLD, BUY, SELL], 3),
                                       params.allow_short).reshape(3, 3).astype(np.int64)
        self.moves = self.target != positions.reshape(3, 3)
        # the sides the account can take (it starts flat: no short without shorting)
        self.sides = np.array([-1, 0, 1] if params.allow_short else [0, 1])
        self._closer = np.array([BUY, HOLD, SELL])  # by side + 1: the action that closes
        self._last = n - 1
        # (first bars, sides, entry bars, equities): the account's states in order
        self._states: tuple[list, ...] = ([0], [0], [-1], [self.balance])

    def accounts(self, side: np.ndarray, entry: np.ndarray, equity: np.ndarray) -> Accounts:
        """The accounts of the given (side, entry bar, equity) states, one per entry:
        ``Accounts`` for ``account_features`` (trades and wins are not kept)."""
        row = side + 1
        return Accounts(self.cash[row, entry] * equity, self.units[row, entry] * equity,
                        side.astype(np.int8), self.entry_price[row, entry],
                        self.entry_cost[row, entry] * equity, _NO_COUNTS, _NO_COUNTS)

    def close_factors(self, side: np.ndarray, entry: np.ndarray, bar: np.ndarray
                      ) -> np.ndarray:
        """Equity after / before closing at ``bar`` the ``side`` trades opened at
        ``entry`` (elementwise, the float operations of :meth:`fill`)."""
        row = side + 1
        return self.cash[row, entry] + np.abs(self.units[row, entry]) * self.close_cash[row, bar]

    def after(self, side: np.ndarray, chosen: np.ndarray, equity: np.ndarray,
              bars: np.ndarray) -> np.ndarray:
        """The side after each row, where the account had ``side`` and ``equity``
        (marked at the close of the row's bar, ``bars``) and the policy chose ``chosen``.

        Ruin (equity <= 0 at a mark while in a position) forces the closing action
        there, in ``chosen`` itself: the training env ends the episode at ruin and the
        engine liquidates, so the agent never trades on from a bankrupt account. A flat
        account with equity <= 0 never opens, and the last bar's decision never fills.
        """
        held = side != 0
        ruined = held & (equity <= 0)
        if ruined.any():
            chosen[ruined] = self._closer[side[ruined] + 1]
        row = side + 1
        after = np.where(self.moves[row, chosen] & (held | (equity > 0)),
                         self.target[row, chosen], side)
        if bars[-1] == self._last:
            last = bars == self._last
            after[last] = side[last]
        return after

    def fill(self, state: tuple[int, int, float], side: int, bar: int
             ) -> tuple[int, int, float]:
        """The account after ``bar``'s fill moves ``state`` (side, entry bar, equity)
        to ``side``: opened from flat, or the open trade closed. Kept in ``states``."""
        held, entry, equity = state
        if held == 0:
            after = (side, bar, equity)
        else:
            factor = self.close_factors(np.array([held]), np.array([entry]), np.array([bar]))
            after = (0, -1, float(equity * factor[0]))
        self.keep(*([value] for value in (bar + 1, *after)))
        return after

    def keep(self, starts: Sequence[int], sides: Sequence[int], entries: Sequence[int],
             equities: Sequence[float]) -> None:
        """Record the account's next states: from bar ``starts[i]`` on, ``sides[i]``,
        opened at ``entries[i]``, with ``equities[i]``. Kept as four columns of plain
        numbers, not a tuple per state: ~30k tuples made the garbage collector walk
        the whole heap (0.1 s) at random points of a run."""
        for column, values in zip(self._states, (starts, sides, entries, equities),
                                  strict=True):
            column.extend(values.tolist() if isinstance(values, np.ndarray) else values)

    def state(self) -> tuple[int, int, float]:
        """The last state recorded: (side, entry bar, equity)."""
        return self._states[1][-1], self._states[2][-1], self._states[3][-1]

    def rows(self, close: np.ndarray) -> np.ndarray:
        """The observation's account entries (bars, entries) float32 of every bar the
        loop played, from the states it passed through: ``account_features`` of each
        bar's account, as the loop saw them."""
        n = len(close)
        starts, sides, entries, equities = (np.array(column) for column in self._states)
        keep = starts < n
        lengths = np.diff(starts[keep], append=n)
        side, entry, scale = (np.repeat(a[keep], lengths) for a in (sides, entries, equities))
        account = self.accounts(side, entry, scale)
        return account_features(account, close, self.balance).astype(np.float32)


if __name__ == "__main__":
    from Utilities.run_backtest import main

    sys.exit(main())
