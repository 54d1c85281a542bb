"""The home page as a person sees it, in Debian's chromium."""

from __future__ import annotations

import pytest

from NetworkConfigs import register_model_type, unregister_model_type
from tests.browser.conftest import screenshot
from tests.fake_model_type import FREQUENCY_TYPE, seed_dashboard

pytestmark = pytest.mark.browser


def test_empty_state_and_theme_toggle(live_server: str, page) -> None:
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(live_server + "/")
    assert page.locator("#models .empty").inner_text().startswith("No trained models yet")
    assert "No training runs recorded" in page.locator("#runs").inner_text()
    screenshot(page, "home_empty_dark")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.click("#theme-toggle")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    page.reload()  # the choice is remembered
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    screenshot(page, "home_empty_light")
    assert failed == []


def test_models_and_runs_are_listed(live_server: str, page, app, bars, models_dir) -> None:
    register_model_type(FREQUENCY_TYPE)
    try:
        seed_dashboard(app, bars, models_dir)
        page.goto(live_server + "/")
    finally:
        unregister_model_type(FREQUENCY_TYPE.name)
    assert page.locator("#runs tbody tr").count() == 3
    badges = page.locator("#runs .badge").all_inner_texts()
    assert sorted(badges) == ["completed", "failed", "running"]
    assert page.locator("#runs .badge.failed").get_attribute("title") == "diverged"
    assert "FREQ_demo" in page.locator("#models").inner_text()
    screenshot(page, "home_with_models_and_runs")

    # Every row opens what it lists, wherever it is clicked (here: a plain text cell, at
    # the mouse's position, as a person clicks: the row's link lies over the whole row).
    row = page.locator("#runs tbody tr", has=page.locator(".badge.completed"))
    run_id = row.locator("code").get_attribute("title")
    click_middle(page, row.locator("td").nth(1))
    page.wait_for_url(f"**/runs/{run_id}")
    assert page.locator("#run-page").get_attribute("data-run-id") == run_id
    page.go_back()
    click_middle(page, page.locator("#models tbody tr", has_text="FREQ_demo").locator("td").nth(1))
    page.wait_for_url("**/models/FREQ_demo")


def click_middle(page, cell) -> None:
    box = cell.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
