"""A new user's whole journey, in Debian's chromium: train a PPO agent from the form
(smoke budget, the CLI's own training in a child process), watch its run page until it
completes, find it in the history, backtest it, host it and get a prediction from the
playground, then delete it; plus the run page's controls."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import INKED_PIXELS, assert_chart_drawn, screenshot, watch
from web.store import get_store

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_train_a_ppo_agent_from_the_form_and_see_it_complete(app, live_server, page) -> None:
    seen = watch(page, live_server)
    page.goto(f"{live_server}/train?model=ppo")
    page.fill("#model_name", "web_agent")
    page.click("#all-params > summary")  # the rarer parameters are folded
    page.fill("[name='train_params.seed']", "3")
    # A full-page screenshot resizes the viewport, and chromium then scrolls a focused
    # input back into view, under the next click: nothing is left focused.
    page.evaluate("document.activeElement.blur()")
    screenshot(page, "train_form_ppo")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[1]
    # The child process records the run as it starts; the page polls until it ends.
    expect(page.locator("#run-status-badge")).to_have_text("completed", timeout=240_000)
    assert_chart_drawn(page, "chart-reward")
    expect(page.locator("#run-model a")).to_have_text("PPO_web_agent")  # saved meanwhile
    screenshot(page, "train_run_completed")
    with app.app_context():
        run = get_store().get_run(run_id)
    assert run["name"] == "web_agent" and run["model_dir"].endswith("PPO_web_agent")
    assert run["config"]["train_params"]["seed"] == 3

    page.goto(f"{live_server}/runs")
    row = page.locator("tr", has_text=run_id[:8])
    expect(row.locator(".badge")).to_have_text("completed")
    screenshot(page, "train_run_in_history")

    backtest_the_new_model(page, live_server)
    host_it_and_ask_for_a_prediction(page, live_server)
    delete_it(page, live_server)
    assert not seen["errors"] and not seen["outside"] and not seen["failed"], seen


def backtest_the_new_model(page, live_server: str) -> None:
    page.goto(f"{live_server}/backtest?model=PPO_web_agent")
    page.select_option("#csv", "sample.csv")
    page.click("#run-backtest")
    page.wait_for_selector("#statistics table.stats")
    header = page.locator("table.stats thead th").all_text_contents()
    assert header == ["", "Strategy", "Buy & Hold", "Random (median)"]
    page.wait_for_function("() => window.backtestCharts && window.backtestCharts().length == 3")
    for canvas in ("equity-chart", "price-chart"):
        page.wait_for_function(f"({INKED_PIXELS})('{canvas}') > 2000")
    screenshot(page, "journey_backtest")


def host_it_and_ask_for_a_prediction(page, live_server: str) -> None:
    page.goto(f"{live_server}/hosting?model=PPO_web_agent")
    with page.expect_navigation():
        page.click("#host-submit")
    expect(page.locator("#hosted-name")).to_have_text("PPO_web_agent")
    page.select_option("#pg-csv", "sample.csv")
    page.click("#pg-fill")
    page.wait_for_function("document.getElementById('pg-request').value.includes('Close')")
    page.click("#pg-send")
    expect(page.locator("#pg-status")).to_contain_text("200")
    reply = json.loads(page.locator("#pg-response").inner_text())
    assert reply["action_name"] in ("Hold", "Buy", "Sell") and "value_estimate" in reply
    screenshot(page, "journey_prediction")


def delete_it(page, live_server: str) -> None:
    page.goto(f"{live_server}/models/PPO_web_agent/delete")
    with page.expect_navigation():
        page.click("#confirm-delete")
    expect(page.locator("#deleted-notice")).to_contain_text("PPO_web_agent")
    expect(page.locator("a.model-link", has_text="web_agent")).to_have_count(0)
    screenshot(page, "journey_deleted")


def test_a_bad_value_is_shown_beside_its_field(live_server, page) -> None:
    page.goto(f"{live_server}/train?model=xgboost")
    page.fill("#model_name", "x")
    page.click("#all-params > summary")
    page.fill("[name='model_params.max_depth']", "0")
    page.click("button[type=submit]")
    error = page.locator(".field.invalid", has=page.locator("[name='model_params.max_depth']"))
    expect(error.locator(".field-error")).to_contain_text("max_depth must be in [1, 32]")
    screenshot(page, "train_form_error")


def test_the_run_page_pauses_and_stops_an_active_run(app, live_server, page) -> None:
    with app.app_context():
        run_id = get_store().create_run(name="live-agent", model_type="ppo")
    page.goto(f"{live_server}/runs/{run_id}")
    controls = page.locator("#run-controls")  # enabled where the state allows the move
    expect(controls.locator("[data-action=pause]")).to_be_enabled()
    expect(controls.locator("[data-action=resume]")).to_be_disabled()
    controls.locator("[data-action=pause]").click()
    expect(page.locator("#control-note")).to_contain_text("pause requested")
    with app.app_context():
        assert get_store().get_control(run_id) == "pause"
        get_store().set_status(run_id, "paused")  # what RunControl does when it obeys
    expect(controls.locator("[data-action=resume]")).to_be_enabled(timeout=10_000)
    page.once("dialog", lambda dialog: dialog.accept())
    controls.locator("[data-action=stop]").click()
    expect(page.locator("#control-note")).to_contain_text("stop requested")
    with app.app_context():
        assert get_store().get_control(run_id) == "stop"
        get_store().set_status(run_id, "stopped")
    for action in ("pause", "resume", "stop"):  # an ended run takes no control
        expect(controls.locator(f"[data-action={action}]")).to_be_disabled(timeout=10_000)
