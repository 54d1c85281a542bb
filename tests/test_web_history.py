"""Training history: the seed's JSON API, the metrics feed, the list and run pages."""

from __future__ import annotations

import html
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from Main import create_app
from tests.helpers.runs import EPISODES, NEVER, UPDATES, reward, seed_runs, won
from Utilities.metrics_logger import MetricsLogger
from web.store import get_store


@pytest.fixture()
def runs(app) -> dict[str, str]:
    return seed_runs(app)


def blocked_app(tmp_path: Path, models_dir: Path):
    """An app whose run store cannot be opened (a file sits where its folder should be)."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database folder should be")
    return create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{blocker}/runs.db",
                       "MODELS_DIR": str(models_dir)})


def get_json(client, url: str, status: int = 200) -> Any:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    return response.get_json()


# ------------------------------------------------------------------------- list API


def test_list_api_has_the_seed_fields(client, runs) -> None:
    response = client.get("/api/training-runs")
    body = response.get_json()
    assert response.headers["X-Total-Count"] == "4"
    assert [r["run_id"] for r in body] == [runs["live"], runs["failed"], runs["xgb"], runs["ppo"]]
    ppo = body[3]
    for field in ("id", "run_id", "agent_id", "algorithm", "status", "start_time", "end_time",
                  "metrics"):
        assert field in ppo
    assert ppo["id"] == ppo["run_id"] == runs["ppo"]
    assert (ppo["agent_id"], ppo["algorithm"], ppo["status"]) == (
        "ppo-agent", "PPO (clipped, GAE)", "completed")
    assert ppo["start_time"].endswith("Z") and ppo["end_time"].endswith("Z")
    assert body[0]["end_time"] is None and body[0]["status"] == "running"
    assert body[1]["error"] == "loss diverged (NaN)"


def test_list_api_gives_the_last_episodes_and_their_rolling_win_rate(client, runs) -> None:
    ppo = get_json(client, "/api/training-runs?agent_id=ppo-agent&status=completed")[0]
    metrics = ppo["metrics"]
    assert metrics["episode_count"] == EPISODES
    assert [e["episode"] for e in metrics["episodes"]] == list(range(101, 201))
    assert metrics["episodes"][-1] == {"episode": 200, "total_reward": pytest.approx(20.0),
                                       "steps": 50, "win": True, "final_equity": 10_200.0}
    rolling = metrics["rolling_win_rate"]
    assert [r["episode"] for r in rolling] == list(range(101, 201))
    # Over a full window of 100 episodes, one in four is a win.
    expected = sum(won(e) for e in range(51, 151)) / 100
    assert rolling[49] == {"episode": 150, "win_rate": pytest.approx(expected)}
    few = get_json(client, "/api/training-runs?agent_id=ppo-agent&status=completed&episodes=3")
    assert [e["episode"] for e in few[0]["metrics"]["episodes"]] == [198, 199, 200]
    none = get_json(client, "/api/training-runs?agent_id=ppo-agent&status=completed&episodes=0")
    assert none[0]["metrics"] == {"episode_count": EPISODES, "episodes": [],
                                  "rolling_win_rate": []}


def test_list_api_filters_and_pages(client, runs) -> None:
    assert {r["run_id"] for r in get_json(client, "/api/training-runs?agent_id=ppo-agent")} == {
        runs["ppo"], runs["failed"]}
    assert [r["run_id"] for r in get_json(client, "/api/training-runs?status=failed")] == [
        runs["failed"]]
    assert get_json(client, "/api/training-runs?agent_id=nobody") == []
    first = client.get("/api/training-runs?limit=2")
    second = client.get("/api/training-runs?limit=2&offset=2")
    assert first.headers["X-Total-Count"] == second.headers["X-Total-Count"] == "4"
    ids = [r["run_id"] for r in first.get_json() + second.get_json()]
    assert ids == [runs["live"], runs["failed"], runs["xgb"], runs["ppo"]]
    assert get_json(client, "/api/training-runs?model_type=xgboost")[0]["run_id"] == runs["xgb"]
    assert get_json(client, "/api/training-runs?status=&agent_id=")  # blanks mean no filter


@pytest.mark.parametrize(("query", "status", "field"), [
    ("status=bogus", 422, "status"),
    ("limit=abc", 400, "limit"),
    ("limit=1.5", 400, "limit"),
    ("limit=0", 422, "limit"),
    ("limit=100000", 422, "limit"),
    ("offset=-1", 422, "offset"),
    ("episodes=many", 400, "episodes"),
])
def test_list_api_names_a_bad_parameter(client, query: str, status: int, field: str) -> None:
    body = get_json(client, f"/api/training-runs?{query}", status)
    assert body["field"] == field and field in body["error"]


def test_agents_list(client, runs) -> None:
    assert get_json(client, "/api/training-runs/agents/list") == {
        "agent_ids": ["live-agent", "ppo-agent", "xgb-agent"]}


def test_empty_store_lists_nothing(client) -> None:
    response = client.get("/api/training-runs")
    assert response.get_json() == [] and response.headers["X-Total-Count"] == "0"
    assert get_json(client, "/api/training-runs/agents/list") == {"agent_ids": []}


# ----------------------------------------------------------------------- detail API


def test_run_api_has_every_episode_config_and_checkpoints(client, runs) -> None:
    run = get_json(client, f"/api/training-runs/{runs['ppo']}")
    assert run["run_id"] == runs["ppo"] and run["agent_id"] == "ppo-agent"
    assert run["config"] == {"model_params": {"hidden_dim": 64},
                             "train_params": {"learning_rate": 3e-4}}
    episodes = run["metrics"]["episodes"]
    assert len(episodes) == EPISODES
    assert episodes[0] == {"episode": 1, "total_reward": pytest.approx(0.1), "steps": 51,
                           "win": False, "final_equity": 10_001.0}
    rolling = run["metrics"]["rolling_win_rate"]
    assert rolling[3] == {"episode": 4, "win_rate": 0.25}  # fewer than 100 so far: all of them
    assert rolling[-1]["win_rate"] == pytest.approx(0.25)
    checkpoints = run["checkpoint_paths"]
    assert [(c["episode"], c["path"], c["step"], c["resume"]) for c in checkpoints] == [
        (100, "Models/.checkpoints/x/iteration-00000002.pt", 2048, False),
        (200, "Models/.checkpoints/x/iteration-00000004.pt", 4096, True)]
    assert run["metadata"]["model_dir"] == "PPO_demo"  # outside MODELS_DIR: its name only
    assert run["metadata"]["tags"] == ["smoke"]
    stats = run["statistics"]
    assert stats["total_episodes"] == EPISODES
    assert stats["average_reward"] == pytest.approx(sum(map(reward, range(1, 201))) / 200)
    assert stats["max_reward"] == pytest.approx(20.0)
    assert stats["final_win_rate"] == pytest.approx(0.25) and stats["updates"] == UPDATES
    assert run["duration_seconds"] >= 0


def test_supervised_run_api_reports_best_validation(client, runs) -> None:
    run = get_json(client, f"/api/training-runs/{runs['xgb']}")
    assert run["metrics"] == {"episodes": [], "rolling_win_rate": [], "episode_count": 0}
    stats = run["statistics"]
    assert stats["epochs"] == 10 and stats["best_val_loss"] == pytest.approx(0.2)
    assert stats["best_val_accuracy"] == pytest.approx(0.7)
    assert "total_episodes" not in stats


@pytest.mark.parametrize("suffix", ["", "/metrics"])
def test_unknown_run_is_a_json_404(client, runs, suffix: str) -> None:
    body = get_json(client, f"/api/training-runs/not-a-run{suffix}", 404)
    assert body["field"] == "run_id" and "not-a-run" in body["error"]


def test_metrics_api_downsamples_and_smooths(client, runs) -> None:
    url = f"/api/training-runs/{runs['ppo']}/metrics"
    body = get_json(client, f"{url}?keys=episode/reward,train/value_loss&max_points=20&smooth=10")
    assert set(body["series"]) == {"episode/reward", "train/value_loss"}
    assert "train/entropy" in body["keys"]
    rewards = body["series"]["episode/reward"]
    assert 2 < len(rewards) <= 20 and rewards[0]["step"] == 1 and rewards[-1]["step"] == 200
    assert len(body["series"]["train/value_loss"]) == UPDATES  # short series: untouched
    smoothed = body["smoothed"]["episode/reward"]
    assert len(smoothed) <= 20 and smoothed[-1]["step"] == 200
    # Mean of the last 10 rewards, 19.1 .. 20.0.
    assert smoothed[-1]["value"] == pytest.approx(sum(map(reward, range(191, 201))) / 10)
    everything = get_json(client, url)
    assert set(everything["series"]) == set(everything["keys"])
    assert everything["smoothed"] == {}
    assert get_json(client, f"{url}?keys=not/logged")["series"] == {"not/logged": []}


@pytest.mark.parametrize(("query", "status", "field"), [
    ("max_points=2", 422, "max_points"), ("max_points=x", 400, "max_points"),
    ("smooth=0", 422, "smooth"), ("smooth=1e3", 400, "smooth"),
    ("keys=" + ",".join(f"k{i}" for i in range(101)), 422, "keys"),
])
def test_metrics_api_names_a_bad_parameter(client, runs, query: str, status: int,
                                           field: str) -> None:
    body = get_json(client, f"/api/training-runs/{runs['ppo']}/metrics?{query}", status)
    assert body["field"] == field


def test_unavailable_store_is_a_json_503(tmp_path: Path, models_dir: Path) -> None:
    client = blocked_app(tmp_path, models_dir).test_client()
    abc = "0000abcd-0000-4000-8000-000000000000"  # a run id the store could hold
    for url in ("/api/training-runs", "/api/training-runs/agents/list",
                f"/api/training-runs/{abc}", f"/api/training-runs/{abc}/metrics",
                f"/runs/{abc}/live.json"):
        body = get_json(client, url, 503)
        assert "run store unavailable" in body["error"]
    page = client.get("/runs")
    assert page.status_code == 503
    assert "Run store unavailable" in page.get_data(as_text=True)
    detail = client.get(f"/runs/{abc}")
    assert detail.status_code == 503 and "Run store unavailable" in detail.get_data(as_text=True)


# --------------------------------------------------------------------------- pages


def test_history_is_in_the_navigation(client) -> None:
    assert 'href="/runs"' in client.get("/").get_data(as_text=True)


def test_list_page_shows_runs(client, runs) -> None:
    response = client.get("/runs")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for run_id in runs.values():
        assert f'<code title="{run_id}">{run_id[:8]}</code>' in page
        assert f'href="/runs/{run_id}"' in page
    assert "Running…" in page
    for status in ("completed", "failed", "running"):
        assert f'class="badge {status}"' in page
    assert 'title="loss diverged (NaN)"' in page
    assert "200" in page and "10 epochs" in page
    assert "mean reward <b>15.05</b>" in page  # episodes 101..200
    assert "win rate <b>25.0%</b>" in page and "val. accuracy <b>70.0%</b>" in page
    assert '<option value="xgb-agent"' in page
    assert "Showing 1–4 of 4" in page


def test_list_page_filters_and_pages(client, runs) -> None:
    page = client.get("/runs?status=failed").get_data(as_text=True)
    assert runs["failed"][:8] in page and runs["ppo"][:8] not in page
    assert '<option value="failed" selected>' in page
    page = client.get("/runs?agent_id=xgb-agent").get_data(as_text=True)
    assert runs["xgb"][:8] in page and runs["ppo"][:8] not in page
    first = client.get("/runs?per_page=2").get_data(as_text=True)
    assert "Page 1 of 2" in first and runs["live"][:8] in first and runs["ppo"][:8] not in first
    assert 'href="/runs?page=2&amp;per_page=2"' in first
    second = client.get("/runs?per_page=2&page=2").get_data(as_text=True)
    assert "Page 2 of 2" in second and runs["ppo"][:8] in second and "Showing 3–4 of 4" in second
    past = client.get("/runs?per_page=2&page=9").get_data(as_text=True)
    assert "past the last page" in past
    assert "No runs match these filters" in client.get("/runs?status=paused").get_data(
        as_text=True)


def test_list_page_is_lenient_with_odd_numbers_and_names_a_bad_status(client, runs) -> None:
    assert client.get("/runs?page=x&per_page=y").status_code == 200
    response = client.get("/runs?status=bogus")
    assert response.status_code == 400
    assert "Unknown status “bogus”" in response.get_data(as_text=True)


def test_empty_list_page_says_so(client) -> None:
    page = client.get("/runs").get_data(as_text=True)
    assert "No training runs recorded yet" in page


def test_run_page_shows_information_statistics_config_and_checkpoints(client, runs) -> None:
    response = client.get(f"/runs/{runs['ppo']}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert runs["ppo"] in page and "PPO (clipped, GAE)" in page
    assert '<a href="/models/PPO_demo"' in page
    assert "<code>sample.csv</code>" in page and "/data/sample.csv" not in page
    for label in ("Episodes", "Average reward", "Max reward", "Final win rate, last 100",
                  "Updates", "Final policy loss"):
        assert f'<span class="stat-label">{label}</span>' in page
    assert '<span class="stat-value">20</span><span class="stat-note">episode 200</span>' in page
    assert "25.0%" in page
    assert '"learning_rate": 0.0003' in html.unescape(page)  # pretty-printed configuration
    assert "Models/.checkpoints/x/iteration-00000004.pt" in page and "Reward plateau" in page
    assert page.count("--resume uses this") == 1
    assert "validation_return_pct" in page
    for canvas in ("chart-reward", "chart-winrate", "chart-loss"):
        assert f'id="{canvas}"' in page
    assert 'data-active="false"' in page
    assert "/static/vendor/chartjs/chart.umd.min.js" in page and "https://" not in page


def test_run_page_of_active_and_failed_runs(client, runs) -> None:
    live = client.get(f"/runs/{runs['live']}").get_data(as_text=True)
    assert 'data-active="true"' in live and "Running…" not in live
    assert 'id="run-progress"' in live and 'id="run-progress" hidden' not in live
    assert re.search(r'id="run-duration">\d+s so far<', live)
    # Its updates logged no step counter (as before it was logged): the budget alone.
    assert re.search(r'id="progress-done">[\d,]+ steps planned<', live)
    failed = client.get(f"/runs/{runs['failed']}").get_data(as_text=True)
    assert "loss diverged (NaN)" in failed and "No metrics logged." in failed
    assert 'id="run-progress" hidden' in failed
    supervised = client.get(f"/runs/{runs['xgb']}").get_data(as_text=True)
    assert "Best val. loss" in supervised and ">epoch 6<" in supervised
    assert 'data-supervised="true"' in supervised


def test_unknown_run_page_is_404(client, runs) -> None:
    response = client.get("/runs/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert "Run not found" in response.get_data(as_text=True)


def test_live_feed_has_status_statistics_and_series(client, runs) -> None:
    body = get_json(client, f"/runs/{runs['live']}/live.json?smooth=5&max_points=50")
    assert body["run"]["status"] == "running" and body["run"]["active"] is True
    assert body["run"]["display"]["duration"].endswith(" so far")
    assert body["run"]["progress"]["unit"] == "step" and body["run"]["supervised"] is False
    assert {s["key"] for s in body["statistics"]} >= {"total_episodes", "average_reward"}
    assert "episode/win" not in body["series"]  # drawn as the rolling rate only
    assert len(body["smoothed"]["episode/win"]) == 30
    assert len(body["series"]["episode/reward"]) == 30
    assert body["smoothed"]["episode/reward"][-1]["value"] == pytest.approx(
        sum(map(reward, range(26, 31))) / 5)
    with client.application.app_context():
        get_store().set_status(runs["live"], "completed")
        get_store().update_run(runs["live"], summary={"test_return_pct": 1.23456,
                                                      "epochs": 12})
    done = get_json(client, f"/runs/{runs['live']}/live.json")
    assert done["run"]["active"] is False and "so far" not in done["run"]["display"]["duration"]
    assert done["run"]["summary_rows"] == [{"key": "epochs", "text": "12"},
                                           {"key": "test_return_pct", "text": "1.235"}]
    assert get_json(client, "/runs/nope/live.json", 404)["field"] == "run_id"
    assert get_json(client, f"/runs/{runs['live']}/live.json?smooth=-1", 422)["field"] == "smooth"


def test_non_finite_values_and_odd_checkpoints_do_not_break_json_or_pages(app, client,
                                                                         tmp_path: Path) -> None:
    import json

    saved = tmp_path / "a.pt"
    saved.write_bytes(b"state")  # the pages list only checkpoints that exist

    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="odd", model_type="ppo")
        with MetricsLogger(store, run_id, flush_interval=NEVER) as metrics:
            metrics.log_episode(1, reward=float("nan"), win=True)
            metrics.log_episode(2, reward=float("inf"), win=False)
            metrics.log_episode(3, reward=1.0, win=True)
            metrics.log_update(policy_loss=float("-inf"))
            metrics.log_checkpoint(saved, 10, episode="not a number")
    for url in (f"/api/training-runs/{run_id}", f"/runs/{run_id}/live.json",
                f"/api/training-runs/{run_id}/metrics?smooth=2", "/api/training-runs"):
        text = client.get(url).get_data(as_text=True)
        for constant in ("NaN", "Infinity"):  # JSON has neither; JavaScript rejects both
            assert constant not in text, url
        json.loads(text)
    run = get_json(client, f"/api/training-runs/{run_id}")
    assert [e["total_reward"] for e in run["metrics"]["episodes"]] == [None, None, 1.0]
    assert run["statistics"]["average_reward"] == 1.0
    assert run["checkpoint_paths"][0]["episode"] is None
    assert client.get(f"/runs/{run_id}").status_code == 200


def test_list_page_offers_the_page_size_asked_for(client, runs) -> None:
    page = client.get("/runs?per_page=7").get_data(as_text=True)
    assert '<option value="7" selected>' in page
    assert page.index('<option value="7"') < page.index('<option value="10"')
    page = client.get("/runs?per_page=5000").get_data(as_text=True)
    assert '<option value="100" selected>' in page


def test_a_page_number_beyond_any_store_is_not_a_500(client) -> None:
    response = client.get("/runs?page=99999999999999999999")
    assert response.status_code == 200


# ------------------------------------------------------------- progress and buttons


def _epoch_run(app, epochs_done: int, *, status: str = "running") -> tuple[str, float]:
    """An XGBoost run budgeted for 10 epochs, one epoch logged every 10 s from its start;
    the run and the wall time of its last epoch."""
    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="xgb-live", model_type="xgboost",
                                  config={"train_params": {"epochs": 10}})
        started = datetime.fromisoformat(store.get_run(run_id)["started_at"].replace(
            "Z", "+00:00")).timestamp()
        store.log_metrics(run_id, [("train/global_step", e, float(e), started + 10 * e)
                                   for e in range(1, epochs_done + 1)])
        if status != "running":
            store.set_status(run_id, status)
    return run_id, started + 10 * epochs_done


def test_progress_counts_the_budget_and_estimates_the_time_left(app) -> None:
    from web.run_progress import progress

    run_id, last = _epoch_run(app, 4)
    with app.app_context():
        store = get_store()
        run = store.get_run(run_id)
        where = progress(store, run, store.latest_metrics(run_id), now=last)
        # 4 of 10 epochs in 40 s: 6 more at 10 s each.
        assert (where["done"], where["total"], where["unit"]) == (4, 10, "epoch")
        assert where["done_text"] == "4 / 10 epochs" and where["percent_text"] == "40.0%"
        assert where["elapsed_text"] == "40s" and where["seconds_left"] == pytest.approx(60)
        assert where["left_text"] == "about 1m 00s"
        later = progress(store, run, store.latest_metrics(run_id), now=last + 15)
        assert later["seconds_left"] == pytest.approx(45)  # the clock runs between epochs


def test_progress_before_the_first_epoch_and_of_a_paused_run(app) -> None:
    from web.run_progress import progress

    run_id, _ = _epoch_run(app, 0)
    with app.app_context():
        store = get_store()
        where = progress(store, store.get_run(run_id), {})
        assert where["done_text"] == "0 / 10 epochs" and where["left_text"] == "estimating…"
        store.set_status(run_id, "paused")
        assert progress(store, store.get_run(run_id), {})["left_text"] == "paused"


def test_an_epoch_run_is_labelled_in_epochs_from_the_first_paint(app, client) -> None:
    run_id, _ = _epoch_run(app, 0)  # no metric at all yet
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert 'data-supervised="true"' in page and 'id="progress-done">0 / 10 epochs<' in page
    assert get_json(client, f"/runs/{run_id}/live.json")["run"]["supervised"] is True


def test_the_live_feed_reports_progress_and_leaves_the_step_counter_off_the_charts(
        app, client) -> None:
    run_id, _ = _epoch_run(app, 3)
    body = get_json(client, f"/runs/{run_id}/live.json")
    assert body["run"]["progress"]["done_text"] == "3 / 10 epochs"
    assert "train/global_step" in body["keys"] and "train/global_step" not in body["series"]


def test_train_again_links_the_form_and_resume_needs_a_checkpoint(app, client,
                                                                  tmp_path: Path) -> None:
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"state")
    with app.app_context():
        store = get_store()
        ids = {}
        for status in ("running", "stopped", "failed", "completed"):
            ids[status] = store.create_run(name=f"agent-{status}", model_type="ppo")
            store.log_events(ids[status], [("checkpoint", {"path": str(checkpoint),
                                                           "step": 1}, time.time())])
            if status != "running":
                store.set_status(ids[status], status)
        ids["gone"] = store.create_run(name="agent-gone", model_type="ppo")
        store.log_events(ids["gone"], [("checkpoint", {"path": str(tmp_path / "gone.pt")},
                                        time.time())])
        store.set_status(ids["gone"], "stopped")
        ids["none"] = store.create_run(name="agent-none", model_type="ppo")
        store.set_status(ids["none"], "failed")
    for name, run_id in ids.items():
        page = client.get(f"/runs/{run_id}").get_data(as_text=True)
        assert f'id="train-again" href="/train?from_run={run_id}"' in page, name
        form = re.search(r'<form method="post" action="([^"]+)" id="resume-form"( hidden)?',
                         page)
        assert form[1] == f"/runs/{run_id}/resume", name
        assert (form[2] is None) == (name in ("stopped", "failed")), name
        assert get_json(client, f"/runs/{run_id}/live.json")["run"]["resumable"] is (
            name in ("stopped", "failed"))


def test_the_store_logger_records_how_far_training_is(store) -> None:
    from NetworkConfigs.callbacks import StoreLogger

    run_id = store.create_run(name="ppo-agent", model_type="ppo")
    logger = StoreLogger(store, run_id, heartbeat_interval=NEVER)
    logger.on_training_start({})
    for iteration in (1, 2, 3):
        logger.on_iteration_end({"iteration": iteration, "global_step": 2048 * iteration,
                                 "policy_loss": 0.1})
    logger.on_training_end({})
    assert [(p["step"], p["value"]) for p in store.metric_series(run_id, "train/global_step")
            ] == [(1, 2048.0), (2, 4096.0), (3, 6144.0)]


def test_home_page_rows_open_the_run_and_the_model(client, runs) -> None:
    page = client.get("/").get_data(as_text=True)
    for run_id in runs.values():
        assert f'<a class="row-anchor" href="/runs/{run_id}">' in page


def test_ppo_progress_is_counted_in_environment_steps(app) -> None:
    from web.run_progress import progress

    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="ppo-live", model_type="ppo", config={
            "train_params": {"total_timesteps": 4096, "n_envs": 2, "n_steps": 512}})
        store.log_metrics(run_id, [("train/global_step", 1, 1024.0, 100.0),
                                   ("train/global_step", 2, 2048.0, 110.0)])
        where = progress(store, store.get_run(run_id), store.latest_metrics(run_id), now=110.0)
    assert where["done_text"] == "2,048 / 4,096 steps" and where["percent"] == 50.0
    assert where["seconds_left"] == pytest.approx(20.0)  # 1,024 steps per 10 s
