"""The backtest page as a person uses it, in Debian's chromium: choose, run, watch the
job's progress, read the charts; read the result against its baselines (one Buy & Hold
figure, colours that compare with the baselines, the in-sample warning); an upload
shown by its name and removed."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.apps import make_app
from tests.helpers.browser import ARTIFACTS, screenshot
from tests.helpers.models import TrainedModel, model_library
from tests.helpers.paths import SAMPLE_CSV
from web import backtest_jobs

pytestmark = pytest.mark.browser

# Non-transparent pixels of a canvas (Chart.js draws on a transparent background).
INK = """(id) => {
  const canvas = document.getElementById(id);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) ink++;
  return ink;
}"""


@pytest.fixture(scope="module")
def trained(tiny_ppo: TrainedModel, tmp_path_factory) -> Path:
    return model_library(tmp_path_factory.mktemp("Models"), tiny_ppo.folder)


@pytest.fixture()
def app(database_url: str, trained: Path, tmp_path: Path) -> Iterator:
    from web.store import close_store

    flask_app = make_app(database_url, trained, tmp_path)
    yield flask_app
    close_store(flask_app)


@pytest.fixture()
def held(monkeypatch) -> Iterator[threading.Event]:
    """Backtest jobs report 40 % and then wait until the test sets the event, so the
    progress page can be seen (a tiny model's backtest is over in a moment)."""
    release = threading.Event()
    real = backtest_jobs.run_request

    def run_request(request, progress=None):
        progress(0.4 / 0.9, "the model is deciding")
        assert release.wait(60), "the test never released the job"
        return real(request, progress)

    monkeypatch.setattr(backtest_jobs, "run_request", run_request)
    yield release
    release.set()


def test_run_a_backtest_and_read_the_charts(live_server: str, page, held) -> None:
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(live_server + "/backtest")
    screenshot(page, "backtest_form")
    page.select_option("#model", "PPO_tiny")
    page.select_option("#csv", "sample.csv")
    assert page.input_value("#commission") == "0.0005"
    page.click("#run-backtest")
    page.wait_for_selector("#job")  # the job's page: its progress, polled
    page.wait_for_function(
        "() => document.getElementById('job-percent').textContent === '40 %'")
    assert page.inner_text("#job-stage") == "the model is deciding"
    assert "/backtest/PPO_tiny-" in page.url
    job_url = page.url
    screenshot(page, "backtest_progress")
    held.set()
    page.wait_for_selector("#statistics table.stats")  # the same URL, now the result
    assert page.url == job_url
    header = page.locator("table.stats thead th").all_text_contents()
    assert header == ["", "Strategy", "Buy & Hold", "Random (median)"]
    page.wait_for_function("() => window.backtestCharts && window.backtestCharts().length == 3")
    for canvas in ("equity-chart", "drawdown-chart", "price-chart"):
        assert page.evaluate(INK, canvas) > 2000, canvas
    screenshot(page, "backtest_result")

    # Hovering the price line shows the PPO's decision at that bar.
    page.locator("#price").scroll_into_view_if_needed()
    box = page.locator("#price-chart").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.5)
    page.wait_for_function("() => backtestCharts()[2].tooltip.opacity > 0")
    tooltip = page.evaluate("""() => {
      const t = backtestCharts()[2].tooltip;
      return {title: t.title, body: t.body.flatMap(b => b.lines), after: t.afterBody};
    }""")
    lines = "\n".join(tooltip["after"])
    assert tooltip["title"] and tooltip["title"][0][:2] in ("20", "19")
    for label in ("Decision: ", "P(Hold): ", "P(Buy): ", "P(Sell): ", "Value estimate: "):
        assert label in lines, tooltip
    page.locator("#price").screenshot(path=str(ARTIFACTS / "backtest_price_tooltip.png"))

    page.click("#theme-toggle")  # charts are redrawn in the light theme's colours
    assert page.evaluate(INK, "equity-chart") > 2000
    screenshot(page, "backtest_result_light")
    page.click("#theme-toggle")
    assert failed == []


def test_form_errors_appear_beside_their_fields(live_server: str, page) -> None:
    page.goto(live_server + "/backtest?model=PPO_tiny")
    page.fill("#commission", "-1")
    page.fill("#start", "2012-06-01")
    page.fill("#end", "2012-01-01")
    page.set_input_files("#upload", files=[{"name": "bad.csv", "mimeType": "text/csv",
                                            "buffer": b"Date,Price\n2020-01-01,1\n"}])
    page.click("#run-backtest")
    page.wait_for_selector("#commission-error")
    assert page.inner_text("#commission-error") == "commission cannot be negative; got -1"
    assert page.inner_text("#end-error") == "end 2012-01-01 is before start 2012-06-01"
    assert "missing required column" in page.inner_text("#upload-error")
    assert page.input_value("#start") == "2012-06-01"  # values are kept
    screenshot(page, "backtest_form_errors")


def test_a_backtest_that_fails_shows_the_form_with_the_error(live_server: str, page) -> None:
    """Only the run finds the period empty: the job's page becomes the form again."""
    page.goto(live_server + "/backtest?model=PPO_tiny")
    page.fill("#start", "2030-01-01")
    page.click("#run-backtest")
    page.wait_for_selector("#start-error")
    assert "/backtest/PPO_tiny-" in page.url
    assert page.inner_text("#start-error").startswith("no bars between 2030-01-01")
    assert "could not run" in page.inner_text("#job-failed")
    assert page.input_value("#start") == "2030-01-01"
    screenshot(page, "backtest_failed_job")


# ------------------------------------------------------------------ against the baselines

# The colours the page's theme gives each verdict (static/css/app.css, dark theme).
VERDICT_COLOURS = {"beats": "rgb(63, 185, 127)", "between": "rgb(229, 182, 74)",
                   "below": "rgb(240, 106, 106)"}


def shot(page, name: str, selector: str | None = None) -> None:
    """The whole page, and the part ``selector`` names, as test artifacts (look at them)."""
    screenshot(page, name)
    if selector:
        page.locator(selector).screenshot(path=str(ARTIFACTS / f"{name}_part.png"))


def upload_sample_tail(page, rows: int = 700) -> None:
    lines = SAMPLE_CSV.read_text().splitlines(keepends=True)
    content = "".join(lines[:1] + lines[-rows:]).encode()
    page.set_input_files("#upload", files=[{"name": "my bars (2019).csv",
                                            "mimeType": "text/csv", "buffer": content}])


def test_the_result_reads_against_its_baselines(live_server: str, page) -> None:
    page.goto(live_server + "/backtest?model=PPO_tiny")
    # A range inside the dates the model learned from is said to be in-sample at once.
    page.fill("#start", "2000-06-01")
    page.fill("#end", "2000-12-31")
    warning = page.locator("#in-sample-warning")
    assert warning.is_visible() and warning.inner_text().startswith("In-sample: ")
    page.fill("#start", "")
    page.fill("#end", "")
    assert not warning.is_visible()
    page.select_option("#csv", "sample.csv")
    page.fill("#commission", "0.002")
    page.click("#run-backtest")
    page.wait_for_selector("#statistics table.stats")

    cards = {page.locator(".tile span").nth(i).inner_text().lower():
             page.locator(".tile b").nth(i) for i in range(page.locator(".tile").count())}
    table_bh = page.locator("table.stats tbody tr", has_text="Return [%]").first \
        .locator("td").nth(2).inner_text()
    assert cards["buy & hold (after costs)"].inner_text() == table_bh
    assert cards["price change (no costs)"].inner_text() != table_bh

    # The strategy's return is coloured by the rule, in the card and in the table.
    mine, held, rand = (float(re.sub(r"[%,]", "", page.locator(
        "table.stats tbody tr", has_text="Return [%]").first.locator("td").nth(i)
        .inner_text())) for i in (1, 2, 3))
    expected = "beats" if mine > max(held, rand) else "below" if mine < min(held, rand) \
        else "between"
    card = cards["return"]
    assert card.get_attribute("class") == expected
    assert card.evaluate("b => getComputedStyle(b).color") == VERDICT_COLOURS[expected]
    assert cards["buy & hold (after costs)"].evaluate(
        "b => getComputedStyle(b).color") not in VERDICT_COLOURS.values()
    assert page.locator("#verdict-legend").is_visible()
    # The whole sample file reaches back into the tiny model's training dates.
    assert page.locator("#in-sample-note").inner_text().startswith("Possibly in-sample: ")
    shot(page, "result_cards_table_legend", "#statistics")
    shot(page, "result_summary", "#summary")


def test_an_upload_is_listed_by_its_name_and_removed(live_server: str, page) -> None:
    page.goto(live_server + "/backtest?model=PPO_tiny")
    upload_sample_tail(page)
    page.click("#run-backtest")
    page.wait_for_selector("#statistics table.stats")
    assert "on my bars (2019).csv" in page.inner_text("#summary")
    page.goto(live_server + "/backtest")
    row = page.locator("#uploads tbody tr")
    assert row.count() == 1 and row.locator("td").first.inner_text() == "my bars (2019).csv"
    assert re.match(r"my bars \(2019\)\.csv · uploaded ",
                    page.locator("#csv option", has_text="my bars").inner_text())
    body = page.inner_text("body")
    assert not re.search(r"[0-9a-f]{8}-my bars", body)  # the internal name is never shown
    shot(page, "uploads_list", "#uploads")
    shot(page, "backtest_index_with_upload")

    page.click("#uploads .remove-upload")
    page.wait_for_selector("#confirm-remove")
    assert "1 saved backtest result" in page.inner_text("#confirm")
    shot(page, "remove_upload_confirm")
    page.click("#confirm-remove")
    page.wait_for_selector("#upload-removed")
    assert page.inner_text("#upload-removed") == "Removed my bars (2019).csv."
    assert page.locator("#uploads tbody tr").count() == 0
    shot(page, "upload_removed", "#uploads")
