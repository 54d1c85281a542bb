"""The platform's alert rules for a run, applied from the run store: no user code, the
same for every trainer that writes a run (ours from the CLI or the web, or any script
through MetricsLogger).

:class:`RunAlertWatcher` follows one run's new metric points and its status and feeds
an :class:`~Utilities.alert_system.AlertSystem`: episode health (NaN, loss, P/L floor,
no improvement), NaN in update metrics, a new best validation score, a stalled run (no
metrics for ``stall_seconds`` while it is alive), and the end of the run (complete,
stopped, failed). It reads the store on its own thread every ``poll_seconds``, so the
training loop pays nothing for it. :func:`alert_lost_runs` is the dashboard's part: a
run whose process died (SIGKILL, power) cannot report its own end.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from Utilities import alert_records
from Utilities.alert_config import AlertSettings
from Utilities.alert_system import AlertSystem
from Utilities.run_store import LOST_PREFIX, TERMINAL_STATUSES, RunStore, RunStoreError

log = logging.getLogger(__name__)

EPISODE_PREFIX, UPDATE_PREFIX = "episode/", "train/"
# Validation scores whose improvement means a new best model, and which way is better.
BEST_KEYS = {"train/val_loss": min, "train/validation_return_pct": max,
             "train/val_accuracy": max}
DEFAULT_STALL_SECONDS = 300.0
FAILED_RULE = "run_failed"


def _value(point: dict[str, Any]) -> float:
    return math.nan if point["value"] is None else point["value"]  # the store's NULL is NaN


class RunAlertWatcher:
    """Applies the platform's rules to one run; ``check()`` once, or ``start()`` a thread."""

    def __init__(self, store: RunStore, run_id: str, alerts: AlertSystem, *,
                 poll_seconds: float = 2.0, stall_seconds: float = DEFAULT_STALL_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.run_id, self.alerts = store, run_id, alerts
        self.poll_seconds, self.stall_seconds, self._clock = poll_seconds, stall_seconds, clock
        self._cursor = 0
        self._episode: dict[str, Any] | None = None  # the newest, maybe still filling
        self._best: dict[str, float] = {}
        self._last_point = clock()
        self._stall_told = False
        self._ended = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RunAlertWatcher:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="run-alerts")
        self._thread.start()
        return self

    def stop(self) -> None:
        """One last check (the run's end), then the thread ends; alerts are flushed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.check()
        self.alerts.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check()
            except Exception:  # the watcher must never take the training down
                log.exception("alert check of run %s failed", self.run_id)

    def check(self) -> None:
        """Read what is new in the store and apply every rule to it."""
        if self._ended:
            return
        try:
            points, self._cursor = self.store.metric_points_after(self.run_id, self._cursor)
            run = self.store.get_run(self.run_id)
        except RunStoreError as exc:
            log.warning("alerts of run %s: store unreadable: %s", self.run_id, exc)
            return
        if points:
            self._last_point, self._stall_told = self._clock(), False
            self._episodes(points)
            self._updates(points)
        if run["status"] in TERMINAL_STATUSES:
            self._finish_episode()
            self._ended = True
            self._ended_alert(run)
        elif run["status"] == "running":
            self._stall(run)

    def _episodes(self, points: dict[str, list[dict]]) -> None:
        by_step: dict[int, dict[str, Any]] = {}
        for key, series in points.items():
            if key.startswith(EPISODE_PREFIX):
                for point in series:
                    by_step.setdefault(point["step"], {"episode": point["step"]})[
                        key[len(EPISODE_PREFIX):]] = _value(point)
        for step in sorted(by_step):
            if self._episode is not None and self._episode["episode"] == step:
                self._episode.update(by_step[step])  # its other keys came in this read
                continue
            self._finish_episode()
            self._episode = by_step[step]

    def _finish_episode(self) -> None:
        """An episode is checked once a later one starts (or the run ends): its keys may
        arrive in two flushes."""
        if self._episode is None:
            return
        episode, self._episode = self._episode, None
        self.alerts.check_training_health(episode, ())  # it keeps the run's best itself

    def _updates(self, points: dict[str, list[dict]]) -> None:
        for key, series in points.items():
            if not key.startswith(UPDATE_PREFIX):
                continue
            for point in series:
                self.alerts.check_update({key[len(UPDATE_PREFIX):]: _value(point)},
                                         step=point["step"])
            if key in BEST_KEYS:
                self._new_best(key, series)

    def _new_best(self, key: str, series: list[dict]) -> None:
        better = BEST_KEYS[key]
        for point in series:
            value = _value(point)
            if not math.isfinite(value):
                continue
            previous = self._best.get(key)
            if previous is None or better(value, previous) == previous:
                self._best.setdefault(key, value)
                continue
            self._best[key] = value
            self.alerts.send_new_best_model(metric=key[len(UPDATE_PREFIX):], value=value,
                                            step=point["step"], previous=previous)

    def _stall(self, run: dict[str, Any]) -> None:
        quiet = self._clock() - self._last_point
        if quiet < self.stall_seconds or self._stall_told:
            return
        self._stall_told = True
        self.alerts.send_alert("warning", "Run stalled",
                               f"no metrics for {quiet:.0f} s while the run is alive "
                               f"(heartbeat {run['heartbeat_at']})",
                               {"quiet_seconds": round(quiet), "heartbeat_at": run["heartbeat_at"]},
                               rule="stalled")

    def _ended_alert(self, run: dict[str, Any]) -> None:
        if run["status"] == "failed":
            if not failure_told(self.store, self.run_id):
                send_failed(self.alerts, run)
            return
        if run["status"] == "stopped":
            self.alerts.send_alert("info", "Run stopped", run.get("error") or "stopped",
                                   rule="run_stopped")
            return
        self._complete(run)

    def _complete(self, run: dict[str, Any]) -> None:
        """Training complete, with the run's best figures (from the whole run's series
        statistics, not the watcher's window) and its duration."""
        try:
            stats = self.store.series_statistics([self.run_id]).get(self.run_id, {})
        except RunStoreError:
            stats = {}
        reward, sharpe = stats.get("episode/reward", {}), stats.get("episode/sharpe", {})
        self.alerts.send_training_complete(
            total_episodes=reward.get("last_step"), best_profit=reward.get("max_value"),
            best_sharpe=sharpe.get("max_value"),
            training_time=_seconds(run["started_at"], run["ended_at"]))


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end[:-1]) - datetime.fromisoformat(start[:-1]))
                 .total_seconds(), 1)


def failure_told(store: RunStore, run_id: str) -> bool:
    """Whether a run-failed alert of the run is recorded (by any process)."""
    try:
        _, count = alert_records.list_alerts(store, run_id=run_id, rule=FAILED_RULE, limit=1)
    except (RunStoreError, SQLAlchemyError):
        return False
    return count > 0


def send_failed(alerts: AlertSystem, run: dict[str, Any]) -> bool:
    lost = (run.get("error") or "").startswith(LOST_PREFIX)
    title = "Run lost" if lost else "Run failed"
    return alerts.send_alert("critical", title, run.get("error") or "the run failed",
                             {"status": run["status"], "ended_at": run["ended_at"]},
                             force=True, rule=FAILED_RULE)


@contextmanager
def watching(store: RunStore | None, run_id: str | None, settings: AlertSettings, *,
             name: str | None = None) -> Iterator[RunAlertWatcher | None]:
    """The run's alert watcher for the length of a training (nothing without a store):
    started before the trainer's first episode, stopped after the run's end is recorded
    (its last check sends complete / stopped / failed, then waits for delivery, at most
    AlertSystem.close's timeout)."""
    if store is None or run_id is None:
        yield None
        return
    alerts = AlertSystem(settings, store=store, run_id=run_id, run_name=name)
    watcher = RunAlertWatcher(store, run_id, alerts).start()
    try:
        yield watcher
    finally:
        watcher.stop()


def alert_lost_runs(store: RunStore, alerts_of: Callable[[dict[str, Any]], AlertSystem],
                    since: str | None) -> list[str]:
    """The dashboard's sweep: mark runs whose trainer went silent lost, and send a
    run-failed alert for each failed run that ended after ``since`` (ISO time) without
    one. The ids alerted."""
    store.sweep_lost()
    runs, _ = store.list_runs(status="failed", sort="ended_at", limit=100, archived=None)
    told = []
    for run in runs:
        if since is not None and (run["ended_at"] or "") < since:
            break  # newest first: the rest ended before the sweep started
        if not failure_told(store, run["run_id"]):
            alerts = alerts_of(run)
            if send_failed(alerts, run):
                told.append(run["run_id"])
            alerts.flush(10)
    return told
