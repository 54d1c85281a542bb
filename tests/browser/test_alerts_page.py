"""Issue 16 as a person sees it (Debian's chromium): with nothing configured, a training
raises complete and new-best alerts; they are in the Alerts feed with an unread count in
the menu, on the run page's "Alerts & log" card, and can be marked read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.browser import screenshot, watch
from Utilities import run_training
from Utilities.run_store import RunStore

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent.parent
SHOTS = Path("/work/helpers/shots/alerts")


def keep(name: str, shot: Path) -> None:
    if SHOTS.parent.is_dir():
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(shot, SHOTS / f"{name}.png")


def test_a_training_with_nothing_configured_shows_its_alerts(live_server: str, page, app,
                                                             tmp_path: Path,
                                                             monkeypatch) -> None:
    from playwright.sync_api import expect

    monkeypatch.setenv("ALERTS_CONFIG", str(tmp_path / "alerts.yaml"))
    (tmp_path / "alerts.yaml").write_text("{}\n")  # configure nothing
    monkeypatch.setenv("DATABASE_URL", app.config["DATABASE_URL"])
    code = run_training.main(["--csv_path", str(ROOT / "sample.csv"), "--model", "xgboost",
                              "--mode", "smoke", "--model_name", "alerted", "--no-progress",
                              "--models-dir", str(tmp_path / "Models")])
    assert code == 0
    (run,), _ = RunStore(app.config["DATABASE_URL"]).list_runs()

    seen = watch(page, live_server)
    page.goto(f"{live_server}/alerts")
    badge = page.locator("#nav-alerts-unread")
    expect(badge).to_be_visible()
    unread = int(badge.inner_text())
    rows = page.locator("#alert-table tbody tr")
    titles = rows.locator(".alert-title").all_inner_texts()
    assert "Training complete" in titles and "New best model" in titles, titles
    assert unread == len(titles)
    assert rows.first.locator(".level").inner_text() == "info"
    keep("alerts_feed", screenshot(page, "alerts_feed"))

    page.goto(f"{live_server}/runs/{run['run_id']}")
    card = page.locator("#events")
    expect(card).to_be_visible()
    expect(card).to_contain_text("Training complete")
    expect(card).to_contain_text("New best model")
    card.scroll_into_view_if_needed()
    keep("run_page_alerts", screenshot(page, "run_page_alerts"))

    page.goto(f"{live_server}/alerts")
    page.click("#ack-all")
    expect(page.locator("#nav-alerts-unread")).to_have_count(0)
    expect(page.locator("#alert-table tbody tr.unread")).to_have_count(0)

    page.goto(f"{live_server}/alerts/settings")
    expect(page.locator("#no-channels")).to_be_visible()
    page.click("#send-test")
    expect(page.locator("#test-dashboard-only")).to_be_visible()
    keep("alert_channels", screenshot(page, "alert_channels"))
    assert not seen["errors"] and not seen["outside"] and not seen["failed"], seen
