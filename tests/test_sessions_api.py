"""The metrics server for outside trainers (web/sessions_api.py, issue 17): sessions,
ingest (one item, batches, idempotent retries, nothing half-written), history, the
stream, health and status, auth on and off with scoped tokens, CORS, 429, retention."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from tests.helpers.apps import drop_all, error_of, make_app, make_auth_app
from tests.helpers.sse import Stream
from Utilities.run_store_schema import utcnow
from Utilities.session_store import clean_expired
from web.auth_store import AuthStore
from web.live_stream import LiveHub, close_streams
from web.sessions_api import RateLimiter, RetentionCleaner
from web.store import close_store, get_store

API = "/api/training/sessions"
MISSING = "00000000-0000-4000-8000-000000000000"


def metric(episode: int, **fields) -> dict:
    return {"episode": episode, "current_reward": float(episode), "episode_length": 20,
            "win_rate": 50.0, "loss_value": 0.5, "timestamp": "2024-01-01T12:00:00Z",
            **fields}


def create(client, **fields) -> str:
    reply = client.post(API, json={"name": "cartpole", "algorithm": "PPO", **fields})
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["session_id"]


def points(app: Flask, session_id: str) -> dict[str, int]:
    with app.app_context():
        stats = get_store().series_statistics([session_id])[session_id]
    return {key: st["points"] for key, st in stats.items()}


def events(app: Flask, session_id: str, kind: str) -> list[dict]:
    with app.app_context():
        return [e for e in get_store().events_after(0, run_id=session_id, limit=10_000)
                if e["kind"] == kind]


# -------------------------------------------------------------------- sessions


def test_a_session_is_an_external_run_created_listed_updated_and_deleted(app, client):
    reply = client.post(API, json={"name": "cartpole", "algorithm": "DQN",
                                   "model_generation": 2, "total_episodes": 1000,
                                   "hyperparameters": {"lr": 0.001}, "tags": ["sb3"],
                                   "experiment": "e1", "description": "first"})
    assert reply.status_code == 201
    session = reply.get_json()
    sid = session["session_id"]
    assert session["run_id"] == sid and session["status"] == "running"
    assert (session["model_generation"], session["total_episodes"]) == (2, 1000)
    assert session["hyperparameters"] == {"lr": 0.001} and session["tags"] == ["sb3"]
    with app.app_context():
        run = get_store().get_run(sid)
    assert (run["model_type"], run["algorithm"], run["experiment"]) == ("external", "DQN", "e1")
    other = create(client, tags=["other"])
    listed = client.get(f"{API}?tag=sb3").get_json()
    assert listed["total"] == 1 and listed["sessions"][0]["session_id"] == sid
    assert client.get(f"{API}?limit=1&offset=1").get_json()["sessions"][0]["session_id"] \
        in {sid, other}
    assert client.get(f"{API}/{sid}").get_json()["name"] == "cartpole"

    reply = client.put(f"{API}/{sid}", json={"status": "paused", "notes": "n",
                                             "tags": ["a", "b"], "summary": {"best": 3}})
    assert reply.status_code == 200
    body = reply.get_json()
    assert (body["status"], body["notes"], body["tags"], body["summary"]) == (
        "paused", "n", ["a", "b"], {"best": 3})
    assert client.put(f"{API}/{sid}", json={"status": "failed", "error": "boom"}) \
        .get_json()["error"] == "boom"
    refused = error_of(client.put(f"{API}/{sid}", json={"status": "running"}), 409)
    assert refused["field"] == "status"
    assert client.get(f"{API}?status=failed").get_json()["total"] == 1

    assert client.delete(f"{API}/{other}").get_json() == {"deleted": other}  # a live one too
    assert client.get(f"{API}/{other}").status_code == 404
    assert client.get(f"/runs/{sid}").status_code == 200  # the run page shows it


def test_our_own_runs_are_not_sessions(app, client):
    with app.app_context():
        run_id = get_store().create_run(name="ppo", model_type="ppo")
    assert error_of(client.get(f"{API}/{run_id}"), 404)["field"] == "session_id"
    assert client.get(API).get_json()["total"] == 0


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), [
    ("post", API, {}, 422, "name"),
    ("post", API, {"name": ""}, 422, "name"),
    ("post", API, {"name": "x", "tags": "a"}, 422, "tags"),
    ("post", API, {"name": "x", "total_episodes": -1}, 422, "total_episodes"),
    ("post", API, {"name": "x", "hyperparameters": [1]}, 422, "hyperparameters"),
    ("post", API, {"name": "x", "colour": "red"}, 422, "colour"),
    ("put", f"{API}/{{sid}}", {"status": "done"}, 422, "status"),
    ("put", f"{API}/{{sid}}", {"summary": 3}, 422, "summary"),
    ("put", f"{API}/{{sid}}", {"owner": "me"}, 422, "owner"),
    ("get", f"{API}/{MISSING}", None, 404, "session_id"),
    ("get", f"{API}/not-an-id", None, 404, "session_id"),
    ("delete", f"{API}/{MISSING}", None, 404, "session_id"),
    ("get", f"{API}?status=sleeping", None, 422, "status"),
    ("get", f"{API}?limit=0", None, 422, "limit"),
    ("get", f"{API}/{{sid}}/history?type=nope", None, 422, "type"),
    ("get", f"{API}/{{sid}}/history?after=x", None, 400, "after"),
    ("get", f"{API}/{{sid}}/history?since=yesterday", None, 400, "since"),
    ("get", f"{API}/{{sid}}/stream?types=nope", None, 422, "types"),
    ("get", f"{API}/{MISSING}/stream", None, 404, "session_id"),
])
def test_bad_requests_get_a_json_error_naming_the_field(client, method, path, body, status,
                                                        field):
    sid = create(client)
    reply = getattr(client, method)(path.format(sid=sid), json=body)
    assert error_of(reply, status)["field"] == field


# ----------------------------------------------------------------------- ingest


def test_items_become_the_runs_series_and_events(app, client):
    sid = create(client)
    reply = client.post(f"{API}/{sid}/metrics", json=metric(7, epsilon=None))
    assert reply.get_json() == {"accepted": 1, "duplicate": False, "status": "running",
                                "control": None, "batch_id": None}
    assert points(app, sid) == {"episode/reward": 1, "episode/steps": 1,
                                "episode/win_rate": 1, "train/loss": 1}
    with app.app_context():
        latest = get_store().latest_metrics(sid)
    assert latest["episode/reward"]["step"] == 7 and latest["episode/steps"]["value"] == 20
    assert [e["payload"]["episode"] for e in events(app, sid, "episode")] == [7]

    decision = {"selected_action": "shoot", "action_probabilities": {"shoot": 0.4},
                "q_values": [1.2, 3.1], "state_values": 5.5, "confidence_score": 0.85}
    assert client.post(f"{API}/{sid}/bot_decision", json=decision).status_code == 200
    assert events(app, sid, "decision")[0]["payload"] == decision

    graph = {"graph_id": "reward_progress", "title": "Reward", "metrics": ["r"],
             "data_points": {"r": [{"timestamp": "2024-01-01T12:00:00Z", "value": 10.0},
                                   {"timestamp": "2024-01-01T12:01:00Z", "value": 12.5}]}}
    assert client.post(f"{API}/{sid}/graph_update", json=graph).status_code == 200
    graph["data_points"]["r"].append({"timestamp": "2024-01-01T12:02:00Z", "value": 13.0})
    assert client.post(f"{API}/{sid}/graph_update", json=graph).status_code == 200
    # The window sent again adds only its new point.
    assert points(app, sid)["graph/reward_progress/r"] == 3
    assert len(events(app, sid, "graph")) == 2


def test_the_run_pages_buttons_reach_the_trainer_in_the_ingest_reply(app, client):
    sid = create(client)
    assert client.post(f"/api/training-runs/{sid}/pause").status_code == 200
    reply = client.post(f"{API}/{sid}/metrics", json={"items": []}).get_json()
    assert (reply["accepted"], reply["control"]) == (0, "pause")
    assert client.put(f"{API}/{sid}", json={"status": "paused"}).status_code == 200
    assert client.post(f"{API}/{sid}/metrics", json={"items": []}).get_json()["control"] is None


def test_a_retried_batch_is_written_once(app, client):
    sid = create(client)
    batch = {"batch_id": "b-1", "items": [metric(e) for e in range(5)]}
    first = client.post(f"{API}/{sid}/metrics", json=batch).get_json()
    again = client.post(f"{API}/{sid}/metrics", json=batch).get_json()
    assert (first["accepted"], first["duplicate"]) == (5, False)
    assert (again["accepted"], again["duplicate"]) == (0, True)
    assert points(app, sid)["episode/reward"] == 5 and len(events(app, sid, "episode")) == 5
    # The same id in another session is another batch.
    other = create(client)
    assert client.post(f"{API}/{other}/metrics", json=batch).get_json()["accepted"] == 5
    status = client.get("/api/training/status").get_json()["ingest"]
    assert (status["items"], status["duplicates"]) == (10, 1)


def test_a_bad_item_refuses_the_whole_batch(app, client):
    sid = create(client)
    items = [metric(0), metric(1), {"episode": 2, "current_reward": "high"}]
    reply = client.post(f"{API}/{sid}/metrics", json={"batch_id": "x", "items": items})
    assert error_of(reply, 422)["field"] == "items[2].current_reward"
    assert points(app, sid) == {} and events(app, sid, "episode") == []
    # Nothing was recorded of the refused batch: its id is still free.
    assert client.post(f"{API}/{sid}/metrics",
                       json={"batch_id": "x", "items": items[:2]}).get_json()["accepted"] == 2


@pytest.mark.parametrize(("kind", "body", "field"), [
    ("metrics", {"current_reward": 1.0}, "episode"),
    ("metrics", {"episode": 1}, "current_reward"),
    ("metrics", {"episode": 1.5, "current_reward": 1}, "episode"),
    ("metrics", {"episode": 1, "current_reward": True}, "current_reward"),
    ("metrics", {"episode": 1, "current_reward": 1, "timestamp": "noon"}, "timestamp"),
    ("metrics", {"episode": 1, "current_reward": 1, "rewrad": 2}, "rewrad"),
    ("metrics", {"items": "all"}, "items"),
    ("metrics", {"items": [], "batch_id": "x" * 65}, "batch_id"),
    ("metrics", {"items": [], "batch": 1}, "batch"),
    ("metrics", {"items": [3]}, "items[0]"),
    ("bot_decision", {"q_values": [1]}, "selected_action"),
    ("bot_decision", {"selected_action": "a", "q_values": [1, "x"]}, "q_values[1]"),
    ("bot_decision", {"selected_action": "a", "action_probabilities": {"a": "p"}},
     "action_probabilities.a"),
    ("graph_update", {"data_points": {}}, "graph_id"),
    ("graph_update", {"graph_id": "g/h", "data_points": {}}, "graph_id"),
    ("graph_update", {"graph_id": "g"}, "data_points"),
    ("graph_update", {"graph_id": "g", "data_points": {"r": [{"value": 1}]}},
     "data_points.r[0]"),
])
def test_bad_items_get_422_naming_the_field(app, client, kind, body, field):
    sid = create(client)
    assert error_of(client.post(f"{API}/{sid}/{kind}", json=body), 422)["field"] == field
    assert points(app, sid) == {}


def test_body_limits_413_and_item_count(app, client):
    sid = create(client)
    app.extensions["sessions_api"].settings["METRICS_MAX_INGEST_MB"] = 0.001  # ~1 KB
    app.extensions["sessions_api"].settings["METRICS_MAX_BATCH_ITEMS"] = 3
    big = {"items": [metric(e) for e in range(40)]}
    assert client.post(f"{API}/{sid}/metrics", json=big).status_code == 413
    app.extensions["sessions_api"].settings["METRICS_MAX_INGEST_MB"] = 1
    reply = client.post(f"{API}/{sid}/metrics", json={"items": [metric(e) for e in range(4)]})
    assert error_of(reply, 422)["field"] == "items"
    assert error_of(client.post(f"{API}/{sid}/metrics", data="{", content_type=
                                "application/json"), 400)
    assert client.post(f"{API}/{MISSING}/metrics", json=metric(1)).status_code == 404


# ---------------------------------------------------------------------- history


def test_history_filters_and_pages(client):
    sid = create(client)
    client.post(f"{API}/{sid}/metrics", json={"items": [
        metric(e, timestamp=1.7e9 + e) for e in range(10)]})
    client.post(f"{API}/{sid}/bot_decision", json={"selected_action": 1, "episode": 4})
    base = f"{API}/{sid}/history"
    every = client.get(base).get_json()
    assert [i["type"] for i in every["items"]][:2] == ["training_status", "training_metrics"]
    assert len(every["items"]) == 12 and not every["more"]
    page = client.get(f"{base}?type=training_metrics&limit=3").get_json()
    assert [i["data"]["episode"] for i in page["items"]] == [0, 1, 2] and page["more"]
    after = client.get(f"{base}?type=training_metrics&limit=3&after={page['next_after']}")
    assert [i["data"]["episode"] for i in after.get_json()["items"]] == [3, 4, 5]
    offset = client.get(f"{base}?type=training_metrics&limit=2&offset=8").get_json()
    assert [i["data"]["episode"] for i in offset["items"]] == [8, 9]
    ranged = client.get(f"{base}?type=training_metrics,bot_decision&episode_from=4"
                        "&episode_to=5").get_json()["items"]
    assert [(i["type"], i["data"]["episode"]) for i in ranged] == [
        ("training_metrics", 4), ("training_metrics", 5), ("bot_decision", 4)]
    timed = client.get(f"{base}?type=training_metrics&since=1700000002&until="
                       "2023-11-14T22:13:23Z").get_json()["items"]
    assert [i["data"]["episode"] for i in timed] == [2, 3]
    assert timed[0]["timestamp"] == "2023-11-14T22:13:22Z"


# ----------------------------------------------------------------------- stream


@pytest.fixture()
def small_hub(app) -> Iterator[LiveHub]:
    hub = LiveHub({"LIVE_POLL_SECONDS": 0.02, "LIVE_KEEPALIVE_SECONDS": 0.2,
                   "LIVE_MAX_VIEWERS_PER_RUN": 2, "LIVE_MAX_VIEWERS": 10})
    app.extensions["live_hub"] = hub
    yield hub
    hub.close()


def test_the_stream_sends_what_is_ingested_and_answers_503_at_the_cap(client, small_hub):
    sid = create(client)
    stream = Stream(client, f"{API}/{sid}/stream?types=training_metrics,graph_update,"
                            "connection_status")
    first = stream.collect(1)[0]
    assert first["event"] == "connection_status" and first["data"]["session_id"] == sid
    second = Stream(client, f"{API}/{sid}/stream")
    assert second.status == 200
    full = client.get(f"{API}/{sid}/stream")
    assert error_of(full, 503)["error"].endswith("try again later")
    assert client.get("/api/training/status").get_json()["streams"]["open"] == 2
    client.post(f"{API}/{sid}/metrics", json=metric(3))
    client.post(f"{API}/{sid}/graph_update",
                json={"graph_id": "g", "data_points": {"r": [{"step": 1, "value": 2.0}]}})
    got = stream.collect(2, {"training_metrics", "graph_update"})
    by_type = {m["event"]: m["data"] for m in got}
    assert by_type["training_metrics"]["points"]["episode/reward"][0]["step"] == 3
    assert by_type["graph_update"]["data"]["graph_id"] == "g"
    client.put(f"{API}/{sid}", json={"status": "completed"})
    ends = [m["event"] for m in stream.messages() if "event" in m]
    assert ends[-1] == "end"
    stream.close(), second.close()


def test_an_ingest_reaches_this_servers_viewers_without_waiting_for_the_poll(app, client):
    """The tail polls the store every LIVE_POLL_SECONDS for other processes' writes; a
    batch this server wrote wakes it at once (here the poll would take ten minutes and
    the stream gives up after ten seconds)."""
    hub = LiveHub({"LIVE_POLL_SECONDS": 600, "LIVE_KEEPALIVE_SECONDS": 0.2})
    app.extensions["live_hub"] = hub
    try:
        sid = create(client)
        stream = Stream(client, f"{API}/{sid}/stream?types=training_metrics,training_status")
        for episode in (1, 2):  # the second comes after the tail's first read: a wake
            client.post(f"{API}/{sid}/metrics", json=metric(episode))
            got = stream.collect(1, {"training_metrics"})[0]
            assert got["data"]["points"]["episode/reward"][-1]["step"] == episode
        client.put(f"{API}/{sid}", json={"status": "paused"})
        assert stream.collect(1, {"training_status"})[0]["data"]["data"]["status"] == "paused"
        stream.close()
    finally:
        hub.close()


def test_a_store_failure_while_catching_up_ends_the_stream_with_an_error(client, small_hub,
                                                                         monkeypatch):
    from Utilities.run_store import RunStoreError
    from web import live_tail

    sid = create(client)
    client.post(f"{API}/{sid}/metrics", json=metric(1))

    def down(*args, **kwargs):
        raise RunStoreError("the database is gone")

    monkeypatch.setattr(live_tail, "read_frames", down)
    stream = Stream(client, f"{API}/{sid}/stream", **{"Last-Event-ID": "0-0"})
    last = [m for m in stream.messages() if "event" in m][-1]
    assert last["event"] == "error" and "the database is gone" in last["data"]["error"]
    stream.close()


# --------------------------------------------------------------- health, status


def test_health_and_status(app, client, database_url):
    engine = database_url.split(":")[0].split("+")[0]  # the suite may run on PostgreSQL
    assert client.get("/api/training/health").get_json() == {
        "status": "ok", "store": "ok", "engine": engine}
    sid = create(client)
    client.post(f"{API}/{sid}/metrics", json={"items": [metric(1), metric(2)]})
    status = client.get("/api/training/status").get_json()
    assert status["sessions"] == {"running": 1}
    assert status["ingest"]["items"] == 2 and status["ingest"]["rows"] == 10
    assert status["ingest"]["items_per_second"] > 0
    assert status["store"] == {"engine": engine} and status["version"]
    assert status["uptime_seconds"] >= 0
    assert client.get("/health").status_code == 503  # model serving's own: no model hosted


# ------------------------------------------------------------------------- auth


@pytest.fixture()
def secured(database_url: str, models_dir: Path, tmp_path: Path) -> Iterator[Flask]:
    flask_app = make_auth_app(database_url, models_dir, tmp_path,
                              CORS_ORIGINS=("http://localhost:3000",))
    yield flask_app
    close_streams(flask_app)
    with flask_app.app_context():
        drop_all(get_store())
    close_store(flask_app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_with_auth_on_a_token_is_needed_and_a_scoped_one_opens_its_session_only(secured):
    client = secured.test_client()
    with secured.app_context():
        _, token = AuthStore(get_store().engine).create_token("trainer")
    assert error_of(client.get(API), 401)
    assert client.get("/api/training/health").status_code == 200  # a load balancer's
    sid = client.post(API, json={"name": "a"}, headers=bearer(token)).get_json()["session_id"]
    other = client.post(API, json={"name": "b"}, headers=bearer(token)).get_json()["session_id"]
    made = client.post(f"{API}/{sid}/token", headers=bearer(token))
    assert made.status_code == 201 and made.get_json()["scope"] == sid
    scoped = bearer(made.get_json()["token"])
    assert client.post(f"{API}/{sid}/metrics", json=metric(1), headers=scoped).status_code == 200
    assert client.get(f"{API}/{sid}/history", headers=scoped).status_code == 200
    for method, path in (("get", API), ("get", f"{API}/{other}"),
                         ("post", f"{API}/{other}/metrics"), ("post", f"{API}/{sid}/token"),
                         ("get", "/api/training-runs"), ("get", "/api/training/status"),
                         ("post", "/predict")):
        reply = getattr(client, method)(path, headers=scoped, json=metric(1))
        assert error_of(reply, 403)["error"].startswith("this token is scoped"), path
    # Deleting the session revokes its tokens.
    assert client.delete(f"{API}/{sid}", headers=bearer(token)).status_code == 200
    assert client.get(f"{API}/{other}", headers=scoped).status_code == 401


def test_loopback_without_configuration_needs_no_token(client):
    sid = create(client)
    assert client.post(f"{API}/{sid}/metrics", json=metric(1)).status_code == 200
    assert client.post(f"{API}/{sid}/token").status_code == 201


def test_cors_allows_the_listed_origins_only(secured):
    client = secured.test_client()
    with secured.app_context():
        _, token = AuthStore(get_store().engine).create_token("trainer")
    ok, evil = "http://localhost:3000", "http://evil.example"
    preflight = client.options(API, headers={"Origin": ok,
                                             "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ok
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    refused = client.options(API, headers={"Origin": evil,
                                           "Access-Control-Request-Method": "POST"})
    assert error_of(refused, 403)["field"] == "Origin"
    created = client.post(API, json={"name": "web"}, headers={"Origin": ok, **bearer(token)})
    assert created.status_code == 201
    assert created.headers["Access-Control-Allow-Origin"] == ok
    assert "Origin" in created.headers["Vary"]
    other = client.post(API, json={"name": "web"}, headers={"Origin": evil, **bearer(token)})
    assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other.headers
    # CORS covers the metrics server's paths, nothing else.
    assert "Access-Control-Allow-Origin" not in client.get(
        "/api/models", headers={"Origin": ok, **bearer(token)}).headers


def test_the_rate_limit_answers_429_with_retry_after(app, client):
    now = [0.0]
    app.extensions["sessions_api"].limiter = RateLimiter(1.0, 2, clock=lambda: now[0])
    sid = create(client)
    assert client.get(f"{API}/{sid}").status_code == 200
    limited = client.get(f"{API}/{sid}")
    assert error_of(limited, 429)["error"].startswith("too many requests")
    assert limited.headers["Retry-After"] == "1"
    assert client.get("/api/training/health").status_code == 200  # never limited
    now[0] += 1.0
    assert client.get(f"{API}/{sid}").status_code == 200


def test_the_rate_limit_is_per_token(secured):
    client = secured.test_client()
    with secured.app_context():
        creds = AuthStore(get_store().engine)
        one, two = creds.create_token("one")[1], creds.create_token("two")[1]
    secured.extensions["sessions_api"].limiter = RateLimiter(0.001, 1, clock=lambda: 0.0)
    assert client.get(API, headers=bearer(one)).status_code == 200
    assert client.get(API, headers=bearer(one)).status_code == 429
    assert client.get(API, headers=bearer(two)).status_code == 200


# -------------------------------------------------------------------- retention


def test_retention_deletes_sessions_that_ended_long_ago(app, client):
    old, live = create(client), create(client)
    for sid in (old, live):
        client.post(f"{API}/{sid}/metrics", json={"batch_id": "b", "items": [metric(1)]})
    client.put(f"{API}/{old}", json={"status": "completed"})
    client.post(f"{API}/{old}/token")
    with app.app_context():
        store = get_store()
        kept = clean_expired(store, retention_seconds=3600, batch_id_seconds=3600)
        assert kept == {"sessions": 0, "batch_ids": 0}
        later = utcnow() + timedelta(hours=2)
        assert clean_expired(store, retention_seconds=3600, batch_id_seconds=3600,
                             now=later) == {"sessions": 1, "batch_ids": 1}
        assert [t.scope for t in AuthStore(store.engine).list_tokens()] == []
        assert clean_expired(store, retention_seconds=None, batch_id_seconds=3600,
                             now=later + timedelta(days=999)) == {"sessions": 0,
                                                                  "batch_ids": 0}
    assert client.get(f"{API}/{old}").status_code == 404
    assert client.get(f"{API}/{live}").status_code == 200
    # The schedule's own pass (Main.py starts it), with the app's settings: nothing is
    # due yet.
    assert RetentionCleaner(app).clean() == {"sessions": 0, "batch_ids": 0}


# ---------------------------------------------------------------- both engines


def test_ingest_history_and_retries_on_each_engine(engine_url, models_dir, tmp_path):
    app = make_app(engine_url, models_dir, tmp_path)
    client = app.test_client()
    try:
        sid = create(client)
        batch = {"batch_id": "engine", "items": [metric(e) for e in range(3)]}
        assert client.post(f"{API}/{sid}/metrics", json=batch).get_json()["accepted"] == 3
        assert client.post(f"{API}/{sid}/metrics", json=batch).get_json()["duplicate"]
        bad = {"batch_id": "bad", "items": [metric(3), {"episode": 4}]}
        assert client.post(f"{API}/{sid}/metrics", json=bad).status_code == 422
        assert points(app, sid)["episode/reward"] == 3
        items = client.get(f"{API}/{sid}/history?type=training_metrics&episode_from=1"
                           ).get_json()["items"]
        assert [i["data"]["episode"] for i in items] == [1, 2]
        assert client.get("/api/training/health").get_json()["engine"] == \
            ("sqlite" if engine_url.startswith("sqlite") else "postgresql")
    finally:
        close_streams(app)
        with app.app_context():
            drop_all(get_store())
        close_store(app)


def test_json_errors_are_the_one_body(client):
    reply = client.post(API, data=json.dumps({"name": 1}), content_type="application/json")
    assert set(error_of(reply, 422)) == {"error", "field"}
