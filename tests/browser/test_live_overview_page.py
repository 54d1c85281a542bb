"""The live overview (/live) as a person sees it: a card per run that changes as trainers
write, control buttons that follow the state machine, and no polling (Debian's chromium)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.browser import screenshot, watch
from Utilities.metrics_logger import MetricsLogger
from web.live_overview import OverviewFeed
from web.live_stream import LiveHub
from web.store import get_store

pytestmark = pytest.mark.browser

SHOTS = Path("/work/helpers/shots/live")


def keep(name: str, shot: Path) -> None:
    if SHOTS.parent.is_dir():
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(shot, SHOTS / f"{name}.png")


def log_episodes(store, run_id: str, first: int, last: int) -> None:
    with MetricsLogger(store, run_id) as metrics:
        for episode in range(first, last + 1):
            metrics.log_episode(episode, reward=(episode % 7) - 2.5, win=episode % 3 == 0)
        metrics.log_update(step=last, policy_loss=0.1 + 1 / last, env_steps=200.0 * last,
                           steps_per_second=1800.0)


def test_the_overview_shows_runs_live_and_controls_them(app, live_server: str, page) -> None:
    from playwright.sync_api import expect

    app.extensions["live_hub"] = LiveHub({"LIVE_KEEPALIVE_SECONDS": 0.5})
    app.extensions["live_overview"] = feed = OverviewFeed(app, period=0.2)
    with app.app_context():
        store = get_store()
        running = store.create_run(name="ppo-live", model_type="ppo")
        log_episodes(store, running, 1, 40)
        done = store.create_run(name="xgb-done", model_type="xgboost")
        store.set_status(done, "completed")
    seen = watch(page, live_server)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    page.goto(f"{live_server}/live")
    card = page.locator(f'article[data-run-id="{running}"]')
    expect(card.locator('[data-field="episodes"]')).to_have_text("40")
    expect(page.locator("#stream-state")).to_have_text("live")
    expect(page.locator(f'article[data-run-id="{done}"] [data-field="state"]')
           ).to_have_text("completed")
    keep("overview_dark", screenshot(page, "live_overview_dark"))

    log_episodes(store, running, 41, 90)  # the trainer goes on: the card follows
    expect(card.locator('[data-field="episodes"]')).to_have_text("90")
    expect(page.locator("#total-episodes")).to_have_text("90")

    expect(card.locator('button[data-action="resume"]')).to_be_disabled()
    card.locator('button[data-action="pause"]').click()
    expect(card.locator('[data-field="note"]')).to_contain_text("pause requested")
    store.set_status(running, "paused")  # what the trainer does between iterations
    expect(card.locator('[data-field="state"]')).to_have_text("paused")
    expect(card.locator('button[data-action="pause"]')).to_be_disabled()
    expect(card.locator('button[data-action="resume"]')).to_be_enabled()
    page.click("#theme-toggle")
    keep("overview_light", screenshot(page, "live_overview_light"))

    reads = [r for r in requests if r.startswith("GET") and "/static/" not in r]
    assert reads == [f"GET {live_server}/live", f"GET {live_server}/api/live/overview"], reads
    assert not seen["errors"] and not seen["outside"], seen
    feed.close()
