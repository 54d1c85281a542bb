"""MetricsLogger: what it writes, that it never blocks or raises, and its queries."""

from __future__ import annotations

import csv
import gc
import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from Utilities.metrics_logger import MetricsLogger

# A flush interval no test waits for: flushing is driven explicitly or by close().
NEVER = 3600.0


class FlakyStore:
    """Wraps a real store; the first ``failures`` batches raise like a dead database."""

    def __init__(self, store, failures: int) -> None:
        self.store, self.failures, self.calls = store, failures, 0

    def write_batch(self, **batch) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("database is down")
        self.store.write_batch(**batch)


class BlockedStore:
    """A store whose writes hang until released (a slow disk, a locked database)."""

    def __init__(self, store) -> None:
        self.store, self.entered, self.release = store, threading.Event(), threading.Event()

    def write_batch(self, **batch) -> None:
        self.entered.set()
        self.release.wait()
        self.store.write_batch(**batch)


class SlowStore:
    """A store that answers, slowly: every batch takes ``seconds_per_batch`` (a slow disk;
    the sleep stands for the disk, it synchronises nothing)."""

    def __init__(self, store, seconds_per_batch: float) -> None:
        self.store, self.seconds, self.started = store, seconds_per_batch, threading.Event()

    def write_batch(self, **batch) -> None:
        self.started.set()
        time.sleep(self.seconds)
        self.store.write_batch(**batch)


@pytest.fixture()
def run_id(store) -> str:
    return store.create_run(name="agent", model_type="ppo")


def test_everything_logged_reaches_the_store(store, run_id: str) -> None:
    with MetricsLogger(store, run_id, flush_interval=NEVER) as metrics:
        for episode in range(1, 6):
            metrics.log_episode(episode, reward=float(episode), steps=100, win=episode % 2 == 1)
        metrics.log_update(loss=0.5, entropy=1.1)
        metrics.log_update(loss=0.25, entropy=1.0)
        metrics.log_trade(side="long", price=101.5, pnl=np.float64(2.5))
        metrics.log_decision(action="Buy", probabilities=[0.1, 0.8, 0.1])
        metrics.log_checkpoint("Models/x/ckpt_2.pt", step=2048, reward=3.0)
        metrics.log_alert("warning", "Slow learning", "no improvement")
        metrics.log_message("done")
    series = store.metric_series(run_id, "episode/reward")
    assert [(p["step"], p["value"]) for p in series] == [(e, float(e)) for e in range(1, 6)]
    assert [p["value"] for p in store.metric_series(run_id, "train/loss")] == [0.5, 0.25]
    assert [p["value"] for p in store.metric_series(run_id, "episode/win")] == [1, 0, 1, 0, 1]
    events = store.events_after(0, run_id=run_id)
    assert [e["kind"] for e in events] == ["status"] + ["episode"] * 5 + [
        "trade", "decision", "checkpoint", "alert", "log"]
    assert events[6]["payload"] == {"side": "long", "price": 101.5, "pnl": 2.5}
    assert events[8]["payload"]["path"] == "Models/x/ckpt_2.pt"
    assert store.get_run(run_id)["heartbeat_at"] is not None


def test_encoded_episode_payloads_are_the_text_the_store_makes_of_the_record(
        any_store) -> None:
    # The writer encodes a plain episode record itself (EncodedPayload); the stored JSON
    # text must be what write_batch makes of the same dict: NaN and infinities as null,
    # and a length past 64 bits (which orjson refuses) through the dict path.
    from sqlalchemy import text

    from Utilities.run_store import json_text
    from Utilities.serialization import to_plain

    calls = [(1, 1.5, 200, True), (2, math.nan, 10, False), (3, math.inf, None, None),
             (4, -0.0, 5, None), (5, 1e300, 2**70, True)]
    store = any_store
    run_id = store.create_run(name="agent", model_type="ppo")
    with MetricsLogger(store, run_id, flush_interval=NEVER) as metrics:
        for episode, reward, steps, win in calls:
            metrics.log_episode(episode, reward=reward, steps=steps, win=win)
        records = [dict(e) for e in metrics._episodes]
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT payload FROM events WHERE run_id = :run AND "
                                   "kind = 'episode' ORDER BY seq"), {"run": run_id}).all()
    texts = [row[0] if isinstance(row[0], str) else json.dumps(row[0]) for row in stored]
    assert [json.loads(t) for t in texts] == [to_plain(record) for record in records]
    if store.engine.dialect.name == "sqlite":  # the very text (PostgreSQL re-renders JSON)
        assert texts == [json_text(to_plain(record)) for record in records]


def test_an_episode_is_stored_as_the_record_it_keeps(store, run_id: str) -> None:
    # log_episode queues one compact item; the writer makes its metric rows and its
    # event. They must be what the in-memory record says, in logging order, between
    # the other calls' rows.
    with MetricsLogger(store, run_id, flush_interval=NEVER) as metrics:
        metrics.log_episode(7, reward=np.float32(1.5), steps=np.int64(30), win=False,
                            pnl=np.float64(-2.25), trades=3)
        metrics.log_update(loss=0.5)
        metrics.log_trade(side="short", pnl=1.0)
        metrics.log_episode(8, reward=2, win=True)  # no steps, no extras
        metrics.log_metrics(8, prefix="eval", score=0.75)
        records = [dict(e) for e in metrics._episodes]
    assert records == [
        {"episode": 7, "reward": 1.5, "pnl": -2.25, "trades": 3, "steps": 30, "win": False},
        {"episode": 8, "reward": 2.0, "win": True}]
    for key, expected in {"episode/reward": [(7, 1.5), (8, 2.0)],
                          "episode/pnl": [(7, -2.25)], "episode/trades": [(7, 3.0)],
                          "episode/steps": [(7, 30.0)], "episode/win": [(7, 0.0), (8, 1.0)],
                          "train/loss": [(1, 0.5)], "eval/score": [(8, 0.75)]}.items():
        assert [(p["step"], p["value"]) for p in store.metric_series(run_id, key)] == expected
    # An episode's rows share one wall time, the episode event's.
    events = store.events_after(0, run_id=run_id)[1:]  # after the run's 'status'
    assert [e["kind"] for e in events] == ["episode", "trade", "episode"]
    assert [e["payload"] for e in events] == [records[0], {"side": "short", "pnl": 1.0},
                                              records[1]]
    first = {store.metric_series(run_id, key)[0]["wall_time"]
             for key in ("episode/reward", "episode/pnl", "episode/steps", "episode/win")}
    assert first == {events[0]["wall_time"]}


def test_a_backlog_is_invisible_to_the_cyclic_gc(store, run_id: str) -> None:
    # Queued items hold only plain values, so a young collection untracks them: a
    # million-episode backlog adds nothing to the full collections a training pays for.
    # (An item holding a dict, as queued before, stays tracked: 10,000 objects here.)
    metrics = MetricsLogger(store, run_id, flush_interval=NEVER)
    gc.collect()
    before = len(gc.get_objects())
    for episode in range(10_000):
        metrics.log_episode(episode, reward=1.0, steps=10, win=True, pnl=0.5)
        metrics.log_trade(side="long", price=100.0)
    gc.collect()
    assert len(gc.get_objects()) - before < 1_000
    assert metrics.get_statistics()["queued"] == 10_000 * 6
    metrics.close()
    assert len(store.metric_series(run_id, "episode/pnl")) == 10_000


def test_the_background_thread_writes_without_close(store, run_id: str) -> None:
    class Recording:
        def __init__(self) -> None:
            self.wrote = threading.Event()

        def write_batch(self, **batch) -> None:
            store.write_batch(**batch)
            if batch["metrics"]:
                self.wrote.set()

    recording = Recording()
    metrics = MetricsLogger(recording, run_id, flush_interval=0.01)
    metrics.log_episode(1, reward=1.0)
    flushed = recording.wrote.wait(30)  # an event, not a sleep: set by the writer thread
    assert flushed and store.metric_series(run_id, "episode/reward")[0]["value"] == 1.0
    metrics.close()


def test_logging_never_waits_for_a_slow_store(store, run_id: str) -> None:
    blocked = BlockedStore(store)
    metrics = MetricsLogger(blocked, run_id, flush_interval=0.001)
    metrics.log_episode(0, reward=0.0)
    assert blocked.entered.wait(30), "writer never started"
    for episode in range(1, 1001):  # the writer is stuck; these must still return at once
        metrics.log_episode(episode, reward=float(episode))
    assert metrics.get_statistics()["episodes"] == 1001
    blocked.release.set()
    metrics.close()
    assert len(store.metric_series(run_id, "episode/reward")) == 1001


def test_store_failures_are_counted_and_nothing_is_lost(store, run_id: str) -> None:
    flaky = FlakyStore(store, failures=2)
    metrics = MetricsLogger(flaky, run_id, flush_interval=NEVER)
    metrics.log_episode(1, reward=1.0)
    assert metrics.flush() is False
    metrics.log_episode(2, reward=2.0)
    assert metrics.flush() is False
    stats = metrics.get_statistics()
    assert stats["write_failures"] == 2 and "database is down" in stats["last_error"]
    assert stats["queued"] == 4  # two metric rows + two events, kept for retry
    metrics.close()
    assert [p["value"] for p in store.metric_series(run_id, "episode/reward")] == [1.0, 2.0]
    assert metrics.get_statistics()["queued"] == 0


def test_a_dead_store_cannot_exhaust_memory(store, run_id: str) -> None:
    metrics = MetricsLogger(FlakyStore(store, failures=10**9), run_id, flush_interval=NEVER,
                            max_pending=50)
    for episode in range(100):
        metrics.log_episode(episode, reward=1.0)
    metrics.flush()
    stats = metrics.get_statistics()
    assert stats["queued"] == 50 and stats["dropped"] == 150
    metrics.close()  # logs an error, does not raise


def test_a_store_that_answers_slowly_loses_nothing_and_says_it_is_behind(
        store, run_id: str, caplog) -> None:
    # More rows wait than max_pending, but the store answers: nothing may be dropped.
    metrics = MetricsLogger(store, run_id, flush_interval=NEVER, max_pending=50)
    for episode in range(100):
        metrics.log_episode(episode, reward=float(episode))
    with caplog.at_level("WARNING", logger="Utilities.metrics_logger"):
        assert metrics.flush() is True
    stats = metrics.get_statistics()
    assert stats["dropped"] == 0 and stats["behind_peak"] == 200  # 100 metrics + 100 events
    assert "falling behind: 200 rows waiting" in caplog.text
    assert "unreachable" not in caplog.text
    metrics.close()
    assert len(store.metric_series(run_id, "episode/reward")) == 100


def test_a_store_that_comes_back_stops_the_shedding(store, run_id: str) -> None:
    metrics = MetricsLogger(FlakyStore(store, failures=1), run_id, flush_interval=NEVER,
                            max_pending=50)
    for episode in range(40):
        metrics.log_episode(episode, reward=1.0)
    assert metrics.flush() is False  # down: 80 rows, the oldest 30 shed
    assert metrics.get_statistics()["dropped"] == 30
    assert metrics.flush() is True   # back
    for episode in range(40, 100):
        metrics.log_episode(episode, reward=1.0)
    assert metrics.flush() is True
    assert metrics.get_statistics()["dropped"] == 30  # nothing more once it answers
    metrics.close()
    # The loss is on the run's record (its page shows alerts), said once.
    alerts = [e["payload"] for e in store.events_after(0, run_id=run_id, kinds=["alert"])]
    assert [(a["title"], a["dropped"]) for a in alerts] == [("metrics lost", 30)]


def test_queries(store, run_id: str) -> None:
    metrics = MetricsLogger(None)
    for episode, reward in enumerate([3.0, 9.0, -2.0, 5.0], start=1):
        metrics.log_episode(episode, reward=reward, win=reward > 0, sharpe=reward / 10)
    assert metrics.get_latest_episode()["episode"] == 4
    assert metrics.get_best_episode()["episode"] == 2
    assert metrics.get_best_episode("sharpe")["reward"] == 9.0
    assert metrics.get_best_episode("missing") is None
    assert metrics.get_smoothed_metric("reward", 2) == pytest.approx(1.5)
    assert metrics.get_smoothed_metric("nothing") is None
    stats = metrics.get_statistics()
    assert stats["episodes"] == 4 and stats["best_reward"] == 9.0
    assert stats["win_rate"] == pytest.approx(0.75)
    assert stats["mean_reward_last_50"] == pytest.approx(3.75)


def test_non_numeric_metric_fails_in_the_callers_frame() -> None:
    metrics = MetricsLogger(None)
    with pytest.raises(TypeError, match="metric 'train/q_values' must be a number"):
        metrics.log_update(q_values=[1.0, 2.0])


def test_nan_is_stored_as_missing(store, run_id: str) -> None:
    with MetricsLogger(store, run_id, flush_interval=NEVER) as metrics:
        metrics.log_update(loss=float("nan"))
        metrics.log_trade(pnl=float("inf"))
    assert store.metric_series(run_id, "train/loss")[0]["value"] is None
    assert store.events_after(0, run_id=run_id, kinds=["trade"])[0]["payload"] == {"pnl": None}


def test_save_metrics_json_and_csv(tmp_path: Path) -> None:
    metrics = MetricsLogger(None, output_dir=tmp_path)
    metrics.log_episode(1, reward=1.5, steps=10)
    metrics.log_episode(2, reward=2.5, steps=12, sharpe=0.3)
    body = json.loads(metrics.save_metrics("json").read_text())
    assert [e["reward"] for e in body["episodes"]] == [1.5, 2.5]
    assert body["statistics"]["best_episode"] == 2
    with metrics.save_metrics("csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows[1] == {"episode": "2", "reward": "2.5", "steps": "12", "sharpe": "0.3"}
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        metrics.save_metrics("xml")


def test_close_is_idempotent_and_writes_the_export(tmp_path: Path, store, run_id: str) -> None:
    metrics = MetricsLogger(store, run_id, output_dir=tmp_path, flush_interval=NEVER)
    metrics.log_episode(1, reward=1.0)
    metrics.close()
    metrics.close()
    assert (tmp_path / f"{run_id}.json").is_file()


def test_a_store_needs_a_run_id(store) -> None:
    with pytest.raises(ValueError, match="run_id"):
        MetricsLogger(store)


def test_arrays_and_odd_payloads_are_written_not_fatal(store, run_id: str) -> None:
    """Review finding: an array killed the writer; a datetime blocked every later write."""
    from datetime import datetime

    metrics = MetricsLogger(store, run_id, flush_interval=NEVER)
    metrics.log_decision(action=1, probabilities=np.array([0.2, 0.3, 0.5]))
    metrics.log_trade(at=datetime(2024, 1, 1), price=np.float32(1.5))
    metrics.log_episode(1, reward=1.0)
    assert metrics.flush() is True
    metrics.close()
    payloads = [e["payload"] for e in store.events_after(0, run_id=run_id)[1:]]
    assert payloads[0] == {"action": 1, "probabilities": [0.2, 0.3, 0.5]}
    assert payloads[1] == {"at": "2024-01-01T00:00:00", "price": 1.5}
    assert metrics.get_statistics()["write_failures"] == 0


def test_the_writer_thread_survives_an_unexpected_error(store, run_id: str) -> None:
    class Exploding:
        def __init__(self) -> None:
            self.calls, self.recovered = 0, threading.Event()

        def write_batch(self, **batch) -> None:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("bug in a store adapter")
            store.write_batch(**batch)
            self.recovered.set()

    exploding = Exploding()
    metrics = MetricsLogger(exploding, run_id, flush_interval=0.01)
    metrics.log_episode(1, reward=1.0)
    assert exploding.recovered.wait(30), "the writer died after the first error"
    metrics.close()
    assert metrics.get_statistics()["write_failures"] == 1
    assert len(store.metric_series(run_id, "episode/reward")) == 1


def test_memory_only_logger_queues_nothing() -> None:
    metrics = MetricsLogger(None, history=10)
    for episode in range(1000):
        metrics.log_episode(episode, reward=1.0)
    assert len(metrics._queue) == 0 and metrics.get_statistics()["episodes"] == 10


def test_metrics_logged_after_close_are_counted_not_queued(store, run_id: str) -> None:
    metrics = MetricsLogger(store, run_id, flush_interval=NEVER)
    metrics.close()
    metrics.log_episode(1, reward=1.0)
    assert metrics.get_statistics()["after_close"] == 2  # one metric row + one event
    assert len(metrics._queue) == 0


def test_close_gives_up_on_a_hung_store(store, run_id: str) -> None:
    blocked = BlockedStore(store)
    metrics = MetricsLogger(blocked, run_id, flush_interval=0.001, close_timeout=0.05)
    metrics.log_episode(1, reward=1.0)
    assert blocked.entered.wait(30)
    metrics.close()  # returns although the writer is stuck
    assert metrics._thread.is_alive()
    blocked.release.set()
    metrics._thread.join(30)


def test_close_waits_for_a_slow_store_that_keeps_writing(store, run_id: str) -> None:
    # A backlog that takes longer than close_timeout to write, but makes progress all the
    # time (a tight loop's million episodes into a healthy store), is written whole.
    slow = SlowStore(store, seconds_per_batch=0.02)
    metrics = MetricsLogger(slow, run_id, close_timeout=0.5, batch_rows=20)
    for episode in range(400):  # 800 rows: 40 batches, 0.8 s of writing
        metrics.log_episode(episode, reward=float(episode))
    assert slow.started.wait(30), "writer never started"
    metrics.close()
    assert not metrics._thread.is_alive()  # close() waited for the writer to finish
    stats = metrics.get_statistics()
    assert stats["dropped"] == 0 and stats["queued"] == 0 and stats["written_metrics"] == 400
    assert len(store.metric_series(run_id, "episode/reward")) == 400


def test_series_are_keyed_by_full_name() -> None:
    metrics = MetricsLogger(None)
    metrics.log_episode(1, reward=10.0, win=True)
    metrics.log_update(win=0.0, loss=2.0)
    metrics.log_metrics(1, prefix="eval", reward=-5.0)
    stats = metrics.get_statistics()
    assert stats["win_rate"] == 1.0 and stats["mean_reward_last_50"] == 10.0
    assert metrics.get_smoothed_metric("eval/reward") == -5.0
    assert metrics.get_smoothed_metric("loss") == 2.0


class Beats:
    """Wraps a real store; records the heartbeats of every batch."""

    def __init__(self, store) -> None:
        self.store, self.heartbeats = store, []

    def write_batch(self, **batch) -> None:
        self.heartbeats.append(list(batch.get("heartbeats", ())))
        self.store.write_batch(**batch)


def test_the_run_is_heartbeat_every_interval_and_not_in_between(store, run_id: str) -> None:
    beats = Beats(store)
    metrics = MetricsLogger(beats, run_id, flush_interval=NEVER, heartbeat_interval=3600)
    metrics.log_update(loss=1.0)
    metrics.flush()  # the first write beats at once
    metrics.log_update(loss=2.0)
    metrics.flush()  # within the interval: rows only
    assert metrics.flush() is True  # nothing queued, no beat due: no write at all
    assert beats.heartbeats == [[run_id], []]
    assert metrics.get_statistics()["flushes"] == 2
    metrics.heartbeat_interval = 1e-9
    metrics.flush()  # a beat alone is written
    assert beats.heartbeats[-1] == [run_id]
    metrics.close()


def test_a_logger_whose_run_is_beaten_elsewhere_never_beats(store, run_id: str,
                                                            monkeypatch) -> None:
    monkeypatch.setenv("RUN_HEARTBEAT_SECONDS", "0.5")
    assert MetricsLogger(None).heartbeat_interval == 0.5  # the setting's default
    beats = Beats(store)
    metrics = MetricsLogger(beats, run_id, flush_interval=NEVER, heartbeat_interval=math.inf)
    metrics.log_update(loss=1.0)
    metrics.close()
    assert beats.heartbeats == [[]]
    with pytest.raises(ValueError, match="heartbeat_interval"):
        MetricsLogger(None, heartbeat_interval=0)


def test_an_idle_writer_thread_writes_only_heartbeats(store, run_id: str) -> None:
    class Signalling(Beats):
        def __init__(self, store) -> None:
            super().__init__(store)
            self.wrote = threading.Event()

        def write_batch(self, **batch) -> None:
            super().write_batch(**batch)
            if len(self.heartbeats) >= 3:
                self.wrote.set()

    signalling = Signalling(store)
    metrics = MetricsLogger(signalling, run_id, flush_interval=0.001, heartbeat_interval=0.01)
    assert signalling.wrote.wait(30)
    metrics.close()
    assert all(beat == [run_id] for beat in signalling.heartbeats)  # beats, no empty writes


# ------------------------------------------------------------ the seed's calls (issue 15)


def test_seed_episode_fields_positional_and_by_name(store, run_id: str) -> None:
    with MetricsLogger(store, run_id, flush_interval=NEVER) as metrics:
        metrics.log_episode(1, 10.0, 0.5)  # the seed's log_episode(episode, profit, sharpe)
        metrics.log_episode(2, profit=20.0, drawdown=0.1, num_trades=4, custom=1.5)
        metrics.log_episode(3, reward=1.0, steps=10, win=True)  # the trainers' call as before
    latest = store.latest_metrics(run_id)
    assert {k: (v["step"], v["value"]) for k, v in latest.items()} == {
        "episode/profit": (2, 20.0), "episode/sharpe": (1, 0.5), "episode/drawdown": (2, 0.1),
        "episode/num_trades": (2, 4.0), "episode/custom": (2, 1.5), "episode/reward": (3, 1.0),
        "episode/steps": (3, 10.0), "episode/win": (3, 1.0)}
    # Profit without a reward is the episode's reward too (the run page's P/L chart).
    assert [p["value"] for p in store.metric_series(run_id, "episode/reward")] == [10.0, 20.0,
                                                                                  1.0]
    events = [e["payload"] for e in store.events_after(0, run_id=run_id, kinds=["episode"])]
    assert events == [{"episode": 1, "reward": 10.0, "profit": 10.0, "sharpe": 0.5},
                      {"episode": 2, "reward": 20.0, "profit": 20.0, "drawdown": 0.1,
                       "num_trades": 4, "custom": 1.5},
                      {"episode": 3, "reward": 1.0, "steps": 10, "win": True}]
    assert metrics.get_statistics()["best_profit"] == 20.0
    assert metrics.get_statistics()["written_metrics"] == 11


def test_a_bad_seed_profit_is_named_and_leaves_no_trace(store, run_id: str) -> None:
    with MetricsLogger(store, run_id, flush_interval=NEVER) as metrics, \
            pytest.raises(TypeError, match="'episode/profit' must be a number"):
        metrics.log_episode(1, "lots")
    assert metrics.get_best_episode("reward") is None
    assert metrics.get_smoothed_metric("episode/reward") is None
    assert store.latest_metrics(run_id) == {}


def test_log_model_metrics_summarises_lists_and_flattens_dicts(store, run_id: str) -> None:
    import torch

    with MetricsLogger(store, run_id, flush_interval=NEVER) as metrics:
        metrics.log_model_metrics(0.5, [1.0, 2.0, 3.0], {"mean": 0.01, "layer": {"norm": 2}},
                                  weights={"fc1": torch.tensor([1.0, 3.0])},
                                  value=np.float32(0.25), empty=[])
        metrics.log_model_metrics(loss=0.4, q_values=torch.tensor(7.0))
    latest = {k: v["value"] for k, v in store.latest_metrics(run_id).items()}
    assert latest == pytest.approx({
        "train/loss": 0.4, "train/q_values_mean": 2.0, "train/q_values_std": (2 / 3) ** 0.5,
        "train/q_values_min": 1.0, "train/q_values_max": 3.0, "train/q_values": 7.0,
        "train/gradients_mean": 0.01, "train/gradients_layer_norm": 2.0,
        "train/weights_fc1_mean": 2.0, "train/weights_fc1_std": 1.0,
        "train/weights_fc1_min": 1.0, "train/weights_fc1_max": 3.0, "train/value": 0.25})
    assert store.latest_metrics(run_id)["train/loss"]["step"] == 2
    with pytest.raises(TypeError, match="metric 'train/q_values' must be numbers"):
        metrics.log_model_metrics(q_values=["a", "b"])


def test_seed_constructor_records_its_own_run(database_url: str, store, tmp_path: Path) -> None:
    with MetricsLogger(experiment_name="sweep-1", database_url=database_url,
                       output_dir=tmp_path, buffer_size=100, auto_save_interval=50,
                       enable_async=True, config={"lr": 0.1}) as metrics:
        metrics.log_episode(1, profit=3.0)
    run = store.get_run(metrics.run_id)
    assert (run["name"], run["experiment"], run["model_type"], run["config"], run["status"]) == (
        "sweep-1", "sweep-1", "experiment", {"lr": 0.1}, "completed")
    assert (tmp_path / f"{metrics.run_id}.json").is_file()


def test_seed_constructor_without_a_store_uses_database_url(monkeypatch, database_url: str,
                                                            store) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    metrics = MetricsLogger("positional-name", enable_async=False, flush_interval=NEVER)
    metrics.log_episode(1, 2.0)  # written before the call returns: no flush, no close
    assert store.latest_metrics(metrics.run_id)["episode/profit"]["value"] == 2.0
    assert store.get_run(metrics.run_id)["experiment"] == "positional-name"
    metrics.close()
    assert store.get_run(metrics.run_id)["status"] == "completed"


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"buffer_size": 0}, ValueError, "buffer_size must be a whole number >= 1; got 0"),
    ({"auto_save_interval": 2.5}, ValueError, "auto_save_interval must be a whole number"),
    ({"enable_async": "yes"}, TypeError, "enable_async must be True or False"),
    ({"experiment_name": "  "}, ValueError, "experiment_name must be a non-empty string"),
])
def test_seed_constructor_refuses_bad_arguments(kwargs, error, message, database_url,
                                                store) -> None:
    with pytest.raises(error, match=message):
        MetricsLogger(database_url=database_url, **kwargs)


def test_an_experiment_name_given_twice_is_refused() -> None:
    with pytest.raises(TypeError, match="experiment name given twice"):
        MetricsLogger("a", experiment_name="b")


@pytest.mark.parametrize(("body", "status", "error"), [
    ("pass", "completed", None),
    ("raise SystemExit(0)", "completed", None),
    ("raise ValueError('bad data')", "failed", "ValueError: bad data"),
])
def test_a_script_that_never_closes_its_logger(tmp_path: Path, body: str, status: str,
                                               error: str | None) -> None:
    """The seed's minimal example never calls close(): the interpreter's exit writes the
    last rows and ends the run (failed when the script died of an exception)."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/exit.db"
    script = ("from Utilities.metrics_logger import MetricsLogger\n"
              "logger = MetricsLogger('no-close', flush_interval=3600)\n"
              "for episode in range(500):\n"
              "    logger.log_episode(episode, 1.0, 0.5)\n" + body + "\n")
    env = {**__import__("os").environ, "DATABASE_URL": url}
    subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent,
                   env=env, capture_output=True, timeout=60, check=False)
    from Utilities.run_store import RunStore

    store = RunStore(url)
    [run] = store.list_runs(name="no-close")[0]
    assert (run["status"], run["error"]) == (status, error)
    stats = store.series_statistics([run["run_id"]])[run["run_id"]]
    assert stats["episode/profit"]["points"] == 500 and stats["episode/sharpe"]["points"] == 500
    store.close()
