"""The model library as a person sees it, in Debian's chromium: list, model pages with
drawn validation charts (a real XGBoost smoke model and a tiny PPO model), deletion."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import screenshot
from tests.helpers.models import TrainedModel

pytestmark = pytest.mark.browser

# Non-transparent pixels of a canvas: a drawn chart has thousands, a blank one none.
INKED_PIXELS = """(id) => {
  const canvas = document.getElementById(id);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) inked++; }
  return inked;
}"""


@pytest.fixture(scope="module")
def trained(smoke_xgb: Path, tiny_ppo: TrainedModel) -> list[Path]:
    """Two real models, trained once per session: XGBoost and PPO."""
    return [smoke_xgb, tiny_ppo.folder]


@pytest.fixture()
def library(trained: list[Path], models_dir: Path) -> list[Path]:
    return [Path(shutil.copytree(model, models_dir / model.name)) for model in trained]


def watch(page) -> list[str]:
    """Failed requests, error responses and script errors, collected while the test runs.
    (base.html names no icon, so chromium's /favicon.ico 404 is not the page's fault.)"""
    problems: list[str] = []

    def response(reply) -> None:
        if reply.status >= 400 and not reply.url.endswith("/favicon.ico"):
            problems.append(f"{reply.status}: {reply.url}")

    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    page.on("response", response)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and "Failed to load resource"
            not in msg.text and problems.append(msg.text))
    return problems


def assert_charts_drawn(page) -> list[str]:
    page.wait_for_function("""() => {
      const all = document.querySelectorAll("canvas.history-chart");
      return all.length > 0 && [...all].every((c) => c.dataset.drawn === "true");
    }""")
    ids = page.eval_on_selector_all("canvas.history-chart", "els => els.map(e => e.id)")
    assert ids
    for canvas_id in ids:
        assert page.evaluate(INKED_PIXELS, canvas_id) > 2000, f"{canvas_id} is blank"
    return ids


def test_empty_library(live_server: str, page) -> None:
    problems = watch(page)
    page.goto(live_server + "/models")
    assert "No trained models yet" in page.locator("#library .empty").inner_text()
    assert page.locator("header nav a.active").inner_text() == "Models"
    screenshot(page, "library_empty")
    assert problems == []


def test_list_and_model_pages_draw_their_charts(live_server: str, page, library,
                                                models_dir: Path) -> None:
    (models_dir / "PPO_half").mkdir()  # a broken folder: listed with its error
    problems = watch(page)
    page.goto(live_server + "/models")
    assert page.locator("#library tbody tr").count() == 3
    assert page.locator(".chip").all_inner_texts() == [
        "All 3", "PPO Agent 1", "XGBoost Classifier 1", "Unreadable 1"]
    assert "expected one *_config.yaml" in page.locator("tr.broken").inner_text()
    screenshot(page, "library_list")
    page.click(".chip[data-type='xgboost']")  # a link: wait for the filtered page
    page.wait_for_url("**/models?type=xgboost")
    expect(page.locator("#library tbody tr")).to_have_count(1)

    page.click("a.model-link:has-text('smoke')")
    page.wait_for_url("**/models/XGB_smoke")
    assert assert_charts_drawn(page) == ["chart-loss", "chart-accuracy"]
    assert page.locator("#importance .bar-row").count() == 15
    widths = page.eval_on_selector_all(".bar-fill", "els => els.map(e => e.offsetWidth)")
    assert widths[0] > 0 and widths == sorted(widths, reverse=True)
    assert page.locator("#training-run").inner_text().strip() == "no recorded run"
    assert page.get_attribute("#backtest-link", "href") == "/backtest?model=XGB_smoke"
    assert page.get_attribute("#host-link", "href") == "/hosting?model=XGB_smoke"
    assert not page.locator("pre.config").is_visible()  # the config starts folded
    screenshot(page, "library_model_xgboost")
    page.click("#config summary")
    assert page.locator("pre.config").is_visible()

    page.goto(live_server + "/models/PPO_tiny")
    assert assert_charts_drawn(page) == ["chart-return"]
    assert page.locator("#importance").count() == 0
    assert "validation_return_pct" in page.locator("#metrics").inner_text()
    screenshot(page, "library_model_ppo")
    page.click("#theme-toggle")  # charts are redrawn in the light colours
    assert_charts_drawn(page)
    screenshot(page, "library_model_ppo_light")

    page.goto(live_server + "/models/PPO_half")
    assert "cannot be read" in page.locator("#model-error").inner_text()
    assert page.locator("#backtest-link").count() == 0
    screenshot(page, "library_model_broken")
    assert problems == []


def test_delete_through_the_confirmation(live_server: str, page, library) -> None:
    problems = watch(page)
    page.goto(live_server + "/models/PPO_tiny")
    page.click("#delete-link")
    page.wait_for_url("**/models/PPO_tiny/delete")
    assert "tiny_checkpoint.pt" in page.locator("#confirm").inner_text()
    assert library[1].is_dir()
    screenshot(page, "library_delete_confirm")
    page.click("#confirm-delete")
    page.wait_for_url("**/models")
    assert "Deleted model PPO_tiny" in page.locator("#deleted-notice").inner_text()
    assert page.locator("#library tbody tr").count() == 1
    assert page.locator("tr[data-dir='PPO_tiny']").count() == 0
    assert not library[1].exists()
    screenshot(page, "library_after_delete")
    assert problems == []
