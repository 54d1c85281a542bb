"""Evaluating runs on held-out data: each run's model backtested with the same costs
through the backtest jobs, stored like any backtest, ranked; bad input named."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.apps import make_app
from tests.helpers.models import TrainedModel, model_library
from Utilities.backtest_report import BacktestReport
from Utilities.model_backtester import backtest_model
from web.evaluate import EXTENSION, MAX_RUNS

SAMPLE_CSV = Path(__file__).resolve().parent.parent / "sample.csv"
XGB, PPO = "XGB_smoke", "PPO_tiny"


@pytest.fixture(scope="module")
def trained(smoke_xgb: Path, tiny_ppo: TrainedModel, tmp_path_factory) -> Path:
    return model_library(tmp_path_factory.mktemp("Models"), smoke_xgb, tiny_ppo.folder)


@pytest.fixture()
def app(database_url: str, trained: Path, tmp_path: Path) -> Iterator:
    from web.store import close_store

    flask_app = make_app(database_url, trained, tmp_path)
    flask_app.config["BACKTEST_RANDOM_POLICIES"] = 40  # the default is 300; fewer, faster
    yield flask_app
    close_store(flask_app)


@pytest.fixture()
def runs(app, trained: Path) -> dict[str, str]:
    """Runs in the store: two with models in the library, one without a saved model."""
    from web.store import get_store

    with app.app_context():
        store = get_store()
        return {name: store.create_run(name=name, model_type=kind, model_dir=folder,
                                       experiment="sweep" if folder else "")
                for name, kind, folder in (
                    ("xgb-run", "xgboost", str(trained / XGB)),
                    ("ppo-run", "ppo", str(trained / PPO)),
                    ("no-model", "ppo", ""))}


def finished(client, evaluation_id: str) -> dict:
    assert client.application.extensions[EXTENSION].wait(evaluation_id, 300)
    return client.get(f"/api/evaluations/{evaluation_id}").get_json()


def test_each_run_is_backtested_on_one_csv_with_the_same_costs(client, runs, trained) -> None:
    body = {"runs": [runs["xgb-run"], runs["ppo-run"]], "csv": "sample.csv",
            "commission": 0.001, "slippage": 2}
    response = client.post("/api/evaluations", json=body)
    assert response.status_code == 202, response.get_json()
    started = response.get_json()
    assert response.headers["Location"] == started["status_url"]
    status = finished(client, started["id"])
    assert status["status"] == "done" and status["progress"] == 1
    assert status["costs"] == {"commission": 0.001, "slippage": 2.0, "initial_balance": 10_000.0}
    rows = {row["run_id"]: row for row in status["runs"]}
    for name, model in (("xgb-run", XGB), ("ppo-run", PPO)):
        row = rows[runs[name]]
        assert row["status"] == "done" and row["model"] == model and row["run_name"] == name
        expected: BacktestReport = backtest_model(trained / model, SAMPLE_CSV, commission=0.001,
                                                  slippage=2, initial_balance=10_000,
                                                  random_policies=40)
        figures = row["figures"]
        assert figures["return_pct"] == pytest.approx(expected.statistics["Return [%]"])
        assert figures["sharpe"] == pytest.approx(expected.statistics["Sharpe Ratio"])
        assert figures["trades"] == expected.statistics["# Trades"]
        ranked = expected.random_summary()
        assert figures["random_percentile"] == ranked["return_pct"]["percentile"]
        assert figures["random_policies"] == 40
        assert figures["buy_hold_pct"] == pytest.approx(
            expected.baseline_statistics["Buy & Hold"]["Return [%]"])
        # Stored like any other backtest: its own page and API, and it says why it ran.
        result = client.get(f"/api/backtest/{row['backtest_id']}").get_json()
        assert result["status"] == "done" and result["result"]["model"] == model
        view = json.loads((Path(client.application.config["BACKTESTS_DIR"])
                           / row["backtest_id"] / "meta.json").read_text())
        assert view["origin"] == {"run_id": runs[name], "evaluation": started["id"]}
        page = client.get(f"/backtest/{row['backtest_id']}").get_data(as_text=True)
        assert f'href="/evaluate/{started["id"]}"' in page
    returns = [rows[i]["figures"]["return_pct"] for i in status["ranking"]]
    assert returns == sorted(returns, reverse=True) and len(returns) == 2


def test_the_default_is_each_runs_own_test_slice(client, runs, trained) -> None:
    """XGB_smoke was trained on sample.csv: with no csv, its held-out test slice."""
    other = _run_like(client, "xgb-again", trained / XGB)
    response = client.post("/api/evaluations", json={"runs": [runs["xgb-run"], other]})
    assert response.status_code == 202, response.get_json()
    status = finished(client, response.get_json()["id"])
    for row in status["runs"]:
        assert row["status"] == "done"
        result = client.get(f"/api/backtest/{row['backtest_id']}").get_json()["result"]
        assert result["period"]["source"] == "held-out test slice"
        assert result["in_sample"] is None
    assert status["csv"] is None


def _run_like(client, name: str, folder: Path, experiment: str = "") -> str:
    from web.store import get_store

    with client.application.app_context():
        return get_store().create_run(name=name, model_type="xgboost", model_dir=str(folder),
                                      experiment=experiment)


def test_an_experiment_names_its_runs(client, runs) -> None:
    response = client.post("/api/evaluations", json={"experiment": "sweep", "csv": "sample.csv"})
    assert response.status_code == 202, response.get_json()
    status = finished(client, response.get_json()["id"])
    assert {row["run_name"] for row in status["runs"]} == {"xgb-run", "ppo-run"}


@pytest.mark.parametrize(("body", "status", "field", "says"), [
    ([1, 2], 400, None, "JSON object"),
    ({"runs": ["a", "b"], "colour": "red"}, 400, "colour", "unknown field"),
    ({"runs": "not-a-list-of-two"}, 422, "runs", "1 run(s)"),
    ({"runs": [1, 2]}, 422, "runs", "list of 2 to 20 run ids"),
    ({"runs": [f"r{i}" for i in range(MAX_RUNS + 1)]}, 422, "runs", f"more than {MAX_RUNS}"),
    ({"runs": ["a", "b"], "experiment": "sweep"}, 422, "runs", "not both"),
    ({"experiment": "nothing-like-it"}, 404, "experiment", "no experiment 'nothing-like-it'"),
])
def test_bad_requests_name_their_field(client, runs, body, status, field, says) -> None:
    response = client.post("/api/evaluations", json=body)
    reply = response.get_json()
    assert response.status_code == status, reply
    assert reply.get("field") == field and says in reply["error"], reply


def test_unknown_runs_are_named(client, runs) -> None:
    ghost = "00000000-0000-4000-8000-000000000000"
    response = client.post("/api/evaluations", json={"runs": [runs["xgb-run"], ghost, "x;y"]})
    reply = response.get_json()
    assert response.status_code == 404 and reply["field"] == "runs"
    assert reply["unknown"] == [ghost, "x;y"] and ghost in reply["error"]


def test_runs_without_a_model_or_data_are_named(client, runs) -> None:
    response = client.post("/api/evaluations", json={"runs": [runs["xgb-run"], runs["no-model"]],
                                                     "csv": "sample.csv"})
    reply = response.get_json()
    assert response.status_code == 422 and reply["field"] == "runs"
    assert list(reply["runs_without"]) == [runs["no-model"]]
    assert "'no-model'" in reply["error"] and "no saved model" in reply["error"]
    # PPO_tiny recorded no training file: without a csv for all, it cannot be placed.
    response = client.post("/api/evaluations", json={"runs": [runs["xgb-run"], runs["ppo-run"]]})
    reply = response.get_json()
    assert response.status_code == 422 and reply["field"] == "csv"
    assert list(reply["runs_without"]) == [runs["ppo-run"]]


@pytest.mark.parametrize(("change", "field"), [({"commission": 2}, "commission"),
                                               ({"slippage": -1}, "slippage"),
                                               ({"csv": "nope.csv"}, "csv"),
                                               ({"fill": "noon"}, "fill")])
def test_bad_values_are_refused_before_anything_runs(client, runs, change, field) -> None:
    body = {"runs": [runs["xgb-run"], runs["ppo-run"]], "csv": "sample.csv", **change}
    response = client.post("/api/evaluations", json=body)
    assert response.status_code == 422 and response.get_json()["field"] == field
    assert not (Path(client.application.config["BACKTESTS_DIR"]) / ".evaluations").exists() \
        or not list((Path(client.application.config["BACKTESTS_DIR"]) / ".evaluations")
                    .glob("*.json"))


def test_unknown_evaluation_is_404(client) -> None:
    for evaluation_id in ("eval-20240101-000000-abcdef", "..evil"):
        response = client.get(f"/api/evaluations/{evaluation_id}")
        assert response.status_code == 404 and "no evaluation" in response.get_json()["error"]
    assert client.get("/evaluate/eval-20240101-000000-abcdef").status_code == 404


def test_the_form_and_the_results_page(client, runs) -> None:
    page = client.get(f"/evaluate?runs={runs['xgb-run']},{runs['ppo-run']}").get_data(
        as_text=True)
    assert page.count('type="checkbox" name="runs"') == 2 and "xgb-run" in page
    response = client.post("/evaluate", data={"runs": [runs["xgb-run"], runs["no-model"]],
                                              "csv": "sample.csv", "commission": "0.0005",
                                              "slippage": "1", "initial_balance": "10000",
                                              "fill": "close"})
    assert response.status_code == 422
    assert re.search(r'id="runs-error"[^>]*>[^<]*no saved model', response.get_data(as_text=True))
    response = client.post("/evaluate", data={"runs": [runs["xgb-run"], runs["ppo-run"]],
                                              "csv": "sample.csv", "commission": "0.0005",
                                              "slippage": "1", "initial_balance": "10000",
                                              "fill": "close"})
    assert response.status_code == 303
    evaluation_id = response.headers["Location"].rsplit("/", 1)[1]
    finished(client, evaluation_id)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    table = re.search(r'<table class="stats" id="evaluation-table">(.*?)</table>', page, re.S)
    assert table and table.group(1).count('data-status="done"') == 2
    assert "Random pct." in page and "xgb-run" in table.group(1)


def test_an_evaluation_is_known_after_a_restart(client, runs, database_url, trained,
                                                tmp_path) -> None:
    response = client.post("/api/evaluations", json={"runs": [runs["xgb-run"], runs["ppo-run"]],
                                                      "csv": "sample.csv"})
    evaluation_id = response.get_json()["id"]
    before = finished(client, evaluation_id)
    again = make_app(database_url, trained, tmp_path)  # the same folders, a new process's app
    reread = again.test_client().get(f"/api/evaluations/{evaluation_id}").get_json()
    assert [r["figures"] for r in reread["runs"]] == [r["figures"] for r in before["runs"]]
    assert reread["ranking"] == before["ranking"] and reread["status"] == "done"


@pytest.mark.parametrize(("body", "field"), [({"experiment": "a\x00b"}, "experiment"),
                                             ({"experiment": ["x"]}, "experiment"),
                                             ({"runs": ["a", "b"], "start": ["x"]}, "runs")])
def test_odd_values_are_refused_by_name(client, runs, body, field) -> None:
    response = client.post("/api/evaluations", json=body)
    assert response.status_code in (404, 422) and response.get_json()["field"] == field
