"""What a script logs through the seed's Python API shows up in the web, and a run page
lists only the checkpoint files on disk, marking the one --resume uses (Debian's chromium)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.browser import assert_chart_drawn, screenshot, watch
from Utilities.experiment_tracker import ExperimentTracker
from Utilities.metrics_logger import MetricsLogger
from web.store import get_store

pytestmark = pytest.mark.browser

SHOTS = Path("/work/helpers/shots/tracker")


def keep(name: str, shot: Path) -> None:
    """The screenshot where the helper's reviewer looks too (when that folder exists)."""
    if SHOTS.parent.is_dir():
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(shot, SHOTS / f"{name}.png")


def test_a_tracked_experiment_is_a_run_in_the_web(live_server: str, page, app) -> None:
    from playwright.sync_api import expect

    with app.app_context():
        store = get_store()
        with ExperimentTracker(store=store) as tracker:
            exp_id = tracker.create_experiment(
                "dqn_baseline", {"learning_rate": 0.001, "gamma": 0.99},
                description="Baseline DQN", tags=["dqn", "baseline"])
            for episode in range(200):
                tracker.log_result(exp_id, episode, profit=episode * 0.5 - 20,
                                   sharpe=episode / 100, win_rate=0.4 + episode / 1000)
            tracker.complete_experiment(exp_id, {"best_profit": 79.5})
        with MetricsLogger(store, exp_id, flush_interval=3600) as metrics:  # model metrics
            for update in range(1, 21):
                metrics.log_model_metrics(loss=1 / update, q_values=[update, update + 2])
    seen = watch(page, live_server)
    page.goto(f"{live_server}/runs")
    row = page.locator("#runs tbody tr", has_text="dqn_baseline")
    expect(row).to_have_count(1)
    assert "completed" in row.inner_text()
    keep("history_list_with_experiment", screenshot(page, "tracker_history_list"))

    page.goto(f"{live_server}/runs/{exp_id}")
    assert_chart_drawn(page, "chart-loss")
    assert_chart_drawn(page, "chart-reward")  # the seed's profit is the episode's P/L
    extra = page.locator("#extra-charts canvas")
    assert extra.count() >= 3  # profit, sharpe, win rate, q-values …
    text = page.locator("body").inner_text()
    for needed in ("dqn_baseline", "Baseline DQN", "learning_rate"):
        assert needed in text, needed
    keep("experiment_run_page", screenshot(page, "tracker_experiment_run_page"))
    assert seen == {"errors": [], "outside": [], "failed": []}


def test_the_checkpoint_list_names_files_on_disk_and_the_resume_one(live_server: str, page,
                                                                     app) -> None:
    from playwright.sync_api import expect

    saved = Path(app.config["MODELS_DIR"]) / ".checkpoints" / "run"
    saved.mkdir(parents=True)
    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="kept-agent", model_type="ppo", algorithm="PPO")
        with MetricsLogger(store, run_id, flush_interval=3600) as metrics:
            for iteration in range(1, 7):  # six saves; the trainer kept the newest three
                metrics.log_episode(iteration * 10, reward=float(iteration), steps=100)
                metrics.log_checkpoint(saved / f"iteration-{iteration:08d}.pt",
                                       2048 * iteration, iteration=iteration, keep=3)
        for iteration in (4, 5, 6):
            (saved / f"iteration-{iteration:08d}.pt").write_bytes(b"state")
        store.set_status(run_id, "stopped")
    seen = watch(page, live_server)
    page.goto(f"{live_server}/runs/{run_id}")
    rows = page.locator("#checkpoint-rows tr")
    expect(rows).to_have_count(3)
    assert [rows.nth(i).locator("code").inner_text() for i in range(3)] == [
        f"Models/.checkpoints/run/iteration-{i:08d}.pt" for i in (4, 5, 6)]
    assert page.locator("#checkpoint-count").inner_text() == "6"
    assert page.locator("#checkpoints-shown").inner_text() == "the newest 3 on disk"
    mark = page.locator("#checkpoint-rows .resume-mark")
    expect(mark).to_have_count(1)
    assert rows.last.locator(".resume-mark").inner_text() == "--resume uses this"
    assert page.get_by_role("button", name="Resume from checkpoint").is_visible()
    page.locator("#checkpoints").scroll_into_view_if_needed()
    keep("checkpoints_on_disk", screenshot(page, "tracker_checkpoints_on_disk"))
    assert seen == {"errors": [], "outside": [], "failed": []}
