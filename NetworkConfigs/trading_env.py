"""Trading accounting and the PPO trading environments.

:func:`apply_actions` is the one accounting rule (positions, fills, costs, equity) of the
platform: the training envs here, the backtester and the live-prediction state all call
it, so they agree on every fill. It works on raw prices only, never on scaled features.

:class:`TradingEnvironment` is a plain ``gymnasium.Env``; :class:`VecTradingEnv` steps N
accounts on the same data with one set of numpy operations and gives the same
observations and rewards as N separate ``TradingEnvironment`` s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

from NetworkConfigs.config_sections import LIMITS
from Utilities.data_utils import PreparedData
from Utilities.input_errors import InputError

HOLD, BUY, SELL = 0, 1, 2
# Observation entries after the feature window; see TradingEnvironment's docstring.
ACCOUNT_FEATURES = 4
_POSITION_ENTRY = -3  # index of the position in an observation


@dataclass(frozen=True)
class EnvParams:
    """Account and episode settings of the trading env (``env_params`` in the config)."""

    initial_balance: float = 10_000.0  # starting cash of every episode
    commission: float = 0.0005  # fraction of traded notional, charged on every fill
    slippage: float = 1.0  # basis points: buys fill at price*(1+bps/1e4), sells at *(1-bps/1e4)
    position_fraction: float = 1.0  # share of equity committed when a position opens, in (0, 1]
    allow_short: bool = True  # whether Sell from flat opens a short
    hold_penalty: float = 0.0  # subtracted from the reward when the action is Hold
    episode_length: int | None = 256  # steps before truncation; None runs to the end of data
    reward_scale: float = 100.0  # reward = scale * equity change / initial_balance - penalty

    def __post_init__(self) -> None:
        _require(self.initial_balance, "initial_balance", lambda v: v > 0, "> 0")
        _require(self.commission, "commission", lambda v: 0 <= v < 1, "in [0, 1)")
        _require(self.slippage, "slippage", lambda v: 0 <= v < 1e4, "in [0, 10000) bps")
        _require(self.position_fraction, "position_fraction", lambda v: 0 < v <= 1, "in (0, 1]")
        _require(self.hold_penalty, "hold_penalty", lambda v: v >= 0, ">= 0")
        _require(self.reward_scale, "reward_scale", lambda v: v > 0, "> 0")
        if not isinstance(self.allow_short, bool | np.bool_):
            raise ValueError(f"allow_short must be true or false; got {self.allow_short!r}")
        length = self.episode_length
        longest = LIMITS["episode_length"]
        if length is not None and (isinstance(length, bool) or not isinstance(length, int)
                                   or not 1 <= length <= longest):
            raise ValueError(f"episode_length must be an integer >= 1 or None (at most "
                             f"{longest}); got {length!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnvParams:
        """Build from a config mapping; unknown keys and out-of-range values raise ValueError."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown env_params key(s) {unknown}; valid keys: {valid}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _require(value: Any, name: str, ok: Any, rule: str) -> None:
    """Numbers only (a YAML string such as '0.1' is a config mistake, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise InputError(f"{name} must be a number {rule}; got {value!r}", name)
    if not math.isfinite(value) or not ok(value):
        raise InputError(f"{name} must be {rule}; got {value!r}", name)


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


def env_arrays(data: PreparedData, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(scaled features, raw Close prices) of one part, aligned row by row, for the envs."""
    bars, scaled = data.part(part)
    return scaled, bars["Close"].to_numpy(dtype=np.float64)


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


def _transition(acc: Accounts, actions: np.ndarray, t: np.ndarray, prices: np.ndarray,
                params: EnvParams) -> tuple[np.ndarray, np.ndarray]:
    """Fill at close[t], mark at close[t+1]; returns (rewards, equity after), float64."""
    price = prices[t]
    before = acc.equity(price)
    apply_actions(acc, actions, price, params)
    after = acc.equity(prices[t + 1])
    reward = params.reward_scale * (after - before) / params.initial_balance
    if params.hold_penalty:
        reward -= params.hold_penalty * (np.asarray(actions) == HOLD)
    return reward, after


def _episode_end(equity: np.ndarray, t: np.ndarray, steps: np.ndarray, last_bar: int,
                 episode_length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(terminated, truncated): ruin ends the MDP; running out of data or time cuts it."""
    terminated = equity <= 0
    out_of_time = (t == last_bar) | (steps == (episode_length or -1))
    return terminated, ~terminated & out_of_time


def _advance(acc: Accounts, actions: np.ndarray, t: np.ndarray, steps: np.ndarray,
             market: _Market, params: EnvParams) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                          np.ndarray]:
    """One step of N accounts, shared by both envs: trade at close[t], move to t+1 (``t``
    and ``steps`` in place), then decide the episode end. Returns (reward, equity,
    terminated, truncated)."""
    reward, equity = _transition(acc, actions, t, market.prices, params)
    t += 1
    steps += 1
    terminated, truncated = _episode_end(equity, t, steps, market.n - 1, params.episode_length)
    return reward, equity, terminated, truncated


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
        reward, _equity, terminated, truncated = _advance(
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
    ``infos["_final_obs"]``), and ``infos["final_equity"]``, ``infos["trades"]`` and
    ``infos["win"]`` (with ``_<key>`` masks) describe the finished episodes. These keys
    appear only on steps where some env ended (gymnasium's vector-info convention).
    ``infos["equity"]`` is given every step (after the autoreset, like the observation).
    ``reset(options={"start": starts})`` takes N start bars (or one for all); autoresets
    draw new starts from ``self.np_random``, or use ``lookback - 1`` when ``random_start``
    is False.
    """

    metadata = {  # noqa: RUF012 (gymnasium's class-level convention)
        "autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP,
        "episode_info_keys": ("final_equity", "trades", "win"),
    }

    def __init__(self, features: np.ndarray, prices: np.ndarray, lookback: int,
                 params: EnvParams | None = None, *, num_envs: int = 8,
                 random_start: bool = True) -> None:
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
        rewards, equity, terminated, truncated = _advance(
            self.accounts, np.asarray(actions), self._t, self._steps, self.market, self.params)
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
        """Everything that evolves (accounts, bar indices, RNG), for exact resume."""
        return {"accounts": {k: v.copy() for k, v in vars(self.accounts).items()},
                "t": self._t.copy(), "steps": self._steps.copy(),
                "rng": self.np_random.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state`'s result (same data and num_envs)."""
        if len(state["t"]) != self.num_envs:
            raise ValueError(f"state has {len(state['t'])} envs; this env has {self.num_envs}")
        self.accounts = Accounts(**{k: np.array(v) for k, v in state["accounts"].items()})
        self._t, self._steps = np.array(state["t"]), np.array(state["steps"])
        self.np_random.bit_generator.state = state["rng"]

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
        facts = {"final_obs": np.where(done[:, None], obs, 0.0).astype(np.float32),
                 "final_equity": np.where(done, equity, 0.0),
                 "trades": np.where(done, self.accounts.trades, 0),
                 "win": done & (equity > self.params.initial_balance)}
        return facts | {f"_{key}": done.copy() for key in facts}
