"""The random policies and the evaluation of runs as a person sees them, in Debian's
chromium: a backtest's histogram of random returns with the strategy's marker in the
right bar, and an evaluation of two runs filling its results table."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.apps import make_app
from tests.helpers.browser import INKED_PIXELS, screenshot
from tests.helpers.models import TrainedModel, model_library

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def trained(smoke_xgb: Path, tiny_ppo: TrainedModel, tmp_path_factory) -> Path:
    return model_library(tmp_path_factory.mktemp("Models"), smoke_xgb, tiny_ppo.folder)


@pytest.fixture()
def app(database_url: str, trained: Path, tmp_path: Path) -> Iterator:
    from web.store import close_store

    flask_app = make_app(database_url, trained, tmp_path)
    yield flask_app
    close_store(flask_app)


def test_the_histogram_marks_the_strategy_among_random_policies(live_server: str, page) -> None:
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("requestfailed", lambda request: problems.append(request.url))
    page.goto(f"{live_server}/backtest?model=XGB_smoke")
    page.select_option("#csv", "sample.csv")
    page.click("#run-backtest")
    page.wait_for_selector("#random-chart")
    header = page.locator("table.stats thead th").all_text_contents()
    assert header[:4] == ["", "Strategy", "Buy & Hold", "Random (median)"]
    page.wait_for_function("() => window.randomChart && window.randomChart().$modelX")
    assert page.evaluate(INKED_PIXELS, "random-chart") > 2000
    result_id = page.url.rsplit("/", 1)[1]
    ranked = page.request.get(f"{live_server}/api/backtest/{result_id}").json()["result"]["random"]
    assert ranked["policies"] == 300 and sum(ranked["histogram"]["counts"]) == 300
    # The marker is drawn inside the bar of the bin that holds the strategy's return.
    edges, value = ranked["histogram"]["edges"], ranked["return_pct"]["model"]
    expected_bin = max(i for i, edge in enumerate(edges[:-1]) if edge <= value)
    bar = page.evaluate("""(i) => {
      const chart = window.randomChart(), bar = chart.getDatasetMeta(0).data[i];
      return {x: chart.$modelX, left: bar.x - bar.width / 2, right: bar.x + bar.width / 2};
    }""", expected_bin)
    assert bar["left"] - 1 <= bar["x"] <= bar["right"] + 1, bar
    card = page.inner_text("#random-percentile b")
    assert card == f"{ranked['return_pct']['percentile']:.1f}"
    rows = page.locator("#random-table tbody tr")
    assert rows.count() == 4
    sharpe = rows.nth(1).locator("td").all_text_contents()
    assert sharpe[0] == "Sharpe Ratio" and sharpe[2] == f"{ranked['sharpe']['percentile']:.1f}"
    page.locator("#random").scroll_into_view_if_needed()
    page.locator("#random").screenshot(path=str(screenshot(page, "random_policies_result")
                                                .with_name("random_policies_section.png")))
    assert not problems, problems


def test_evaluate_two_runs_and_read_the_table(live_server: str, page, app, trained) -> None:
    from web.store import get_store

    with app.app_context():
        store = get_store()
        ids = [store.create_run(name=name, model_type=kind, model_dir=str(trained / folder))
               for name, kind, folder in (("xgb-run", "xgboost", "XGB_smoke"),
                                          ("ppo-run", "ppo", "PPO_tiny"))]
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{live_server}/evaluate?runs={','.join(ids)}")
    assert page.locator("input[name=runs]:checked").count() == 2
    page.select_option("#csv", "sample.csv")
    screenshot(page, "evaluate_form")
    page.click("#run-evaluation")
    page.wait_for_url(re.compile(r"/evaluate/eval-"))
    page.wait_for_selector("#evaluation[data-status=done]", timeout=120_000)
    rows = page.locator("#evaluation-table tbody tr")
    assert rows.count() == 2
    for i in range(2):
        cells = rows.nth(i).locator("td").all_text_contents()
        assert cells[0] == str(i + 1)  # ranked
        assert re.fullmatch(r"-?[\d,.]+ ?%", cells[4]), cells  # return
        assert re.fullmatch(r"\d+(\.\d+)?", cells[8]), cells  # random percentile
        assert re.fullmatch(r"-?[\d,.]+ ?%", cells[9]), cells  # buy and hold
    returns = [float(rows.nth(i).locator("td").nth(4).inner_text().replace("%", "")
                     .replace(",", "")) for i in range(2)]
    assert returns == sorted(returns, reverse=True)
    screenshot(page, "evaluate_results")
    with page.expect_navigation():
        rows.nth(0).locator("a", has_text="result").click()
    page.wait_for_selector("#random-chart")
    assert not problems, problems
