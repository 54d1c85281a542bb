"""The backtest result read against its baselines, and the uploads list, in Debian's
chromium: one Buy & Hold figure, colours that compare with the baselines (with their
legend), the in-sample warning, and an upload shown by its name and removed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.browser.conftest import screenshot
from tests.conftest import SAMPLE_CSV, make_app
from tests.test_ppo_loader import train_tiny

pytestmark = pytest.mark.browser

SHOTS = Path("/work/helpers/shots/backtest")
# The colours the page's theme gives each verdict (static/css/app.css, dark theme).
VERDICT_COLOURS = {"beats": "rgb(63, 185, 127)", "between": "rgb(229, 182, 74)",
                   "below": "rgb(240, 106, 106)"}


@pytest.fixture(scope="module")
def trained(sample_bars: pd.DataFrame, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("Models")
    train_tiny(sample_bars.iloc[:400], folder)
    return folder


@pytest.fixture()
def app(database_url: str, trained: Path, tmp_path: Path) -> Iterator:
    from web.store import close_store

    flask_app = make_app(database_url, trained, tmp_path)
    yield flask_app
    close_store(flask_app)


def shot(page, name: str, selector: str | None = None) -> None:
    """A screenshot for the test artifacts and, where the folder exists, for review."""
    screenshot(page, name)
    if SHOTS.parent.is_dir():
        SHOTS.mkdir(exist_ok=True)
        target = page.locator(selector) if selector else page
        target.screenshot(path=str(SHOTS / f"{name}.png"))


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
