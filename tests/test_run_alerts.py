"""The platform's alert rules applied from the run store (Utilities/run_alerts.py): what a
run's own metrics and status raise, recorded as the run's alert events."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from Utilities.alert_system import AlertSystem
from Utilities.metrics_logger import MetricsLogger
from Utilities.run_alerts import RunAlertWatcher, alert_lost_runs
from Utilities.run_store import RunStore


@pytest.fixture()
def store(tmp_path: Path) -> RunStore:
    return RunStore(f"sqlite:///{tmp_path}/runs.db")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def watcher(store: RunStore, run_id: str, clock=None, **config) -> RunAlertWatcher:
    alerts = AlertSystem({"throttle_seconds": 0, **config}, store=store, run_id=run_id)
    return RunAlertWatcher(store, run_id, alerts, stall_seconds=60,
                           **({"clock": clock} if clock else {}))


def alerts_of(store: RunStore, run_id: str) -> list[dict]:
    events = store.events_after(0, run_id=run_id)
    return [e["payload"] for e in events if e["kind"] == "alert"]


def rules(store: RunStore, run_id: str) -> list[str]:
    return [a["rule"] for a in alerts_of(store, run_id)]


def log(store: RunStore, run_id: str, rewards, updates=()) -> None:
    with MetricsLogger(store, run_id) as metrics:
        for episode, reward in enumerate(rewards, start=1):
            metrics.log_episode(episode, reward=reward, steps=10)
        for step, values in enumerate(updates, start=1):
            metrics.log_update(step=step, **values)


def test_a_planted_nan_in_an_episode_and_in_a_loss_is_critical(store) -> None:
    run_id = store.create_run(name="a", model_type="ppo")
    log(store, run_id, [1.0, math.nan, 2.0], [{"loss": 0.5}, {"loss": math.inf}])
    watch = watcher(store, run_id)
    watch.check()
    watch.alerts.flush()
    found = [(a["rule"], a["level"], a["message"].split(" is ")[0])
             for a in alerts_of(store, run_id)]
    assert ("non_finite", "critical", "reward") in found
    assert ("non_finite", "critical", "loss") in found


def test_a_run_that_stops_improving_is_warned_once(store) -> None:
    run_id = store.create_run(name="a", model_type="ppo")
    watch = watcher(store, run_id, thresholds={"no_improvement_episodes": 10})
    rewards = [1.0, 2.0, 3.0] + [0.0] * 40
    for start in range(0, len(rewards), 7):  # the watcher reads as the run writes
        with MetricsLogger(store, run_id) as metrics:
            for episode in range(start, min(start + 7, len(rewards))):
                metrics.log_episode(episode + 1, reward=rewards[episode])
        watch.check()
    watch.alerts.flush()
    warned = [a for a in alerts_of(store, run_id) if a["rule"] == "no_improvement"]
    assert len(warned) == 1 and warned[0]["data"]["best_episode"] == 3


def test_new_best_validation_and_training_complete(store) -> None:
    run_id = store.create_run(name="a", model_type="xgboost")
    log(store, run_id, [1.0, 5.0, 2.0],
        [{"val_loss": 0.9}, {"val_loss": 0.7}, {"val_loss": 0.8}, {"val_loss": 0.6}])
    store.set_status(run_id, "completed")
    watch = watcher(store, run_id)
    watch.stop()
    found = alerts_of(store, run_id)
    best = [(a["data"]["value"], a["data"]["previous"]) for a in found if a["rule"] == "new_best"]
    assert best == [(0.7, 0.9), (0.6, 0.7)]
    (complete,) = [a for a in found if a["rule"] == "training_complete"]
    assert complete["level"] == "info"
    assert (complete["data"]["total_episodes"], complete["data"]["best_profit"]) == (3, 5.0)


def test_a_quiet_live_run_is_marked_stalled_once(store) -> None:
    clock = Clock()
    run_id = store.create_run(name="a", model_type="ppo")
    watch = watcher(store, run_id, clock=clock)
    watch.check()
    clock.now += 30
    watch.check()
    assert rules(store, run_id) == []
    clock.now += 31
    watch.check()
    clock.now += 300
    watch.check()
    watch.alerts.flush()
    assert rules(store, run_id) == ["stalled"]


def test_a_killed_run_is_marked_lost_and_alerted_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    writer = RunStore(url)
    run_id = writer.create_run(name="killed", model_type="ppo")
    with writer.engine.begin() as conn:  # its trainer stopped beating long ago
        conn.exec_driver_sql("UPDATE runs SET heartbeat_at = '2000-01-01 00:00:00'")
    store = RunStore(url, lost_after=1)
    made = []

    def alerts_for(run: dict) -> AlertSystem:
        made.append(AlertSystem({}, store=store, run_id=run["run_id"]))
        return made[-1]

    assert alert_lost_runs(store, alerts_for, since=None) == [run_id]
    assert store.get_run(run_id)["status"] == "failed"
    (lost,) = alerts_of(store, run_id)
    assert (lost["level"], lost["title"], lost["rule"]) == ("critical", "Run lost", "run_failed")
    assert alert_lost_runs(store, alerts_for, since=None) == []  # told once, by the store
