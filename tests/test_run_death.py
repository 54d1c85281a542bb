"""Runs that die: a real kill -9 and a real SIGTERM of a training process, a dashboard
restarted while its training runs, Stop of a run whose trainer is gone, and the sweep
of lost runs at dashboard start.

Waiting on the child is polling the run store with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from NetworkConfigs.callbacks import latest_checkpoint
from tests.helpers.training_stubs import slow_child
from Utilities import alert_records
from Utilities.alert_system import AlertSystem
from Utilities.run_alerts import alert_lost_runs
from Utilities.run_store import Run, RunStore
from web import training_jobs

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "Utilities" / "run_training.py"
DEADLINE_S = 240.0  # generous: the machine may be busy; a healthy run needs seconds
EPISODE_LINE = re.compile(r"episode (\d+) logged at ([\d.]+)")
# What a process killed outright may lose: the episodes of the logger's last 200 ms
# interval plus one write (measured here: at most 0.13 s), with room for a busy disk.
# The old logger (a write every 1.2 s for a trickle) lost up to 1.2 s.
LOSS_BOUND_S = 0.6


def wait_for(condition: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S,
             child: subprocess.Popen | None = None) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after the deadline or
    when the child it waits on has exited."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if child is not None and child.poll() is not None:
            pytest.fail(f"the training process exited ({child.returncode}) before {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def start_training(tmp_path: Path, name: str, params: dict, **env: str,
                   ) -> tuple[subprocess.Popen, Path, dict[str, str]]:
    """The CLI on sample.csv with its own store and models folder; output to a file."""
    child_env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/runs.db",
                 "MODELS_DIR": str(tmp_path / "Models"), "PYTHONPATH": str(ROOT), **env}
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--csv_path", str(ROOT / "sample.csv"), "--model",
             "ppo", "--mode", "smoke", "--model_name", name, "--no-progress",
             "--training_params", json.dumps(params)],
            env=child_env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    return child, log_path, child_env


def the_run(store: RunStore) -> dict | None:
    runs, _ = store.list_runs()
    return runs[0] if runs else None


def episodes_in_store(store: RunStore, run_id: str) -> list[int]:
    return [p["step"] for p in store.metric_series(run_id, "episode/reward")]


@pytest.fixture()
def killed_child():
    """Children a test started are killed if the test fails half-way."""
    children: list[subprocess.Popen] = []
    yield children.append
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait(60)


def test_kill_9_loses_under_a_second_of_episodes_and_the_run_reads_as_lost(
        tmp_path: Path, killed_child, monkeypatch) -> None:
    # Short episodes, so they end all through each rollout; no validation passes.
    params = {"train_params": {"total_timesteps": 100_000_000, "eval_every": 100_000,
                               "checkpoint_every": 100_000},
              "env_params": {"episode_length": 16}}
    child, log_path, env = start_training(tmp_path, "killed", params, DEBUG="1",
                                          RUN_HEARTBEAT_SECONDS="0.2")
    killed_child(child)
    store = RunStore(env["DATABASE_URL"])
    run = wait_for(lambda: the_run(store), "the run to be recorded", child=child)
    wait_for(lambda: len(episodes_in_store(store, run["run_id"])) >= 40,
             "40 episodes in the store", child=child)
    # Kill at a moment unrelated to the logger's flushes: 25 episodes later by its log.
    seen = len(EPISODE_LINE.findall(log_path.read_text()))
    wait_for(lambda: len(EPISODE_LINE.findall(log_path.read_text())) >= seen + 25,
             "25 more episodes", child=child)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(60) == -signal.SIGKILL

    logged = {int(n): float(t) for n, t in EPISODE_LINE.findall(log_path.read_text())}
    stored = episodes_in_store(store, run["run_id"])
    assert stored == list(range(1, len(stored) + 1))  # in order, none skipped
    assert set(stored) <= set(logged)
    last = max(logged.values())
    missing = sorted(set(logged) - set(stored))
    late = [n for n in missing if logged[n] <= last - LOSS_BOUND_S]
    assert not late, (f"episodes logged over {LOSS_BOUND_S} s before the kill were lost: "
                      f"{late[:5]} ({len(missing)} of {len(logged)} missing)")
    assert store.get_run(run["run_id"])["status"] == "running"  # dead, not yet stale
    store.close()

    monkeypatch.setenv("RUN_LOST_AFTER_SECONDS", "1")  # a tiny threshold for the test
    strict = RunStore(env["DATABASE_URL"])
    lost = wait_for(lambda: (r := strict.get_run(run["run_id"]))["status"] == "failed" and r,
                    "the killed run to read as lost", deadline_s=60)
    assert lost["error"].startswith("lost: no heartbeat since ")
    assert strict.list_runs(status="running")[1] == 0
    # The dashboard's sweep alerts it, once (issue 16): the process cannot say so itself.
    told = alert_lost_runs(strict, lambda r: AlertSystem({}, store=strict, run_id=r["run_id"]),
                           since=None)
    assert told == [run["run_id"]]
    (alert,), _ = alert_records.list_alerts(strict, run_id=run["run_id"])
    assert (alert["level"], alert["title"], alert["rule"]) == ("critical", "Run lost",
                                                               "run_failed")
    assert alert_lost_runs(strict, lambda r: AlertSystem({}, store=strict), since=None) == []
    strict.close()


def test_sigterm_stops_the_run_with_a_checkpoint_and_exit_143(tmp_path: Path,
                                                              killed_child) -> None:
    params = {"train_params": {"total_timesteps": 100_000_000, "checkpoint_every": 1,
                               "eval_every": 100_000}}
    child, log_path, env = start_training(tmp_path, "terminated", params)
    killed_child(child)
    store = RunStore(env["DATABASE_URL"])
    run = wait_for(lambda: the_run(store), "the run to be recorded", child=child)
    wait_for(lambda: store.events_after(0, run_id=run["run_id"], kinds=["checkpoint"]),
             "a first checkpoint", child=child)
    child.send_signal(signal.SIGTERM)  # what docker stop, systemd and timeout send
    assert child.wait(DEADLINE_S) == 143, log_path.read_text()[-3000:]

    output = log_path.read_text()
    assert "SIGTERM: stopping after this iteration" in output
    assert "stopped: model saved to" in output
    run = store.get_run(run["run_id"])
    assert run["status"] == "stopped" and run["summary"]["status"] == "stopped"
    checkpoint = latest_checkpoint(tmp_path / "Models" / ".checkpoints" / run["run_id"])
    assert checkpoint is not None and checkpoint.is_file()
    events = store.events_after(0, run_id=run["run_id"], kinds=["checkpoint"])
    assert events[-1]["payload"]["step"] == run["summary"]["timesteps"]  # saved at the stop
    assert (tmp_path / "Models" / "PPO_terminated" / "terminated_model.pt").is_file()
    store.close()


# ---------------------------------------------------------------- the dashboard side


def make_stale(store: RunStore, run_id: str) -> None:
    with store.engine.begin() as connection:
        connection.execute(sa.update(Run).where(Run.id == run_id)
                           .values(heartbeat_at=datetime(2000, 1, 1)))



def dashboard(tmp_path: Path):
    from tests.helpers.apps import make_app

    return make_app(f"sqlite:///{tmp_path}/runs.db", tmp_path / "Models", tmp_path)


def finish_children(app) -> None:
    from web.train import jobs

    with app.app_context():
        for run_id in list(jobs()._children):
            jobs().wait(run_id, timeout=60)
        jobs().close()


def test_a_restarted_dashboard_refuses_a_duplicate_of_a_running_training(
        tmp_path: Path, monkeypatch) -> None:
    gate = slow_child(tmp_path, monkeypatch)
    form = {"model_type": "xgboost", "model_name": "twice", "csv": "sample.csv"}
    before = dashboard(tmp_path)
    assert before.test_client().post("/train", data=form).status_code == 302
    after = dashboard(tmp_path)  # the dashboard restarted: a new app, the same store
    second = after.test_client().post("/train", data=form)
    assert second.status_code == 409
    assert "is already training" in second.get_data(as_text=True)
    store = RunStore(after.config["DATABASE_URL"])
    (running,), total = store.list_runs(status="starting")  # the slow child never takes it
    assert total == 1
    make_stale(store, running["run_id"])  # its trainer died with the old dashboard
    assert after.test_client().post("/train", data=form).status_code == 302
    assert store.get_run(running["run_id"])["error"].startswith("lost: ")
    store.close()
    gate.touch()
    finish_children(before)
    finish_children(after)


def test_the_cpu_limit_counts_trainings_of_other_dashboards(tmp_path: Path,
                                                            monkeypatch) -> None:
    from web.train import jobs

    gate = slow_child(tmp_path, monkeypatch)
    first, second = dashboard(tmp_path), dashboard(tmp_path)
    with second.app_context():
        jobs().max_running = 1
    form = {"model_type": "xgboost", "model_name": "a", "csv": "sample.csv"}
    assert first.test_client().post("/train", data=form).status_code == 302
    refused = second.test_client().post("/train", data={**form, "model_name": "b"})
    assert refused.status_code == 409
    assert "1 trainings are already running" in refused.get_data(as_text=True)
    gate.touch()
    finish_children(first)
    finish_children(second)


def test_stop_of_a_run_whose_trainer_is_gone_marks_it(tmp_path: Path) -> None:
    app = dashboard(tmp_path)
    store = RunStore(app.config["DATABASE_URL"])
    run_id = store.create_run(name="cli", model_type="ppo")  # a CLI run, killed
    make_stale(store, run_id)
    reply = app.test_client().post(f"/runs/{run_id}/control", json={"action": "stop"})
    assert reply.status_code == 200 and reply.get_json()["status"] == "failed"
    run = store.get_run(run_id)
    assert run["status"] == "failed" and run["error"].startswith("lost: no heartbeat since")
    again = app.test_client().post(f"/runs/{run_id}/control", json={"action": "stop"})
    assert again.status_code == 200  # stopping it again is no error
    assert app.test_client().post(f"/runs/{run_id}/control",
                                  json={"action": "pause"}).status_code == 409
    store.close()


def test_a_lost_run_shows_as_failed_with_its_reason(tmp_path: Path) -> None:
    app = dashboard(tmp_path)
    store = RunStore(app.config["DATABASE_URL"])
    run_id = store.create_run(name="gone", model_type="ppo")
    make_stale(store, run_id)
    client = app.test_client()
    assert client.get("/api/training-runs?status=running").get_json() == []
    body = client.get(f"/api/training-runs/{run_id}").get_json()
    assert body["status"] == "failed" and body["metadata"]["error"].startswith("lost: ")
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "lost: no heartbeat since 2000-01-01" in page
    store.close()


def test_the_dashboard_sweeps_lost_runs_when_it_starts(tmp_path: Path, monkeypatch) -> None:
    import waitress

    import Main

    url = f"sqlite:///{tmp_path}/runs.db"
    store = RunStore(url)
    dead, alive = store.create_run(name="dead", model_type="ppo"), store.create_run(
        name="alive", model_type="ppo")
    make_stale(store, dead)
    served = []
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: served.append(app))
    Main.main(["--no-demo"])
    assert served
    statuses = {e["run_id"]: e["payload"]["status"]
                for e in store.events_after(0, kinds=["status"])}  # no read marked it
    assert statuses == {dead: "failed", alive: "running"}
    store.close()


def test_the_sweep_leaves_a_dashboard_without_a_store_running(tmp_path: Path) -> None:
    from tests.helpers.apps import make_app

    blocker = tmp_path / "file"
    blocker.write_text("")
    app = make_app(f"sqlite:///{blocker}/runs.db", tmp_path / "Models", tmp_path)
    assert training_jobs.sweep_lost_runs(app) == []


# ------------------------------------------------------------ the trainer side, in-process


def cartpole(n: int):
    import gymnasium as gym

    return gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(n)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def test_ppo_hands_each_episode_over_the_moment_it_ends() -> None:
    from NetworkConfigs.base import Callback
    from NetworkConfigs.ppo_algorithm import PPO
    from NetworkConfigs.ppo_config import normalise, settings_from

    class Recorder(Callback):
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def on_training_start(self, info: dict) -> None:
            self.calls.append(("start", info["streams_episodes"]))

        def on_episode_end(self, record: dict) -> None:
            self.calls.append(("episode", record, self.trainer.global_step))

        def on_iteration_end(self, metrics: dict) -> bool:
            self.calls.append(("iteration", metrics["episodes"], metrics["global_step"]))
            return True

    recorder = Recorder()
    settings = settings_from(normalise({"train_params": {
        "n_envs": 2, "n_steps": 128, "batch_size": 256, "total_timesteps": 768,
        "device": "cpu"}}))
    PPO(settings, [recorder]).learn(cartpole(2))
    assert recorder.calls[0] == ("start", True)
    streamed: list[tuple] = []
    for call in recorder.calls[1:]:
        if call[0] == "episode":
            streamed.append(call)
            continue
        _, episodes, step_at_end = call
        assert [record for _, record, _ in streamed] == episodes  # the same, in order
        assert any(step < step_at_end for _, _, step in streamed)  # during the rollout
        streamed = []
    assert sum(call[0] == "episode" for call in recorder.calls) > 10


def test_the_store_logger_logs_streamed_episodes_once(store) -> None:
    from NetworkConfigs.callbacks import StoreLogger

    streamed, batched = (store.create_run(name=n, model_type="ppo") for n in ("s", "b"))
    episode = {"reward": 1.5, "length": 16, "win": True, "trades": 2}
    logger = StoreLogger(store, streamed)
    logger.on_training_start({"streams_episodes": True})
    logger.on_episode_end(episode)
    logger.on_iteration_end({"iteration": 1, "episodes": [episode], "policy_loss": 0.1})
    logger.on_training_end({})
    old_style = StoreLogger(store, batched)  # a trainer that only reports per iteration
    old_style.on_training_start({})
    old_style.on_iteration_end({"iteration": 1, "episodes": [episode, episode]})
    old_style.on_training_end({})
    assert [p["value"] for p in store.metric_series(streamed, "episode/reward")] == [1.5]
    assert [p["value"] for p in store.metric_series(streamed, "episode/trades")] == [2]
    assert len(store.metric_series(batched, "episode/reward")) == 2


def test_sigterm_in_training_stops_after_the_iteration_like_ctrl_c(tmp_path: Path,
                                                                   sample_bars) -> None:
    from NetworkConfigs.base import Callback, deep_merge
    from NetworkConfigs.callbacks import StopOnSignal
    from NetworkConfigs.ppo_config import SMOKE
    from NetworkConfigs.PPOTrainer import PPOTrainer

    class Terminate(Callback):
        def on_iteration_end(self, metrics: dict) -> bool:
            if metrics["iteration"] == 1:
                signal.raise_signal(signal.SIGTERM)
            return True

    tiny = deep_merge(SMOKE, {"train_params": {"total_timesteps": 2048, "n_envs": 4,
                                               "n_steps": 128, "batch_size": 128}})
    previous = signal.getsignal(signal.SIGTERM)
    with StopOnSignal() as stop:
        trainer = PPOTrainer(tiny, [Terminate(), stop])
        model_dir = trainer.fit(sample_bars.iloc[:400].copy(), model_name="t",
                                models_dir=tmp_path)
    assert signal.getsignal(signal.SIGTERM) is previous  # restored on the way out
    assert stop.terminated and trainer.algorithm.status == "stopped"
    assert trainer.algorithm.iteration == 1 and (model_dir / "t_model.pt").is_file()


def test_a_second_signal_aborts_at_once() -> None:
    from NetworkConfigs.callbacks import StopOnSignal

    with StopOnSignal() as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested and stop.on_iteration_end({}) is False
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


def test_the_heartbeat_thread_keeps_a_run_alive_until_it_exits(store) -> None:
    from NetworkConfigs.callbacks import Heartbeat

    run_id = store.create_run(name="beating", model_type="ppo")
    make_stale(store, run_id)
    with Heartbeat(store, interval=0.01) as heartbeat:
        heartbeat.start(run_id)  # beats at once, then every interval
        first = store.get_run(run_id)["heartbeat_at"]
        assert first > "2000-01-01T00:00:00.000000Z"
        wait_for(lambda: store.get_run(run_id)["heartbeat_at"] > first, "a second beat")
        assert store.get_run(run_id)["status"] == "running"
    assert not heartbeat._thread.is_alive()
    with Heartbeat(None) as nothing:
        nothing.start(run_id)  # no store: nothing to beat
        assert nothing._thread is None


def test_a_trainer_whose_run_was_marked_lost_stops(store) -> None:
    from NetworkConfigs.callbacks import RunControl

    run_id = store.create_run(name="slow", model_type="ppo")
    control = RunControl(store, run_id)
    assert control.on_iteration_end({}) is True
    make_stale(store, run_id)  # unreachable for longer than the threshold
    store.sweep_lost()
    assert control.on_iteration_end({}) is False  # stop rather than train unrecorded


def test_a_training_is_refused_not_failed_when_the_store_is_down(tmp_path: Path) -> None:
    from tests.helpers.apps import make_app

    blocker = tmp_path / "file"
    blocker.write_text("")
    app = make_app(f"sqlite:///{blocker}/runs.db", tmp_path / "Models", tmp_path)
    reply = app.test_client().post("/train", data={"model_type": "xgboost",
                                                   "model_name": "x", "csv": "sample.csv"})
    assert reply.status_code == 409
    assert "cannot start a training now" in reply.get_data(as_text=True)


def test_a_bad_threshold_stops_the_dashboard_at_start(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RUN_LOST_AFTER_SECONDS", "-1")
    with pytest.raises(SystemExit, match="RUN_LOST_AFTER_SECONDS must be a number"):
        training_jobs.sweep_lost_runs(dashboard(tmp_path))
