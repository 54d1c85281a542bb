"""Curating runs as a person does, in Debian's chromium: tag and describe a run on its
page, download its metrics, pick runs for the compare view, archive it (gone from the
list, back with "Show archived"), restore it, and delete it through the confirmation
page (with its saved model, ticked)."""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers.browser import screenshot, watch
from web.store import get_store

pytestmark = pytest.mark.browser
SHOTS = Path("/work/helpers/shots/curation")


def shot(page, name: str) -> None:
    """The suite's screenshot artifact, and a copy where the helper's report points."""
    path = screenshot(page, name)
    if SHOTS.parent.is_dir():
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(path, SHOTS / path.name)


def seed(app) -> dict[str, str]:
    with app.app_context():
        store = get_store()
        ids = {}
        for name in ("alpha", "beta", "gamma"):
            ids[name] = store.create_run(name=name, model_type="ppo", algorithm="PPO")
            store.log_metrics(ids[name], [("episode/reward", step, step * 0.5, 1.0 + step)
                                          for step in range(1, 41)])
            store.set_status(ids[name], "completed")
        folder = Path(app.config["MODELS_DIR"]) / "PPO_alpha"
        folder.mkdir()
        (folder / "alpha_model.pt").write_bytes(b"weights")
        store.update_run(ids["alpha"], model_dir=str(folder))
        ids["live"] = store.create_run(name="live", model_type="ppo", algorithm="PPO")
    return ids


def test_tag_archive_restore_and_delete_a_run(live_server: str, page, app,
                                              tmp_path: Path) -> None:
    ids = seed(app)
    seen = watch(page, live_server)
    alpha = ids["alpha"]

    # Tag and describe the run on its page.
    page.goto(f"{live_server}/runs/{alpha}")
    page.click("#labels-edit summary")
    page.fill("#edit-experiment", "lr-sweep")
    page.fill("#edit-tags", "baseline, fast")
    page.fill("#edit-description", "Learning rate 3e-4, the baseline of the sweep.")
    page.fill("#edit-notes", "Reward still rising at the end: train longer.")
    shot(page, "curation_edit_form")
    page.click("#save-labels")
    page.wait_for_url(f"**/runs/{alpha}#run-labels")
    assert page.locator("#label-experiment").inner_text() == "lr-sweep"
    assert page.locator("#label-tags .tag").all_inner_texts() == ["baseline", "fast"]
    assert "train longer" in page.locator("#label-notes").inner_text()
    assert "Saved the labels" in page.locator("#run-notice").inner_text()
    shot(page, "curation_labels_saved")

    # Its metrics as CSV, parsed back.
    with page.expect_download() as download:
        page.click("#download-csv")
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0] == ["key", "step", "value", "wall_time"] and len(rows) == 41
    assert rows[-1] == ["episode/reward", "40", "20.0", "41.0"]

    # The list: labels on the row, filters, and runs picked for the compare view.
    page.goto(f"{live_server}/runs")
    row = page.locator(f'tr[data-run-id="{alpha}"]')
    assert "lr-sweep" in row.locator("td.labels").inner_text()
    page.select_option("#filter-experiment", "lr-sweep")
    page.wait_for_url("**/runs?experiment=lr-sweep")
    assert page.locator("#runs tbody tr").count() == 1
    page.goto(f"{live_server}/runs")
    assert page.locator("#compare-selected").is_disabled()
    page.check(f'.compare-pick[value="{alpha}"]')
    page.check(f'.compare-pick[value="{ids["beta"]}"]')
    assert page.locator("#compare-selected").is_enabled()
    assert page.locator("#compare-note").inner_text() == "2 runs ticked."
    shot(page, "curation_list_compare_picked")
    with page.expect_request("**/compare?runs=*") as asked:
        page.click("#compare-selected")
    query = parse_qs(urlsplit(asked.value.url).query)
    assert sorted(query["runs"][0].split(",")) == sorted([alpha, ids["beta"]])
    page.goto(f"{live_server}/runs")  # the same picks go to the held-out evaluation form
    page.check(f'.compare-pick[value="{alpha}"]')
    page.check(f'.compare-pick[value="{ids["beta"]}"]')
    with page.expect_request("**/evaluate?runs=*") as asked:
        page.click("#evaluate-selected")
    query = parse_qs(urlsplit(asked.value.url).query)
    assert sorted(query["runs"][0].split(",")) == sorted([alpha, ids["beta"]])

    # Archive: gone from the list, back with "Show archived".
    page.goto(f"{live_server}/runs/{alpha}")
    page.click("#archive-run")
    page.wait_for_selector("#run-archived-badge")
    page.goto(f"{live_server}/runs")
    assert page.locator(f'tr[data-run-id="{alpha}"]').count() == 0
    page.check("#filter-archived")
    page.wait_for_url("**/runs?archived=all")
    assert page.locator(f'tr[data-run-id="{alpha}"] .archived-badge').is_visible()
    shot(page, "curation_list_show_archived")

    # Restore.
    page.goto(f"{live_server}/runs/{alpha}")
    page.click("#restore-run")
    page.wait_for_selector("#archive-run")
    page.goto(f"{live_server}/runs")
    assert page.locator(f'tr[data-run-id="{alpha}"]').count() == 1

    # A live run: archive and delete wait, and say why.
    page.goto(f"{live_server}/runs/{ids['live']}")
    assert page.locator("#archive-run").is_disabled()
    assert page.locator("#delete-run").is_disabled()
    assert "wait for the run to end" in page.locator("#curate-reason").inner_text()
    page.locator("#run-labels").scroll_into_view_if_needed()
    shot(page, "curation_live_run_buttons")

    # Delete through the confirmation page, with the saved model ticked.
    page.goto(f"{live_server}/runs/{alpha}")
    page.click("#delete-run")
    page.wait_for_url(f"**/runs/{alpha}/delete*")
    assert page.locator("#plan-points").inner_text().startswith("40 metric points")
    assert page.locator("#plan-events").inner_text().startswith("2 events")
    assert "PPO_alpha is kept unless" in page.locator("#plan-model").inner_text()
    page.check("#delete-model")
    shot(page, "curation_delete_confirm")
    page.click("#confirm-delete")
    page.wait_for_url(f"{live_server}/runs")
    assert "and its model PPO_alpha" in page.locator(".notice").inner_text()
    assert page.locator(f'tr[data-run-id="{alpha}"]').count() == 0
    assert not (Path(app.config["MODELS_DIR"]) / "PPO_alpha").exists()
    shot(page, "curation_deleted")
    assert not seen["errors"] and not seen["outside"], seen


def test_labels_from_the_train_form_reach_the_run_page(live_server: str, page, app) -> None:
    """Labelled on the Train form, the run's page shows them while it starts and after the
    child took the run over; Archive and Delete turn on when it ends, without a reload."""
    from playwright.sync_api import expect

    with app.app_context():
        get_store().create_run(name="older", model_type="xgboost", experiment="depth-sweep")
    seen = watch(page, live_server)
    page.goto(f"{live_server}/train?model=xgboost")
    page.fill("#model_name", "labelled")
    assert page.locator("#experiment-names option").evaluate_all(
        "options => options.map(o => o.value)") == ["depth-sweep"]
    page.fill("#experiment", "depth-sweep")
    page.fill("#tags", "baseline, d3")
    page.fill("#description", "Depth 3 against the default.")
    page.evaluate("document.activeElement.blur()")
    page.locator("#run-labels").scroll_into_view_if_needed()
    shot(page, "curation_train_form_labels")
    page.click("#start-training")
    page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]{36}$"))
    expect(page.locator("#label-experiment")).to_have_text("depth-sweep")
    expect(page.locator("#run-status-badge")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#archive-run")).to_be_enabled()  # turned on by the page itself
    expect(page.locator("#delete-run")).to_be_enabled()
    assert page.locator("#curate-reason").is_hidden()
    page.reload()
    assert page.locator("#label-tags .tag").all_inner_texts() == ["baseline", "d3", "smoke"]
    assert page.locator("#label-description").inner_text() == "Depth 3 against the default."
    assert not seen["errors"] and not seen["outside"], seen


def test_the_curation_pages_fit_a_phone(live_server: str, app, chromium_path: str) -> None:
    """The run page with its labels form open, and the delete page, at 390 px: nothing
    wider than the screen."""
    from playwright.sync_api import sync_playwright

    from tests.helpers.browser import CHROMIUM_ARGS

    ids = seed(app)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        phone = context.new_page()
        try:
            phone.goto(f"{live_server}/runs/{ids['alpha']}")
            phone.click("#labels-edit summary")
            phone.locator("#run-labels").scroll_into_view_if_needed()
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
            shot(phone, "curation_mobile_run_labels")
            phone.goto(f"{live_server}/runs/{ids['alpha']}/delete")
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
            shot(phone, "curation_mobile_delete")
        finally:
            context.close()
            browser.close()
