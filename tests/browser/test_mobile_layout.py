"""Every main page on a phone (390 x 844, chromium): nothing wider than the screen, every
menu entry visible and tappable, charts inside their boxes. static/css/responsive.css is
what makes it so; this test is its proof (look at test-artifacts/screenshots/mobile_*)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from NetworkConfigs.base import deep_merge
from NetworkConfigs.ppo_config import SMOKE
from tests.helpers.browser import CHROMIUM_ARGS, screenshot
from Utilities.metrics_logger import MetricsLogger
from web.navigation import AREAS
from web.store import get_store

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
# Two PPO iterations on 400 bars: a real model (and a model page) in a couple of seconds.
TINY = deep_merge(SMOKE, {"train_params": {"total_timesteps": 512, "n_envs": 2, "n_steps": 128,
                                           "batch_size": 128, "eval_every": 1},
                          "model_params": {"lookback_window": 10, "hidden_dim": 32}})
# Visible canvases wider than the box they are drawn in (a chart that ignores its container).
OVERFLOWING_CHARTS = """() => [...document.querySelectorAll('canvas')]
  .filter((c) => c.offsetParent !== null
          && c.getBoundingClientRect().width > c.parentElement.clientWidth + 1)
  .map((c) => c.id)"""
# Each menu entry: inside the screen, and the element under its centre is the entry itself
# (not covered by another element), so a tap lands on it.
NAV_PROBLEMS = """() => [...document.querySelectorAll('.topbar nav a')].flatMap((a) => {
  const r = a.getBoundingClientRect();
  if (r.width === 0 || r.left < 0 || r.right > innerWidth || r.top < 0 || r.bottom > innerHeight)
    return [a.textContent + ' is outside the screen'];
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return a.contains(hit) ? [] : [a.textContent + ' is covered'];
})"""


@pytest.fixture(scope="module")
def tiny_model(sample_bars: pd.DataFrame, tmp_path_factory) -> Path:
    from NetworkConfigs.PPOTrainer import PPOTrainer

    folder = tmp_path_factory.mktemp("trained")
    return PPOTrainer(TINY).fit(sample_bars.iloc[:400], model_name="tiny", models_dir=folder)


@pytest.fixture()
def phone(chromium_path: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                      device_scale_factor=2)
        yield context.new_page()
        context.close()
        browser.close()


def seed_run(app) -> str:
    """A completed PPO run with episodes and updates, so its page draws every chart."""
    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="phone-agent", model_type="ppo", algorithm="PPO",
                                  config={"train_params": {"learning_rate": 3e-4}},
                                  data_file="sample.csv", tags=["smoke"])
        with MetricsLogger(store, run_id) as metrics:
            for episode in range(1, 61):
                metrics.log_episode(episode, reward=episode % 7 - 2.5, steps=50,
                                    win=episode % 3 == 0)
            for update in range(1, 11):
                metrics.log_update(step=update, loss=1 / update, entropy=1 - update / 20)
            saved = Path(app.config["MODELS_DIR"]) / ".checkpoints" / "x"
            saved.mkdir(parents=True, exist_ok=True)
            (saved / "iteration-00000004.pt").write_bytes(b"state")  # listed: it exists
            metrics.log_checkpoint(saved / "iteration-00000004.pt", step=2048, keep=3)
        store.set_status(run_id, "completed")
    return run_id


def assert_fits(phone, name: str) -> None:
    """The page is no wider than the phone, the whole menu is on screen and tappable, and
    no chart is wider than its box; then a full-page screenshot."""
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
    assert phone.locator(".topbar nav a").count() == len(AREAS), name
    assert phone.evaluate(NAV_PROBLEMS) == [], name
    assert phone.evaluate(OVERFLOWING_CHARTS) == [], name
    screenshot(phone, f"mobile_{name}")


def test_every_main_page_fits_a_phone(live_server: str, phone, app, tiny_model: Path,
                                      models_dir: Path) -> None:
    shutil.copytree(tiny_model, models_dir / tiny_model.name)
    run_id = seed_run(app)
    errors: list[str] = []
    phone.on("pageerror", lambda exc: errors.append(str(exc)))
    pages = {"home": "/", "train": "/train", "history": "/runs", "run": f"/runs/{run_id}",
             "library": "/models", "model": f"/models/{tiny_model.name}",
             "backtest": "/backtest", "hosting": "/hosting", "settings": "/settings"}
    for name, path in pages.items():
        phone.goto(live_server + path)
        phone.wait_for_load_state("networkidle")
        assert_fits(phone, name)

    phone.goto(live_server + "/backtest")  # a result: figures, three charts, two tables
    phone.locator("#run-backtest").tap()
    phone.wait_for_selector("#statistics table.stats", timeout=60_000)
    phone.wait_for_function("() => window.backtestCharts && window.backtestCharts().length == 3")
    assert_fits(phone, "backtest_result")
    assert errors == []


def test_the_menu_is_tappable_and_tables_scroll_in_their_card(live_server: str, phone, app,
                                                              tiny_model: Path,
                                                              models_dir: Path) -> None:
    shutil.copytree(tiny_model, models_dir / tiny_model.name)
    seed_run(app)
    phone.goto(live_server + "/")
    phone.locator(".topbar nav a", has_text="Settings").tap()  # on the second row
    phone.wait_for_url("**/settings")
    assert phone.locator(".topbar nav a.active").inner_text() == "Settings"

    phone.goto(live_server + "/runs")
    # The table is wider than the screen: it scrolls inside its card (the table itself, or
    # the .table-scroll box around it), the page does not.
    scroller = phone.locator("table.runs-table").evaluate_handle(
        "t => t.closest('.table-scroll') || t")
    scroll_width, client_width = scroller.evaluate("s => [s.scrollWidth, s.clientWidth]")
    assert scroll_width > client_width
    card = scroller.evaluate("s => s.closest('.card').getBoundingClientRect().right")
    assert card <= PHONE["width"]
    scroller.evaluate("s => { s.scrollLeft = s.scrollWidth; }")
    assert scroller.evaluate("s => s.scrollLeft") > 0
    assert phone.evaluate("window.scrollX") == 0
    screenshot(phone, "mobile_history_scrolled_table")
