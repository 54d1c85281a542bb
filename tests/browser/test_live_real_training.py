"""A real PPO training watched live (Debian's chromium): started through the JSON API (the
CLI's own training in a child process, smoke budget), its run page fills its KPI cards,
agent cards, trades and decision panel from what the trainer emits, over the stream
alone, until the run completes."""

from __future__ import annotations

import pytest

from tests.helpers.browser import INKED_PIXELS, assert_chart_drawn, screenshot, watch
from web.training_jobs import jobs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# A smoke PPO run long enough to be watched: the monitor snapshots each featured account
# a few times a second, so a few seconds of training fill every panel.
BODY = {"model_type": "ppo", "data": "sample.csv", "model_name": "watched", "mode": "smoke",
        "config": {"train_params": {"total_timesteps": 40_960, "seed": 5}}}


def test_a_real_training_fills_the_live_page_by_push(app, live_server: str, page) -> None:
    from playwright.sync_api import expect

    client = app.test_client()
    started = client.post("/api/training-runs", json=BODY)
    assert started.status_code == 202, started.get_json()
    run_id = started.get_json()["run_id"]
    seen = watch(page, live_server)
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(f"{live_server}/runs/{run_id}")
    expect(page.locator("#run-page")).to_have_attribute("data-stream", "live", timeout=30_000)

    # What the trainer emits arrives while it trains: featured accounts, trades, decisions.
    expect(page.locator("#agent-grid .agent")).to_have_count(4, timeout=120_000)
    expect(page.locator("#trade-rows tr").first).to_be_visible(timeout=60_000)
    expect(page.locator("#decision-body")).to_be_visible(timeout=60_000)
    assert page.locator("#decision-bars .prob-row").count() == 3
    expect(page.locator('.kpi[data-kpi="episode"] .kpi-value')).not_to_have_text("—",
                                                                              timeout=60_000)
    # Series that first came over the stream (the page opened before the first update)
    # are drawn with their averages while the run trains, not only after it ends.
    for canvas in ("chart-loss", "chart-winrate", "chart-sharpe"):
        page.wait_for_function(f"({INKED_PIXELS})('{canvas}') > 2000", timeout=120_000)
    assert "undefined" not in page.locator("#charts").inner_text()
    screenshot(page, "live_real_training_running")

    expect(page.locator("#run-status-badge")).to_have_text("completed", timeout=240_000)
    for canvas in ("chart-reward", "chart-loss", "chart-entropy", "chart-value",
                   "chart-equity"):
        assert_chart_drawn(page, canvas)
    screenshot(page, "live_real_training_completed")
    with app.app_context():
        assert jobs().wait(run_id, timeout=60) == 0
    asked = [u for u in urls if "/static/" not in u and not u.endswith("/favicon.ico")]
    # The page, its snapshot, its stream; once ended, one snapshot for the final figures.
    assert sum("/events" in u for u in asked) >= 1
    assert sum("live.json" in u for u in asked) <= 2, asked
    assert len(asked) <= 2 + sum("/events" in u for u in asked) + 1, asked
    assert not seen["errors"] and not seen["outside"], seen
