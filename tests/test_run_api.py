"""The runs' JSON control API (web/run_api.py): the live state, starting a training from a
JSON config, and pause / resume / stop along the state machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.training_stubs import slow_child
from Utilities.metrics_logger import MetricsLogger
from Utilities.run_store import RunStore
from web.live_tail import Cursor
from web.training_jobs import jobs

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture()
def store(app) -> RunStore:
    return RunStore(app.config["DATABASE_URL"])


def test_state_has_the_figures_agents_decision_and_trades(client, store):
    run_id = store.create_run(name="watched", model_type="ppo")
    with MetricsLogger(store, run_id) as metrics:
        for episode in range(1, 6):
            metrics.log_episode(episode, reward=float(episode), steps=10, win=episode > 2)
        metrics.log_update(step=1, policy_loss=0.5, entropy=1.1)
        for agent, equity in ((0, 100.0), (1, 90.0), (0, 105.0)):
            metrics.log_account(agent=agent, equity=equity, cash=50.0)
        metrics.log_trade(agent=1, side="BUY", price=10.0, quantity=2.0, pnl=None, fee=0.1)
        metrics.log_decision(agent=0, action="BUY", confidence=0.7, value=0.2,
                             probabilities={"hold": 0.2, "buy": 0.7, "sell": 0.1})
    reply = client.get(f"/api/training-runs/{run_id}/state")
    assert reply.status_code == 200
    state = reply.get_json()
    assert state["state"] == "running" and state["allowed_actions"] == ["pause", "stop"]
    assert state["episodes"] == 5
    assert state["metrics"]["episode/reward"] == 5.0
    assert state["metrics"]["train/policy_loss"] == 0.5
    assert state["agents"]["0"]["equity"] == 105.0  # each agent's latest snapshot
    assert state["agents"]["1"]["equity"] == 90.0
    assert state["decision"]["action"] == "BUY"
    assert state["recent_trades"] == [{"agent": 1, "side": "BUY", "price": 10.0,
                                       "quantity": 2.0, "pnl": None, "fee": 0.1}]
    assert Cursor.parse(state["cursor"]).point > 0
    assert state["events_url"] == f"/api/training-runs/{run_id}/events"


def test_control_follows_the_state_machine(client, store):
    run_id = store.create_run(name="ctl", model_type="ppo")

    def move(action: str):
        return client.post(f"/api/training-runs/{run_id}/{action}")

    refused = move("resume")
    assert refused.status_code == 409
    assert refused.get_json()["allowed_actions"] == ["pause", "stop"]
    assert move("pause").get_json()["control"] == "pause"
    store.set_status(run_id, "paused")  # what the trainer does when it sees the request
    assert move("pause").status_code == 409
    assert move("resume").status_code == 200
    store.set_status(run_id, "running")
    stopping = move("stop").get_json()
    assert stopping["state"] == "stopping" and stopping["allowed_actions"] == []
    assert move("pause").status_code == 409  # a stop is on its way
    store.set_status(run_id, "stopped")
    finished = client.get(f"/api/training-runs/{run_id}/state").get_json()
    assert finished["state"] == "stopped" and finished["allowed_actions"] == []
    assert move("stop").status_code == 409


@pytest.mark.parametrize(("method", "url", "status", "field"), [
    ("get", f"/api/training-runs/{MISSING}/state", 404, "run_id"),
    ("get", "/api/training-runs/x/state", 404, "run_id"),
    ("post", f"/api/training-runs/{MISSING}/pause", 404, "run_id"),
    ("post", "/api/training-runs/x/stop", 404, "run_id"),
])
def test_unknown_runs_are_404(client, method, url, status, field):
    reply = getattr(client, method)(url)
    assert reply.status_code == status and reply.get_json()["field"] == field


def test_a_json_start_launches_the_training(app, client, store, tmp_path: Path, monkeypatch):
    gate = slow_child(tmp_path, monkeypatch)
    body = {"model_type": "xgboost", "data": "sample.csv", "model_name": "api",
            "mode": "smoke", "config": {"model_params": {"max_depth": 3}}}
    reply = client.post("/api/training-runs", json=body)
    assert reply.status_code == 202, reply.get_json()
    started = reply.get_json()
    assert reply.headers["Location"] == started["url"] == f"/runs/{started['run_id']}"
    run = store.get_run(started["run_id"])
    assert run["status"] == "starting" and run["name"] == "api"
    assert run["config"]["model_params"]["max_depth"] == 3
    again = client.post("/api/training-runs", json=body)
    assert again.status_code == 409 and again.get_json()["field"] == "model_name"
    gate.touch()
    with app.app_context():
        jobs().wait(started["run_id"], timeout=60)
    unnamed = client.post("/api/training-runs", json={"data": "sample.csv"})
    assert unnamed.status_code == 202  # named as the CLI names it: <csv stem>_<time>
    run_id = unnamed.get_json()["run_id"]
    assert store.get_run(run_id)["name"].startswith("sample_")
    with app.app_context():
        jobs().wait(run_id, timeout=60)


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"model_type": "nope", "data": "sample.csv"}, 422, "model_type"),
    ({"data": "missing.csv"}, 422, "data"),
    ({"data": 3}, 422, "data"),
    ({"data": "sample.csv", "mode": "fast"}, 422, "mode"),
    ({"data": "sample.csv", "config": [1]}, 422, "config"),
    ({"data": "sample.csv", "colour": "red"}, 422, "colour"),
    ({"data": "sample.csv", "model_type": "xgboost",
      "config": {"model_params": {"max_depth": -4}}}, 422, "config.max_depth"),
])
def test_a_bad_start_body_names_its_field(client, body, status, field):
    reply = client.post("/api/training-runs", json=body)
    assert reply.status_code == status
    assert reply.get_json()["field"] == field


def test_a_start_body_that_is_not_json_or_too_large_is_refused(client):
    assert client.post("/api/training-runs", data="{", content_type="application/json"
                       ).status_code == 400
    big = {"data": "sample.csv", "config": {"x": "y" * 70_000}}
    assert client.post("/api/training-runs", json=big).status_code == 413
