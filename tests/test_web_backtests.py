"""The backtest page, its exports and POST /api/backtest, on real small models (the
jobs themselves: tests/test_backtest_jobs.py)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.apps import make_app
from tests.helpers.models import TrainedModel, model_library
from tests.helpers.paths import SAMPLE_CSV
from Utilities.backtester import TRADE_COLUMNS
from Utilities.model_backtester import backtest_model
from Utilities.number_format import figure
from Utilities.performance import STAT_KEYS
from web.backtest_jobs import EXTENSION

XGB, PPO = "XGB_smoke", "PPO_tiny"


@pytest.fixture(scope="module")
def trained(smoke_xgb: Path, tiny_ppo: TrainedModel, tmp_path_factory) -> Path:
    """An XGBoost model trained on sample.csv (so its default period is the test slice)
    and a tiny PPO trained on its first 400 bars (any other file: the whole file)."""
    return model_library(tmp_path_factory.mktemp("Models"), smoke_xgb, tiny_ppo.folder)


@pytest.fixture()
def app(database_url: str, trained: Path, tmp_path: Path) -> Iterator:
    from web.store import close_store

    flask_app = make_app(database_url, trained, tmp_path)
    yield flask_app
    close_store(flask_app)


def form(**changes: str) -> dict[str, str]:
    values = {"model": XGB, "csv": "sample.csv", "start": "", "end": "", "commission": "",
              "slippage": "", "initial_balance": "", "fill": "close"}
    return {**values, **changes}


def field_errors(page: str) -> dict[str, str]:
    found = re.findall(r'<p class="field-error" id="(\w+)-error"[^>]*>([^<]*)</p>', page)
    return {name: unescape(text) for name, text in found}


def finished(client, location: str) -> str:
    """Wait for the job whose page is ``location`` to finish; that page's HTML."""
    assert re.fullmatch(r"/backtest/[A-Za-z0-9_.-]+", location)
    assert client.application.extensions[EXTENSION].wait(location.rsplit("/", 1)[1], 120)
    page = client.get(location)
    assert page.status_code == 200
    return page.get_data(as_text=True)


def run_form(client, **changes: str) -> str:
    """POST the form, follow the redirect to the job; the result page's HTML."""
    response = client.post("/backtest", data=form(**changes))
    assert response.status_code == 303, field_errors(response.get_data(as_text=True))
    return finished(client, response.headers["Location"])


def api_result(client, body: dict) -> dict:
    """POST /api/backtest, wait for the job; its final status."""
    response = client.post("/api/backtest", json=body)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["id"]
    assert client.application.extensions[EXTENSION].wait(job_id, 120)
    status = client.get(f"/api/backtest/{job_id}")
    assert status.status_code == 200
    return status.get_json()


def chart_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="backtest-data">(.*?)</script>',
                      page, re.S)
    assert match
    return json.loads(match.group(1))


# ------------------------------------------------------------------------ the form


def test_form_preselects_the_model_and_shows_its_defaults(client) -> None:
    response = client.get(f"/backtest?model={PPO}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert re.search(rf'<option value="{PPO}" selected', page)
    assert '<option value="sample.csv" selected' in page
    assert 'id="commission" name="commission" value="0.0005"' in page
    assert 'id="slippage" name="slippage" value="1"' in page
    assert 'id="initial_balance" name="initial_balance" value="10000"' in page
    assert "held-out test slice" in page and "whole file" in page  # the period help
    assert 'href="/backtest"' in page  # the menu entry
    assert "No backtests yet" in page


def test_an_empty_library_says_so(app, tmp_path: Path) -> None:
    from Main import create_app

    empty = tmp_path / "empty"
    empty.mkdir()
    other = create_app({**app.config, "MODELS_DIR": str(empty)})
    page = other.test_client().get("/backtest").get_data(as_text=True)
    assert "No readable models to backtest" in page and 'id="backtest-form"' not in page


def test_bad_values_are_shown_beside_their_fields_and_kept(client) -> None:
    response = client.post("/backtest", data=form(commission="-0.1", slippage="lots",
                                                  initial_balance="0", start="2012-05-01",
                                                  end="2012-01-01", fill="tomorrow"))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    errors = field_errors(page)
    assert errors["commission"] == "commission cannot be negative; got -0.1"
    assert errors["slippage"] == "slippage must be a number; got 'lots'"
    assert errors["initial_balance"].startswith("initial_balance must be at least 1")
    assert errors["end"] == "end 2012-01-01 is before start 2012-05-01"
    assert errors["fill"].startswith("fill must be one of")
    assert 'value="-0.1"' in page and 'value="lots"' in page and 'value="2012-05-01"' in page
    assert re.search(r'id="commission" name="commission" value="-0.1"[^>]* class="invalid" '
                     r'aria-invalid="true" aria-describedby="commission-error"', page)


def test_an_unknown_model_is_an_error_beside_the_model_field(client) -> None:
    response = client.post("/backtest", data=form(model="PPO_gone"))
    assert response.status_code == 422
    assert "no model 'PPO_gone' in the library" in field_errors(
        response.get_data(as_text=True))["model"]
    page = client.get("/backtest?model=PPO_gone").get_data(as_text=True)
    assert "no model &#39;PPO_gone&#39; in the library" in page


def test_an_unreadable_model_is_named_not_fatal(app, trained: Path, tmp_path: Path) -> None:
    import shutil

    from Main import create_app

    models = Path(shutil.copytree(trained, tmp_path / "Models"))
    (models / "PPO_half").mkdir()
    client = create_app({**app.config, "MODELS_DIR": str(models)}).test_client()
    page = client.get("/backtest?model=PPO_half").get_data(as_text=True)
    assert "model &#39;PPO_half&#39; is unreadable" in page
    assert '<option value="PPO_half"' not in page and f'<option value="{PPO}"' in page
    response = client.post("/backtest", data=form(model="PPO_half"))
    assert response.status_code == 422
    reply = client.post("/api/backtest", json={"model": "PPO_half", "csv": "sample.csv"})
    assert reply.status_code == 422 and reply.get_json()["field"] == "model"


def test_a_bad_upload_shows_the_data_error_and_keeps_nothing(client, app) -> None:
    data = {**form(), "upload": (io.BytesIO(b"Date,Price\n2020-01-01,1\n"), "prices.csv")}
    response = client.post("/backtest", data=data, content_type="multipart/form-data")
    assert response.status_code == 422
    message = field_errors(response.get_data(as_text=True))["upload"]
    assert message.startswith("prices.csv: missing required column(s)")
    assert not (Path(app.config["DATA_DIR"]) / "uploads").exists() or \
        not any((Path(app.config["DATA_DIR"]) / "uploads").iterdir())


def test_an_uploaded_csv_is_backtested_and_listed(client) -> None:
    lines = SAMPLE_CSV.read_text().splitlines(keepends=True)
    content = "".join(lines[:1] + lines[-600:]).encode()
    data = {**form(model=PPO), "upload": (io.BytesIO(content), "my bars.csv")}
    response = client.post("/backtest", data=data, content_type="multipart/form-data")
    assert response.status_code == 303
    page = finished(client, response.headers["Location"])
    # Shown by the name it was uploaded under, never by its internal one.
    assert "on <b>my bars.csv</b>" in page and not re.search(r"[0-9a-f]{8}-my bars", page)
    assert "whole file" in page
    form_page = client.get("/backtest").get_data(as_text=True)
    option = re.search(r'<option value="uploads/[0-9a-f]{8}-my bars\.csv"\s*>([^<]*)</option>',
                       form_page)
    assert option and option.group(1).startswith("my bars.csv · uploaded ")
    shown = re.sub(r'(value|href)="[^"]*"', "", form_page)  # attributes are not shown
    assert not re.search(r"[0-9a-f]{8}-my bars", shown)  # recent list, uploads list
    assert re.search(r"<td>my bars\.csv</td>", shown)


def test_an_empty_period_is_an_error_beside_the_dates(client) -> None:
    """Only the run finds a period empty: the job fails and its page is the form again,
    the values kept and the error beside the field."""
    response = client.post("/backtest", data=form(start="2030-01-01"))
    assert response.status_code == 303
    page = finished(client, response.headers["Location"])
    assert field_errors(page)["start"].startswith("no bars between 2030-01-01")
    assert 'id="job-failed"' in page and 'value="2030-01-01"' in page
    response = client.post("/backtest", data=form(start="2012-01-03", end="2012-01-03"))
    page = finished(client, response.headers["Location"])
    assert "a backtest needs at least 2" in field_errors(page)["end"]


# ------------------------------------------------------------------------ the result


def test_the_result_shows_statistics_beside_both_baselines(client, trained: Path) -> None:
    page = run_form(client, commission="0.001", slippage="2", initial_balance="50000")
    expected = backtest_model(trained / XGB, SAMPLE_CSV, commission=0.001, slippage=2,
                              initial_balance=50000)
    assert "held-out test slice" in page
    period = expected.summary()["period"]
    assert f"{period['start'][:10]} → {period['end'][:10]} · {period['bars']} bars" in page
    assert "<td>Duration</td><td class=\"num \">" in page and " days</td>" in page
    header = re.search(r'<table class="stats">\s*<thead><tr>(.*?)</tr>', page, re.S).group(1)
    assert re.findall(r">([^<]+)</th>", header) == ["Strategy", "Buy &amp; Hold",
                                                     "Random (median)"]
    ranked = expected.random_summary()
    assert ranked["policies"] == 300 and ranked["kind"] == "matched"
    assert f"Among {ranked['policies']} random policies" in page
    card = re.search(r'id="random-percentile"><span>[^<]*</span><b[^>]*>([^<]+)</b>', page)
    assert card.group(1) == f"{ranked['return_pct']['percentile']:.1f}"
    row = re.search(r'<tr data-key="sharpe">(.*?)</tr>', page).group(1)
    assert re.findall(r">([^<]*)</td>", row)[2] == f"{ranked['sharpe']['percentile']:.1f}"
    assert 'id="random-chart"' in page and 'id="random-data"' in page
    for key in ("Return [%]", "Sharpe Ratio", "Max. Drawdown [%]", "# Trades"):
        row = re.search(rf"<tr><td>{re.escape(key.replace('&', '&amp;'))}</td>(.*?)</tr>",
                        page).group(1)
        cells = re.findall(r">([^<]*)</td>", row)
        values = [expected.statistics[key], expected.baseline_statistics["Buy & Hold"][key],
                  expected.baseline_statistics["Random"][key]]
        kind = "pct_points" if key.endswith("[%]") else "int" if key[0] == "#" else "num"
        assert cells == [figure(v, kind) for v in values]
    assert "commission 0.001 (0.1 % per fill)" in page and "slippage 2 bps" in page
    assert 'id="equity-chart"' in page and 'id="price-chart"' in page
    assert "/static/vendor/chartjs/chart.umd.min.js" in page and "https://" not in page
    assert f'<span class="count">{len(expected.result.trades)}</span>' in page
    again = unescape(re.search(r'<a class="button" href="([^"]+)">Change and run again', page)
                     .group(1))
    form_page = client.get(again).get_data(as_text=True)
    assert re.search(rf'<option value="{XGB}" selected', form_page)
    assert 'name="commission" value="0.001"' in form_page
    assert 'name="initial_balance" value="50000"' in form_page


def cards(page: str) -> dict[str, tuple[str, str]]:
    """The figures above the table: label -> (text, colour class)."""
    found = re.findall(r'<div class="tile[^"]*"><span>([^<]+)</span><b class="(\w*)"[^>]*>'
                       r'([^<]*)</b>', page)
    return {unescape(label): (text, css) for label, css, text in found}


def table_cell(page: str, key: str, column: int) -> tuple[str, str]:
    """(text, class) of a statistics row's cell; column 0 is the strategy."""
    row = re.search(rf"<tr><td>{re.escape(key)}</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r'<td class="num ?(\w*)"[^>]*>([^<]*)</td>', row)
    return cells[column][1], cells[column][0]


def test_the_buy_and_hold_card_and_column_are_one_number(client, trained: Path) -> None:
    page = run_form(client, commission="0.002", slippage="5")
    report = backtest_model(trained / XGB, SAMPLE_CSV, commission=0.002, slippage=5)
    held = report.baseline_statistics["Buy & Hold"]["Return [%]"]
    shown = cards(page)
    assert shown["Buy & hold (after costs)"][0] == table_cell(page, "Return [%]", 1)[0] \
        == figure(held, "pct_points")
    # The price's own move is labelled as such, shown once, and differs by the costs.
    moved = report.statistics["Price Change [%]"]
    assert shown["Price change (no costs)"][0] == figure(moved, "pct_points") != shown[
        "Buy & hold (after costs)"][0]
    assert moved > held
    assert "<td>Price Change [%]</td>" not in page and "Buy &amp; Hold Return" not in page
    assert "same costs as the strategy" in page


def test_results_are_coloured_against_the_baselines_not_zero(client) -> None:
    page = run_form(client)
    response = client.get(re.search(r"/backtest/[^/]+/statistics.json", page).group(0))
    stats = json.loads(response.get_data(as_text=True))
    response.close()
    mine = stats["statistics"]["Return [%]"]
    others = [b["Return [%]"] for b in stats["baselines"].values()]
    expected = "beats" if mine > max(others) else "below" if mine < min(others) else "between"
    assert cards(page)["Return"][1] == expected == table_cell(page, "Return [%]", 0)[1]
    assert table_cell(page, "Return [%]", 1)[1] == ""  # baselines are not coloured
    assert table_cell(page, "# Trades", 0)[1] == ""  # nor figures with no better side
    assert 'id="verdict-legend"' in page and "not with zero" in page
    recent = client.get("/backtest").get_data(as_text=True)
    assert re.search(rf'<td class="num {expected}" title="[^"]+">', recent)


@pytest.mark.parametrize(("value", "baselines", "expected"), [
    (0.12, [27.0, -3.0], "between"),   # positive, yet far behind buy-and-hold: not green
    (0.12, [27.0, 5.0], "below"),
    (30.0, [27.0, 5.0], "beats"),
    (-2.0, [-10.0, -5.0], "beats"),    # a loss that beats both baselines
    (1.0, [None, float("nan")], ""),   # nothing to compare with
    (None, [1.0], ""),
])
def test_the_colour_rule(value, baselines, expected: str) -> None:
    from web.backtest_results import verdict

    assert verdict(value, baselines) == expected


def test_a_range_inside_the_training_period_is_said_to_be_in_sample(client, trained: Path
                                                                    ) -> None:
    from NetworkConfigs.artifacts import read_config

    split = read_config(trained / XGB)["split"]
    page = run_form(client, start=split["train"]["start"][:10], end="2012-06-30")
    note = re.search(r'<p class="in-sample" id="in-sample-note"[^>]*>([^<]+)</p>', page)
    assert note and unescape(note.group(1)).startswith("In-sample: ")
    assert split["train"]["start"][:10] in note.group(1)
    # The default period on the training file is its held-out test slice: no warning.
    assert 'id="in-sample-note"' not in run_form(client)
    # The form knows the training dates, so it can warn before the run.
    form_page = client.get(f"/backtest?model={XGB}").get_data(as_text=True)
    assert f'data-train-start="{split["train"]["start"][:10]}"' in form_page
    assert 'id="in-sample-warning"' in form_page
    listed = client.get("/backtest").get_data(as_text=True)
    assert "in-sample</span>" in listed


def test_the_api_says_in_sample_too(client, trained: Path) -> None:
    from NetworkConfigs.artifacts import read_config

    trained_until = read_config(trained / XGB)["split"]["validation"]["end"][:10]
    body = api_result(client, {"model": XGB, "csv": "sample.csv", "start": "2011-01-01",
                               "end": "2030-12-31"})
    assert body["result"]["in_sample"]["same_file"] is True
    assert body["result"]["in_sample"]["overlap"] == {"start": "2011-01-03",
                                                      "end": trained_until}
    clean = api_result(client, {"model": XGB, "csv": "sample.csv"})
    assert clean["result"]["in_sample"] is None


def test_chart_data_marks_every_fill_and_draws_the_baselines(client, trained: Path) -> None:
    data = chart_data(run_form(client))
    report = backtest_model(trained / XGB, SAMPLE_CSV)
    trades = report.result.trades
    assert [s["label"] for s in data["equity"]["series"]] == ["smoke", "Buy & Hold",
                                                                  "Random (median)"]
    assert len(data["equity"]["x"]) == len(report.result.equity) == data["bars"]
    assert data["equity"]["series"][0]["data"][-1] == pytest.approx(
        report.result.equity.iloc[-1], abs=0.01)
    buys, sells = data["price"]["buys"], data["price"]["sells"]
    assert len(buys) + len(sells) == 2 * len(trades)
    longs = trades[trades.side > 0]
    assert sorted(b["x"] for b in buys) == sorted(
        [*longs.entry_bar, *trades[trades.side < 0].exit_bar])
    assert {b["what"] for b in buys} <= {"Long entry", "Short exit"}
    assert {s["what"] for s in sells} <= {"Short entry", "Long exit"}
    keys = [d["key"] for d in data["price"]["decisions"]]
    assert keys == ["Hold", "Buy", "Sell"]


def test_ppo_decisions_reach_the_price_chart(client, trained: Path) -> None:
    data = chart_data(run_form(client, model=PPO))
    report = backtest_model(trained / PPO, SAMPLE_CSV)
    price = data["price"]
    assert [d["label"] for d in price["decisions"]] == ["P(Hold)", "P(Buy)", "P(Sell)",
                                                        "Value estimate"]
    value = next(d for d in price["decisions"] if d["key"] == "value")
    i = len(price["x"]) // 2
    bar = price["x"][i]
    assert value["data"][i] == pytest.approx(report.decisions["value"].iloc[bar], abs=1e-5)
    assert price["action"][i] == report.decisions["action_name"].iloc[bar]
    assert price["t"][i] == str(report.decisions.index[bar].date())


def test_long_periods_are_downsampled_but_keep_extremes_and_trades(client, trained: Path,
                                                                   monkeypatch) -> None:
    from web import backtest_results

    monkeypatch.setattr(backtest_results, "MAX_POINTS", 400)
    data = chart_data(run_form(client, model=PPO))
    report = backtest_model(trained / PPO, SAMPLE_CSV)
    assert data["bars"] == len(report.result.equity) > 3000
    assert len(data["price"]["x"]) <= 402 and len(data["equity"]["x"]) <= 402
    close = report.result.bars["Close"].to_numpy()
    assert max(data["price"]["close"]) == pytest.approx(close.max())
    assert min(data["price"]["close"]) == pytest.approx(close.min())
    drawdown = report.result.equity_frame()["drawdown"].max()
    assert min(data["equity"]["drawdown"]) == pytest.approx(-100 * drawdown, abs=1e-3)
    for series, curve in zip(data["equity"]["series"],
                             [report.result, *report.baselines.values()], strict=True):
        assert max(series["data"]) == pytest.approx(curve.equity.max(), abs=0.01)
        assert min(series["data"]) == pytest.approx(curve.equity.min(), abs=0.01)
    assert len(data["price"]["buys"]) + len(data["price"]["sells"]) == \
        2 * len(report.result.trades)

    monkeypatch.setattr(backtest_results, "MAX_MARKERS", 100)
    page = run_form(client, model=PPO)
    price = chart_data(page)["price"]
    assert len(price["buys"]) + len(price["sells"]) <= 102 and price["markers_step"] > 1
    assert "th trade is marked" in page


def test_sample_indices_bound_the_points() -> None:
    from web.backtest_results import sample_indices

    walk = np.cumsum(np.random.default_rng(1).standard_normal(100_000))
    picked = sample_indices(walk, 2000)
    assert len(picked) <= 2000 and picked[0] == 0 and picked[-1] == len(walk) - 1
    assert walk.argmax() in picked and walk.argmin() in picked
    assert np.all(np.diff(picked) > 0)
    assert list(sample_indices(walk[:50], 2000)) == list(range(50))


def test_exports_are_csv_attachments(client) -> None:
    page = run_form(client, model=PPO)
    links = dict(re.findall(r'<a href="(/backtest/[^"]+/(\w+\.\w+))" download>', page))
    assert set(links.values()) == {"trades.csv", "equity.csv", "decisions.csv",
                                   "statistics.json"}
    by_name = {name: url for url, name in links.items()}
    with client.get(by_name["trades.csv"]) as response:
        assert response.status_code == 200
        assert response.mimetype == "text/csv"
        assert response.headers["Content-Disposition"].startswith("attachment;")
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(rows[0]) == TRADE_COLUMNS and len(rows) > 2
    with client.get(by_name["equity.csv"]) as response:
        assert response.mimetype == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        header = response.get_data(as_text=True).splitlines()[0]
    assert header == "time,equity,drawdown,position,equity_buy_hold,equity_random"
    with client.get(by_name["statistics.json"]) as response:
        assert response.get_json()["data_file"] == "sample.csv"
    result = by_name["trades.csv"].rsplit("/", 1)[0]
    for bad in (f"{result}/view.json", f"{result}/../x.csv", "/backtest/nope-1/trades.csv",
                "/backtest/nope-1", "/backtest/.tmp-x"):
        with client.get(bad) as response:
            assert response.status_code == 404, bad


def test_recent_backtests_are_listed(client) -> None:
    run_form(client, model=PPO)
    page = client.get("/backtest").get_data(as_text=True)
    assert "No backtests yet" not in page
    assert re.search(r'<a href="/backtest/PPO_tiny-[\w-]+">', page)


# ------------------------------------------------------------------------ the JSON API


def test_api_runs_a_backtest(client, trained: Path) -> None:
    response = client.post("/api/backtest", json={
        "model": PPO, "csv": "sample.csv", "start": "2005-01-01", "end": "2006-12-31",
        "commission": 0.001, "slippage": "3", "initial_balance": 25000, "fill": "next_open"})
    assert response.status_code == 202, response.get_json()
    queued = response.get_json()
    assert queued["status"] == "queued" and response.headers["Location"] == queued["status_url"]
    assert client.application.extensions[EXTENSION].wait(queued["id"], 120)
    status = client.get(queued["status_url"]).get_json()
    assert status["status"] == "done" and status["progress"] == 1
    body = status["result"]
    expected = backtest_model(trained / PPO, SAMPLE_CSV, start="2005-01-01", end="2006-12-31",
                              commission=0.001, slippage=3, initial_balance=25000,
                              fill="next_open").summary()
    assert body["period"] == expected["period"]
    assert body["period"]["source"] == "custom range"
    assert list(body["statistics"]) == list(STAT_KEYS)
    assert body["statistics"]["Return [%]"] == pytest.approx(
        expected["statistics"]["Return [%]"])
    assert set(body["baselines"]) == {"Buy & Hold", "Random"}
    # The same random policies, the same percentiles, whoever runs the backtest.
    assert body["random"]["policies"] == 300 and body["random"]["seed"] == 0
    for key in ("return_pct", "sharpe"):
        assert body["random"][key]["percentile"] == expected["random"][key]["percentile"]
        assert body["random"][key]["median"] == pytest.approx(expected["random"][key]["median"])
    assert sum(body["random"]["histogram"]["counts"]) == 300
    assert body["params"]["commission"] == 0.001 and body["fill"] == "next_open"
    assert body["trades_count"] == expected["statistics"]["# Trades"]
    assert body["url"] == queued["url"]
    for name, url in body["files"].items():
        with client.get(url) as download:
            assert download.status_code == 200, name
    with client.get(body["url"]) as page:
        assert page.status_code == 200


@pytest.mark.parametrize(("body", "status", "field"), [
    ([1, 2], 400, None),
    ("not json", 400, None),
    ({"model": PPO, "csv": "sample.csv", "speed": 3}, 400, "speed"),
    ({"model": "PPO_gone", "csv": "sample.csv"}, 404, "model"),
    ({"csv": "sample.csv"}, 422, "model"),
    ({"model": PPO, "csv": "missing.csv"}, 422, "csv"),
    ({"model": PPO, "csv": "sample.csv", "commission": -1}, 422, "commission"),
    ({"model": PPO, "csv": "sample.csv", "slippage": True}, 422, "slippage"),
    ({"model": PPO, "csv": "sample.csv", "initial_balance": "lots"}, 422, "initial_balance"),
    ({"model": PPO, "csv": "sample.csv", "fill": "later"}, 422, "fill"),
    ({"model": PPO, "csv": "sample.csv", "start": "someday"}, 422, "start"),
    ({"model": PPO, "csv": "sample.csv", "start": "2012-01-01", "end": "2011-01-01"}, 422,
     "end"),
    ('{"model": "PPO_tiny", "csv": "sample.csv", "commission": 1' + "0" * 309 + "}", 422,
     None),
    ('{"model": "PPO_tiny", "csv": "sample.csv", "start": NaN}', 422, "start"),
    ("[" * 981 + "]" * 981, 400, None),
    ('{"model": ' * 981 + "1" + "}" * 981, 400, None),
])
def test_api_errors_name_the_field(client, body, status: int, field: str | None) -> None:
    if isinstance(body, str):
        response = client.post("/api/backtest", data=body, content_type="application/json")
    else:
        response = client.post("/api/backtest", json=body)
    assert response.status_code == status
    reply = response.get_json()
    assert reply["error"] and reply.get("field") == field


def test_a_run_that_fails_is_a_failed_job_naming_the_field(client) -> None:
    reply = api_result(client, {"model": PPO, "csv": "sample.csv", "end": "1999-01-01"})
    assert reply["status"] == "failed" and reply["field"] == "end"
    assert reply["error"].startswith("no bars between") and "result" not in reply


def test_api_names_a_bad_data_file_as_csv(client, app) -> None:
    folder = Path(app.config["DATA_DIR"])
    folder.mkdir(parents=True)
    (folder / "short.csv").write_text("Datetime,Open,High,Low,Close\n"
                                      "2020-01-01,1,1,1,1\n2020-01-02,1,1,1,1\n")
    reply = api_result(client, {"model": PPO, "csv": "short.csv"})
    assert reply["status"] == "failed"
    assert reply["field"] == "csv" and str(folder) not in reply["error"]


def test_a_denormal_initial_balance_is_refused_not_saved(client) -> None:
    reply = client.post("/api/backtest", json={"model": "PPO_tiny", "csv": "sample.csv",
                                               "initial_balance": 5e-324})
    assert reply.status_code == 422 and reply.get_json()["field"] == "initial_balance"
