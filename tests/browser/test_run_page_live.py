"""A long live run's page grows as its trainer writes: after the first (downsampled)
snapshot, the run's event stream brings what comes after its cursor and the page appends
it, re-bucketing a chart that grows past twice its points (Debian's chromium)."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pytest

from tests.helpers.browser import POINTS, assert_chart_drawn, screenshot, watch
from web import run_series
from web.store import get_store

pytestmark = pytest.mark.browser

SHOTS = Path("/work/helpers/shots/runpage")
EPISODES = 30_000  # past the exact-average limit: the average is over rollup buckets


def episodes(run_id: str, first: int, last: int) -> list[tuple]:
    rng = random.Random(first)
    now = time.time()
    rows = []
    for e in range(first, last + 1):
        trend = e / 10_000
        rows += [(run_id, "episode/reward", e, trend + rng.uniform(-1, 1), now),
                 (run_id, "episode/win", e, float(rng.random() < 0.3 + trend / 10), now)]
    return rows


def keep(name: str, shot: Path) -> None:
    """The screenshot where the helper's reviewer looks too (when that folder exists)."""
    if SHOTS.parent.is_dir():
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(shot, SHOTS / f"{name}.png")


def test_a_live_run_page_appends_what_the_trainer_writes(live_server: str, page,
                                                          app) -> None:
    from playwright.sync_api import expect

    assert EPISODES > run_series.EXACT_SMOOTH_POINTS
    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="long-live", model_type="ppo", algorithm="PPO",
                                  config={"train_params": {"total_timesteps": 10**7}})
        store.write_batch(metrics=episodes(run_id, 1, EPISODES))
        saved = Path(app.config["MODELS_DIR"]) / ".checkpoints"
        saved.mkdir(parents=True, exist_ok=True)
        for i in range(1, 26):  # the page lists only checkpoint files that exist
            (saved / f"c{i}.pt").write_bytes(b"state")
        store.log_events(run_id, [("checkpoint", {"path": str(saved / f"c{i}.pt"),
                                                  "step": 2048 * i}, time.time())
                                  for i in range(1, 25)])
    seen = watch(page, live_server)
    feeds: list[str] = []
    page.on("request", lambda r: ("/live.json" in r.url or "/events" in r.url)
            and feeds.append(r.url))
    page.goto(f"{live_server}/runs/{run_id}")
    assert_chart_drawn(page, "chart-reward")
    root = page.locator("#run-page")
    expect(root).to_have_attribute("data-stream", "live")
    raw, average = page.evaluate(POINTS, "chart-reward")
    assert raw <= 1000 and 0 < average <= 1000
    assert page.locator("#checkpoint-count").inner_text() == "24"
    assert page.locator("#checkpoint-rows tr").count() == 20
    assert page.locator("#checkpoints-shown").inner_text() == "the newest 20 on disk"
    marks = page.locator("#checkpoint-rows .resume-mark")
    assert marks.count() == 1 and "c24.pt" in page.locator("#checkpoint-rows tr").last.inner_text()
    assert page.locator("#checkpoint-rows tr").last.locator(".resume-mark").count() == 1
    shot = screenshot(page, "run_page_live_long_snapshot")
    keep("live_long_snapshot", shot)

    # The trainer writes 500 more episodes, a checkpoint and an alert.
    with app.app_context():
        store = get_store()
        store.write_batch(
            metrics=episodes(run_id, EPISODES + 1, EPISODES + 500),
            events=[(run_id, "checkpoint", {"path": str(saved / "c25.pt"),
                                            "step": 2048 * 25, "keep": 3}, time.time()),
                    (run_id, "alert", {"level": "warning", "title": "Reward plateau",
                                       "message": "no improvement"}, time.time())])
    episode_card = page.locator('.kpi[data-kpi="episode"] .kpi-value')
    expect(episode_card).to_have_text(f"{EPISODES + 500:,}", timeout=10_000)
    page.wait_for_function(f"""() => Chart.getChart(document.getElementById('chart-reward'))
        .data.datasets[0].data.length === {raw + 500}""")  # appended, not refetched
    last_step = page.evaluate("""() => {
        const d = Chart.getChart(document.getElementById('chart-reward')).data.datasets;
        return [d[0].data.at(-1).x, d[1].data.at(-1).x];
    }""")
    assert last_step == [EPISODES + 500, EPISODES + 500]
    expect(page.locator("#checkpoint-count")).to_have_text("25")
    # The trainer keeps 3 files (the event says): rows of deleted files go.
    assert page.locator("#checkpoint-rows tr").count() == 3
    assert "c25.pt" in page.locator("#checkpoint-rows tr").last.inner_text()
    assert marks.count() == 1  # the resume mark moved to the new newest
    assert page.locator("#checkpoint-rows tr").last.locator(".resume-mark").count() == 1
    expect(page.locator("#event-rows li")).to_have_count(1)
    assert "Reward plateau" in page.locator("#event-rows").inner_text()
    assert len(feeds) == 2 and "last_event_id=" in feeds[1], feeds  # one snapshot, one stream
    shot = screenshot(page, "run_page_live_long_appended")
    keep("live_long_appended", shot)

    # Past twice the chart's points, the page re-buckets: a long watch stays light.
    with app.app_context():
        get_store().write_batch(metrics=episodes(run_id, EPISODES + 501, EPISODES + 2000))
    expect(episode_card).to_have_text(f"{EPISODES + 2000:,}", timeout=10_000)
    drawn = page.evaluate(POINTS, "chart-reward")
    assert max(drawn) <= 2000 and drawn[0] < raw + 2000, drawn
    last_step = page.evaluate("""() => Chart.getChart(document.getElementById('chart-reward'))
        .data.datasets[0].data.at(-1).x""")
    assert last_step == EPISODES + 2000

    with app.app_context():
        get_store().set_status(run_id, "completed")
    expect(root).to_have_attribute("data-finished", "true", timeout=10_000)
    assert seen == {"errors": [], "outside": [], "failed": []}
