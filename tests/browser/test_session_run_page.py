"""An outside trainer's session is a run with our run page: what it posts over the
metrics server's API is drawn, and what it posts while the page is open is appended
live (Debian's chromium)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.browser import POINTS, assert_chart_drawn, screenshot, watch

pytestmark = pytest.mark.browser

SHOTS = Path("/work/helpers/shots/msserver")
API = "/api/training/sessions"


def items(first: int, last: int) -> dict:
    return {"items": [{"episode": e, "current_reward": (e % 17) - 5 + e / 20,
                       "average_reward": e / 20, "episode_length": 200 + e % 30,
                       "win_rate": 40 + e % 20, "loss_value": 1 / (e + 1)}
                      for e in range(first, last + 1)]}


def test_a_sessions_run_page_draws_and_follows_what_it_posts(live_server: str, page,
                                                             app) -> None:
    client = app.test_client()
    sid = client.post(API, json={"name": "sb3-cartpole", "algorithm": "PPO",
                                 "tags": ["sb3"]}).get_json()["session_id"]
    assert client.post(f"{API}/{sid}/metrics", json=items(0, 99)).status_code == 200
    seen = watch(page, live_server)
    page.goto(f"{live_server}/runs/{sid}")
    assert_chart_drawn(page, "chart-reward")
    before = sum(page.evaluate(POINTS, "chart-reward"))
    assert client.post(f"{API}/{sid}/metrics", json=items(100, 139)).status_code == 200
    page.wait_for_function(f"({POINTS})('chart-reward').reduce((a, b) => a + b, 0) > {before}",
                           timeout=10_000)
    shot = screenshot(page, "session_run_page")
    if SHOTS.parent.is_dir():
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(shot, SHOTS / "session_run_page.png")
    assert seen["errors"] == [] and seen["failed"] == [] and seen["outside"] == []
    page.goto(f"{live_server}/runs")
    assert page.get_by_text("sb3-cartpole").count() >= 1
