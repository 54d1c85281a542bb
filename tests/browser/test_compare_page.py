"""Compare three runs, rank them and plot an experiment, as a person does, in chromium."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.browser import POINTS, assert_chart_drawn, screenshot, watch
from tests.helpers.compare_runs import add_run, save_backtest
from web.store import get_store

pytestmark = pytest.mark.browser
SHOTS = Path("/work/helpers/shots/compare")
PHONE = {"width": 390, "height": 844}
# Elements that reach past the right edge of the screen (none may: the page would scroll).
WIDE = """() => [...document.querySelectorAll('body *')]
  .filter((e) => e.getBoundingClientRect().right > innerWidth + 0.5
          && getComputedStyle(e).position !== 'fixed' && !e.closest('table, .scroll'))
  .map((e) => e.tagName + '#' + e.id + '.' + e.className)"""


def shot(page, name: str) -> None:
    path = screenshot(page, name)
    if SHOTS.parent.is_dir():  # the session's review folder, where there is one
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(path, SHOTS / path.name)


def seed(app, tmp_path: Path) -> list[str]:
    with app.app_context():
        store = get_store()
        ids = [add_run(store, i, episodes=400, updates=40, experiment="lr-sweep",
                       model_dir=f"/m/PPO_run{i}" if i < 2 else "") for i in range(3)]
    root = tmp_path / "backtests"
    for i in range(2):
        save_backtest(root, f"PPO_run{i}", f"bt-{i}", return_pct=3.0 + 4 * i,
                      created_at="2026-01-01T00:00:00Z")
    return ids


def test_compare_three_runs(live_server: str, page, app, tmp_path: Path) -> None:
    ids = seed(app, tmp_path)
    seen = watch(page, live_server)
    page.goto(f"{live_server}/compare?runs={','.join(ids)}")
    page.wait_for_function("document.getElementById('overlay').dataset.drawn === '2'")
    for canvas in ("compare-chart-0", "compare-chart-1"):
        assert_chart_drawn(page, canvas)
    # smoothing on: a faint raw line and the smoothed one per run
    assert page.evaluate(POINTS, "compare-chart-0") == [400] * 6
    assert "points drawn" in page.locator("#overlay-status").inner_text()

    differing = page.locator("#hyperparameters tr.differs")
    assert [differing.nth(i).get_attribute("data-key") for i in range(differing.count())] == \
        ["train_params.learning_rate", "train_params.n_envs"]
    shade = "(el) => getComputedStyle(el.querySelector('td')).backgroundColor"
    assert differing.first.evaluate(shade) != \
        page.locator("#hyperparameters tr.same").first.evaluate(shade)
    assert page.locator("#summary td.best").count() >= 4
    assert page.locator("#backtests tr.baseline").count() >= 2
    shot(page, "compare_three_runs")

    page.check("#only-differing")
    assert page.locator("#hyperparameters tr.same").first.is_hidden()
    page.fill("#smoothing", "0")
    page.dispatch_event("#smoothing", "input")
    page.wait_for_function("Chart.getChart(document.getElementById('compare-chart-0'))"
                           ".data.datasets.length === 3")
    page.select_option("#x-axis", "step")
    page.wait_for_function("""() => {
        const c = Chart.getChart(document.getElementById('compare-chart-0'));
        return c && c.options.scales.x.title.text === 'environment step'; }""")
    assert_chart_drawn(page, "compare-chart-0")
    shot(page, "compare_env_steps")

    with page.expect_download() as download:
        page.click("#export-csv")
    rows = list(csv.reader(Path(download.value.path()).read_text().splitlines()))
    assert rows[1] == ["run", "run_id", *ids]
    assert ["backtest", "Return [%]", "3.0", "7.0", ""] in rows
    with page.expect_download() as download:
        page.click("#export-json")
    tables = json.loads(Path(download.value.path()).read_text())
    assert [r["run_id"] for r in tables["runs"]] == ids

    page.set_viewport_size(PHONE)  # on a phone: charts stacked, tables scroll in their card
    page.reload()
    page.wait_for_function("document.getElementById('overlay').dataset.drawn === '2'")
    shot(page, "compare_phone")
    assert page.evaluate(WIDE) == []
    assert seen == {"errors": [], "outside": [], "failed": []}


def test_leaderboard_and_experiment_scatter(live_server: str, page, app, tmp_path: Path) -> None:
    ids = seed(app, tmp_path)
    seen = watch(page, live_server)
    page.goto(f"{live_server}/leaderboard")
    page.select_option("#board-metric", "summary:test_return_pct")
    page.click("#board-filters button[type=submit]")
    page.wait_for_url("**/leaderboard?metric=summary*")
    rows = page.locator("#board-table tbody tr")
    assert [rows.nth(i).get_attribute("data-run") for i in range(3)] == ids[::-1]
    shot(page, "leaderboard")

    page.goto(f"{live_server}/experiments")
    page.locator("#experiments-table a", has_text="lr-sweep").click()
    page.wait_for_url("**/experiments/lr-sweep*")
    assert_chart_drawn(page, "scatter")
    # ranked by out-of-sample return by default: only the two backtested runs have it
    assert page.locator("#scatter-metric").input_value() == "backtest:Return [%]"
    assert page.locator("#scatter-card").get_attribute("data-points") == "2"
    assert page.locator("#scatter-param").input_value() == "train_params.learning_rate"
    page.select_option("#scatter-metric", "summary:test_return_pct")
    page.wait_for_function("document.getElementById('scatter-card').dataset.points === '3'")
    shot(page, "experiment_scatter")
    page.click("#compare-experiment")
    page.wait_for_url("**/compare?experiment=lr-sweep*")
    assert page.locator("#compare-runs tbody tr").count() == 3
    page.set_viewport_size(PHONE)
    for path in ("/leaderboard", "/experiments", "/experiments/lr-sweep"):
        page.goto(live_server + path)
        assert page.evaluate(WIDE) == [], path
    shot(page, "experiment_phone")
    assert seen == {"errors": [], "outside": [], "failed": []}
