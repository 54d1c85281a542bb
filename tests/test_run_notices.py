"""PostgreSQL's LISTEN/NOTIFY between processes: a write through one store wakes the live
tail of another store's process at once (its poll here would take ten minutes)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.helpers.apps import drop_all
from Utilities.run_notices import _PAYLOAD_BYTES, RunNotices, payloads
from Utilities.run_store import RunStore
from web.live_stream import LiveHub
from web.live_tail import Frame

WALL = 1.7e9


def test_payloads_name_every_run_once_within_the_limit():
    runs = [f"{i:08d}-0000-4000-8000-{i:012d}" for i in range(400)]
    found = payloads(runs + runs[:10])
    assert len(found) > 1 and all(len(p.encode()) < _PAYLOAD_BYTES for p in found)
    assert sorted(r for p in found for r in p.split(",")) == sorted(runs)
    assert payloads([]) == []


def next_frame(frames: Iterator[Frame | None], seconds: float = 10.0) -> Frame:
    """The next frame the tail sends (None are its keep-alives), or fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    for item in frames:
        if item is not None:
            return item
        assert time.monotonic() < deadline, "nothing came: the notice did not wake the tail"
    raise AssertionError("the stream ended")


@pytest.mark.parametrize("engine_url", ["postgresql"], indirect=True)
def test_another_processs_write_wakes_this_processs_tail(engine_url):
    writer, reader = RunStore(engine_url), RunStore(engine_url)  # two servers' stores
    hub = LiveHub({"LIVE_POLL_SECONDS": 600, "LIVE_KEEPALIVE_SECONDS": 0.2})
    try:
        run_id = writer.create_run(name="elsewhere", model_type="ppo")
        tail = hub.attach(reader, run_id, [])
        frames = tail.follow(tail.position(), keepalive_seconds=0.2)
        assert hub.notices is not None and hub.notices.listening.wait(10)
        for episode in (1, 2):  # the second after the tail's first read: only a notice
            writer.write_batch(metrics=[(run_id, "episode/reward", episode, 1.0, WALL)])
            got = next_frame(frames)
            assert got.type == "training_metrics" and f'"step":{episode}'.encode() in got.data
        writer.set_status(run_id, "completed")  # an event written by the ORM path
        assert next_frame(frames).type == "training_status"
        hub.detach(tail)
    finally:
        hub.close()
        drop_all(writer)
        reader.close()


def test_sqlite_needs_no_listener(tmp_path):
    store = RunStore(f"sqlite:///{tmp_path}/runs.db")
    hub = LiveHub({"LIVE_POLL_SECONDS": 0.05})
    try:
        hub.attach(store, store.create_run(name="local", model_type="ppo"), [])
        assert hub.notices is None
    finally:
        hub.close()
        store.close()


@pytest.mark.parametrize("engine_url", ["postgresql"], indirect=True)
def test_the_listener_reconnects_after_its_connection_dies_and_stops_at_once(engine_url):
    import threading

    import sqlalchemy as sa

    heard: list[str] = []
    arrived = threading.Event()

    def on_runs(runs: list[str]) -> None:
        heard.extend(runs)
        arrived.set()

    engine = sa.create_engine(engine_url)
    notices = RunNotices(engine, on_runs, retry_seconds=0.05, ping_seconds=0.2)
    try:
        assert notices.listening.wait(10)
        with engine.begin() as conn:  # the database drops the listening connection
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"),
                                {"pid": notices.backend_pid}).scalar()
        for attempt in range(100):  # a notice per try until the new connection hears one
            with engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_notify('galaxy_runs', :run)"),
                             {"run": f"run-{attempt}"})
            if arrived.wait(0.2):
                break
        assert heard and heard[0].startswith("run-")
    finally:
        started = time.monotonic()
        notices.stop()
        assert time.monotonic() - started < 0.5  # the select is interrupted, not waited out
        engine.dispose()
