"""Error pages as a person meets them in Debian's chromium: a mistyped address, an unknown
backtest, an upload over the limit. Each is the app's own styled page with a way home."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.browser import screenshot

pytestmark = pytest.mark.browser

LIMIT = 100_000  # bytes; sample.csv (~250 KB) is over it


@pytest.fixture(scope="module")
def xgb_model(tiny_xgb: Path) -> Path:
    return tiny_xgb


@pytest.fixture()
def small_uploads(app, xgb_model: Path, models_dir: Path) -> None:
    shutil.copytree(xgb_model, models_dir / xgb_model.name)
    app.config["MAX_CONTENT_LENGTH"] = LIMIT


def error_page(page, status: int) -> str:
    card = page.locator(f'#error-page[data-status="{status}"]')
    assert card.is_visible()
    assert page.locator(".topbar nav a").count() >= 5  # the app's menu, not a bare page
    assert page.locator("#error-home").get_attribute("href") == "/"
    return page.locator("#error-message").inner_text()


@pytest.mark.parametrize(("path", "said"), [
    ("/no/such/page", "There is no page at /no/such/page."),
    ("/backtest/0123456789abcdef", "no backtest '0123456789abcdef'"),  # the route's words
])
def test_a_mistyped_address_is_the_styled_404_with_a_way_home(live_server: str, page,
                                                              path: str, said: str) -> None:
    response = page.goto(live_server + path)
    assert response.status == 404 and page.title() == "Page not found · Galaxy Models"
    assert said in error_page(page, 404)
    screenshot(page, f"error_404{path.replace('/', '_')}")
    with page.expect_navigation():
        page.click("#error-home")
    assert page.url == live_server + "/"


def test_an_upload_over_the_limit_is_a_styled_413(live_server: str, page, small_uploads,
                                                  sample_path: Path) -> None:
    # The Backtest form's over-size upload is the styled page, in the form's own words ...
    page.goto(live_server + "/backtest")
    page.set_input_files("#upload", str(sample_path))
    with page.expect_navigation() as navigation:
        page.click("#backtest-form button[type=submit]")
    assert navigation.value.status == 413
    assert "the upload is larger than the 98 KiB limit" in error_page(page, 413)
    screenshot(page, "error_413_backtest_form")
    # ... and any other page's over-size body gets it too.
    page.goto(live_server + "/hosting")
    with page.expect_navigation() as navigation:
        page.evaluate("""size => {
            const form = document.getElementById('host-form');
            const big = document.createElement('input');
            big.type = 'hidden'; big.name = 'note'; big.value = 'x'.repeat(size);
            form.appendChild(big); form.submit(); }""", LIMIT + 1)
    assert navigation.value.status == 413 and page.title() == "Upload too large · Galaxy Models"
    assert "larger than the 98 KiB limit" in error_page(page, 413)
    screenshot(page, "error_413_page")
