"""Trainer-side metrics API: cheap calls in the training loop, batched writes behind it.

A call only appends a tuple to an in-memory deque (a few microseconds, no lock, no
I/O; ``log_episode`` about 1 µs). A background thread drains the deque every
``flush_interval`` seconds (200 ms) whenever it holds anything and writes it to the run
store, one transaction per ``batch_rows`` rows (a backlog in big batches), so a process
killed outright (``kill -9``, the OOM killer) loses at most the rows of the last
interval. It also heartbeats the run every ``heartbeat_interval`` seconds
(``RUN_HEARTBEAT_SECONDS``, 5), which keeps the run from being marked lost (see
:mod:`Utilities.run_store`). A store failure never reaches the training loop: it
is logged, counted in :meth:`MetricsLogger.get_statistics`, and the batch is retried at
the next flush (up to ``max_pending`` rows; beyond that the oldest rows are dropped and
counted, so a dead database cannot exhaust memory). A store that answers but more slowly
than rows arrive loses nothing: the logger says it is falling behind (``behind_peak``
counts the most rows that waited) and keeps writing, and close() waits for it as long
as it keeps writing; only an unreachable store sheds.

Keys are grouped SB3-style: ``episode/<field>`` (step = episode number) and
``train/<field>`` (step = update number). Episodes also become ``episode`` events so a
live client sees them in order with trades, decisions, checkpoints and alerts.

Adapted from the seed's ``MetricsLogger`` (../shared/seeds/metrics_alerts_experiments.md),
whose calls work as written: ``MetricsLogger("my_training")`` or
``MetricsLogger(experiment_name=..., output_dir=..., buffer_size=...,
auto_save_interval=..., enable_async=...)`` records a run of its own in the run store
(``DATABASE_URL``, else the dashboard's SQLite file), so a script that logs this way shows
up in the web; ``log_episode(episode, profit, sharpe, ...)`` stores ``episode/profit``,
``episode/sharpe``, … (and the profit as the episode's reward when no ``reward=`` is
given: what the run page charts as profit/loss);
``log_model_metrics(loss, q_values=[...], gradients={...})`` summarises lists
(mean/std/min/max) and flattens dicts into ``train/*`` scalars.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from Utilities.metric_writes import MetricBatch
from Utilities.run_store import (
    TERMINAL_STATUSES,
    EncodedPayload,
    RunStore,
    RunStoreError,
    heartbeat_seconds,
)
from Utilities.serialization import to_plain

log = logging.getLogger(__name__)

# Most rows per transaction (the default of ``batch_rows``). A trickle (a few rows per
# 200 ms tick) is written as it is; a backlog (a tight loop outrunning the store) in
# slices this large, so the per-batch cost (transaction, commit, statement set-up) is
# spread over many rows. Larger slices gained nothing measurable on SQLite and keep
# more rows alive per batch.
BATCH_ROWS = 20_000

_now = time.time

# The seed's named episode fields, in its positional order: log_episode(episode, profit,
# sharpe, win_rate, drawdown, num_trades, epsilon, learning_rate).
SEED_EPISODE_FIELDS = ("profit", "sharpe", "win_rate", "drawdown", "num_trades", "epsilon",
                       "learning_rate")
# The model type of a run a logger records for itself (``experiment_name``): what it
# trains is the script's business; the history pages filter on it.
EXPERIMENT_MODEL_TYPE = "experiment"


class MetricsLogger:
    """Non-blocking logger for one training run; also usable with no store (memory only).

    >>> with MetricsLogger(store, run_id) as metrics:          # doctest: +SKIP
    ...     metrics.log_episode(1, reward=12.5, steps=200, win=True)
    ...     metrics.log_update(loss=0.41, entropy=1.02)
    """

    def __init__(self, store: RunStore | str | None = None, run_id: str | None = None, *,
                 experiment_name: str | None = None, database_url: str | None = None,
                 model_type: str = EXPERIMENT_MODEL_TYPE, config: dict[str, Any] | None = None,
                 flush_interval: float = 0.2, history: int = 100_000,
                 max_pending: int = 1_000_000, output_dir: str | Path | None = None,
                 close_timeout: float = 30.0, heartbeat_interval: float | None = None,
                 batch_rows: int = BATCH_ROWS, buffer_size: int | None = None,
                 auto_save_interval: int | None = None, enable_async: bool = True) -> None:
        """Log to ``run_id`` in ``store``; with neither, in memory only.

        ``experiment_name`` (or a name as the first argument, the seed's
        ``MetricsLogger("my_training")``): the logger records a run of its own, named so
        and filed under that experiment, in ``store``, else in the store at
        ``database_url``, else in :func:`Utilities.run_store.default_database_url` (where
        the web looks); ``model_type`` and ``config`` describe it. close() ends that run
        ``completed`` (``failed`` when a ``with`` block raised); so does the
        interpreter's exit for a logger never closed.

        ``heartbeat_interval``: seconds between heartbeats of the run (default
        heartbeat_seconds()); ``math.inf`` when something else heartbeats it.
        ``close_timeout``: how long close() waits for a writer that writes nothing (a
        hung store); one that keeps writing a backlog is waited for.
        ``batch_rows``: most rows per transaction.

        The seed's ``buffer_size`` and ``auto_save_interval`` are checked and kept as
        attributes but change nothing: rows reach the store every ``flush_interval``
        (200 ms) whatever their count, which is sooner than any auto-save, and memory is
        bounded by ``history`` and ``max_pending``. ``output_dir`` files are written by
        close() and save_metrics(). ``enable_async=False`` writes every call before it
        returns (one transaction per call: for debugging, not for a training loop)."""
        if isinstance(store, str):  # the seed's positional experiment name
            if experiment_name is not None:
                raise TypeError("experiment name given twice (first argument and "
                                "experiment_name=)")
            store, experiment_name = None, store
        self.buffer_size = _optional_count("buffer_size", buffer_size)
        self.auto_save_interval = _optional_count("auto_save_interval", auto_save_interval)
        if not isinstance(enable_async, bool):
            raise TypeError(f"enable_async must be True or False; got {enable_async!r}")
        self.enable_async = enable_async
        self.experiment_name = experiment_name
        self._owned_store: RunStore | None = None
        self._owns_run = False
        if experiment_name is not None and not run_id:
            store, run_id = self._own_run(store, database_url, experiment_name, model_type,
                                          config)
        if store is not None and not run_id:
            raise ValueError("a run_id is needed to log to a store")
        self.store, self.run_id = store, run_id
        self.flush_interval, self.max_pending = flush_interval, max_pending
        self.heartbeat_interval = (heartbeat_seconds() if heartbeat_interval is None
                                   else heartbeat_interval)
        if not self.heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be > 0 seconds; got {heartbeat_interval}")
        self.output_dir = Path(output_dir) if output_dir else None
        self.close_timeout = close_timeout
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1; got {batch_rows}")
        self.batch_rows = batch_rows
        self._queue: deque[tuple] = deque()
        # Memory-only loggers keep their in-memory history and queue nothing.
        self._append = self._queue.append if store is not None else _discard
        self._episodes: deque[dict[str, Any]] = deque(maxlen=history)
        self._series: dict[str, deque[float]] = {}
        self._history = history
        self._update_step = 0
        # log_episode's shortcut to the series episode/<field>, created on first use.
        self._episode_series = _SeriesByField(self._new_series, "episode/")
        # Items the writer took off the queue, not yet written (their rows counted), and
        # the oldest slice of them, kept as it is until a write of it succeeds. Both hold
        # the compact queued items; rows are built only for the write_batch call.
        self._pending: deque[tuple] = deque()
        self._pending_rows = 0
        self._batch: deque[tuple] = deque()
        self._batch_rows = 0
        self._counts = {"written_metrics": 0, "written_events": 0, "write_failures": 0,
                        "dropped": 0, "flushes": 0, "behind_peak": 0}
        self._store_failing = False  # the last write failed: only then are rows shed
        self._dropped_told = 0  # dropped rows the run's own log already reports
        self._behind_said = -math.inf
        self._writer_cpu = 0.0  # CPU seconds spent writing (the logger's true cost)
        self._last_error: str | None = None
        self._last_heartbeat = -math.inf  # the first write heartbeats
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        if store is not None and not enable_async:
            self._append = self._append_now
        if store is not None:
            self._thread = threading.Thread(target=self._run, name="metrics-writer",
                                            daemon=True)
            self._thread.start()
        if self._owns_run:
            # A script that never closes its logger (the seed's minimal example) still
            # gets its last rows written and its run ended when the interpreter exits.
            # (A finalizer, not atexit.register(self.close): it holds no strong reference.)
            self._at_exit = weakref.finalize(self, _close_at_exit, weakref.ref(self))

    def _own_run(self, store: RunStore | None, database_url: str | None, name: str,
                 model_type: str, config: dict[str, Any] | None) -> tuple[RunStore, str]:
        """Record a run for this logger (the seed's ``experiment_name``)."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"experiment_name must be a non-empty string; got {name!r}")
        if store is None:
            store = self._owned_store = RunStore(database_url)
        run_id = store.create_run(name=name.strip(), model_type=model_type,
                                  experiment=name.strip(), config=dict(config or {}))
        self._owns_run = True
        return store, run_id

    def _append_now(self, item: tuple) -> None:
        """``enable_async=False``: queue, then write at once on the caller's thread."""
        self._queue.append(item)
        self.flush()

    # ------------------------------------------------------------------ logging calls

    def log_episode(self, episode: int, profit: float | None = None,
                    sharpe: float | None = None, win_rate: float | None = None,
                    drawdown: float | None = None, num_trades: int | None = None,
                    epsilon: float | None = None, learning_rate: float | None = None, *,
                    reward: float | None = None, steps: int | None = None,
                    win: bool | None = None, **metrics: float) -> None:
        """One finished episode: total reward, length, win flag and any extra metrics,
        each stored as ``episode/<name>`` at step ``episode``.

        The seed's fields (``profit``, ``sharpe``, ``win_rate``, ``drawdown``,
        ``num_trades``, ``epsilon``, ``learning_rate``; positional in that order, as in
        ``log_episode(episode, profit, sharpe)``) are extra metrics like any other. Only
        the fields given are stored (the seed's 0.0 defaults would draw false zeros), and
        a profit given without ``reward`` is the episode's reward as well."""
        # The hot call of a training loop (issue 13: <= 5 µs mean). It queues ONE tuple
        # of plain values; the writer thread builds the episode's metric rows and event
        # from it. No tuple here holds a dict, so the cyclic GC untracks the queue's
        # tuples on its first pass and a backlog never promotes objects into the old
        # generation (a 100k-episode burst used to cost ~0.5 s of full collections).
        now = _now()
        if not (profit is None and sharpe is None and win_rate is None and drawdown is None
                and num_trades is None and epsilon is None and learning_rate is None):
            metrics = _seed_fields(metrics, profit, sharpe, win_rate, drawdown, num_trades,
                                   epsilon, learning_rate)
        episode = int(episode)
        record = {"episode": episode}
        series = self._episode_series
        if reward is None and profit is not None:
            # An episode's reward is its profit/loss here (the trading env's reward), so a
            # seed loop logging only profit gets the Profit/loss chart, the list's reward,
            # the overview and the reward alerts; episode/profit is kept as well.
            reward = _number("episode/profit", profit)
        if reward is not None:
            record["reward"] = reward = float(reward)
        names = values = ()  # extra metrics: two flat tuples (a tuple of pairs nests)
        if metrics:  # checked before anything is kept: a bad value leaves no trace
            names, values = tuple(metrics), tuple(metrics.values())
            try:  # the usual case, without a key's name built per value
                numbers = [float(value) for value in values]
            except (TypeError, ValueError):  # say which metric, in the caller's frame
                numbers = [_number(f"episode/{key}", value) for key, value in metrics.items()]
            record.update(metrics)
        if reward is not None:
            series["reward"].append(reward)
        if names:
            for key, number in zip(names, numbers, strict=True):
                series[key].append(number)
        if steps is not None:
            record["steps"] = steps = int(steps)
            series["steps"].append(float(steps))
        if win is not None:
            record["win"] = win = bool(win)
            series["win"].append(1.0 if win else 0.0)
        self._episodes.append(record)
        self._append(("E", episode, reward, steps, win, names, values, now))

    def log_update(self, step: int | None = None, **metrics: float) -> None:
        """Optimisation metrics of one update (loss, entropy, KL, learning rate, …)."""
        self._update_step = self._update_step + 1 if step is None else int(step)
        now = _now()
        for key, value in metrics.items():
            number = self._remember(f"train/{key}", value)
            self._append(("m", f"train/{key}", self._update_step, number, now))

    def log_model_metrics(self, loss: float | None = None,
                          q_values: Iterable[float] | float | None = None,
                          gradients: dict[str, Any] | None = None,
                          weights: dict[str, Any] | None = None, *, step: int | None = None,
                          **metrics: Any) -> None:
        """The seed's call for an update's model metrics, as ``train/*`` scalars of one
        :meth:`log_update`: ``loss``; ``q_values`` (a list or array) as
        ``q_values_mean``/``_std``/``_min``/``_max``; ``gradients`` and ``weights``
        dicts flattened (``{'mean': 0.01}`` → ``gradients_mean``, nested dicts joined
        by ``_``, a list value summarised like q-values); any other keyword as given
        (lists and dicts the same way)."""
        scalars: dict[str, float] = {}
        if loss is not None:
            scalars["loss"] = _number("train/loss", loss)
        for name, value in (("q_values", q_values), ("gradients", gradients),
                            ("weights", weights), *metrics.items()):
            if value is not None:
                _flatten(name, value, scalars)
        self.log_update(step=step, **scalars)

    def log_metrics(self, step: int, prefix: str = "custom", **metrics: float) -> None:
        """Any other scalar series, under ``<prefix>/<name>``."""
        now = _now()
        for key, value in metrics.items():
            number = self._remember(f"{prefix}/{key}", value)
            self._append(("m", f"{prefix}/{key}", int(step), number, now))

    # Event payloads are queued as a tuple of keys and a tuple of values, not as dicts:
    # tuples of plain values (and a tuple holding only those) are untracked by the
    # cyclic GC on its first pass, so a burst of trades no longer promotes 100k objects
    # into the old generation (where each full collection it triggers takes ~100 ms).
    # The writer turns them back into the dicts.

    def log_trade(self, **trade: Any) -> None:
        """A filled trade (side, price, units, pnl, …) as a ``trade`` event."""
        self._append(("e", "trade", tuple(trade), tuple(trade.values()), _now()))

    def log_decision(self, **decision: Any) -> None:
        """A policy decision (action, probabilities, value) as a ``decision`` event."""
        self._append(("e", "decision", tuple(decision), tuple(decision.values()), _now()))

    def log_account(self, **snapshot: Any) -> None:
        """One account's state (agent, cash, position, equity, rewards, trades, …) as an
        ``account`` event: what the live page's agent cards show."""
        self._append(("e", "account", tuple(snapshot), tuple(snapshot.values()), _now()))

    def log_checkpoint(self, path: str | Path, step: int, **info: Any) -> None:
        """A saved checkpoint, so history pages can list and resume from it."""
        self._event("checkpoint", {"path": str(path), "step": int(step), **info})

    def log_alert(self, level: str, title: str, message: str = "", **info: Any) -> None:
        """An alert (info / warning / critical) for the dashboard."""
        self._event("alert", {"level": level, "title": title, "message": message, **info})

    def log_feature_importance(self, importance: dict[str, float], **info: Any) -> None:
        """A model's feature importance ({feature: share}) as one ``importance`` event."""
        self._event("importance",
                    {"importance": {str(k): float(v) for k, v in importance.items()}, **info})

    def log_message(self, message: str, level: str = "info") -> None:
        """A line of the run's log, shown beside its charts."""
        self._event("log", {"level": level, "message": message})

    def _event(self, kind: str, payload: dict[str, Any]) -> None:
        self._append(("e", kind, tuple(payload), tuple(payload.values()), _now()))

    def _remember(self, key: str, value: Any) -> float:
        """Keep the value for queries; a non-scalar fails here, in the caller's frame."""
        number = _number(key, value)
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key)
        series.append(number)
        return number

    def _new_series(self, key: str) -> deque[float]:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = deque(maxlen=self._history)
        return series

    # ------------------------------------------------------------------------ queries

    # Queries copy deques with list(), which is atomic under the GIL, so they are safe
    # to call from another thread while training appends.

    @property
    def episode_metrics(self) -> list[dict[str, Any]]:
        """The episodes kept in memory, oldest first (the seed's attribute; assigning a
        shorter list, ``logger.episode_metrics = logger.episode_metrics[-1000:]``, keeps
        only those in memory; the store keeps every episode)."""
        return [dict(e) for e in list(self._episodes)]

    @episode_metrics.setter
    def episode_metrics(self, episodes: Iterable[dict[str, Any]]) -> None:
        kept = list(episodes)
        self._episodes.clear()
        self._episodes.extend(dict(e) for e in kept[-(self._episodes.maxlen or len(kept)):])

    def get_latest_episode(self) -> dict[str, Any] | None:
        episodes = list(self._episodes)
        return dict(episodes[-1]) if episodes else None

    def get_best_episode(self, metric: str = "reward") -> dict[str, Any] | None:
        """The episode with the highest value of ``metric`` (None if never logged)."""
        candidates = [e for e in list(self._episodes) if _is_number(e.get(metric))]
        return dict(max(candidates, key=lambda e: e[metric])) if candidates else None

    def get_smoothed_metric(self, name: str, window: int = 10) -> float | None:
        """Mean of the last ``window`` values of a metric: a full key (``train/loss``) or
        a short name looked up as an episode field, then an update metric."""
        series = self._find_series(name)
        if not series:
            return None
        recent = list(series)[-max(1, window):]
        return sum(recent) / len(recent)

    def _find_series(self, name: str) -> deque[float] | None:
        if "/" in name:
            return self._series.get(name)
        for prefix in ("episode", "train"):
            if f"{prefix}/{name}" in self._series:
                return self._series[f"{prefix}/{name}"]
        return next((s for k, s in list(self._series.items()) if k.endswith(f"/{name}")), None)

    def get_statistics(self) -> dict[str, Any]:
        """Summary of what was logged and of the writer's health."""
        best = self.get_best_episode("reward")
        best_profit = self.get_best_episode("profit")
        latest = self.get_latest_episode()
        wins = list(self._series.get("episode/win", ()))
        return {
            "episodes": len(self._episodes),
            "latest_episode": latest["episode"] if latest else None,
            "best_reward": best["reward"] if best else None,
            "best_profit": best_profit["profit"] if best_profit else None,  # the seed's
            "best_episode": best["episode"] if best else None,
            "mean_reward_last_50": self.get_smoothed_metric("episode/reward", 50),
            "win_rate": sum(wins) / len(wins) if wins else None,
            "updates": self._update_step,
            "queued": sum(map(_rows_of, list(self._queue))) + self._waiting(),
            **self._counts,
            "writer_cpu_s": round(self._writer_cpu, 6),
            "last_error": self._last_error,
        }

    # ------------------------------------------------------------------------ writing

    def _run(self) -> None:
        # Flushes start on a fixed 200 ms grid (not 200 ms after the last one ended), so
        # the newest unwritten row is never older than flush_interval plus one write.
        due = time.monotonic() + self.flush_interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + self.flush_interval, time.monotonic())
            if self._idle():
                continue  # nothing to write: an idle logger costs no transaction
            try:
                self.flush()
            except Exception:  # the writer must outlive any bug; the rows stay queued
                self._counts["write_failures"] += 1
                log.exception("metrics writer error")

    def _idle(self) -> bool:
        return (not self._queue and not self._pending and not self._batch
                and not self._heartbeat_due(time.monotonic()))

    def _heartbeat_due(self, now: float) -> bool:
        return (math.isfinite(self.heartbeat_interval)
                and now - self._last_heartbeat >= self.heartbeat_interval)

    def _waiting(self) -> int:
        """Rows the writer holds, not yet written."""
        return self._batch_rows + self._pending_rows

    def flush(self) -> bool:
        """Write everything queued so far; True when nothing is left pending."""
        if self.store is None:
            self._queue.clear()  # memory-only: the in-memory history is the record
            return True
        with self._flush_lock:
            started = time.thread_time()
            self._drain()
            done = self._write()
            self._writer_cpu += time.thread_time() - started
            return done

    def _drain(self) -> None:
        """Take everything queued so far (the training thread appends on the other end)."""
        queue, pending = self._queue, self._pending
        popleft, keep = queue.popleft, pending.append
        rows = 0
        for _ in range(len(queue)):
            item = popleft()
            keep(item)
            rows += _rows_of(item)
        self._pending_rows += rows
        if self._store_failing:
            self._shed()
        else:
            self._note_backlog()

    def _shed(self) -> None:
        """Beyond ``max_pending`` rows while the store is unreachable: drop the oldest
        (whole items: an episode's metrics and event go together)."""
        overflow = self._waiting() - self.max_pending
        dropped = 0
        for held in (self._batch, self._pending):  # the unwritten batch is the oldest
            while dropped < overflow and held:
                dropped += _rows_of(held.popleft())
        if dropped:
            batch_dropped = min(dropped, self._batch_rows)
            self._batch_rows -= batch_dropped
            self._pending_rows -= dropped - batch_dropped
            self._counts["dropped"] += dropped
            log.error("metrics store unreachable; dropped %d oldest rows", dropped)

    def _note_backlog(self) -> None:
        """A healthy store slower than the training: say so (every 10 s), drop nothing."""
        waiting = self._waiting()
        self._counts["behind_peak"] = max(self._counts["behind_peak"], waiting)
        now = time.monotonic()
        if waiting > self.max_pending and now - self._behind_said >= 10.0:
            self._behind_said = now
            log.warning("metrics writer falling behind: %d rows waiting (the store answers, "
                        "more slowly than rows arrive); none dropped", waiting)

    def _write(self) -> bool:
        now = time.monotonic()
        beat = self._heartbeat_due(now)
        if not self._batch and not self._pending and not beat:
            return True
        heartbeats = [self.run_id] if beat else []  # a heartbeat per batch would double writes
        self._counts["flushes"] += 1
        while True:
            if not self._batch:
                self._take_batch(self.batch_rows)
            try:
                metrics = self._metric_batch(self._batch)
                self.store.write_batch(metrics=metrics, events=self._events(self._batch),
                                       heartbeats=heartbeats)
            except Exception as exc:  # the training loop must never see a store failure
                self._counts["write_failures"] += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.warning("metrics write failed (will retry): %s", self._last_error)
                self._store_failing = True
                self._shed()
                return False
            events = self._batch_rows - len(metrics)  # every other row is an event
            self._batch.clear()
            self._batch_rows = 0
            self._store_failing = False
            self._tell_dropped()
            if beat:
                self._last_heartbeat, heartbeats, beat = now, [], False
            self._counts["written_metrics"] += len(metrics)
            self._counts["written_events"] += events
            del metrics  # before the next slice is built: fewer live objects
            if not self._pending:
                return True
            time.sleep(0)  # let the training thread in between slices of a backlog

    def _take_batch(self, limit: int) -> None:
        """Move the oldest pending items, about ``limit`` rows, into the batch."""
        pending, batch = self._pending, self._batch
        take, keep = pending.popleft, batch.append
        rows = 0
        while pending and rows < limit:
            item = take()
            keep(item)
            rows += _rows_of(item)
        self._pending_rows -= rows
        self._batch_rows += rows

    def _metric_batch(self, items: Iterable[tuple]) -> MetricBatch:
        """The metric rows of queued items, as the columns write_batch stores.

        An episode item gives its reward, extra metrics, steps and win (the record's
        order), at step = episode. Columns rather than a tuple per row, which the store
        would only take apart again: about 1 µs less per episode on the writer thread."""
        keys: list[str] = []
        steps: list[int] = []
        values: list[float] = []
        walls: list[float] = []
        key, step, value, wall = keys.append, steps.append, values.append, walls.append
        for item in items:
            if item[0] == "E":
                _, episode, reward, episode_steps, win, names, numbers, now = item
                if (win is not None and episode_steps is not None and not names
                        and reward is not None):
                    keys += _EPISODE_KEYS  # the usual episode: three rows at once
                    steps += (episode, episode, episode)
                    values += (reward, float(episode_steps), float(win))
                    walls += (now, now, now)
                    continue
                if reward is not None:
                    key("episode/reward"), step(episode), value(reward), wall(now)
                for name, number in zip(names, numbers, strict=True):
                    key("episode/" + name), step(episode), value(float(number)), wall(now)
                if episode_steps is not None:
                    key("episode/steps"), step(episode), value(float(episode_steps)), wall(now)
                if win is not None:
                    key("episode/win"), step(episode), value(float(win)), wall(now)
            elif item[0] == "m":
                key(item[1]), step(item[2]), value(item[3]), wall(item[4])
        return MetricBatch(runs=[self.run_id] * len(keys), keys=keys,
                           step=np.array(steps, dtype=np.int64),
                           value=np.array(values, dtype=float),
                           wall=np.array(walls, dtype=float))

    def _events(self, items: Iterable[tuple]) -> Iterator[tuple]:
        """The event rows of queued items, made as write_batch consumes them.

        An episode's ``episode`` event carries the record log_episode kept in memory,
        rebuilt from the same values. A generator, not a list: a row holding a dict stays
        tracked by the cyclic GC, and a batch's worth of them living through the metrics'
        write was promoted to the old generation, triggering full collections (each tens
        of ms with a big backlog queued)."""
        run = self.run_id
        for item in items:
            if item[0] == "E":
                _, episode, reward, episode_steps, win, names, numbers, now = item
                if not names:  # plain values only: encoded here (EncodedPayload says why)
                    encoded = _episode_json(episode, reward, episode_steps, win)
                    if encoded is not None:
                        yield run, "episode", encoded, now
                        continue
                payload = {"episode": episode}
                if reward is not None:
                    payload["reward"] = reward
                for name, number in zip(names, numbers, strict=True):
                    payload[name] = number
                if episode_steps is not None:
                    payload["steps"] = episode_steps
                if win is not None:
                    payload["win"] = win
                yield run, "episode", payload, now
            elif item[0] != "m":  # payload items the log calls gave; the store makes
                yield run, item[1], dict(zip(item[2], item[3], strict=True)), item[4]

    def _tell_dropped(self) -> None:
        """Once the store answers again, the rows it lost go on the run's record (an
        alert event, shown on the run page), not only in this process's log."""
        lost = self._counts["dropped"] - self._dropped_told
        if lost > 0:
            self._dropped_told = self._counts["dropped"]
            self._pending.append(("e", "alert", ("level", "title", "message", "dropped"), (
                "warning", "metrics lost",
                f"{lost} metric rows were dropped while the run store was unreachable",
                lost), _now()))
            self._pending_rows += 1

    def close(self) -> None:
        """Stop the writer thread and flush what is left; end the logger's own run (see
        ``experiment_name``) as completed. Safe to call twice."""
        self._close(None)

    def _close(self, error: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._append = self._after_close
        self._stop.set()
        if self._thread is not None and not self._join_writer(self._thread):
            return
        if not self.flush():
            log.error("metrics logger closed with %d rows unwritten: %s",
                      self.get_statistics()["queued"], self._last_error)
        if self.output_dir is not None:
            self.save_metrics("json")
        if self._owns_run:
            self._end_own_run(error)

    def _end_own_run(self, error: BaseException | None) -> None:
        """The run this logger recorded ends with it: completed, stopped (Ctrl-C) or
        failed (an exception left its ``with`` block), unless it ended already."""
        self._at_exit.detach()
        status, message = "completed", None
        if isinstance(error, KeyboardInterrupt):
            status = "stopped"
        elif error is not None:
            status, message = "failed", f"{type(error).__name__}: {error}"
        try:
            if self.store.get_run(self.run_id)["status"] not in TERMINAL_STATUSES:
                self.store.set_status(self.run_id, status, error=message)
        except RunStoreError as exc:  # ended elsewhere, deleted, or the store is gone
            log.warning("could not mark run %s %s: %s", self.run_id, status, exc)
        finally:
            if self._owned_store is not None:
                self._owned_store.close()

    def _join_writer(self, thread: threading.Thread) -> bool:
        """Wait for the writer thread to end while it makes progress; False when it wrote
        nothing for ``close_timeout`` seconds: a hung store must not hang the trainer's
        exit, but a healthy one writing a backlog (a tight loop's million episodes take
        longer than any fixed timeout) must not lose it."""
        while True:
            written = self._counts["written_metrics"] + self._counts["written_events"]
            thread.join(self.close_timeout)
            if not thread.is_alive():
                return True
            if self._counts["written_metrics"] + self._counts["written_events"] == written:
                log.error("metrics writer wrote nothing for %.0f s; leaving it",
                          self.close_timeout)
                return False
            log.info("metrics writer still writing: %d rows left",
                     self.get_statistics()["queued"])

    def _after_close(self, item: tuple) -> None:
        if not self._counts.get("after_close"):
            what = "episode" if item[0] == "E" else item[1]
            log.warning("metrics logged after close() are dropped (first: %s)", what)
        self._counts["after_close"] = self._counts.get("after_close", 0) + _rows_of(item)

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None,
                 traceback: object) -> None:
        self._close(error)

    # ------------------------------------------------------------------------- export

    def save_metrics(self, format: str = "json", path: str | Path | None = None) -> Path:
        """Write episodes (CSV) or episodes + update series + statistics (JSON)."""
        if format not in ("json", "csv"):
            raise ValueError(f"unknown format {format!r}; use 'json' or 'csv'")
        target = Path(path) if path else self._default_path(format)
        target.parent.mkdir(parents=True, exist_ok=True)
        episodes = list(self._episodes)
        if format == "csv":
            _write_csv(target, episodes)
        else:
            body = {"run_id": self.run_id, "episodes": episodes,
                    "series": {k: list(v) for k, v in self._series.items()},
                    "statistics": self.get_statistics()}
            target.write_text(json.dumps(to_plain(body), indent=2), encoding="utf-8")
        return target

    def _default_path(self, format: str) -> Path:
        folder = self.output_dir or Path("instance") / "metrics"
        return folder / f"{self.run_id or 'metrics'}.{format}"


def _write_csv(target: Path, episodes: Iterable[dict[str, Any]]) -> None:
    episodes = list(episodes)
    columns = list(dict.fromkeys(k for e in episodes for k in e)) or ["episode", "reward"]
    with target.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(episodes)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _SeriesByField(dict):
    """{field: the in-memory series <prefix><field>}, made (and registered) on first use."""

    def __init__(self, new_series: Callable[[str], deque[float]], prefix: str) -> None:
        super().__init__()
        self._new_series, self._prefix = new_series, prefix

    def __missing__(self, field: str) -> deque[float]:
        series = self[field] = self._new_series(self._prefix + field)
        return series


def _number(key: str, value: Any) -> float:
    """A metric's value as a float; a non-scalar fails here, in the caller's frame."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric {key!r} must be a number, got {type(value).__name__}; "
                        "log summaries (mean, std) of arrays instead") from None


_EPISODE_KEYS = ("episode/reward", "episode/steps", "episode/win")


def _episode_json(episode: int, reward: float | None, steps: int | None,
                  win: bool | None) -> EncodedPayload | None:
    """The record of an episode without extra metrics as its payload's JSON text, what
    the store would make of the dict (orjson writes a NaN or infinite reward as null,
    as to_plain makes it None); None for what orjson refuses (an int past 64 bits)."""
    record: dict[str, Any] = {"episode": episode}
    if reward is not None:
        record["reward"] = reward
    if steps is not None:
        record["steps"] = steps
    if win is not None:
        record["win"] = win
    try:
        return EncodedPayload(orjson.dumps(record).decode())
    except TypeError:
        return None


def _rows_of(item: tuple) -> int:
    """Rows a queued item becomes: an episode's metrics and its event, else one."""
    if item[0] == "E":  # ("E", episode, reward, steps, win, names, values, wall_time)
        return (1 + (item[2] is not None) + len(item[5]) + (item[3] is not None)
                + (item[4] is not None))
    return 1


def _discard(item: tuple) -> None:
    """Queue stand-in for memory-only loggers."""


def _seed_fields(metrics: dict[str, Any], *values: Any) -> dict[str, Any]:
    """The seed's named episode fields that were given, before the other metrics."""
    given = {name: value for name, value in zip(SEED_EPISODE_FIELDS, values, strict=True)
             if value is not None}
    return {**given, **metrics}


def _flatten(name: str, value: Any, into: dict[str, float]) -> None:
    """A model metric as scalars: a number as it is; a dict's items as ``<name>_<key>``
    (recursively); a list, tuple or array as its mean, std, min and max."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{name}_{key}", item, into)
        return
    if isinstance(value, list | tuple | np.ndarray) or hasattr(value, "tolist"):
        array = _as_array(name, value)
        if array.size == 0:
            return  # nothing to summarise: no rows rather than NaNs
        if array.size == 1 and not isinstance(value, list | tuple):
            into[name] = float(array.reshape(-1)[0])  # a 0-d array or a one-element tensor
            return
        into.update({f"{name}_mean": float(array.mean()), f"{name}_std": float(array.std()),
                     f"{name}_min": float(array.min()), f"{name}_max": float(array.max())})
        return
    into[name] = _number(f"train/{name}", value)


def _as_array(name: str, value: Any) -> np.ndarray:
    """A list or array of numbers as floats (a torch tensor through .tolist())."""
    try:
        plain = value.tolist() if hasattr(value, "tolist") else value
        return np.asarray(plain, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"metric 'train/{name}' must be numbers, got "
                        f"{type(value).__name__}") from None


def _optional_count(label: str, value: int | None) -> int | None:
    """The seed's buffer_size / auto_save_interval: None or a whole number >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{label} must be a whole number >= 1; got {value!r}")
    return value


def _close_at_exit(ref: weakref.ReferenceType[MetricsLogger]) -> None:
    """At the interpreter's exit: flush a logger never closed and end its run, failed
    when the script died of an uncaught exception (Python keeps it in sys.last_value)."""
    logger = ref()
    if logger is not None:
        logger._close(getattr(sys, "last_value", None))
