"""The live overview (/live and its stream): one card per live or recently ended run with
the store's figures, totals over the live runs, pushed when they change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers.sse import Stream
from Utilities.metrics_logger import MetricsLogger
from web.live_overview import OverviewFeed, overview
from web.live_stream import LiveHub
from web.store import get_store


@pytest.fixture()
def feed(app):
    app.extensions["live_hub"] = LiveHub({"LIVE_KEEPALIVE_SECONDS": 0.2, "LIVE_MAX_VIEWERS": 2})
    app.extensions["live_overview"] = feed = OverviewFeed(app, period=0.05)
    yield feed
    feed.close()


def trained(store, name: str, rewards: list[float], steps_per_second: float) -> str:
    run_id = store.create_run(name=name, model_type="ppo")
    with MetricsLogger(store, run_id) as metrics:
        for episode, reward in enumerate(rewards, 1):
            metrics.log_episode(episode, reward=reward, win=reward > 0)
        metrics.log_update(step=1, policy_loss=0.25, env_steps=1000.0,
                           steps_per_second=steps_per_second)
    return run_id


def test_cards_carry_each_runs_figures_and_totals_sum_the_live_ones(app):
    with app.app_context():
        store = get_store()
        first = trained(store, "a", [1.0, -2.0, 4.0], 100.0)
        second = trained(store, "b", [3.0], 50.0)
        ended = trained(store, "c", [9.0], 10.0)
        store.set_status(ended, "completed")
        cards = {card["name"]: card for card in overview(store)["runs"]}
        totals = overview(store)["totals"]
        later = overview(store, now=datetime.now(UTC) + timedelta(minutes=30))
    assert set(cards) == {"a", "b", "c"}
    a = cards["a"]
    assert (a["run_id"], a["episodes"]) == (first, 3)
    assert (a["latest_reward"], a["best_reward"]) == (4.0, 4.0)
    assert a["best_episode"] == 3 and a["mean_reward"] == pytest.approx(1.0)
    assert a["win_rate"] == pytest.approx(2 / 3) and a["policy_loss"] == 0.25
    assert a["state"] == "running" and a["allowed_actions"] == ["pause", "stop"]
    assert cards["c"]["live"] is False and cards["c"]["allowed_actions"] == []
    assert totals == {"active": 2, "episodes": 4, "env_steps": 2000.0, "steps_per_second": 150.0,
                      "avg_reward": pytest.approx((3.0 + 3.0) / 4), "best_reward": 4.0,
                      "policy_loss": 0.25, "elapsed_seconds": pytest.approx(
                          max(cards["a"]["elapsed_seconds"], cards["b"]["elapsed_seconds"]),
                          abs=5)}
    assert [card["name"] for card in later["runs"]] == ["b", "a"]  # c ended too long ago
    assert second in {card["run_id"] for card in later["runs"]}


def test_the_page_draws_the_first_overview(app, client):
    with app.app_context():
        trained(get_store(), "shown", [1.0], 5.0)
    page = client.get("/live")
    assert page.status_code == 200
    assert b'"name":"shown"' in page.data or b'"name": "shown"' in page.data
    assert b"/api/live/overview" in page.data


def test_the_stream_pushes_a_new_overview_when_a_run_changes(app, client, feed):
    with app.app_context():
        store = get_store()
        run_id = trained(store, "pushed", [1.0], 5.0)
    stream = Stream(client, "/api/live/overview")
    [first] = stream.collect(1, {"overview"})
    assert [card["state"] for card in first["data"]["runs"]] == ["running"]
    store.request_control(run_id, "stop")
    [second] = stream.collect(1, {"overview"})
    assert [card["state"] for card in second["data"]["runs"]] == ["stopping"]
    other = Stream(client, "/api/live/overview")
    assert other.status == 200
    full = client.get("/api/live/overview")  # LIVE_MAX_VIEWERS=2
    assert full.status_code == 503 and "LIVE_MAX_VIEWERS=2" in full.get_json()["error"]
    stream.close()
    other.close()
    assert app.extensions["live_hub"].viewers == 0
