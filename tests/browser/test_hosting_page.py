"""The API hosting page as a person uses it, in Debian's chromium: host a model, fill a
window from a CSV, send it, read the reply and copy the commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.browser import screenshot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def xgb_model(tiny_xgb: Path) -> Path:
    return tiny_xgb


@pytest.fixture()
def library(app, xgb_model: Path, models_dir: Path, tmp_path: Path) -> str:
    shutil.copytree(xgb_model, models_dir / xgb_model.name)
    (models_dir / "PPO_half").mkdir()  # a broken folder: listed, cannot be hosted
    app.config["DATA_DIR"] = str(tmp_path / "data")  # only sample.csv is offered
    return xgb_model.name


def watch(page) -> list[str]:
    """Failed requests, error replies (but the API's answers and the favicon base.html does
    not have) and script errors, collected while the test runs."""
    problems: list[str] = []
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    page.on("response", lambda response: response.status >= 400
            and not response.url.endswith("/favicon.ico")
            and problems.append(f"{response.status}: {response.url}"))
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    return problems


def test_host_fill_send_and_copy(live_server: str, page, library: str) -> None:
    problems = watch(page)
    page.goto(live_server + "/hosting")
    assert "No model is hosted." in page.locator("#hosted").inner_text()
    screenshot(page, "hosting_nothing_hosted")

    page.select_option("#host-model", library)
    with page.expect_navigation():
        page.click("#host-submit")
    assert page.locator("#hosted-name").inner_text() == library
    assert page.locator("#pg-target").input_value() == ""  # the hosted model: /predict

    page.select_option("#pg-csv", "sample.csv")
    page.click("#pg-fill")
    page.wait_for_function("document.getElementById('pg-request').value.includes('Close')")
    assert "21 bars of sample.csv" in page.locator("#pg-window-info").inner_text()
    window = json.loads(page.locator("#pg-request").input_value())["window"]
    assert len(window) == 21 and list(window[0])[:4] == ["Open", "High", "Low", "Close"]

    page.click("#pg-send")
    page.wait_for_function("!document.getElementById('pg-status').hidden")
    assert page.locator("#pg-status").inner_text().startswith("200")
    reply = json.loads(page.locator("#pg-response").inner_text())
    assert reply["action_name"] in ("Hold", "Buy", "Sell")

    curl = page.locator("#pg-curl").inner_text()
    assert curl.startswith(f"curl -s -X POST '{live_server}/predict'")
    assert "Content-Type: application/json" in curl and '"window":[{"Open":' in curl
    standalone = page.locator("#pg-standalone").inner_text()
    assert standalone.startswith(".venv/bin/python Api_Loader.py --model-dir ")
    assert standalone.endswith(f"/{library} --port 8001")
    screenshot(page, "hosting_playground_reply")
    assert problems == []


def test_library_target_and_errors_are_shown(live_server: str, page, library: str) -> None:
    problems = watch(page)
    page.goto(live_server + f"/hosting?model={library}")
    assert page.locator("#host-model").input_value() == library  # preselected
    assert page.locator("#pg-target").input_value() == library  # nothing hosted yet
    assert page.locator("#pg-url").inner_text() == f"POST /api/models/{library}/predict"

    page.fill("#pg-end", "5")  # too early for a 21-bar window
    page.click("#pg-fill")
    info = page.locator("#pg-window-info.error-text")
    info.wait_for()
    assert "choose bar 20 or later" in info.inner_text()

    page.fill("#pg-end", "2010-06-15")
    page.press("#pg-end", "Enter")
    page.wait_for_function("document.getElementById('pg-request').value.includes('Close')")
    assert "ending at bar" in page.locator("#pg-window-info").inner_text()
    page.click("#pg-send")
    page.wait_for_function("!document.getElementById('pg-status').hidden")
    assert "action_name" in page.locator("#pg-response").inner_text()
    assert f"{live_server}/api/models/{library}/predict" in page.locator("#pg-curl").inner_text()

    page.fill("#pg-request", '{"window": [{"Open": 1}]}')
    page.click("#pg-send")
    page.wait_for_function("document.getElementById('pg-status').textContent.startsWith('422')")
    assert "missing" in page.locator("#pg-response.is-error").inner_text()
    screenshot(page, "hosting_playground_error")

    page.select_option("#host-model", "PPO_half")
    with page.expect_navigation():
        page.click("#host-submit")
    error = page.locator("#host-error").inner_text()
    assert "expected one *_config.yaml, found no" in error
    page.click("#theme-toggle")
    screenshot(page, "hosting_host_error_light")
    assert problems == [f"422: {live_server}/api/hosting/sample-window?csv=sample.csv&end=5"
                        f"&model={library}", f"422: {live_server}/api/models/{library}/predict",
                        f"422: {live_server}/hosting"]  # the answers the test asked for
