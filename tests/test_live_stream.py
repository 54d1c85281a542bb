"""The run's live stream (``GET /api/training-runs/<id>/events``): what it sends, resuming
by ``Last-Event-ID`` with no gap and no repeat, one tail per run, the caps, bad input."""

from __future__ import annotations

import itertools

import pytest

from tests.helpers.sse import Stream
from web.live_stream import LiveHub
from web.live_tail import Cursor
from web.store import get_store

WALL = 1.7e9


@pytest.fixture()
def live(app):
    """The app's hub with quick polls and keep-alives, and a run to watch."""
    hub = LiveHub({"LIVE_POLL_SECONDS": 0.02, "LIVE_KEEPALIVE_SECONDS": 0.2,
                   "LIVE_MAX_VIEWERS_PER_RUN": 3, "LIVE_MAX_VIEWERS": 5, "LIVE_BACKLOG": 4})
    app.extensions["live_hub"] = hub
    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="live", model_type="ppo")
    yield hub, store, run_id
    hub.close()


def write(store, run_id: str, episodes: range) -> None:
    """Per episode: two metric points and one trade event, in one batch."""
    for e in episodes:
        store.write_batch(
            metrics=[(run_id, "episode/reward", e, float(e), WALL + e),
                     (run_id, "episode/steps", e, 10.0, WALL + e)],
            events=[(run_id, "trade", {"episode": e, "side": "BUY"}, WALL + e)])


def received(messages: list[dict]) -> tuple[list[int], list[int]]:
    """(trade episodes, reward steps) in the order they came."""
    trades = [m["data"]["data"]["episode"] for m in messages if m["event"] == "trade"]
    steps = [p["step"] for m in messages if m["event"] == "training_metrics"
             for p in m["data"]["points"].get("episode/reward", [])]
    return trades, steps


def read_until(stream: Stream, episodes: int, before: list[dict] | None = None) -> list[dict]:
    """Trade and metric messages until, with ``before``, episodes 0..episodes-1 of both
    have come (a bounded number of messages)."""
    wanted, messages = (list(range(episodes)), list(range(episodes))), []
    while received((before or []) + messages) != wanted:
        messages += stream.collect(1, {"trade", "training_metrics"})
        assert len(messages) <= 4 * episodes + 4
    return messages


def test_a_viewer_gets_what_is_written_after_it_connected_in_order(client, live):
    hub, store, run_id = live
    write(store, run_id, range(0, 3))  # before: not sent to a viewer without a cursor
    stream = Stream(client, f"/api/training-runs/{run_id}/events")
    assert stream.status == 200
    assert stream.response.mimetype == "text/event-stream"
    first = stream.collect(1)[0]
    assert first["event"] == "connection_status" and first["data"]["status"] == "running"
    write(store, run_id, range(3, 8))
    messages = []
    while received(messages) != (list(range(3, 8)), list(range(3, 8))):
        messages += stream.collect(1, {"trade", "training_metrics"})
        assert len(messages) <= 10
    cursors = [Cursor.parse(m["id"]) for m in messages]
    assert all(b.covers(a) and a != b for a, b in itertools.pairwise(cursors))
    assert len(hub.tails()) == 1
    stream.close()
    assert hub.viewers == 0


def test_a_reconnect_resumes_with_no_gap_and_no_repeat(client, live):
    """From every id the stream sent, including ones older than the tail keeps (its
    backlog is 4 frames here) and with other writes landing in between."""
    _hub, store, run_id = live
    stream = Stream(client, f"/api/training-runs/{run_id}/events")
    stream.collect(1)
    write(store, run_id, range(0, 12))
    messages = read_until(stream, 12)
    stream.close()
    write(store, run_id, range(12, 15))
    for index, message in enumerate(messages):
        again = Stream(client, f"/api/training-runs/{run_id}/events",
                       **{"Last-Event-ID": message["id"]})
        read_until(again, 15, messages[:index + 1])
        again.close()


def test_a_cursor_inside_a_read_gets_only_the_rest_of_it(client, live):
    """A snapshot's cursor can fall between the points one poll read at once."""
    _, store, run_id = live
    stream = Stream(client, f"/api/training-runs/{run_id}/events")
    stream.collect(1)
    store.write_batch(metrics=[(run_id, "episode/reward", e, float(e), WALL + e)
                               for e in range(6)])
    [message] = stream.collect(1, {"training_metrics"})
    assert [p["step"] for p in message["data"]["points"]["episode/reward"]] == list(range(6))
    stream.close()
    end = Cursor.parse(message["id"])
    middle = Cursor(end.seq, end.point - 2)  # the last two points are after it
    again = Stream(client, f"/api/training-runs/{run_id}/events?last_event_id={middle.text()}")
    [rest] = again.collect(1, {"training_metrics"})
    assert [p["step"] for p in rest["data"]["points"]["episode/reward"]] == [4, 5]
    assert rest["id"] == message["id"]
    again.close()


def test_types_pick_messages_and_a_finished_run_ends_the_stream(client, live):
    _, store, run_id = live
    stream = Stream(client, f"/api/training-runs/{run_id}/events?types=training_status")
    assert stream.collect(1)[0]["data"]["types"] == ["training_status"]
    write(store, run_id, range(3))
    store.set_status(run_id, "completed")
    rest = [m for m in stream.messages() if "event" in m]
    assert [m["event"] for m in rest] == ["training_status", "end"]
    assert rest[0]["data"]["data"] == {"status": "completed", "previous": "running"}


def test_a_quiet_stream_sends_keep_alives(client, live):
    _, _, run_id = live
    stream = Stream(client, f"/api/training-runs/{run_id}/events")
    comments = (m for m in stream.messages() if m.get("comment") == "keep-alive")
    assert next(comments)["comment"] == "keep-alive"
    stream.close()


def test_viewers_share_one_tail_and_the_caps_answer_503(client, live):
    hub, store, run_id = live
    streams = [Stream(client, f"/api/training-runs/{run_id}/events") for _ in range(3)]
    assert [s.status for s in streams] == [200, 200, 200]
    full = client.get(f"/api/training-runs/{run_id}/events")
    assert full.status_code == 503 and "LIVE_MAX_VIEWERS_PER_RUN=3" in full.get_json()["error"]
    assert len(hub.tails()) == 1
    other = store.create_run(name="other", model_type="ppo")
    more = [Stream(client, f"/api/training-runs/{other}/events") for _ in range(2)]
    assert [s.status for s in more] == [200, 200]
    full = client.get(f"/api/training-runs/{other}/events")
    assert full.status_code == 503 and "LIVE_MAX_VIEWERS=5" in full.get_json()["error"]
    write(store, run_id, range(2))
    for stream in streams:  # one tail's frames reach every viewer
        assert received(stream.collect(2, {"trade"}))[0] == [0, 1]
    for stream in streams + more:
        stream.close()
    assert hub.viewers == 0
    assert client.get(f"/api/training-runs/{run_id}/events").status_code == 200


@pytest.mark.parametrize(("url", "headers", "status", "field"), [
    ("/api/training-runs/{missing}/events", {}, 404, "run_id"),
    ("/api/training-runs/not-a-run/events", {}, 404, "run_id"),
    ("/api/training-runs/{run}/events", {"Last-Event-ID": "12"}, 400, "Last-Event-ID"),
    ("/api/training-runs/{run}/events", {"Last-Event-ID": "-1-2"}, 400, "Last-Event-ID"),
    ("/api/training-runs/{run}/events?last_event_id=x-1", {}, 400, "last_event_id"),
    ("/api/training-runs/{run}/events?types=trade,nope", {}, 422, "types"),
])
def test_bad_requests_get_a_json_error_naming_the_field(client, live, url, headers, status,
                                                        field):
    hub, _, run_id = live
    missing = "00000000-0000-4000-8000-000000000000"
    reply = client.get(url.format(run=run_id, missing=missing), headers=headers)
    assert reply.status_code == status
    assert reply.get_json()["field"] == field
    assert hub.viewers == 0


def test_the_stream_resumes_with_no_gap_on_each_engine(engine_url, models_dir, tmp_path):
    from tests.helpers.apps import drop_all, make_app
    from web.live_stream import close_streams
    from web.store import close_store

    app = make_app(engine_url, models_dir, tmp_path)
    app.extensions["live_hub"] = LiveHub({"LIVE_POLL_SECONDS": 0.02,
                                          "LIVE_KEEPALIVE_SECONDS": 0.2, "LIVE_BACKLOG": 2})
    client = app.test_client()
    try:
        with app.app_context():
            store = get_store()
            run_id = store.create_run(name="engines", model_type="ppo")
        stream = Stream(client, f"/api/training-runs/{run_id}/events")
        stream.collect(1)
        write(store, run_id, range(0, 6))
        messages = read_until(stream, 6)
        stream.close()
        write(store, run_id, range(6, 9))  # while nobody watches
        again = Stream(client, f"/api/training-runs/{run_id}/events",
                       **{"Last-Event-ID": messages[2]["id"]})
        read_until(again, 9, messages[:3])
        again.close()
    finally:
        close_streams(app)
        with app.app_context():
            drop_all(get_store())
        close_store(app)
