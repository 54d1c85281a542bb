"""The model library area: list, model page, deletion, JSON API (Flask test client)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from Main import create_app
from tests.helpers.fake_model_type import FrequencyTrainer
from web.library import history_charts


@pytest.fixture(scope="module")
def xgb_model(smoke_xgb: Path) -> Path:
    """A real XGBoost smoke model, trained once per session; tests copy it."""
    return smoke_xgb


def add(model: Path, models_dir: Path, created_at: str | None = None) -> Path:
    target = Path(shutil.copytree(model, models_dir / model.name))
    if created_at:
        edit_config(target, created_at=created_at)
    return target


def edit_config(folder: Path, **changes) -> None:
    path = next(folder.glob("*_config.yaml"))
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def text(response) -> str:
    return response.get_data(as_text=True)


def history_json(page: str) -> list[dict]:
    found = re.search(r'<script type="application/json" id="history-data">(.*?)</script>',
                      page, re.S)
    assert found, "the model page embeds no chart data"
    return json.loads(found.group(1))


@pytest.fixture()
def library(xgb_model: Path, bars: pd.DataFrame, models_dir: Path) -> dict[str, Path]:
    """An XGBoost model, a newer test-type model and a broken folder."""
    xgb = add(xgb_model, models_dir, "2026-01-02T00:00:00Z")
    freq = FrequencyTrainer({"lookback": 10}).fit(bars, model_name="demo",
                                                  models_dir=models_dir, data_file="sample.csv")
    edit_config(freq, created_at="2026-01-03T00:00:00Z")
    broken = models_dir / "PPO_half"
    broken.mkdir()
    (broken / "half_model.pt").write_bytes(b"x" * 10)
    return {"xgb": xgb, "freq": freq, "broken": broken}


# -------------------------------------------------------------------------------- list


def test_empty_library_says_so_and_is_in_the_menu(client) -> None:
    page = text(client.get("/models"))
    assert "No trained models yet" in page
    assert 'href="/models"' in text(client.get("/"))  # the navigation shows the area


def test_list_shows_every_model_newest_first(client, library) -> None:
    page = text(client.get("/models"))
    rows = re.findall(r'<tr class="[^"]*" data-dir="([^"]+)"', page)
    assert rows == ["FREQ_demo", "XGB_smoke", "PPO_half"]  # newest first, broken last
    assert "XGBoost Classifier" in page and "sample.csv" in page
    assert "val. accuracy" in page  # headline metrics
    assert "unreadable" in page and "expected one *_config.yaml" in page
    assert 'href="/backtest?model=XGB_smoke"' in page and 'href="/hosting?model=XGB_smoke"' in page
    assert 'href="/models/XGB_smoke/delete"' in page


@pytest.mark.parametrize(("wanted", "shown"), [
    ("xgboost", ["XGB_smoke"]), ("XGB", ["XGB_smoke"]), ("frequency", ["FREQ_demo"]),
    ("unreadable", ["PPO_half"]), ("", ["FREQ_demo", "XGB_smoke", "PPO_half"]),
])
def test_list_filters_by_type(client, library, wanted: str, shown: list[str]) -> None:
    page = text(client.get(f"/models?type={wanted}"))
    assert re.findall(r'data-dir="([^"]+)"', page) == shown
    assert 'class="chip active"' in page


def test_filter_with_no_match_has_an_empty_state(client, library) -> None:
    page = text(client.get("/models?type=transformer"))
    assert "No Transformer models" in page and "Show all 3 models" in page


# ------------------------------------------------------------------------- model page


def test_model_page_shows_summary_metrics_history_and_files(client, library) -> None:
    response = client.get("/models/XGB_smoke")
    assert response.status_code == 200
    page = text(response)
    for expected in ("XGBoost Classifier", "2026-01-02 00:00:00 UTC", "sample.csv", "3,255",
                     "2000-03-22", "20 bars", "RSI_14", "returns",
                     "validation_accuracy", "train_class_shares.up", "best_val_loss",
                     "smoke_checkpoint.pt", "smoke_model.json", "smoke_scaler.json",
                     "no recorded run", 'href="/backtest?model=XGB_smoke"',
                     'href="/hosting?model=XGB_smoke"', "Full config", "feature_importance:",
                     "chart.umd.min.js", "library.js"):
        assert expected in page, expected
    assert "00:00:00</td>" not in page  # split days without a midnight time
    assert page.count('class="bar-row"') == 15  # top features of XGBoost
    charts = history_json(page)
    assert [c["title"] for c in charts] == ["Loss", "Accuracy"]
    loss = charts[0]
    assert loss["x_title"] == "epoch" and loss["labels"][:3] == [1, 2, 3]
    assert [s["label"] for s in loss["series"]] == ["train loss", "validation loss"]
    assert len(loss["series"][0]["data"]) == len(loss["labels"])
    accuracy = [s["label"] for s in charts[1]["series"]]
    assert accuracy == ["train accuracy", "validation accuracy", "majority baseline"]


def test_model_of_a_type_without_importance_or_history(client, library) -> None:
    page = text(client.get("/models/FREQ_demo"))
    assert "No validation history recorded" in page and "Feature importance" not in page
    assert "chart.umd.min.js" not in page
    assert "train_up_share" in page


def test_broken_folder_page_shows_the_error_and_offers_delete(client, library) -> None:
    response = client.get("/models/PPO_half")
    assert response.status_code == 200
    page = text(response)
    assert "cannot be read" in page and "expected one *_config.yaml" in page
    assert "half_model.pt" in page and 'href="/models/PPO_half/delete"' in page
    assert "/backtest?model=PPO_half" not in page


def test_model_page_links_its_training_run(app, client, library) -> None:
    from web.store import get_store

    with app.app_context():
        store = get_store()
        other = store.create_run(name="elsewhere", model_type="xgboost",
                                 model_dir="/somewhere/else/XGB_smoke")  # same folder name
        run_id = store.create_run(name="xgb-agent", model_type="xgboost",
                                  model_dir=str(library["xgb"]))
        store.set_status(run_id, "completed")
    page = text(client.get("/models/XGB_smoke"))
    assert f'href="/runs/{run_id}"' in page and f"/runs/{other}" not in page
    assert "xgb-agent" in page and 'class="badge completed"' in page
    api = client.get("/api/models/XGB_smoke").get_json()
    assert api["run"]["run_id"] == run_id and api["run_link"] == f"/runs/{run_id}"
    assert "no recorded run" in text(client.get("/models/FREQ_demo"))


def test_model_page_survives_an_unavailable_store(tmp_path: Path, xgb_model: Path,
                                                  models_dir: Path) -> None:
    add(xgb_model, models_dir)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database folder should be")
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{blocker}/runs.db",
                      "MODELS_DIR": str(models_dir)})
    client = app.test_client()
    response = client.get("/models/XGB_smoke")
    assert response.status_code == 200 and "run store unavailable" in text(response)
    api = client.get("/api/models/XGB_smoke").get_json()
    assert api["run"] is None and api["store_error"]


# ------------------------------------------------------------------ 404 and traversal


@pytest.fixture()
def outside(tmp_path: Path, xgb_model: Path) -> Path:
    """A model folder beside (not inside) the library, reachable only by escaping it."""
    return Path(shutil.copytree(xgb_model, tmp_path / "outside"))


@pytest.mark.parametrize("name", [
    "nope", "..", "%2e%2e", "..%2Foutside", "..%2F..%2Fetc", ".hidden", "a%00b", "x" * 101,
    "link",
])
def test_unknown_or_unsafe_names_are_404(client, models_dir: Path, outside: Path,
                                         name: str) -> None:
    (models_dir / ".hidden").mkdir()
    (models_dir / "link").symlink_to(outside, target_is_directory=True)
    for path in (f"/models/{name}", f"/models/{name}/delete"):
        with client.get(path) as response:
            assert response.status_code == 404, path
    response = client.post(f"/models/{name}/delete", data={"confirm": name})
    assert response.status_code in (404, 405)
    api = client.get(f"/api/models/{name}")
    assert api.status_code == 404
    if "%2F" not in name:  # a slash never reaches the view: the router answers 404 itself
        assert api.is_json and "error" in api.get_json()
    assert client.delete(f"/api/models/{name}").status_code == 404
    assert (outside / "smoke_config.yaml").is_file() and (models_dir / ".hidden").is_dir()


def test_not_found_page_links_back(client) -> None:
    response = client.get("/models/nope")
    assert response.status_code == 404
    assert "No model folder" in text(response) and 'href="/models"' in text(response)


# ----------------------------------------------------------------------------- delete


def test_delete_asks_first_then_removes_and_says_so(client, library) -> None:
    confirm = text(client.get("/models/XGB_smoke/delete"))
    assert "cannot be undone" in confirm and "smoke_checkpoint.pt" in confirm
    assert 'name="confirm" value="XGB_smoke"' in confirm
    assert library["xgb"].is_dir()  # GET removes nothing

    response = client.post("/models/XGB_smoke/delete", data={"confirm": "XGB_smoke"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/models"
    assert not library["xgb"].exists()
    page = text(client.get(response.headers["Location"]))
    assert "Deleted model XGB_smoke." in page
    assert 'data-dir="XGB_smoke"' not in page and 'data-dir="FREQ_demo"' in page


def test_delete_needs_the_confirmation_field(client, library) -> None:
    response = client.post("/models/XGB_smoke/delete")
    assert response.status_code == 400 and "not confirmed" in text(response)
    assert library["xgb"].is_dir()


def test_delete_refuses_a_cross_site_form(client, library) -> None:
    response = client.post("/models/XGB_smoke/delete", data={"confirm": "XGB_smoke"},
                           headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and library["xgb"].is_dir()
    same = client.post("/models/XGB_smoke/delete", data={"confirm": "XGB_smoke"},
                       headers={"Origin": "http://localhost"})
    assert same.status_code == 302 and not library["xgb"].exists()


def test_the_deleted_notice_is_shown_once(client, library) -> None:
    response = client.post("/models/PPO_half/delete", data={"confirm": "PPO_half"})
    assert response.headers["Location"] == "/models"
    assert "Deleted model PPO_half." in text(client.get("/models"))
    assert "Deleted model" not in text(client.get("/models"))  # a flash, not a state
    assert not library["broken"].exists()


# -------------------------------------------------------------------------------- API


def test_api_lists_models(client, library) -> None:
    body = client.get("/api/models").get_json()
    assert body["count"] == 3
    assert [m["dir_name"] for m in body["models"]] == ["FREQ_demo", "XGB_smoke", "PPO_half"]
    xgb = body["models"][1]
    assert xgb["type"] == "xgboost" and xgb["type_label"] == "XGBoost Classifier"
    assert xgb["metrics"]["validation_accuracy"] > 0 and xgb["error"] is None
    assert xgb["links"] == {"page": "/models/XGB_smoke", "api": "/api/models/XGB_smoke"}
    assert body["models"][2]["error"]
    only = client.get("/api/models?type=xgb").get_json()
    assert [m["dir_name"] for m in only["models"]] == ["XGB_smoke"]


def test_api_model_detail(client, library) -> None:
    body = client.get("/api/models/XGB_smoke").get_json()
    assert body["name"] == "smoke" and body["lookback"] == 20 and body["data_rows"] == 3255
    assert body["split"]["train"]["start"].startswith("2000-03-22")
    assert body["feature_importance"][0]["importance"] >= body["feature_importance"][1][
        "importance"]
    assert body["checkpoints"] == ["smoke_checkpoint.pt"]
    assert {f["name"] for f in body["files"]} >= {"smoke_model.json", "smoke_config.yaml"}
    assert body["config"]["Type"] == "xgboost" and body["run"] is None
    assert body["links"]["backtest"] == "/backtest?model=XGB_smoke"
    assert "path" not in body  # no server paths in the API


def test_api_delete(client, library) -> None:
    response = client.delete("/api/models/XGB_smoke")
    assert response.status_code == 200 and response.get_json() == {"deleted": "XGB_smoke"}
    assert not library["xgb"].exists()
    again = client.delete("/api/models/XGB_smoke")
    assert again.status_code == 404 and "XGB_smoke" in again.get_json()["error"]


# ---------------------------------------------------------------------- chart specs


def test_history_charts_of_a_ppo_history() -> None:
    rows = [{"iteration": 1, "return_pct": 0.8, "trades": 8},
            {"iteration": 2, "return_pct": float("nan"), "trades": 6},
            {"iteration": 3, "return_pct": -0.7, "trades": 6}]
    charts = history_charts(rows, {"validation_buy_hold_pct": 0.5})
    assert len(charts) == 1
    chart = charts[0]
    assert chart["title"] == "Validation return" and chart["labels"] == [1, 2, 3]
    assert chart["series"][0]["data"] == [0.8, None, -0.7]
    assert chart["series"][1]["label"] == "buy & hold %"
    assert chart["series"][1]["data"] == [0.5] * 3 and chart["notes"] == []
    far = history_charts(rows, {"validation_buy_hold_pct": -11.5})[0]
    assert len(far["series"]) == 1 and far["notes"] == ["buy & hold %: -11.5"]
    assert history_charts([], {}) == [] and history_charts("junk", {}) == []
    assert history_charts([{"note": "x"}], {}) == []


def test_list_sorts_by_a_run_figure_metric(client, library, tmp_path: Path) -> None:
    from tests.helpers.compare_runs import save_backtest

    # a backtest of each good model: the better return first, the broken folder last
    save_backtest(tmp_path / "backtests", "XGB_smoke", "x-1", return_pct=9.0,
                  created_at="2026-01-05T00:00:00Z")
    save_backtest(tmp_path / "backtests", "FREQ_demo", "f-1", return_pct=-2.0,
                  created_at="2026-01-05T00:00:00Z")
    page = text(client.get("/models?sort=backtest:Return [%]"))
    rows = re.findall(r'<tr class="[^"]*" data-dir="([^"]+)"', page)
    assert rows == ["XGB_smoke", "FREQ_demo", "PPO_half"]
    assert 'id="library-sort-metric"' in page and "backtest Return [%] <b>9</b>" in page
    page = text(client.get("/models?sort=backtest:Return [%]&order=asc"))
    assert re.findall(r'<tr class="[^"]*" data-dir="([^"]+)"', page)[:2] == ["FREQ_demo",
                                                                            "XGB_smoke"]
    listed = client.get("/api/models?sort=backtest:Sharpe Ratio").get_json()["models"]
    assert [m["dir_name"] for m in listed][:2] == ["XGB_smoke", "FREQ_demo"]
    assert client.get("/models?sort=best:no/such").status_code == 422
