"""AlertSystem: the seed's alert API on the run store.

``send_alert`` decides (enabled? throttled?) and queues; one background thread per
AlertSystem records the alert as an ``alert`` event of its run and delivers it to every
configured channel with timeouts and retries, recording each channel's outcome as a
``delivery`` event. Nothing here ever blocks the caller for I/O or raises a delivery
problem into it: a training loop pays for a dict and a queue put.

>>> alerts = AlertSystem({"thresholds": AlertThresholds.MODERATE})  # doctest: +SKIP
>>> alerts.send_alert("warning", "Slow learning", "No improvement in 100 episodes")
True
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from Utilities import alert_records
from Utilities.alert_channels import Alert, DeliveryError
from Utilities.alert_config import AlertSettings, settings_from
from Utilities.alert_rules import (
    LEVELS,
    AlertThresholds,
    Finding,
    Plateau,
    episode_findings,
    update_findings,
)
from Utilities.run_store import RunStore, RunStoreError

__all__ = ["Alert", "AlertSystem", "AlertThresholds"]

log = logging.getLogger(__name__)

MAX_QUEUED = 1000  # alerts waiting for delivery; more means channels are down for long
KEPT = 500  # recent alerts and delivery outcomes kept in memory (store-less scripts)


class AlertSystem:
    """Alerts of one run (``run_id``) or of a script without one."""

    def __init__(self, config: Mapping[str, Any] | AlertSettings | None = None, *,
                 store: RunStore | None = None, run_id: str | None = None,
                 run_name: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``config``: the seed's dict or :func:`Utilities.alert_config.load_settings`'s
        result. With ``store`` and ``run_id`` every alert and delivery outcome is
        recorded as an event of that run."""
        self.settings = (config if isinstance(config, AlertSettings)
                         else settings_from(config))
        self.thresholds = self.settings.thresholds
        self._store, self._run_id, self._run_name = store, run_id, run_name
        self._clock = clock
        self._lock = threading.Lock()
        self._last_fired: dict[tuple[str | None, str], float] = {}
        self._plateau: Plateau | None = None  # the run's best P/L (check_training_health)
        self._queue: queue.Queue[Alert | None] = queue.Queue(MAX_QUEUED)
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self.alerts: deque[Alert] = deque(maxlen=KEPT)
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self.throttled = 0
        self.dropped = 0

    # ---- the seed's API -----------------------------------------------------------------

    def send_alert(self, level: str, title: str, message: str,
                   data: dict[str, Any] | None = None, force: bool = False, *,
                   rule: str | None = None) -> bool:
        """Queue an alert; False when alerts are off, the same rule (or title) fired on
        this run within the throttle window (``force`` bypasses it) or the queue is full.
        ValueError for an unknown level."""
        return self._send(level, title, message, data, force, rule) is not None

    def check_training_health(self, latest_episode: Mapping[str, Any],
                              recent_history: Sequence[Mapping[str, Any]]) -> list[Alert]:
        """Run every health rule on the latest episode (``recent_history``: the
        episodes before it, oldest first; only the first call's is read, to learn the
        best so far: later calls keep count themselves) and send what they find.

        The no-improvement warning is told once per plateau: again only after a new
        best has itself stopped improving."""
        if self._plateau is None:
            self._plateau = Plateau()
            for episode in recent_history:
                if episode is not latest_episode:
                    self._plateau.observe(episode)
        self._plateau.observe(latest_episode)
        sent = self._send_findings(episode_findings(latest_episode, self.thresholds))
        finding = self._plateau.finding(self.thresholds)
        if finding is not None and (told := self._send_findings([finding])):
            self._plateau.told = True
            sent += told
        return sent

    def check_update(self, metrics: Mapping[str, Any], step: int | None = None,
                     ) -> list[Alert]:
        """NaN/infinity and the critical loss on one update's metrics; the alerts sent."""
        return self._send_findings(update_findings(metrics, step, self.thresholds))

    def _send_findings(self, findings: list[Finding]) -> list[Alert]:
        sent = [self._send(f.level, f.title, f.message, f.data, False, f.rule)
                for f in findings]
        return [alert for alert in sent if alert is not None]

    def send_training_complete(self, total_episodes: int | None = None,
                               best_profit: float | None = None,
                               best_sharpe: float | None = None,
                               training_time: float | None = None, **extra: Any) -> bool:
        """Info: the run ended, with its best figures and how long it took."""
        figures = {"total_episodes": total_episodes, "best_profit": best_profit,
                   "best_sharpe": best_sharpe, "training_time": training_time, **extra}
        figures = {k: v for k, v in figures.items() if v is not None}
        parts = [f"{k.replace('_', ' ')} "
                 f"{_duration(v) if k == 'training_time' else _shown(v)}"
                 for k, v in figures.items()]
        return self.send_alert("info", "Training complete",
                               "; ".join(parts) or "training finished", figures,
                               rule="training_complete")

    def send_new_best_model(self, metric: str = "profit", value: float | None = None,
                            episode: int | None = None, model_path: str | None = None,
                            previous: float | None = None, *, step: int | None = None,
                            **extra: Any) -> bool:
        """Info: a new best model (by ``metric``) was saved, at an ``episode`` (the
        seed's) or an update ``step`` (an iteration, an epoch, a boosting round)."""
        data = {"metric": metric, "value": value, "episode": episode, "step": step,
                "model_path": model_path, "previous": previous, **extra}
        data = {k: v for k, v in data.items() if v is not None}
        where = (f" at episode {episode}" if episode is not None
                 else f" at step {step}" if step is not None else "")
        was = f" (was {_shown(previous)})" if previous is not None else ""
        return self.send_alert("info", "New best model",
                               f"{metric} {_shown(value)}{where}{was}", data, rule="new_best")

    # ---- delivery -------------------------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued alert is recorded and delivered (or given up on)."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout``, then stop the delivery thread
        (retry back-offs are cut short; a hung channel is left to its own timeout)."""
        drained = self.flush(timeout)
        self._closing.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout if drained else 0.1)

    def __enter__(self) -> AlertSystem:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """What a settings page shows: channels (secrets masked), thresholds, limits."""
        settings = self.settings
        return {"enabled": settings.enabled, "source": settings.source,
                "thresholds": asdict(settings.thresholds),
                "throttle_seconds": settings.throttle_seconds,
                "delivery": asdict(settings.delivery),
                "channels": [channel.describe() for channel in settings.channels]}

    def _admit(self, key: tuple[str | None, str], force: bool) -> bool:
        now = self._clock()
        with self._lock:
            last = self._last_fired.get(key)
            if not force and last is not None and now - last < self.settings.throttle_seconds:
                return False
            self._last_fired[key] = now
            return True

    def _send(self, level: str, title: str, message: str, data: dict[str, Any] | None,
              force: bool, rule: str | None) -> Alert | None:
        """send_alert's work; the queued Alert, or None when none was."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
        if not self.settings.enabled:
            return None
        if not self._admit((self._run_id, rule or f"title:{title}"), force):
            self.throttled += 1
            log.debug("alert %r throttled", title)
            return None
        alert = Alert(level=level, title=str(title), message=str(message),
                      data=dict(data or {}), rule=rule or "custom", run_id=self._run_id,
                      run_name=self._run_name)
        return alert if self._enqueue(alert) else None

    def _enqueue(self, alert: Alert) -> bool:
        self._start()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            log.warning("alert %r dropped: %d alerts already wait for delivery", alert.title,
                        MAX_QUEUED)
            return False
        self.alerts.append(alert)
        return True

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver_all, daemon=True,
                                                name="alert-delivery")
                self._thread.start()

    def _deliver_all(self) -> None:
        while (alert := self._queue.get()) is not None:
            try:
                self._record(alert)
                for channel in self.settings.channels:
                    self._deliver(channel, alert)
            except Exception:  # the thread must outlive any one alert
                log.exception("alert %r: delivery failed unexpectedly", alert.title)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _deliver(self, channel: Any, alert: Alert) -> None:
        delivery = self.settings.delivery
        started = time.monotonic()
        error = None
        for attempt in range(1, delivery.retries + 2):
            try:
                channel.send(alert)
                error = None
                break
            except DeliveryError as exc:
                error = str(exc)
                log.debug("alert %r to %s, attempt %d: %s", alert.title, channel.name,
                          attempt, error)
                if attempt > delivery.retries or self._closing.wait(
                        delivery.backoff_seconds * 2 ** (attempt - 1)):
                    break
        outcome = {"alert_id": alert.id, "title": alert.title, "level": alert.level,
                   "channel": channel.name, "ok": error is None, "attempts": attempt,
                   "error": error, "seconds": round(time.monotonic() - started, 3)}
        if error is not None:
            log.warning("alert %r not delivered to %s after %d attempt(s): %s", alert.title,
                        channel.name, attempt, error)
        self.deliveries.append(outcome)
        self._stored("delivery", self._record_delivery, outcome)

    def _record(self, alert: Alert) -> None:
        self._stored("alert", self._store.record_alert if self._store else None,
                     alert.as_dict())

    def _record_delivery(self, outcome: dict[str, Any]) -> None:
        alert_records.record_delivery(self._store, outcome["alert_id"], outcome)
        if self._run_id is not None:
            self._store.log_events(self._run_id, [("delivery", outcome, time.time())])

    def _stored(self, what: str, write: Callable[[dict[str, Any]], Any] | None,
                payload: dict[str, Any]) -> None:
        """Write to the store, if there is one; a store problem is logged, never raised
        (the alert is still delivered)."""
        if self._store is None or write is None:
            return
        try:
            write(payload)
        except (RunStoreError, SQLAlchemyError, ValueError) as exc:
            log.warning("could not record the %s of alert %r: %s", what,
                        payload.get("title"), exc)


def _duration(seconds: Any) -> str:
    """Seconds as a person reads a duration: 0.5 s, 42 s, 3 min 05 s, 2 h 07 min."""
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return _shown(seconds)
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)
