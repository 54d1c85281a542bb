"""The home page as a person sees it, in Debian's chromium."""

from __future__ import annotations

import pytest

from NetworkConfigs import register_model_type, unregister_model_type
from tests.browser.conftest import screenshot
from tests.fake_model_type import FREQUENCY_TYPE

pytestmark = pytest.mark.browser


def test_empty_state_and_theme_toggle(page, live_server: str) -> None:
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


def test_models_and_runs_are_listed(page, live_server: str, app, bars, models_dir) -> None:
    from web.store import get_store

    register_model_type(FREQUENCY_TYPE)
    try:
        FREQUENCY_TYPE.trainer_class()({"lookback": 10}).fit(
            bars, model_name="demo", models_dir=models_dir, data_file="sample.csv")
        with app.app_context():
            store = get_store()
            finished = store.create_run(name="ppo-agent", model_type="ppo", algorithm="PPO")
            store.set_status(finished, "completed")
            failed = store.create_run(name="xgb-agent", model_type="xgboost")
            store.set_status(failed, "failed", error="diverged")
            store.create_run(name="live-agent", model_type="ppo")
        page.goto(live_server + "/")
        rows = page.locator("#runs tbody tr")
        assert rows.count() == 3
        badges = page.locator("#runs .badge").all_inner_texts()
        assert sorted(badges) == ["completed", "failed", "running"]
        assert "FREQ_demo" in page.locator("#models").inner_text()
        screenshot(page, "home_with_models_and_runs")
    finally:
        unregister_model_type(FREQUENCY_TYPE.name)
