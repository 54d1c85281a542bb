"""The home page as a person sees it, in Debian's chromium."""

from __future__ import annotations

import pytest

from NetworkConfigs import register_model_type, unregister_model_type
from tests.helpers.browser import screenshot
from tests.helpers.fake_model_type import FREQUENCY_TYPE, seed_dashboard

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
