"""The live monitor of a PPO run's featured accounts (the live page's "agents").

:class:`LiveMonitor` is a training callback that watches the first
``monitor.featured_accounts`` accounts of the :class:`~NetworkConfigs.trading_env.VecTradingEnv`
and sends, through the run's :class:`~Utilities.metrics_logger.MetricsLogger` (whose
calls only queue a tuple, so training never waits on the store):

- ``account`` events and ``agents/<i>/equity`` points, at most ``account_hz`` per
  account per second;
- a ``trade`` event for every fill, at most ``trades_per_second`` per account in any
  one-second window (the rest counted in the next snapshot's ``trades_unlogged``);
- ``decision`` events (the policy's probabilities, the critic's value, the action and
  its probability), sampled at most ``decision_hz`` per account per second.

The rates are limits by design, not by load: whatever the env's speed, the store grows
by at most ``k * (2 * account_hz + decision_hz + trades_per_second)`` rows per second of
training. Per vector step the monitor reads the clock and the featured accounts' fill
flags; everything else runs only when something is due. The payloads are the data
contract of the live page (README, "What a run emits").
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from NetworkConfigs.base import Callback
from NetworkConfigs.ppo_config import MonitorSettings
from NetworkConfigs.trading_env import VecTradingEnv

__all__ = ["ACTION_NAMES", "LiveMonitor", "RateLimit", "WindowLimit"]

# The env's actions in order (Utilities.accounting: HOLD, BUY, SELL).
ACTION_NAMES = ("HOLD", "BUY", "SELL")
class Sink(Protocol):
    """What the monitor writes to: a MetricsLogger (tests pass a recorder)."""

    def log_account(self, **snapshot: Any) -> None: ...
    def log_trade(self, **trade: Any) -> None: ...
    def log_decision(self, **decision: Any) -> None: ...
    def log_metrics(self, step: int, prefix: str = "custom", **metrics: float) -> None: ...


class RateLimit:
    """At most ``hz`` times a second: due when ``1 / hz`` has passed since the last time
    it was due (so never more than ``hz`` in any half-open second)."""

    def __init__(self, hz: float) -> None:
        self.period = 1.0 / hz
        self.next = -math.inf

    def due(self, now: float) -> bool:
        if now < self.next:
            return False
        self.next = now + self.period
        return True


class WindowLimit:
    """At most ``limit`` events in any one-second window (a sliding window: bursts at
    a window's edge cannot double the rate, as a per-second counter would allow)."""

    def __init__(self, limit: int) -> None:
        self.times: deque[float] = deque(maxlen=limit)

    def allow(self, now: float) -> bool:
        times = self.times
        if len(times) == times.maxlen and now - times[0] < 1.0:
            return False
        times.append(now)
        return True

    def reopens(self) -> float:
        """The earliest time :meth:`allow` can say yes again."""
        times = self.times
        return times[0] + 1.0 if len(times) == times.maxlen else -math.inf


class LiveMonitor(Callback):
    """Featured accounts' snapshots, trades and decisions, rate-limited (module doc).

    ``clock`` gives seconds (default ``time.monotonic``); tests pass a fake one. The
    trainer is the PPO algorithm (``envs``, ``agent``, ``global_step``,
    ``episode_returns``); on anything but a :class:`VecTradingEnv` it stays silent.
    """

    def __init__(self, sink: Sink, settings: MonitorSettings | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sink, self.settings, self.clock = sink, settings or MonitorSettings(), clock
        self.k = 0
        self.env: VecTradingEnv | None = None

    # ---------------------------------------------------------------- life cycle

    def on_training_start(self, info: dict[str, Any]) -> None:
        env = getattr(self.trainer, "envs", None)
        s = self.settings
        self.env = env if isinstance(env, VecTradingEnv) else None
        self.k = min(s.featured_accounts, env.num_envs) if self.env is not None else 0
        k = self.k
        self._accounts_due, self._decisions_due = RateLimit(s.account_hz), RateLimit(
            s.decision_hz)
        self._next_due = -math.inf  # the sooner of the two
        self._no_fills = bytes(k)  # the featured accounts' fill flags when none traded
        self._trade_limits = [WindowLimit(s.trades_per_second) for _ in range(k)]
        self._unlogged = [0] * k
        # Past its trade limit an account's fills are only counted; while every account
        # is, a step's fill flags are kept as they are and counted at the next snapshot.
        self._blocked_until = [-math.inf] * k
        self._trades_open_at = -math.inf
        self._held: list[bytes] = []
        # Totals of each account's finished episodes (its current one is read live).
        self._episodes = [0] * k
        self._reward = [0.0] * k
        self._trades = [0] * k
        self._wins = [0] * k
        self._fees = [0.0] * k
        datetimes = self.env is not None and isinstance(self.env.times, pd.DatetimeIndex)
        self._times = _iso_times(self.env.times) if datetimes else None
        # Bar times as ISO text, formatted a block of bars at a time (one Timestamp's
        # isoformat() costs ~15 µs: most of a trade event's cost when done per trade).
        self._iso: dict[int, np.ndarray] = {}

    def on_episode_end(self, record: dict[str, Any]) -> None:
        i = record.get("account", self.k)
        if i >= self.k:
            return
        self._episodes[i] += 1
        self._reward[i] += record["reward"]
        self._trades[i] += int(record.get("trades", 0))
        self._wins[i] += int(record.get("profitable_trades", 0))
        self._fees[i] += float(record.get("fees", 0.0))

    def on_rollout_step(self, obs: np.ndarray, log_probs: torch.Tensor,
                        actions: torch.Tensor) -> None:
        """After each vector step. The hot path: a clock read, the fill flags as bytes
        (a tenth of numpy's ``any()`` on 4 flags) and one comparison."""
        if not self.k:
            return
        now = self.clock()
        flags = self.env.fills.traded.tobytes()[:self.k]
        if flags != self._no_fills:
            if now < self._trades_open_at:
                self._held.append(flags)
            else:
                self._log_trades(now, flags)
        if now >= self._next_due:
            if self._decisions_due.due(now):
                self._log_decisions(obs, log_probs, actions)
            if self._accounts_due.due(now):
                self.log_accounts()
            self._next_due = min(self._decisions_due.next, self._accounts_due.next)

    def on_training_end(self, summary: dict[str, Any]) -> None:
        if self.k and summary["status"] in ("completed", "stopped"):
            self.log_accounts()  # the final state, whatever the rate limit says

    # ------------------------------------------------------------------ payloads

    def log_accounts(self) -> None:
        """One ``account`` event and ``agents/<i>/equity`` point per featured account."""
        env, algorithm = self.env, self.trainer
        acc, step = env.accounts, int(algorithm.global_step)
        bars = env.bars[:self.k].tolist()
        prices = env.market.prices[bars].tolist()
        returns = algorithm.episode_returns
        self._count_held()
        for i, (bar, price) in enumerate(zip(bars, prices, strict=True)):
            cash, units = float(acc.cash[i]), float(acc.units[i])
            holdings = units * price
            trades = self._trades[i] + int(acc.trades[i])
            wins = self._wins[i] + int(acc.wins[i])
            episode_reward = float(returns[i])
            self.sink.log_account(
                agent=i, step=step, bar=bar, cash=cash, position=units,
                holdings_value=holdings, equity=cash + holdings,
                episode=self._episodes[i] + 1, episode_reward=episode_reward,
                total_reward=self._reward[i] + episode_reward, trades=trades,
                profitable_trades=wins, win_rate=wins / trades if trades else None,
                fees=self._fees[i] + float(env.fees[i]), trades_unlogged=self._unlogged[i])
            self._unlogged[i] = 0
            self.sink.log_metrics(step, prefix=f"agents/{i}", equity=cash + holdings)

    def _count_held(self) -> None:
        if self._held:
            counts = np.frombuffer(b"".join(self._held), dtype=np.uint8).reshape(-1, self.k)
            for i, count in enumerate(counts.sum(axis=0).tolist()):
                self._unlogged[i] += count
            self._held.clear()

    def _log_trades(self, now: float, flags: bytes) -> None:
        fills, env = self.env.fills, self.env
        blocked = self._blocked_until
        for i, traded in enumerate(flags):
            if not traded:
                continue
            limit = self._trade_limits[i]
            if now < blocked[i] or not limit.allow(now):
                self._unlogged[i] += 1
                continue
            blocked[i] = limit.reopens()
            step = int(self.trainer.global_step)
            closed = bool(fills.closed[i])
            side = "CLOSE" if closed else "BUY" if fills.side[i] > 0 else "SELL"
            bar = int(env.fill_bars[i])
            self.sink.log_trade(
                agent=i, step=step, bar=bar, time=self._time(bar), side=side,
                price=float(fills.price[i]), quantity=float(fills.units[i]),
                pnl=float(fills.pnl[i]) if closed else None, fee=float(fills.fee[i]))
        self._trades_open_at = min(blocked)

    def _log_decisions(self, obs: np.ndarray, log_probs: torch.Tensor,
                       actions: torch.Tensor) -> None:
        k, algorithm = self.k, self.trainer
        with torch.no_grad():  # the critic is not run in the rollout: value these k rows
            values = algorithm.agent.get_value(
                torch.from_numpy(np.ascontiguousarray(obs[:k])).to(algorithm.device))
        probabilities = log_probs[:k].exp().tolist()
        chosen, values = actions[:k].tolist(), values.tolist()
        bars, step = self.env.fill_bars[:k].tolist(), int(algorithm.global_step)
        for i in range(k):
            p, action = probabilities[i], int(chosen[i])
            self.sink.log_decision(
                agent=i, step=step, bar=bars[i],
                probabilities={"hold": p[0], "buy": p[1], "sell": p[2]},
                value=float(values[i]), action=ACTION_NAMES[action], confidence=p[action])

    def _time(self, bar: int) -> str | None:
        if self._times is None:
            return None
        block = self._iso.get(bar // _ISO_BLOCK)
        if block is None:
            if len(self._iso) >= _ISO_BLOCKS:  # bounded, however long the run
                self._iso.clear()
            start = bar - bar % _ISO_BLOCK
            block = self._iso[bar // _ISO_BLOCK] = _format_times(
                self._times[start:start + _ISO_BLOCK])
        return str(block[bar % _ISO_BLOCK])


_ISO_BLOCK, _ISO_BLOCKS = 1024, 64


def _iso_times(index: pd.DatetimeIndex) -> np.ndarray:
    """The times as numpy datetimes (UTC for zone-aware ones), at the unit that keeps
    them exact: whole seconds read as pandas writes them (2024-01-01T09:30:00)."""
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    values = index.to_numpy("datetime64[ns]")
    whole = (values.astype(np.int64) % 1_000_000_000 == 0).all()
    return values.astype("datetime64[s]" if whole else "datetime64[us]")


def _format_times(times: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(times)
