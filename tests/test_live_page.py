"""The run page's one snapshot (``live.json``) as a live monitor's first paint: the stream
cursor read before the figures (nothing written in between is lost), the plots' averages
and the raw tails they go on from, the KPI figures, the agents' latest accounts and
decisions, the recent trades; and runs without the new keys (old, XGBoost) answer the
same shape with nothing in it."""

from __future__ import annotations

import pytest

from tests.helpers.live_writer import SyntheticRun
from Utilities.metrics_logger import MetricsLogger
from web import live_page
from web.live_tail import EVENT_TYPES, Cursor
from web.store import get_store


def snapshot(client, run_id: str, query: str = "", status: int = 200) -> dict:
    response = client.get(f"/runs/{run_id}/live.json{query}")
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


@pytest.fixture()
def ppo_run(app) -> str:
    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="ppo-live", model_type="ppo", algorithm="PPO")
        with MetricsLogger(store, run_id, flush_interval=3600) as metrics:
            fake = SyntheticRun(metrics)
            for _ in range(3):
                fake.write(episodes=40, updates=10, trades=100)  # 3 x 4 x 100 trades
    return run_id


def test_a_snapshot_carries_the_monitor_and_where_its_stream_starts(app, client,
                                                                      ppo_run) -> None:
    body = snapshot(client, ppo_run)
    assert body["mode"] == "snapshot"
    with app.app_context():
        store = get_store()
        end = Cursor(store.event_count(ppo_run, EVENT_TYPES)[1],
                     store.point_cursor(ppo_run))
        reward = store.metric_series(ppo_run, "episode/reward")
    assert body["stream_cursor"] == end.text()  # nothing written since: the run's end
    monitor = body["monitor"]
    # Every series the page may average has its window, present yet or not (a key that
    # first comes over the stream is averaged as it comes); averages of those present.
    assert monitor["windows"] == {"episode/reward": 20, "episode/win": 20,
                                  "episode/sharpe": 10, "train/train_loss": 20,
                                  "train/loss": 20, "train/policy_loss": 20}
    assert set(monitor["averages"]) == {"episode/reward", "episode/win", "episode/sharpe",
                                        "train/loss", "train/policy_loss"}
    assert monitor["loss_keys"] == ["train/train_loss", "train/loss", "train/policy_loss"]
    assert monitor["loss_key"] == "train/loss"
    # The averages are the trailing means of the raw values; each tail is what the page
    # needs to go on (the reward's 50 for its KPI).
    values = [p["value"] for p in reward]
    assert monitor["averages"]["episode/reward"][-1]["value"] == pytest.approx(
        sum(values[-20:]) / 20)
    assert [p["value"] for p in monitor["tails"]["episode/reward"]] == pytest.approx(values[-50:])
    assert len(monitor["tails"]["episode/sharpe"]) == 10
    kpis = monitor["kpis"]
    best = max(range(len(values)), key=values.__getitem__)
    assert kpis["best_reward"] == {"step": best + 1, "value": pytest.approx(values[best])}
    assert kpis["episode"]["step"] == 120 and kpis["env_steps"]["value"] == 30 * 2048
    assert kpis["policy_loss"]["step"] == 30 and kpis["steps_per_second_mean"]["count"] == 30
    # The latest account and decision of each agent; the last 500 trades, newest first.
    assert [a["data"]["agent"] for a in monitor["agents"]] == [0, 1, 2, 3]
    assert all(a["data"]["bar"] == 3 for a in monitor["agents"])
    assert [d["data"]["agent"] for d in monitor["decisions"]] == [0, 1, 2, 3]
    trades = monitor["trades"]
    assert len(trades) == live_page.TRADES == 500
    seqs = [t["seq"] for t in trades]
    assert seqs == sorted(seqs, reverse=True)
    assert trades[0]["data"]["bar"] == 3 and set(trades[0]["data"]) >= {
        "agent", "side", "price", "quantity", "pnl", "fee", "step", "time"}


def test_the_cursor_is_read_before_the_figures(app, client, ppo_run, monkeypatch) -> None:
    """A row written between the cursor and the figures is in both (the page drops the
    repeat by step), never in neither."""
    read_cursor = live_page.stream_start

    def cursor_then_a_write(store, run_id):
        cursor = read_cursor(store, run_id)
        store.log_metrics(run_id, [("episode/reward", 121, 42.0, 1.7e9)])
        return cursor

    monkeypatch.setattr(live_page, "stream_start", cursor_then_a_write)
    body = snapshot(client, ppo_run)
    assert body["monitor"]["kpis"]["episode"] == {"step": 121, "value": 42.0}
    cursor = Cursor.parse(body["stream_cursor"])
    with app.app_context():
        after, _ = get_store().metric_points_after(ppo_run, cursor.point)
    assert [p["step"] for p in after["episode/reward"]] == [121]  # the stream sends it too


def test_the_win_rate_window_is_the_pages_choice(client, ppo_run) -> None:
    body = snapshot(client, ppo_run, "?win_window=5&smooth=50")
    assert body["monitor"]["windows"]["episode/win"] == 5
    assert body["monitor"]["windows"]["episode/reward"] == 50
    assert len(body["monitor"]["tails"]["episode/reward"]) == 50
    assert snapshot(client, ppo_run, "?win_window=0", 422)["field"] == "win_window"
    assert snapshot(client, ppo_run, "?win_window=x", 400)["field"] == "win_window"


def test_a_delta_has_no_monitor(client, ppo_run) -> None:
    first = snapshot(client, ppo_run)
    delta = snapshot(client, ppo_run, f"?after={first['cursor']}")
    assert delta["mode"] == "delta" and "monitor" not in delta and "stream_cursor" not in delta


@pytest.mark.parametrize("model_type", ["ppo", "xgboost"])
def test_runs_without_the_new_keys_get_an_empty_monitor(app, client, model_type) -> None:
    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="old", model_type=model_type)
        if model_type == "ppo":  # an old PPO run: reward, steps, win and a loss only
            store.log_metrics(run_id, [("episode/reward", e, float(e), 1.7e9) for e in (1, 2)]
                              + [("train/policy_loss", 1, 0.1, 1.7e9)])
        else:
            store.log_metrics(run_id, [("train/train_loss", e, 1.0 / e, 1.7e9) for e in (1, 2)]
                              + [("train/val_accuracy", 2, 0.6, 1.7e9),
                                 ("train/global_step", 2, 2.0, 1.7e9)])
    monitor = snapshot(client, run_id)["monitor"]
    assert monitor["agents"] == monitor["decisions"] == monitor["trades"] == []
    if model_type == "ppo":
        # Before issue 14 PPO logged no total loss: the plot draws the policy loss.
        assert monitor["loss_key"] == "train/policy_loss"
        assert set(monitor["averages"]) == {"episode/reward", "train/policy_loss"}
        assert monitor["kpis"]["sharpe"] is None and monitor["kpis"]["env_steps"] is None
    else:
        assert monitor["loss_key"] == "train/train_loss"
        assert set(monitor["averages"]) == {"train/train_loss"}
        assert monitor["kpis"]["episode"] is None and monitor["kpis"]["best_reward"] is None
        assert monitor["kpis"]["env_steps"] is None  # its global step counts epochs
