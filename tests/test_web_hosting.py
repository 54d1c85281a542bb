"""API hosting in the dashboard: choosing the hosted model, /predict serving it as the
standalone Api_Loader app does, any library model by folder name, the sample window."""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from Api_Loader import create_api_app
from NetworkConfigs import load_model
from tests.helpers.apps import error_of
from tests.helpers.models import TrainedModel, copy_model
from web.hosted import LoaderCache
from web.json_io import ApiError
from web.predict import MAX_BODY_BYTES


@pytest.fixture(scope="module")
def trained(tiny_xgb: Path, tiny_ppo: TrainedModel) -> dict[str, Path]:
    """A real XGBoost and a tiny PPO model, trained once per session."""
    return {"xgb": tiny_xgb, "ppo": tiny_ppo.folder}


@pytest.fixture()
def library(trained: dict[str, Path], models_dir: Path) -> dict[str, str]:
    """Both models copied into this test's library, the PPO the newer; kind -> folder name."""
    for kind, created_at in (("xgb", "2026-01-01T00:00:00Z"), ("ppo", "2026-01-02T00:00:00Z")):
        copy_model(trained[kind], models_dir, created_at=created_at)
    return {kind: path.name for kind, path in trained.items()}


@pytest.fixture(autouse=True)
def data_dir(app, tmp_path: Path) -> Path:
    """Offered CSVs: sample.csv plus this test's own data folder (never the repo's)."""
    folder = tmp_path / "data"
    folder.mkdir()
    app.config["DATA_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="module")
def window(sample_bars: pd.DataFrame) -> list[dict]:
    """21 bars of every sample.csv column: a full window for the XGBoost model."""
    return sample_bars.iloc[300:321].to_dict("records")


def window_for(sample_bars: pd.DataFrame, model_dir: Path, end: int = 320) -> list[dict]:
    loader = load_model(model_dir)
    frame = sample_bars[list(loader.spec.features)].iloc[end + 1 - loader.window_size:end + 1]
    return frame.to_dict("records")




def host(client, dir_name: str):
    return client.post("/hosting", data={"model": dir_name})


# ------------------------------------------------------------------ the page, hosting


def test_nothing_hosted_at_start_so_predict_is_503_json(client, sample_bars, trained) -> None:
    body = {"window": window_for(sample_bars, trained["xgb"])}
    error = error_of(client.post("/predict", json=body), 503)["error"]
    assert error.startswith("no model is hosted: choose one on the API page (/hosting)")
    assert error_of(client.get("/health"), 503)["status"] == "unavailable"
    error_of(client.get("/info"), 503)
    error_of(client.get("/streams/s1"), 503)
    doc = client.get("/openapi.json").get_json()
    assert doc["servers"] == [{"url": "/"}] and "/predict" in doc["paths"]


def test_the_page_without_models_says_so(client) -> None:
    page = client.get("/hosting").get_data(as_text=True)
    assert "No model is hosted." in page and "No trained models yet." in page
    assert "Nothing to try yet." in page
    assert re.search(r"<a href=\"/hosting\" class=\"active\">\s*API\s*</a>", page)  # menu


def test_the_page_lists_models_and_preselects_the_query_model(client, library) -> None:
    page = client.get(f"/hosting?model={library['ppo']}").get_data(as_text=True)
    assert "No model is hosted." in page
    assert re.search(rf'<option value="{library["ppo"]}" selected>', page)
    assert re.search(rf'<option value="{library["xgb"]}"\s*>', page)
    # the playground targets the chosen model until one is hosted
    assert f"POST /api/models/{library['ppo']}/predict" in page
    assert f"--model-dir {library['ppo']}" not in page  # the library is outside the repo
    assert re.search(rf"\.venv/bin/python Api_Loader.py --model-dir \S+/{library['ppo']} "
                     r"--port 8001", page)


def test_hosting_a_model_serves_it_as_the_standalone_app_does(client, library, trained,
                                                              sample_bars) -> None:
    response = host(client, library["ppo"])
    assert response.status_code == 302 and response.headers["Location"] == "/hosting"
    page = client.get("/hosting").get_data(as_text=True)
    assert 'id="hosted-name">PPO_tiny<' in page and "serving" in page
    assert "Hosted model (PPO_tiny) → /predict" in page
    assert re.search(r"\.venv/bin/python Api_Loader.py --model-dir \S+/PPO_tiny --port 8001", page)

    standalone = create_api_app(trained["ppo"], {"TESTING": True}).test_client()
    body = {"window": window_for(sample_bars, trained["ppo"])}
    served, expected = client.post("/predict", json=body), standalone.post("/predict", json=body)
    assert served.status_code == expected.status_code == 200
    assert served.get_json() == expected.get_json() and served.get_json()["action_name"]
    for path in ("/info", "/health"):
        assert client.get(path).get_json() == standalone.get(path).get_json()
    seeded = {**body, "sample": True, "seed": 7}
    assert client.post("/predict", json=seeded).get_json() == \
        standalone.post("/predict", json=seeded).get_json()


def test_streams_are_served_for_the_hosted_model(client, library, sample_bars,
                                                 trained) -> None:
    host(client, library["ppo"])
    bar = window_for(sample_bars, trained["ppo"])[0]
    reply = client.post("/predict", json={"features": bar, "stream_id": "s1"}).get_json()
    assert reply["status"] == "warming_up" and reply["bars_seen"] == 1
    assert client.get("/streams/s1").get_json()["bars_seen"] == 1
    assert client.delete("/streams/s1").get_json() == {"stream_id": "s1", "deleted": True}
    assert error_of(client.get("/streams/s1"), 404)["field"] == "stream_id"


def test_hosting_another_model_switches_and_stop_gives_503(client, library, sample_bars,
                                                          trained) -> None:
    host(client, library["ppo"])
    host(client, library["xgb"])
    assert client.get("/health").get_json()["type"] == "xgboost"
    body = {"window": window_for(sample_bars, trained["xgb"])}
    assert client.post("/predict", json=body).status_code == 200
    response = client.post("/hosting", data={"action": "stop"})
    assert response.status_code == 302
    error_of(client.post("/predict", json=body), 503)
    assert "No model is hosted." in client.get("/hosting").get_data(as_text=True)


@pytest.mark.parametrize(("choice", "message"), [
    ("nope", "model folder not found: "),
    ("", "choose a model to host"),
    (".hidden", "invalid model folder '.hidden'"),
    ("PPO_half", "expected one *_config.yaml, found no"),
    ("PPO_bad", "unknown model type 'nonsense'"),
])
def test_a_model_that_cannot_be_hosted_is_named_beside_the_field(
        client, library, models_dir: Path, choice: str, message: str) -> None:
    (models_dir / "PPO_half").mkdir()
    (models_dir / "PPO_bad").mkdir()
    (models_dir / "PPO_bad" / "bad_config.yaml").write_text("Type: nonsense\nmodel_name: bad\n")
    host(client, library["xgb"])
    response = host(client, choice)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    error = re.search(r'<p class="field-error" id="host-error" role="alert">(.*?)</p>', page, re.S)
    assert error and message in error.group(1).replace("&#39;", "'"), page
    assert 'aria-invalid="true"' in page
    assert client.get("/health").get_json()["model"] == "x"  # still the one hosted before


def test_a_hosted_model_whose_folder_is_deleted_keeps_serving(client, library,
                                                              models_dir: Path) -> None:
    host(client, library["xgb"])
    shutil.rmtree(models_dir / library["xgb"])
    assert client.get("/health").status_code == 200
    assert "no longer in the library" in client.get("/hosting").get_data(as_text=True)


def test_predict_bodies_keep_the_api_limit_not_the_upload_limit(client, app, library,
                                                                sample_bars, trained) -> None:
    assert app.config["MAX_CONTENT_LENGTH"] > MAX_BODY_BYTES
    host(client, library["xgb"])
    rows = window_for(sample_bars, trained["xgb"])
    big = {"window": rows * (MAX_BODY_BYTES // len(str(rows)) + 2)}
    assert "byte limit" in error_of(client.post("/predict", json=big), 413)["error"]
    response = client.post(f"/api/models/{library['xgb']}/predict", json=big)
    assert "byte limit" in error_of(response, 413)["error"]


def test_hosting_state_is_per_app_and_thread_safe(app, library, models_dir: Path) -> None:
    from Main import create_app

    other = create_app({"TESTING": True, "DATABASE_URL": app.config["DATABASE_URL"],
                        "MODELS_DIR": str(models_dir)})
    app.test_client().post("/hosting", data={"model": library["xgb"]})
    assert other.test_client().get("/health").status_code == 503
    hosting = app.extensions["hosting"]
    errors: list[Exception] = []

    def swap(name: str) -> None:
        try:
            for _ in range(3):
                hosting.host(models_dir, name)
                assert hosting.loader() is not None
        except Exception as exc:  # collected: pytest sees nothing raised in threads
            errors.append(exc)

    threads = [threading.Thread(target=swap, args=(name,)) for name in library.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and hosting.current().dir_name in library.values()


# --------------------------------------------------- any library model by folder name


@pytest.mark.parametrize("kind", ["xgb", "ppo"])
def test_any_library_model_is_served_by_folder_name(client, library, trained, sample_bars,
                                                    kind: str) -> None:
    body = {"window": window_for(sample_bars, trained[kind])}
    response = client.post(f"/api/models/{library[kind]}/predict", json=body)
    expected = create_api_app(trained[kind], {"TESTING": True}).test_client().post(
        "/predict", json=body)
    assert response.status_code == 200 and response.get_json() == expected.get_json()
    assert response.get_json()["action_name"] in ("Hold", "Buy", "Sell")
    error_of(client.post("/predict", json=body), 503)  # hosting is a separate choice


def test_a_library_model_answers_streams_too(client, library, trained, sample_bars) -> None:
    bar = window_for(sample_bars, trained["xgb"])[0]
    reply = client.post(f"/api/models/{library['xgb']}/predict",
                        json={"features": bar, "stream_id": "a"}).get_json()
    assert reply["status"] == "warming_up"


@pytest.mark.parametrize("name", ["nope", "XGB_nope", "..x", ".hidden"])
def test_an_unknown_model_is_404_json(client, library, window, name: str) -> None:
    body = error_of(client.post(f"/api/models/{name}/predict", json={"window": window}), 404)
    assert body["field"] == "model"


@pytest.mark.parametrize(("make", "status", "field", "message"), [
    (lambda w: {"window": w[:3]}, 422, "window", "at least 21 are needed"),
    (lambda w: {"window": [{k: v for k, v in r.items() if k != "RSI_14"} for r in w]}, 422,
     "window.RSI_14", "RSI_14"),
    (lambda w: {"window": w, "seed": 1}, 422, "seed", "seed only applies"),
    (lambda w: {"window": w, "extra": 1}, 400, "extra", "unknown field"),
    (lambda w: [1, 2], 400, None, "must be a JSON object"),
])
def test_bad_requests_get_the_same_json_errors_as_predict(client, library, trained,
                                                          sample_bars, make, status, field,
                                                          message) -> None:
    body = make(window_for(sample_bars, trained["xgb"]))
    response = client.post(f"/api/models/{library['xgb']}/predict", json=body)
    error = error_of(response, status)
    assert message in error["error"] and error.get("field") == field
    host(client, library["xgb"])
    assert client.post("/predict", json=body).get_json() == error


def test_nan_and_non_json_bodies_are_json_errors(client, library) -> None:
    url = f"/api/models/{library['xgb']}/predict"
    assert "JSON has no NaN" in error_of(client.post(url, data='{"window": [{"Open": NaN}]}',
                                                     content_type="application/json"), 422)["error"]
    error_of(client.post(url, data="window=1", content_type="text/plain"), 400)


def test_a_deleted_model_is_404_and_a_changed_one_is_reloaded(app, client, library,
                                                              models_dir: Path, trained,
                                                              sample_bars) -> None:
    url = f"/api/models/{library['xgb']}/predict"
    body = {"window": window_for(sample_bars, trained["xgb"])}
    assert client.post(url, json=body).status_code == 200
    cache = app.extensions["hosting"].cache
    first = cache.get(models_dir, library["xgb"]).loader
    assert cache.get(models_dir, library["xgb"]).loader is first  # cached
    config = next((models_dir / library["xgb"]).glob("*_config.yaml"))
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert cache.get(models_dir, library["xgb"]).loader is not first  # retrained: reloaded
    shutil.rmtree(models_dir / library["xgb"])
    assert "no model" in error_of(client.post(url, json=body), 404)["error"]
    assert len(cache) == 0


def test_a_broken_library_model_is_503_naming_the_problem(client, library, models_dir: Path,
                                                         window) -> None:
    next((models_dir / library["xgb"]).glob("*_scaler.json")).unlink()
    response = client.post(f"/api/models/{library['xgb']}/predict", json={"window": window})
    assert "scaler file" in error_of(response, 503)["error"]


def test_the_cache_keeps_the_most_recently_used(library, models_dir: Path) -> None:
    cache = LoaderCache(size=1)
    xgb = cache.get(models_dir, library["xgb"])
    cache.get(models_dir, library["ppo"])
    assert len(cache) == 1 and cache.get(models_dir, library["xgb"]) is not xgb
    with pytest.raises(ApiError) as refused:
        cache.get(models_dir, "nope")
    assert refused.value.status == 404 and refused.value.field == "model"


def test_concurrent_first_requests_all_succeed(app, library, trained, sample_bars) -> None:
    body = {"window": window_for(sample_bars, trained["xgb"])}
    barrier, codes = threading.Barrier(6), []

    def call() -> None:
        client = app.test_client()
        barrier.wait()
        codes.append(client.post(f"/api/models/{library['xgb']}/predict", json=body).status_code)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 6


# ------------------------------------------------------------------ the sample window


def test_the_sample_window_is_the_models_last_bars(client, library, trained, sample_bars,
                                                   sample_path: Path) -> None:
    response = client.get(f"/api/hosting/sample-window?csv=sample.csv&model={library['xgb']}")
    assert response.status_code == 200
    data = response.get_json()
    loader = load_model(trained["xgb"])
    assert data["window_size"] == loader.window_size == len(data["window"]) == len(data["times"])
    assert data["features"] == list(loader.spec.features)
    assert all(list(row) == data["features"] for row in data["window"])
    assert data["end"]["index"] == data["rows"] - 1 == len(sample_bars) - 1
    expected = sample_bars[data["features"]].iloc[-loader.window_size:]
    assert data["window"] == expected.to_dict("records")
    assert data["end"]["time"] == sample_bars.index[-1].isoformat() == data["last"]
    predicted = client.post(f"/api/models/{library['xgb']}/predict",
                            json={"window": data["window"]})
    assert predicted.get_json() == loader.predict(expected).to_dict()


def test_the_sample_window_ends_at_an_index_or_a_date(client, library, sample_bars) -> None:
    base = f"/api/hosting/sample-window?csv=sample.csv&model={library['ppo']}"
    by_index = client.get(base + "&end=300").get_json()
    assert by_index["end"]["index"] == 300 and len(by_index["window"]) == 11
    assert by_index["times"][-1] == sample_bars.index[300].isoformat()
    when = sample_bars.index[300]
    assert client.get(base + f"&end={when.isoformat()}").get_json()["end"]["index"] == 300
    # a date alone means that whole day; a time between bars means the bar before it
    assert client.get(base + f"&end={when.date()}").get_json()["end"]["index"] == 300
    later = (when + pd.Timedelta(hours=12)).isoformat()
    assert client.get(base + f"&end={later}").get_json()["end"]["index"] == 300


def test_the_sample_window_defaults_to_the_hosted_model(client, library) -> None:
    error = error_of(client.get("/api/hosting/sample-window?csv=sample.csv"), 422)
    assert error["field"] == "model" and "no model is hosted" in error["error"]
    host(client, library["ppo"])
    data = client.get("/api/hosting/sample-window?csv=sample.csv").get_json()
    assert data["model"] == library["ppo"] and len(data["window"]) == 11


@pytest.mark.parametrize(("query", "status", "field", "message"), [
    ("", 422, "csv", "choose a CSV file"),
    ("csv=nope.csv", 404, "csv", "unknown data file 'nope.csv'"),
    ("csv=../sample.csv", 404, "csv", "unknown data file"),
    ("csv=sample.csv&model=nope", 404, "model", "no model 'nope'"),
    ("csv=sample.csv&end=99999", 422, "end", "end 99999 is out of range: the file has bars 0 "
                                             "to 3255"),
    ("csv=sample.csv&end=-1", 422, "end", "out of range"),
    ("csv=sample.csv&end=5", 422, "end", "needs 21 bars ending at the chosen bar"),
    ("csv=sample.csv&end=1999-01-01", 422, "end", "out of range: the file runs from "
                                                  "2000-03-21T00:00:00"),
    ("csv=sample.csv&end=2030-01-01", 422, "end", "out of range"),
    ("csv=sample.csv&end=yesterday-ish", 422, "end", "a bar index (0 to 3255) or a date"),
])
def test_sample_window_errors_are_json(client, library, query, status, field,
                                       message) -> None:
    model = "" if "model=" in query else f"&model={library['xgb']}"
    error = error_of(client.get(f"/api/hosting/sample-window?{query}{model}"), status)
    assert message in error["error"] and error["field"] == field


def test_sample_windows_from_data_folder_files(client, library, data_dir: Path,
                                               sample_path: Path) -> None:
    lines = sample_path.read_text().splitlines()
    (data_dir / "short.csv").write_text("\n".join(lines[:40]) + "\n")
    (data_dir / "ohlc_only.csv").write_text(
        "\n".join(",".join(line.split(",")[:5]) for line in lines[:40]) + "\n")
    (data_dir / "broken.csv").write_text("Date,Open,High,Low,Close\n2020-01-01,1,2,0.5,x\n")
    base = f"/api/hosting/sample-window?model={library['xgb']}&csv="
    assert client.get(base + "short.csv").get_json()["end"]["index"] == 38
    error = error_of(client.get(base + "ohlc_only.csv"), 422)
    assert "Volume" in error["error"] and error["field"] == "csv"
    error_of(client.get(base + "broken.csv"), 422)
    page = client.get("/hosting").get_data(as_text=True)
    assert '<option value="short.csv">' in page and '<option value="sample.csv">' in page


# ------------------------------------------------------------ hosting at start


def start(app) -> None:
    """What ``python Main.py`` does before serving (no demo training here)."""
    from Main import prepare_to_serve

    prepare_to_serve(app, demo=False)


def restarted(app):
    """A second dashboard process on the same library, store and instance folder."""
    from tests.helpers.apps import make_app

    tmp = Path(app.instance_path).parent
    return make_app(app.config["DATABASE_URL"], Path(app.config["MODELS_DIR"]), tmp)


def test_a_start_hosts_the_newest_model_so_predict_works_at_once(app, client, library,
                                                                  trained, sample_bars,
                                                                  caplog) -> None:
    caplog.set_level("INFO", logger="web.hosted")
    start(app)
    body = {"window": window_for(sample_bars, trained["ppo"])}
    response = client.post("/predict", json=body)  # no visit to /hosting first
    assert response.status_code == 200 and response.get_json()["action_name"]
    assert client.get("/health").get_json()["model"] == "tiny"  # PPO_tiny: trained last
    assert f"hosting model {library['ppo']} (the newest model that loads" in caplog.text
    page = client.get("/hosting").get_data(as_text=True)
    assert 'id="hosted-name">PPO_tiny<' in page
    assert '<span class="muted" id="hosted-reason">(the newest model that loads, hosted at ' \
           'start)</span>' in page


def test_a_start_with_an_empty_library_is_503_naming_what_to_do(app, client, caplog) -> None:
    caplog.set_level("INFO", logger="web.hosted")
    start(app)
    error = error_of(client.post("/predict", json={"window": [[1.0]]}), 503)
    assert error == {"error": "no model is hosted: choose one on the API page (/hosting), or "
                              "train one first on the Train page (/train)"}
    assert error_of(client.get("/health"), 503)["status"] == "unavailable"
    assert "the library has none that loads" in caplog.text


def test_a_start_skips_a_newest_model_that_does_not_load(app, client, library,
                                                         models_dir: Path) -> None:
    next((models_dir / library["ppo"]).glob("*_model.pt")).write_bytes(b"junk")
    start(app)
    assert client.get("/health").get_json()["model"] == "x"


def test_the_chosen_model_is_hosted_again_after_a_restart(app, client, library) -> None:
    host(client, library["xgb"])  # not the newest
    again = restarted(app)
    start(again)
    assert again.test_client().get("/health").get_json()["model"] == "x"
    page = again.test_client().get("/hosting").get_data(as_text=True)
    assert "(chosen on the API page before the restart)" in page


def test_stop_hosting_is_remembered_across_a_restart(app, client, library, caplog) -> None:
    caplog.set_level("INFO", logger="web.hosted")
    start(app)
    client.post("/hosting", data={"action": "stop"})
    again = restarted(app)
    start(again)
    assert error_of(again.test_client().get("/health"), 503)
    assert "hosting was stopped on the API page" in caplog.text
    assert 'id="hosting-stopped"' in again.test_client().get("/hosting").get_data(as_text=True)
    host(again.test_client(), library["xgb"])  # hosting again is one click
    assert again.test_client().get("/health").status_code == 200


def test_a_chosen_model_gone_since_falls_back_to_the_newest(app, client, library,
                                                            models_dir: Path, caplog) -> None:
    host(client, library["xgb"])
    shutil.rmtree(models_dir / library["xgb"])
    again = restarted(app)
    start(again)
    assert again.test_client().get("/health").get_json()["model"] == "tiny"
    assert "the model chosen on the API page cannot be hosted now" in caplog.text


@pytest.mark.parametrize("saved", ["not json", '{"model": 7}', "[]", '{"model": ""}'])
def test_an_unreadable_saved_choice_is_ignored(app, client, library, saved: str) -> None:
    choice = Path(app.instance_path) / "hosted_model.json"
    choice.parent.mkdir(parents=True, exist_ok=True)
    choice.write_text(saved)
    start(app)
    assert client.get("/health").get_json()["model"] == "tiny"
