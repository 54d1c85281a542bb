"""The metrics client against the real metrics server (issue 17): the dashboard app served
by waitress on a free port in this process, the trainer a separate process.

- examples/sb3_cartpole_live.py trains SB3's PPO on CartPole for a few thousand steps and
  the run's series, decisions and status are then read from the store;
- the run page's Stop reaches an SB3 training through the client (learn() ends early);
- the client with auth on: refused without a token (said once, nothing sent), accepted
  with one; a batch retried after a lost reply is not written twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.apps import make_app, make_auth_app
from tests.helpers.paths import ROOT
from Utilities.metrics_client import MetricsClient, health

pytest.importorskip("stable_baselines3", reason="pip install -r requirements-dev.txt")

STEPS = 3000
N_STEPS = 512  # the example's PPO rollout length: an update every 512 steps


class Served:
    """A Flask app under waitress on a free loopback port, in a thread of this process."""

    def __init__(self, app: Any) -> None:
        import waitress

        self.app = app
        self.server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def store(self) -> Any:
        from web.store import get_store

        with self.app.app_context():
            return get_store()

    def close(self) -> None:
        from waitress import wasyncore

        from Utilities.run_store import metadata
        from web.store import close_store

        # Closed from its own loop thread: closing its sockets from this thread makes the
        # loop's select() fail on a closed descriptor.
        self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
        self.thread.join(10)
        self.server.task_dispatcher.shutdown()
        with self.app.app_context():
            metadata.drop_all(self.store().engine)
        close_store(self.app)


@pytest.fixture()
def served(database_url: str, models_dir: Path, tmp_path: Path) -> Iterator[Served]:
    server = Served(make_app(database_url, models_dir, tmp_path))
    yield server
    server.close()


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def run_example(url: str, *args: str) -> subprocess.CompletedProcess:
    # One torch thread: the test machine's cores are shared (and PPO on CartPole gains
    # nothing from more).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sb3_cartpole_live.py"), "--url", url,
         "--steps", str(STEPS), "--name", "cartpole-live", *args],
        capture_output=True, text=True, timeout=240, env=env, check=False)


def test_sb3_cartpole_streams_its_run_into_the_store(served: Served) -> None:
    done = run_example(served.url)
    assert done.returncode == 0, done.stderr[-3000:]
    store = served.store()
    [run], _total = store.list_runs(name="cartpole-live")
    assert (run["model_type"], run["algorithm"], run["status"]) == ("external", "PPO",
                                                                    "completed")
    run_id = run["run_id"]
    assert f"/runs/{run_id}" in done.stderr  # the script says where to watch it
    summary = run["summary"]
    assert summary["total_timesteps"] >= STEPS and summary["episodes"] >= 20

    rewards = store.metric_series(run_id, "episode/reward")
    # every episode, numbered 1..n, lengths adding up to (nearly) every step taken
    assert [p["step"] for p in rewards] == list(range(1, summary["episodes"] + 1))
    lengths = store.metric_series(run_id, "episode/steps")
    assert [p["value"] for p in lengths] == [p["value"] for p in rewards]  # CartPole: +1/step
    assert STEPS - 500 <= sum(p["value"] for p in lengths) <= summary["total_timesteps"]
    best = store.metric_series(run_id, "episode/best_reward")
    assert best[-1]["value"] == max(p["value"] for p in rewards) == summary["best_reward"]
    assert len(store.metric_series(run_id, "episode/average_reward")) == len(rewards)

    # train/loss of every update but the last two: an update's values are read at the
    # next rollout's end and ride on the first episode after it (the last update has no
    # next rollout, the one before it no episode after). SB3's own values of every
    # update are graphs at the steps of the updates.
    updates = summary["total_timesteps"] // N_STEPS
    assert len(store.metric_series(run_id, "train/loss")) == updates - 2
    kl = store.metric_series(run_id, "graph/train/approx_kl")
    assert [p["step"] for p in kl] == [N_STEPS * k for k in range(1, updates + 1)]
    assert "graph/train/entropy_loss" in store.metric_keys(run_id)

    decisions = store.latest_events(run_id, ["decision"], 100)
    assert len(decisions) == summary["total_timesteps"] // 256
    payload = decisions[0]["payload"]
    assert payload["selected_action"] in (0, 1)
    assert sum(payload["action_probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_the_run_pages_stop_button_stops_an_sb3_training(served: Served) -> None:
    """The dashboard's Stop (store.request_control, what the run page's button calls)
    reaches the callback in an ingest reply: learn() ends early, the session stopped."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList
    from stable_baselines3.common.env_util import make_vec_env

    from Utilities.sb3_metrics_callback import LiveMetricsCallback

    store = served.store()
    client = MetricsClient(served.url, flush_interval=0.05)
    live = LiveMetricsCallback(client, name="stop-me")

    class PressStop(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == 300:  # the session exists by now (registered first)
                assert live.session.wait_registered(10)
                store.request_control(live.session.session_id, "stop")
            return True

    env = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    model = PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=1, seed=0,
                device="cpu")
    try:
        model.learn(total_timesteps=50_000, callback=CallbackList([PressStop(), live]))
    finally:
        client.close()
        env.close()
    run = store.get_run(live.session.session_id)
    assert run["status"] == "stopped" and run["control"] is None
    assert 300 < model.num_timesteps < 50_000
    assert run["summary"]["total_timesteps"] == model.num_timesteps


def test_the_example_says_a_bad_url_in_one_line() -> None:
    done = run_example("localhost:5000")
    assert done.returncode == 2
    assert "--url: base_url must be http(s)://host[:port]" in done.stderr


def test_client_with_auth_on_needs_its_token(database_url: str, models_dir: Path,
                                             tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    from web.auth_store import AuthStore

    served = Served(make_auth_app(database_url, models_dir, tmp_path))
    try:
        assert health(served.url)["status"] == "ok"  # open to load balancers
        _, token = AuthStore(served.store().engine).create_token("trainer")
        with MetricsClient(served.url, close_timeout=5) as anonymous:
            refused = anonymous.register_training_session("no-token")
            refused.record_episode_end(1.0)
            assert refused.wait_registered(10) is None
            assert "HTTP 401" in (refused.failed or "")
        assert anonymous.stats()["rejected"] == 2
        with MetricsClient(served.url, token, flush_interval=0.05) as client:
            session = client.register_training_session("with-token", algorithm="DQN")
            for reward in (1.0, 3.0, 2.0):
                session.record_episode_end(reward, episode_length=10, won=reward > 1)
            session.end("completed")
            assert client.flush(20)
        store = served.store()
        run = store.get_run(session.session_id)
        assert (run["status"], run["algorithm"]) == ("completed", "DQN")
        assert [p["value"] for p in store.metric_series(run["run_id"], "episode/reward")] == [
            1.0, 3.0, 2.0]
        win_rate = store.metric_series(run["run_id"], "episode/win_rate")
        assert [round(p["value"], 1) for p in win_rate] == [0.0, 50.0, 66.7]
        assert client.stats()["rejected"] == 0
    finally:
        served.close()


def test_a_retried_batch_is_written_once(served: Served) -> None:
    """What the client's retry after a lost reply relies on: the same batch id again is
    answered duplicate by the real server and its points are stored once."""
    with MetricsClient(served.url) as client:
        run_id = client.register_training_session("retry-once").wait_registered(10)
    assert run_id
    body = {"batch_id": "b-1", "items": [{"episode": 1, "current_reward": 5.0}]}
    first, again = post(served.url, run_id, body), post(served.url, run_id, body)
    assert (first["accepted"], first["duplicate"]) == (1, False)
    assert (again["accepted"], again["duplicate"]) == (0, True)
    assert len(served.store().metric_series(run_id, "episode/reward")) == 1


def post(url: str, run_id: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}/api/training/sessions/{run_id}/metrics",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())
