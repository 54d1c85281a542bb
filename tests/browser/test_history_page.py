"""The training history pages as a person sees them, in Debian's chromium."""

from __future__ import annotations

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
    assert page.locator("#run-page").get_attribute("data-polling") == "false"
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
    assert page.locator("#box-reward").is_hidden()
    screenshot(page, "history_run_supervised")
    assert seen == {"errors": [], "outside": [], "failed": []}


def test_active_run_page_polls_until_the_run_ends(live_server: str, page, app) -> None:
    runs = seed_runs(app)
    seen = watch(page, live_server)
    page.goto(f"{live_server}/runs/{runs['live']}")
    status = page.locator("#run-status")
    assert status.inner_text() == "running"
    assert page.locator("#live-note").is_visible()
    assert page.locator("#run-duration").inner_text() == "Running…"
    assert_chart_drawn(page, "chart-reward")
    assert page.locator("#run-page").get_attribute("data-polling") == "true"
    screenshot(page, "history_run_live")

    from playwright.sync_api import expect

    with app.app_context():
        store = get_store()
        with MetricsLogger(store, runs["live"], flush_interval=3600) as metrics:
            for episode in range(31, 61):
                metrics.log_episode(episode, reward=reward(episode), steps=50, win=won(episode))
    episodes = page.locator('.stat[data-key="total_episodes"] .stat-value')
    expect(episodes).to_have_text("60", timeout=10_000)  # the next poll redraws in place
    assert page.evaluate(POINTS, "chart-reward") == [60, 60]

    with app.app_context():
        get_store().set_status(runs["live"], "completed")
    expect(status).to_have_text("completed", timeout=10_000)
    expect(status).to_have_class("badge completed")
    expect(page.locator("#run-status-badge")).to_have_text("completed")
    expect(page.locator("#run-page")).to_have_attribute("data-polling", "false")
    assert page.locator("#live-note").is_hidden()
    assert page.locator("#run-duration").inner_text() != "Running…"
    assert page.locator("#run-ended").inner_text().endswith("UTC")
    screenshot(page, "history_run_finished_after_polling")
    assert seen == {"errors": [], "outside": [], "failed": []}


def test_empty_history_and_unknown_run(live_server: str, page) -> None:
    page.goto(live_server + "/runs")
    assert "No training runs recorded yet" in page.locator("#runs .empty").inner_text()
    screenshot(page, "history_list_empty")
    response = page.goto(live_server + "/runs/00000000-0000-0000-0000-000000000000")
    assert response.status == 404
    assert "Run not found" in page.locator("h1").inner_text()
    screenshot(page, "history_run_not_found")
