"""The PPO trading environments, on the platform's one accounting rule.

The rule itself (positions, fills, costs, equity: :func:`Utilities.accounting.apply_actions`)
lives in :mod:`Utilities.accounting`, so backtests and serving use it without importing
gymnasium; the envs here call it on every step.

:class:`TradingEnvironment` is a plain ``gymnasium.Env``; :class:`VecTradingEnv` steps N
accounts on the same data with one set of numpy operations and gives the same
observations and rewards as N separate ``TradingEnvironment`` s.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import pandas as pd
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

from Utilities.accounting import (
    ACCOUNT_FEATURES,
    HOLD,
    Accounts,
    EnvParams,
    Fills,
    account_features,
    apply_actions,
)
from Utilities.data_utils import PreparedData
from Utilities.performance import curve_summary, period_labels, periods_per_year

__all__ = ["EPISODE_STATS", "TradingEnvironment", "VecTradingEnv", "bar_times", "env_arrays"]

_POSITION_ENTRY = -3  # index of the position in an observation (see account_features)


def env_arrays(data: PreparedData, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(scaled features, raw Close prices) of one part, aligned row by row, for the envs."""
    bars, scaled = data.part(part)
    return scaled, bars["Close"].to_numpy(dtype=np.float64)


def bar_times(data: PreparedData, part: str) -> pd.Index:
    """The bar times of one part, aligned with :func:`env_arrays` (for ``times=``)."""
    return data.part(part)[0].index


# Statistics of a finished episode's equity path (Utilities.performance.curve_summary),
# in the vector env's final infos; left out (masked) where undefined (NaN).
EPISODE_STATS = ("return_pct", "sharpe", "max_drawdown")
# Steps of equity kept per account when episodes have no length limit at first; the
# ring doubles when an episode may outgrow it.
_UNBOUNDED_RING = 4_096


# ------------------------------------------------------------ shared env mechanics


class _Market:
    """Validated data shared by both envs: feature windows by bar index and raw prices."""

    def __init__(self, features: np.ndarray, prices: np.ndarray, lookback: int) -> None:
        # Copies, so a caller mutating its arrays later cannot change past observations.
        features = np.array(features, dtype=np.float32)
        prices = np.array(prices, dtype=np.float64)
        _check_data(features, prices, lookback)
        self.prices, self.lookback, self.n = prices, lookback, len(prices)
        n_features = features.shape[1]
        # windows[i] holds rows i..i+lookback-1: a view, nothing is copied until gathered.
        self.windows = np.lib.stride_tricks.sliding_window_view(
            features, (lookback, n_features))[:, 0]
        self.obs_size = lookback * n_features + ACCOUNT_FEATURES
        self.first, self.last = lookback - 1, self.n - 2  # valid episode starts

    def observation_space(self) -> spaces.Box:
        """Any finite float32, except the position entry in [-1, 1].

        Finite bounds rather than +-inf: the values are always finite, and gymnasium's
        check_env warns about infinite bounds.
        """
        big = np.finfo(np.float32).max
        low = np.full(self.obs_size, -big, dtype=np.float32)
        high = np.full(self.obs_size, big, dtype=np.float32)
        low[_POSITION_ENTRY], high[_POSITION_ENTRY] = -1.0, 1.0
        return spaces.Box(low, high, dtype=np.float32)

    def observe(self, t: np.ndarray, acc: Accounts, balance: float,
                rows: np.ndarray | slice = slice(None),
                equity: np.ndarray | None = None) -> np.ndarray:
        """float32 observations at bars ``t`` (of the accounts in ``rows``); bars <= t only.
        ``equity``: the accounts' equity at ``t`` when the caller has it already."""
        window = self.windows[t[rows] - self.lookback + 1]
        obs = np.empty((len(window), self.obs_size), dtype=np.float32)
        obs[:, :-ACCOUNT_FEATURES] = window.reshape(len(window), -1)
        obs[:, -ACCOUNT_FEATURES:] = account_features(acc, self.prices[t], balance,
                                                      equity)[rows]
        return obs

    def check_starts(self, starts: Any, n: int) -> np.ndarray:
        """Start bars from reset options, broadcast to (n,) and range-checked."""
        starts = np.asarray(starts)
        if starts.dtype.kind not in "iu" or starts.size not in (1, n):
            raise ValueError(f"start must be one integer or {n} integers; got {starts!r}")
        starts = np.broadcast_to(starts.reshape(-1), (n,)).astype(np.int64)
        if ((starts < self.first) | (starts > self.last)).any():
            raise ValueError(f"start must be in [{self.first}, {self.last}] (lookback - 1 to "
                             f"the second-last bar); got {starts.tolist()}")
        return starts


def _check_data(features: np.ndarray, prices: np.ndarray, lookback: int) -> None:
    if features.ndim != 2 or prices.ndim != 1 or len(features) != len(prices):
        raise ValueError(f"features must be (n, F) and prices (n,) with the same n; got "
                         f"{features.shape} and {prices.shape}")
    if isinstance(lookback, bool) or not isinstance(lookback, int | np.integer) or lookback < 1:
        raise ValueError(f"lookback must be an integer >= 1; got {lookback!r}")
    if len(prices) < lookback + 1:
        raise ValueError(f"need at least lookback + 1 = {lookback + 1} bars; got {len(prices)}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values")
    if not (np.isfinite(prices) & (prices > 0)).all():
        raise ValueError("prices must be finite and positive (raw prices, not scaled features)")


def _transition(acc: Accounts, actions: np.ndarray, t: np.ndarray, prices: np.ndarray,
                params: EnvParams) -> tuple[np.ndarray, np.ndarray, Fills]:
    """Fill at close[t], mark at close[t+1]; returns (rewards, equity after) as float64,
    and the fills."""
    price = prices[t]
    before = acc.equity(price)
    fills = apply_actions(acc, actions, price, params)
    after = acc.equity(prices[t + 1])
    reward = params.reward_scale * (after - before) / params.initial_balance
    if params.hold_penalty:
        reward -= params.hold_penalty * (np.asarray(actions) == HOLD)
    return reward, after, fills


def _episode_end(equity: np.ndarray, t: np.ndarray, steps: np.ndarray, last_bar: int,
                 episode_length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(terminated, truncated): ruin ends the MDP; running out of data or time cuts it."""
    terminated = equity <= 0
    out_of_time = (t == last_bar) | (steps == (episode_length or -1))
    return terminated, ~terminated & out_of_time


def _advance(acc: Accounts, actions: np.ndarray, t: np.ndarray, steps: np.ndarray,
             market: _Market, params: EnvParams) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                          np.ndarray, Fills]:
    """One step of N accounts, shared by both envs: trade at close[t], move to t+1 (``t``
    and ``steps`` in place), then decide the episode end. Returns (reward, equity,
    terminated, truncated, fills)."""
    reward, equity, fills = _transition(acc, actions, t, market.prices, params)
    t += 1
    steps += 1
    terminated, truncated = _episode_end(equity, t, steps, market.n - 1, params.episode_length)
    return reward, equity, terminated, truncated, fills


class TradingEnvironment(gymnasium.Env[np.ndarray, np.int64]):
    """Trade one instrument bar by bar with a single account.

    ## Description
    Each step the agent sees the last ``lookback`` bars of transformed, scaled features
    and its account, and chooses an action that fills at the current bar's close (raw
    price, with commission and slippage, via :func:`apply_actions`). Then the bar advances.

    ## Action Space
    ``Discrete(3)``; a step moves the position (-1 short, 0 flat, +1 long) by at most one.

    | Num | Action | Effect                                                          |
    |-----|--------|-----------------------------------------------------------------|
    | 0   | Hold   | keep the position                                               |
    | 1   | Buy    | short -> flat, flat -> long; no-op when long                    |
    | 2   | Sell   | long -> flat, flat -> short (if ``allow_short``); no-op when short |

    ## Observation Space
    ``Box((lookback * F + 4,), float32)`` at bar ``t`` (bars <= t only). Every entry is
    a finite float32 (bounds +-float32 max; the position entry [-1, 1]):

    | Index                  | Observation                                                  |
    |------------------------|--------------------------------------------------------------|
    | 0 .. lookback*F - 1    | feature rows t-lookback+1 .. t, oldest first, row-major      |
    | lookback*F             | equity / initial_balance - 1                                 |
    | lookback*F + 1         | position (-1, 0, +1)                                         |
    | lookback*F + 2         | unrealized PnL / initial_balance: units*(close-entry) - entry fee |
    | lookback*F + 3         | trade return: position * (close / entry_price - 1); 0 when flat |

    Equity is cash + units * close[t].

    ## Rewards
    ``reward_scale * (equity[t+1] - equity[t]) / initial_balance``, minus ``hold_penalty``
    when the action is Hold, where equity[t] is marked before the fill (so the fees of a
    fill are part of the step's reward).

    ## Starting State
    A flat account holding ``initial_balance`` at bar ``t0``: ``options["start"]`` if
    given, else a uniform draw from ``self.np_random`` over ``[lookback - 1, n - 2]`` when
    ``random_start``, else ``lookback - 1``.

    ## Episode End
    Terminated on ruin (equity <= 0). Truncated (never together with terminated) when
    the last bar is reached or after ``episode_length`` steps. An open position is not
    closed at the end; ``info["final_equity"]`` marks it at the last close.

    ## Arguments
    - ``features``: (n, F) transformed, scaled features (``Utilities.data_utils``).
    - ``prices``: (n,) raw Close prices aligned row by row with ``features``.
    - ``lookback``: bars in the observation window.
    - ``params``: :class:`EnvParams` (defaults when None).
    - ``random_start``: draw the start bar at reset (see Starting State).

    ``info`` holds ``equity``, ``position``, ``trades``, ``wins`` and ``t`` (the bar
    index), plus ``final_equity`` and ``win`` (final equity > initial balance) at the end.
    """

    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium's class-level convention)

    def __init__(self, features: np.ndarray, prices: np.ndarray, lookback: int,
                 params: EnvParams | None = None, *, random_start: bool = True) -> None:
        self.market = _Market(features, prices, lookback)
        self.params = params or EnvParams()
        self.random_start = random_start
        self.observation_space = self.market.observation_space()
        self.action_space = spaces.Discrete(3)
        self.accounts = Accounts.open(1, self.params.initial_balance)
        self._t = np.zeros(1, dtype=np.int64)
        self._steps = np.zeros(1, dtype=np.int64)
        self._done = True  # step() before reset() is refused

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        market = self.market
        if options and options.get("start") is not None:
            self._t = market.check_starts(options["start"], 1)
        elif self.random_start:
            self._t = self.np_random.integers(market.first, market.last + 1, size=1)
        else:
            self._t = np.full(1, market.first, dtype=np.int64)
        self._steps[:] = 0
        self.accounts = Accounts.open(1, self.params.initial_balance)
        self._done = False
        return self._observe(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("call reset() before step() (the episode has ended)")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0 (Hold), 1 (Buy) or 2 (Sell); got {action!r}")
        reward, _equity, terminated, truncated, _fills = _advance(
            self.accounts, np.full(1, int(action)), self._t, self._steps, self.market,
            self.params)
        self._done = bool(terminated[0] or truncated[0])
        info = self._info()
        if self._done:
            info["final_equity"] = info["equity"]
            info["win"] = info["equity"] > self.params.initial_balance
        return self._observe(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def _observe(self) -> np.ndarray:
        return self.market.observe(self._t, self.accounts, self.params.initial_balance)[0]

    def _info(self) -> dict[str, Any]:
        acc, t = self.accounts, int(self._t[0])
        return {"equity": float(acc.equity(self.market.prices[t])[0]),
                "position": int(acc.position[0]), "trades": int(acc.trades[0]),
                "wins": int(acc.wins[0]), "t": t}


class VecTradingEnv(gymnasium.vector.VectorEnv):
    """N accounts on the same data, stepped by one set of numpy operations.

    Each sub-env behaves exactly as a :class:`TradingEnvironment` (see its docstring);
    there is no Python loop over envs. Autoreset is SAME_STEP: an env that ends in
    ``step`` is reset at once and the returned observation is the reset one; its last
    observation is in ``infos["final_obs"]`` ((N, D), rows valid where
    ``infos["_final_obs"]``), and the ``episode_info_keys`` (with ``_<key>`` masks)
    describe the finished episodes: ``final_equity``, ``trades`` (closed),
    ``profitable_trades`` (closed with pnl > 0), ``fees`` (commission paid),
    :data:`EPISODE_STATS` (Return [%], Sharpe Ratio and Max. Drawdown [%] of the
    episode's equity path, by the backtest report's rule; masked where undefined, e.g.
    Sharpe without datetime ``times``) and ``win``. These keys appear only on steps where
    some env ended (gymnasium's vector-info convention). ``infos["equity"]`` is given
    every step (after the autoreset, like the observation).
    ``reset(options={"start": starts})`` takes N start bars (or one for all); autoresets
    draw new starts from ``self.np_random``, or use ``lookback - 1`` when ``random_start``
    is False.

    ``times`` (optional, aligned with ``prices``): the bars' times, for the Sharpe ratio
    (daily returns need dates) and for trade times. For a monitor, the last step's
    :class:`~Utilities.accounting.Fills` are in :attr:`fills` and the bar each was made
    at in :attr:`fill_bars`; :attr:`bars` and :attr:`fees` are the accounts' current
    bar and the commission paid in their current episode.
    """

    metadata = {  # noqa: RUF012 (gymnasium's class-level convention)
        "autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP,
        "episode_info_keys": ("final_equity", "trades", "profitable_trades", "fees",
                              *EPISODE_STATS, "win"),
    }

    def __init__(self, features: np.ndarray, prices: np.ndarray, lookback: int,
                 params: EnvParams | None = None, *, num_envs: int = 8,
                 random_start: bool = True, times: Any = None) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1; got {num_envs!r}")
        self.market = _Market(features, prices, lookback)
        self.params = params or EnvParams()
        self.random_start = random_start
        self.num_envs = num_envs
        self.single_observation_space = self.market.observation_space()
        self.single_action_space = spaces.Discrete(3)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.accounts = Accounts.open(num_envs, self.params.initial_balance)
        self._t = np.full(num_envs, self.market.first, dtype=np.int64)
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self.times = self._check_times(times)
        # Found once for the data, so scoring an episode is a few numpy operations.
        self._labels = None if self.times is None else period_labels(self.times)
        self._periods = np.nan if self.times is None else periods_per_year(self.times)
        self._rows = np.arange(num_envs)
        # Every account's equity after each of the last steps, one row per step: a row
        # write per step (a fifth of a scattered write into per-account paths). An
        # episode's path is its start (initial_balance) and its column's last rows.
        self._ring = np.zeros((self._ring_rows(), num_envs))
        self._tick = 0  # the row the next step writes
        self._countdown = 0  # steps before the ring's size is checked (unbounded episodes)
        self._fees = np.zeros(num_envs)
        self.fills: Fills | None = None
        self.fill_bars = self._t.copy()

    @property
    def bars(self) -> np.ndarray:
        """Each account's current bar (the bar of its next fill)."""
        return self._t

    @property
    def fees(self) -> np.ndarray:
        """Commission each account has paid in its current episode."""
        return self._fees

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        everyone = np.ones(self.num_envs, dtype=bool)
        starts = (options or {}).get("start")
        if starts is not None:
            starts = self.market.check_starts(starts, self.num_envs)
        self._restart(everyone, starts)
        return self._observe(), self._equity_info()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        bars = self._t.copy()
        rewards, equity, terminated, truncated, fills = _advance(
            self.accounts, np.asarray(actions), self._t, self._steps, self.market, self.params)
        self._keep(bars, fills, equity)
        done = terminated | truncated
        if done.any():
            obs = self._observe()
            infos = self._final_info(obs, equity, done)
            self._restart(done)
            obs[done] = self._observe(done)
            infos |= self._equity_info()
        else:  # no reset: the equity marked by the transition is the current one
            obs = self._observe(equity=equity)
            infos = {"equity": equity, "_equity": np.ones(self.num_envs, dtype=bool)}
        # After the autoreset, so "equity" always describes the returned observation.
        return obs, rewards.astype(np.float32), terminated, truncated, infos

    def get_state(self) -> dict[str, Any]:
        """Everything that evolves (accounts, bar indices, RNG, episode paths and fees),
        for exact resume."""
        return {"accounts": {k: v.copy() for k, v in vars(self.accounts).items()},
                "t": self._t.copy(), "steps": self._steps.copy(),
                "rng": self.np_random.bit_generator.state,
                "ring": self._ring.copy(), "tick": self._tick, "fees": self._fees.copy()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state`'s result (same data and num_envs)."""
        if len(state["t"]) != self.num_envs:
            raise ValueError(f"state has {len(state['t'])} envs; this env has {self.num_envs}")
        self.accounts = Accounts(**{k: np.array(v) for k, v in state["accounts"].items()})
        self._t, self._steps = np.array(state["t"]), np.array(state["steps"])
        self.np_random.bit_generator.state = state["rng"]
        if "ring" in state:
            self._ring, self._fees = np.array(state["ring"]), np.array(state["fees"])
            self._tick = int(state["tick"])
        else:  # a state saved before paths were kept: the resumed episodes' stats are NaN
            self._ring = np.full((self._ring_rows(), self.num_envs), np.nan)
            self._fees, self._tick = np.zeros(self.num_envs), 0
        self._countdown = 0

    def _check_times(self, times: Any) -> pd.Index | None:
        if times is None:
            return None
        index = pd.Index(times)
        if len(index) != self.market.n:
            raise ValueError(f"times must give one time per bar ({self.market.n}); "
                             f"got {len(index)}")
        return index

    def _ring_rows(self) -> int:
        """Rows of equity kept: the longest possible episode's steps, or a ring that
        grows when episodes have no length limit."""
        longest = self.market.n - 1 - self.market.first
        if self.params.episode_length is not None:
            return min(self.params.episode_length, longest)
        return min(_UNBOUNDED_RING, longest)

    def _keep(self, bars: np.ndarray, fills: Fills, equity: np.ndarray) -> None:
        """What a step leaves for monitors and episode statistics: its fills and their
        bars, the fees, and every account's equity after it."""
        self.fills, self.fill_bars = fills, bars
        self._fees += fills.fee
        self._ring[self._tick] = equity
        self._tick += 1
        if self._tick == len(self._ring):
            self._tick = 0
        if self.params.episode_length is None:
            self._countdown -= 1
            if self._countdown <= 0:
                self._fit_ring()

    def _fit_ring(self) -> None:
        """Double the ring when the longest running episode has used half of it. No
        episode can outgrow it before the next check, ``countdown`` steps later."""
        rows, longest = len(self._ring), int(self._steps.max())
        if longest > rows // 2:
            chronological = np.concatenate([self._ring[self._tick:], self._ring[:self._tick]])
            self._ring = np.full((2 * rows, self.num_envs), np.nan)
            self._ring[:rows] = chronological
            self._tick, rows = rows, 2 * rows
        self._countdown = rows - longest

    def _episode_path(self, i: int) -> np.ndarray:
        """Account i's equity from its episode's start to now (steps + 1 values)."""
        steps, tick = int(self._steps[i]), self._tick
        start = tick - steps
        column = (self._ring[start:tick, i] if start >= 0
                  else np.concatenate([self._ring[start:, i], self._ring[:tick, i]]))
        path = np.empty(steps + 1)
        path[0], path[1:] = self.params.initial_balance, column
        return path

    def _restart(self, mask: np.ndarray, starts: np.ndarray | None = None) -> None:
        """Open fresh accounts in the masked envs at new start bars."""
        market, count = self.market, int(mask.sum())
        if starts is None and self.random_start:
            starts = self.np_random.integers(market.first, market.last + 1, size=count)
        elif starts is None:
            starts = np.full(count, market.first)
        else:
            starts = starts[mask]
        self._t[mask] = starts
        self._steps[mask] = 0
        self.accounts.reset(mask, self.params.initial_balance)
        self._fees[mask] = 0.0

    def _observe(self, rows: np.ndarray | slice = slice(None),
                 equity: np.ndarray | None = None) -> np.ndarray:
        return self.market.observe(self._t, self.accounts, self.params.initial_balance, rows,
                                   equity)

    def _equity_info(self) -> dict[str, Any]:
        equity = self.accounts.equity(self.market.prices[self._t])
        return {"equity": equity, "_equity": np.ones(self.num_envs, dtype=bool)}

    def _final_info(self, obs: np.ndarray, equity: np.ndarray,
                    done: np.ndarray) -> dict[str, Any]:
        """Episode facts of the envs that ended, before they are reset."""
        acc = self.accounts
        facts = {"final_obs": np.where(done[:, None], obs, 0.0).astype(np.float32),
                 "final_equity": np.where(done, equity, 0.0),
                 "trades": np.where(done, acc.trades, 0),
                 "profitable_trades": np.where(done, acc.wins, 0),
                 "fees": np.where(done, self._fees, 0.0),
                 "win": done & (equity > self.params.initial_balance)}
        masks = {f"_{key}": done.copy() for key in facts}
        for key, (values, mask) in self._episode_stats(done).items():
            facts[key], masks[f"_{key}"] = values, mask
        return facts | masks

    def _episode_stats(self, done: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """:data:`EPISODE_STATS` of the ended episodes' equity paths: (values, mask)."""
        table = np.full((len(EPISODE_STATS), self.num_envs), np.nan)
        for i in np.flatnonzero(done).tolist():  # episodes end rarely: a loop is cheap
            length = int(self._steps[i]) + 1
            start = int(self._t[i]) - length + 1
            labels = None if self._labels is None else self._labels[start:start + length]
            summary = curve_summary(self._episode_path(i), labels, self._periods)
            table[:, i] = [summary[key] for key in EPISODE_STATS]
        masks = np.isfinite(table) & done
        return {key: (table[k], masks[k]) for k, key in enumerate(EPISODE_STATS)}
