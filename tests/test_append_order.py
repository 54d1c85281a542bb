"""A reader tailing the store ("everything after N") sees every appended event and metric
point exactly once and in order, while several writer processes append at once, on each
engine. On PostgreSQL sequence values are drawn at the insert and become visible at the
commit, so without the store's append lock a tailer could move past a row that commits
later (issue 14)."""

from __future__ import annotations

import multiprocessing

import pytest

WRITERS = 4
BATCHES = 150
EVENTS_PER_BATCH = 8
POINTS_PER_BATCH = 12


def append(url: str, run_id: str, writer: int) -> None:
    """One writer process: batches of events and points, each tagged (writer, index)."""
    from Utilities.run_store import RunStore

    store = RunStore(url)
    try:
        for batch in range(BATCHES):
            events = [(run_id, "log", {"writer": writer, "i": batch * EVENTS_PER_BATCH + i},
                       float(batch)) for i in range(EVENTS_PER_BATCH)]
            step = (batch * WRITERS + writer) * POINTS_PER_BATCH
            points = [(run_id, f"w{writer}", step + i, float(i), float(batch))
                      for i in range(POINTS_PER_BATCH)]
            store.write_batch(metrics=points, events=events, heartbeats=[run_id])
            if batch % 25 == 0:  # the session path appends too
                store.log_events(run_id, [("log", {"writer": writer, "extra": batch}, 0.0)])
    finally:
        store.close()


class Tail:
    """What a tailing reader collects, checking order as it goes."""

    def __init__(self, store, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.seq, self.point_id = 0, 0
        self.events: list[tuple] = []
        self.points: list[tuple] = []

    def poll(self) -> None:
        for event in self.store.events_after(self.seq, run_id=self.run_id, kinds=["log"]):
            assert event["seq"] > self.seq
            self.seq = event["seq"]
            payload = event["payload"]
            self.events.append((payload["writer"], payload.get("i"), payload.get("extra")))
        points, self.point_id = self.store.metric_points_after(self.run_id, self.point_id)
        for key, rows in points.items():
            self.points.extend((key, row["step"]) for row in rows)


@pytest.mark.slow
def test_a_tailing_reader_gets_every_append_once_in_order(any_store, engine_url):
    run_id = any_store.create_run(name="tail", model_type="ppo")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=append, args=(engine_url, run_id, w))
                 for w in range(WRITERS)]
    for process in processes:
        process.start()
    tail = Tail(any_store, run_id)
    while any(process.is_alive() for process in processes):
        tail.poll()
    for process in processes:
        process.join(timeout=300)
        assert process.exitcode == 0
    tail.poll()  # what committed after the last read while the writers ran

    expected = {(w, b * EVENTS_PER_BATCH + i, None) for w in range(WRITERS)
                for b in range(BATCHES) for i in range(EVENTS_PER_BATCH)}
    expected |= {(w, None, b) for w in range(WRITERS) for b in range(0, BATCHES, 25)}
    assert len(tail.events) == len(set(tail.events))  # nothing twice
    assert set(tail.events) == expected  # nothing skipped
    assert len(tail.points) == len(set(tail.points)) == WRITERS * BATCHES * POINTS_PER_BATCH
