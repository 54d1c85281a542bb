"""The training history pages as a person sees them, in Debian's chromium."""

from __future__ import annotations

import re
import time

import pytest

from tests.helpers.browser import POINTS, assert_chart_drawn, screenshot, watch
from tests.helpers.runs import EPISODES, reward, seed_runs, won
from Utilities.metrics_logger import MetricsLogger
from web.store import get_store

pytestmark = pytest.mark.browser


def test_list_filter_and_run_charts(live_server: str, page, app) -> None:
    runs = seed_runs(app)
    seen = watch(page, live_server)
    page.goto(live_server + "/runs")
    rows = page.locator("#runs tbody tr")
    assert rows.count() == 4
    assert page.locator("#runs code", has_text=runs["ppo"][:8]).get_attribute(
        "title") == runs["ppo"]
    screenshot(page, "history_list")

    page.select_option("#filter-status", "completed")  # applies at once
    page.wait_for_url("**/runs?status=completed")
    assert rows.count() == 2
    page.select_option("#filter-agent", "ppo-agent")
    page.wait_for_url("**/runs?agent_id=ppo-agent&status=completed")
    assert rows.count() == 1
    screenshot(page, "history_list_filtered")

    rows.first.get_by_role("link", name="Details").click()
    page.wait_for_url(f"**/runs/{runs['ppo']}")
    for canvas in ("chart-reward", "chart-winrate", "chart-loss"):
        assert_chart_drawn(page, canvas)
    assert page.evaluate(POINTS, "chart-reward") == [EPISODES, EPISODES]  # raw + average
    assert page.locator("#box-accuracy").is_hidden()
    assert page.locator("#extra-charts canvas").count() >= 3  # entropy, approx_kl, equity …
    assert page.locator('.stat[data-key="total_episodes"] .stat-value').inner_text() == "200"
    assert page.locator("#checkpoint-rows tr").count() == 2
    # A finished run: one snapshot, no stream (nothing more will come).
    assert page.locator("#run-page").get_attribute("data-stream") == "ended"
    screenshot(page, "history_run_completed")

    page.select_option("#smoothing", "100")  # redrawn in place
    page.wait_for_function("""() => Chart.getChart(document.getElementById('chart-reward'))
        .data.datasets[1].label === 'moving average (100)'""")
    page.click("#theme-toggle")
    assert_chart_drawn(page, "chart-reward")
    screenshot(page, "history_run_completed_light")

    page.goto(f"{live_server}/runs/{runs['xgb']}")
    for canvas in ("chart-loss", "chart-accuracy"):
        assert_chart_drawn(page, canvas)
    # No episodes in an epoch-trained run: the plot says so in a line.
    assert "No data: no episodes logged" in page.locator("#box-reward").inner_text()
    assert page.locator("#chart-reward").is_hidden()
    screenshot(page, "history_run_supervised")
    assert seen == {"errors": [], "outside": [], "failed": []}


def test_active_run_page_streams_until_the_run_ends(live_server: str, page, app) -> None:
    runs = seed_runs(app)
    seen = watch(page, live_server)
    page.goto(f"{live_server}/runs/{runs['live']}")
    status = page.locator("#run-status")
    assert status.inner_text() == "running"
    assert page.locator("#live-note").is_visible()
    assert page.locator("#run-duration").inner_text().endswith(" so far")
    assert page.locator("#run-progress").is_visible()
    assert page.locator("#progress-done").inner_text().endswith(" steps planned")
    assert page.locator("#resume-form").is_hidden()  # a live run is not resumed
    assert_chart_drawn(page, "chart-reward")
    from playwright.sync_api import expect

    expect(page.locator("#run-page")).to_have_attribute("data-stream", "live")
    screenshot(page, "history_run_live")

    with app.app_context():
        store = get_store()
        with MetricsLogger(store, runs["live"], flush_interval=3600) as metrics:
            for episode in range(31, 61):
                metrics.log_episode(episode, reward=reward(episode), steps=50, win=won(episode))
    episodes = page.locator('.kpi[data-kpi="episode"] .kpi-value')
    expect(episodes).to_have_text("60", timeout=10_000)  # pushed, drawn in place
    page.wait_for_function("""() => Chart.getChart(document.getElementById('chart-reward'))
        .data.datasets[0].data.length === 60""")
    assert page.evaluate(POINTS, "chart-reward") == [60, 60]

    with app.app_context():
        get_store().update_run(runs["live"], summary={"test_return_pct": 2.5})
        get_store().set_status(runs["live"], "completed")
    expect(status).to_have_text("completed", timeout=10_000)
    expect(status).to_have_class("badge completed")
    expect(page.locator("#run-status-badge")).to_have_text("completed")
    expect(page.locator("#run-page")).to_have_attribute("data-finished", "true")
    assert page.locator("#run-page").get_attribute("data-stream") == "ended"
    # The run's end brings its final statistics (one more snapshot, not a poll).
    expect(page.locator('.stat[data-key="total_episodes"] .stat-value')).to_have_text("60")
    assert page.locator("#live-note").is_hidden() and page.locator("#run-progress").is_hidden()
    assert "so far" not in page.locator("#run-duration").inner_text()
    # The saved model's metrics, written as the run completed, appear without a reload.
    assert page.locator('#summary-items .metric[data-key="test_return_pct"] b').inner_text(
        ) == "2.5"
    assert page.locator("#run-ended").inner_text().endswith("UTC")
    screenshot(page, "history_run_finished_after_streaming")
    assert seen == {"errors": [], "outside": [], "failed": []}


def test_empty_history_and_unknown_run(live_server: str, page) -> None:
    page.goto(live_server + "/runs")
    assert "No training runs recorded yet" in page.locator("#runs .empty").inner_text()
    screenshot(page, "history_list_empty")
    response = page.goto(live_server + "/runs/00000000-0000-0000-0000-000000000000")
    assert response.status == 404
    assert "Run not found" in page.locator("h1").inner_text()
    screenshot(page, "history_run_not_found")


X_TITLE = """(id) => {
  const chart = Chart.getChart(document.getElementById(id));
  return chart ? chart.options.scales.x.title.text : null;
}"""


def test_epoch_run_shows_progress_eta_and_refreshes_its_metrics_on_completion(
        live_server: str, page, app) -> None:
    """An XGBoost run 10 epochs long, 4 done at one epoch every 10 s: the page shows the
    budget, elapsed time and time left, labels its charts in epochs from the first paint,
    and on completion shows the final figures and clears what only held while it ran."""
    from playwright.sync_api import expect

    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="xgb-live", model_type="xgboost", algorithm="XGBoost",
                                  config={"train_params": {"epochs": 10}})
        now = time.time()
        store.log_metrics(run_id, [row for e in range(1, 5) for row in (
            ("train/global_step", e, float(e), now - 10 * (4 - e)),
            ("train/loss", e, 1.0 / e, now - 10 * (4 - e)))])
    seen = watch(page, live_server)
    page.goto(f"{live_server}/runs/{run_id}")
    assert page.locator("#progress-done").inner_text() == "4 / 10 epochs"
    assert page.locator("#progress-percent").inner_text() == "40.0%"
    # 6 epochs at 10 s each, less the seconds since the last one.
    assert re.fullmatch(r"about (1m 00s|5\ds)", page.locator("#progress-left").inner_text())
    assert re.fullmatch(r"\d+s", page.locator("#progress-elapsed").inner_text())
    assert page.locator("#run-duration").inner_text().endswith(" so far")
    assert_chart_drawn(page, "chart-loss")
    assert page.evaluate(X_TITLE, "chart-loss") == "epoch"
    assert page.locator("#train-again").get_attribute("href") == f"/train?from_run={run_id}"
    page.locator("#control-note").evaluate("n => n.textContent = 'pause requested'")
    screenshot(page, "history_run_progress_eta")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "history_run_progress_eta_phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    with app.app_context():
        store = get_store()
        later = time.time()
        store.log_metrics(run_id, [row for e in range(5, 11) for row in (
            ("train/global_step", e, float(e), later), ("train/loss", e, 1.0 / e, later))])
        store.update_run(run_id, summary={"validation_accuracy": 0.61234, "epochs": 10})
        store.set_status(run_id, "completed")
    expect(page.locator("#run-status")).to_have_text("completed", timeout=10_000)
    expect(page.locator('.stat[data-key="epochs"] .stat-value')).to_have_text("10")
    expect(page.locator('#summary-items .metric[data-key="validation_accuracy"] b')
           ).to_have_text("0.6123")
    expect(page.locator("#run-page")).to_have_attribute("data-finished", "true")
    assert page.locator("#run-progress").is_hidden() and page.locator("#live-note").is_hidden()
    assert page.locator("#control-note").inner_text() == ""
    assert page.locator("#stats-empty").is_hidden()
    assert page.evaluate(POINTS, "chart-loss") == [10, 10]  # the loss and its average
    assert page.locator("#resume-form").is_hidden()  # completed: nothing left to resume
    screenshot(page, "history_run_completed_without_reload")
    assert seen == {"errors": [], "outside": [], "failed": []}


def test_a_stopped_run_with_a_checkpoint_offers_resume(live_server: str, page, app,
                                                       tmp_path) -> None:
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"state")
    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="ppo-stopped", model_type="ppo", algorithm="PPO")
        store.log_events(run_id, [("checkpoint", {"path": str(checkpoint), "step": 2048},
                                   time.time())])
        store.set_status(run_id, "stopped")
    page.goto(f"{live_server}/runs/{run_id}")
    form = page.locator("#resume-form")
    assert form.is_visible() and page.locator("#train-again").is_visible()
    assert form.get_attribute("method") == "post"
    assert form.get_attribute("action") == f"/runs/{run_id}/resume"
    assert page.get_by_role("button", name="Resume from checkpoint").is_visible()
    # The run's controls: only "train again" is a legal move for a stopped run.
    assert page.locator('#run-controls [data-action="resume"]').is_disabled()
    assert page.locator("#train-again").get_attribute("aria-disabled") == "false"
    assert page.locator("#run-progress").is_hidden()
    screenshot(page, "history_run_stopped_resumable")
