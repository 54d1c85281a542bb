"""Bad input on the JSON routes: a named 4xx in JSON, never a 500, never a NaN token,
never an absolute path. Runs on SQLite, and on PostgreSQL with DATABASE_URL set (the
NUL-byte cases are the ones PostgreSQL's driver used to turn into 500s)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from flask import Flask

import web.hosted
from Api_Loader import create_api_app, load_model, prediction_blueprint
from Main import create_app
from NetworkConfigs.PPO_loader import PPOModelLoader
from tests.helpers.apps import error_of
from tests.helpers.models import TrainedModel
from Utilities.run_store import RunStore, metadata
from web.json_io import MAX_DEPTH, hide_paths
from web.store import close_store, get_store

RUN_ID = "0000abcd-0000-4000-8000-000000000000"  # shaped like a run id; no run has it


@pytest.fixture(scope="module")
def trained(tiny_ppo: TrainedModel) -> Path:
    return tiny_ppo.folder


@pytest.fixture(scope="module")
def api(trained: Path) -> Flask:
    return create_api_app(trained, {"TESTING": True})


@pytest.fixture()
def library(trained: Path, models_dir: Path) -> str:
    shutil.copytree(trained, models_dir / trained.name)
    return trained.name


@pytest.fixture(scope="module")
def window(sample_bars: pd.DataFrame, trained: Path) -> list[dict]:
    features = list(load_model(trained).spec.features)
    return sample_bars[features].iloc[200:200 + load_model(trained).window_size] \
        .to_dict("records")


def strict_json(response) -> Any:
    """The reply as strict JSON: a NaN or Infinity token fails the test."""
    def refuse(token: str) -> None:
        raise AssertionError(f"the reply holds {token}: {response.get_data(as_text=True)}")

    return json.loads(response.get_data(as_text=True), parse_constant=refuse)


def changed(window: list[dict], i: int, **change: Any) -> list[dict]:
    rows = [dict(row) for row in window]
    rows[i].update(change)
    return rows


def new_run(app: Flask, **fields: Any) -> str:
    return RunStore(app.config["DATABASE_URL"]).create_run(
        name=fields.pop("name", "agent"), model_type="ppo", **fields)


# -------------------------------------------------- one body parser on every JSON route


def test_deep_nesting_on_control_is_a_json_400(app, client) -> None:
    run_id = new_run(app)
    for body in ("[" * 981 + "]" * 981, '{"action": ' + "[" * 981 + "]" * 981 + "}"):
        error = error_of(client.post(f"/runs/{run_id}/control", data=body,
                                     content_type="application/json"), 400)
        assert f"levels deep; at most {MAX_DEPTH} are accepted" in error["error"]


def test_an_integer_beyond_any_float_is_a_422_everywhere(app, client, api, library,
                                                         window) -> None:
    huge = "1" + "0" * 309
    run_id = new_run(app)
    replies = [
        client.post(f"/runs/{run_id}/control", data=f'{{"action": {huge}}}',
                    content_type="application/json"),
        api.test_client().post("/predict", data=json.dumps({"window": window})[:-1]
                               + f', "seed": {huge}}}', content_type="application/json"),
        client.post(f"/api/models/{library}/predict", data=f'{{"window": [], "seed": {huge}}}',
                    content_type="application/json"),
    ]
    for reply in replies:
        assert "is too large; send at most 20 digits" in error_of(reply, 422)["error"]


def test_control_answers_every_mistake_in_json(app, client) -> None:
    run_id = new_run(app)
    url = f"/runs/{run_id}/control"
    assert error_of(client.get(url), 405)["error"] == f"method GET is not allowed on {url}"
    assert error_of(client.post(url, data="x" * 5000, content_type="application/json"),
                    413)["error"] == "the request body is larger than the 4,096-byte limit"
    assert error_of(client.post(url, data="x" * 5000, content_type="text/plain"), 413)
    assert error_of(client.post(url, json={"action": ["stop"]}), 422)["field"] == "action"
    assert error_of(client.post(url, data={"action": "explode"}), 422)["field"] == "action"
    assert client.post(url, data={"action": "pause"}).get_json()["control"] == "pause"


def test_an_uncaught_exception_on_a_json_path_is_a_logged_json_500(
        tmp_path: Path, models_dir: Path, database_url: str, monkeypatch, caplog) -> None:
    flask_app = create_app({"DATABASE_URL": database_url, "MODELS_DIR": str(models_dir),
                            "PROPAGATE_EXCEPTIONS": False})
    run_id = new_run(flask_app)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(RunStore, "request_control", broken)
    monkeypatch.setattr(RunStore, "get_run", broken)
    client = flask_app.test_client()
    with caplog.at_level(logging.ERROR):
        for reply in (client.post(f"/runs/{run_id}/control", json={"action": "stop"}),
                      client.get(f"/runs/{run_id}/live.json"),
                      client.get(f"/api/training-runs/{run_id}")):
            assert error_of(reply, 500)["error"] == \
                "internal error (RuntimeError); see the server log"
    logged = [r for r in caplog.records if r.exc_info and "disk on fire" in str(r.exc_info[1])]
    assert len(logged) == 3
    page = client.get(f"/runs/{run_id}")  # a page keeps its HTML error page
    assert page.status_code == 500 and not page.is_json
    with flask_app.app_context():
        metadata.drop_all(get_store().engine)
    close_store(flask_app)


# --------------------------------------------------------------- NUL bytes, 8 routes


NUL_ROUTES = [  # (method, url, status, JSON field or None for a page)
    ("get", "/api/training-runs?agent_id=ag%00ent", 400, "agent_id"),
    ("get", "/api/training-runs?model_type=pp%00o", 400, "model_type"),
    ("get", f"/api/training-runs/{RUN_ID}%00", 404, "run_id"),
    ("get", f"/api/training-runs/{RUN_ID}%00/metrics", 404, "run_id"),
    ("get", f"/runs/{RUN_ID}%00/live.json", 404, "run_id"),
    ("post", f"/runs/{RUN_ID}%00/control", 404, "run_id"),
    ("get", f"/runs/{RUN_ID}%00", 404, None),
    ("get", "/runs?agent_id=ag%00ent", 400, None),
]


@pytest.mark.parametrize(("method", "url", "status", "field"), NUL_ROUTES)
def test_a_nul_byte_is_a_named_4xx_on_every_run_route(app, client, method: str, url: str,
                                                      status: int, field: str | None) -> None:
    new_run(app)
    reply = getattr(client, method)(url, json={"action": "stop"} if method == "post" else None)
    if field is None:  # a page: its own HTML, saying what it did
        assert reply.status_code == status and not reply.is_json
        return
    error = error_of(reply, status)
    assert error["field"] == field and "\\x00" in error["error"]


@pytest.mark.parametrize("char", ["\x01", "\x1b", "\x7f", "\x85"])
def test_other_control_characters_in_a_filter_are_400(client, char: str) -> None:
    error = error_of(client.get("/api/training-runs", query_string={"agent_id": f"a{char}b"}),
                     400)
    assert error["field"] == "agent_id" and "control character" in error["error"]


@pytest.mark.parametrize(("fields", "named"), [
    ({"name": "a\x00b"}, "name"), ({"name": "two\nlines"}, "name"),
    ({"model_type": "pp\x00o"}, "model_type"), ({"tags": ["ok", "t\x00"]}, "a tag"),
    ({"description": "nul\x00"}, "description"), ({"data_file": "x\x1b.csv"}, "data_file"),
])
def test_the_store_refuses_control_characters_it_cannot_mean(store, fields: dict,
                                                             named: str) -> None:
    with pytest.raises(ValueError, match=f"{named} must not contain the control character"):
        store.create_run(**{"name": "agent", "model_type": "ppo", **fields})
    assert store.list_runs()[1] == 0


def test_free_text_keeps_its_tabs_and_lines(store) -> None:
    run_id = store.create_run(name="agent", model_type="ppo", description="one\n\ttwo\r\n")
    assert store.get_run(run_id)["description"] == "one\n\ttwo\r\n"
    with pytest.raises(ValueError, match="model_dir must not contain the control character"):
        store.update_run(run_id, model_dir="Models/\x00")


# ------------------------------------------------------------ predict: no NaN, ever


@pytest.mark.parametrize("state", [
    {"cash": 1e14}, {"cash": -1e15}, {"cash": 1e16}, {"cash": 1e300}, {"cash": -1e300},
    {"position": 1, "units": 1e15, "entry_price": 100.0},
    {"position": 1, "units": 1e16, "entry_price": 100.0},
    {"position": -1, "units": -1e15, "entry_price": 1e12, "price": 1e-8},
    {"position": 1, "units": 1.0, "entry_price": 1e-310},
    {"entry_cost": 1e300}, {"price": 1e13}, {"price": 1e-310},
])
def test_huge_account_values_never_give_nan_tokens(api, window, state: dict) -> None:
    reply = api.test_client().post("/predict", json={"window": window, "account_state": state})
    body = strict_json(reply)
    if reply.status_code == 200:
        assert all(math.isfinite(v) for v in (body["confidence"], body["value_estimate"],
                                              *body["probabilities"].values()))
    else:  # a bound (naming the value), or an output the model cannot make finite
        assert reply.status_code == 422, body
        assert body["field"] == "account_state" or body["field"][14:] in state, body
        assert "must be between" in body["error"] or "not a finite number" in body["error"]


@pytest.mark.parametrize(("nan_when", "field"), [("state", "account_state"),
                                                 ("always", "window")])
def test_a_non_finite_output_is_a_422_naming_its_cause(api, window, monkeypatch,
                                                       nan_when: str, field: str) -> None:
    """Whatever slips past the bounds, a NaN never reaches a client: the window is
    blamed unless the window alone gives a finite answer."""
    original = PPOModelLoader.predict

    def predict(self, window, state=None, **options):
        prediction = original(self, window, state, **options)
        if state is not None or nan_when == "always":
            return dataclasses.replace(prediction, value_estimate=math.nan)
        return prediction

    monkeypatch.setattr(PPOModelLoader, "predict", predict)
    reply = api.test_client().post("/predict", json={"window": window,
                                                     "account_state": {"cash": 10.0}})
    error = error_of(reply, 422)
    assert error["field"] == field
    assert f"the model's output is not a finite number for this {field}" in error["error"]


def test_a_denormal_price_does_not_poison_a_stream(api, sample_bars, trained) -> None:
    features = list(load_model(trained).spec.features)
    bars = sample_bars[features].iloc[:30].to_dict("records")
    client = api.test_client()

    def push(stream_id: str, bar: dict) -> Any:
        return client.post("/predict", json={"features": bar, "stream_id": stream_id})

    for bar in bars[:15]:
        assert push("poisoned", bar).status_code == 200
    error = error_of(push("poisoned", dict.fromkeys(features, 1e-310)), 422)
    assert error["field"] == "features.Open" and "between 1e-08 and 1e+12" in error["error"]
    error = error_of(push("poisoned", {**bars[15], "Close": 1e-310}), 422)
    assert error["field"] == "features.Close"
    after = [strict_json(push("poisoned", bar)) for bar in bars[15:]]
    clean = [strict_json(push("clean", bar)) for bar in bars][15:]
    assert [{k: v for k, v in a.items() if k != "stream_id"} for a in after] == \
        [{k: v for k, v in c.items() if k != "stream_id"} for c in clean]
    assert after[-1]["status"] == "ready" and math.isfinite(after[-1]["account"]["cash"])


# --------------------------------------------------- the data contract, on windows too


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"Close": -5.0}, "window[3].Close", "prices must be positive at row 4"),
    ({"Low": 0.0}, "window[3].Low", "prices must be positive at row 4"),
    ({"High": 1.0}, "window[3].High", "below 'Low' at row 4"),
    ({"Close": 1000.0}, "window[3].Close", "above 'High' at row 4"),
    ({"Open": 1.0}, "window[3].Open", "below 'Low' at row 4"),
    ({"Close": "93.5"}, "window[3].Close", "non-numeric values at row 4 ('93.5')"),
    ({"Open": 1e-310}, "window[3].Open", "prices must be between 1e-08 and 1e+12"),
    ({"High": 2e12}, "window[3].High", "prices must be between 1e-08 and 1e+12"),
])
def test_every_data_contract_violation_in_a_window_is_named(api, window, change: dict,
                                                            field: str, message: str) -> None:
    client = api.test_client()
    error = error_of(client.post("/predict", json={"window": changed(window, 3, **change)}),
                     422)
    assert error["field"] == field and message in error["error"]
    columns = list(window[0])
    rows = [[row[c] for c in columns] for row in changed(window, 3, **change)]
    assert error_of(client.post("/predict", json={"window": rows}), 422)["field"] == field


def csv_rows(sample_path: Path, trained: Path, start: int = 200) -> list[dict]:
    """Rows exactly as a user copies them from the CSV: every column, Date included."""
    frame = pd.read_csv(sample_path).iloc[start:start + load_model(trained).window_size]
    return frame.to_dict("records")


def test_rows_copied_from_the_csv_with_their_date_are_accepted(api, sample_path, trained,
                                                               window) -> None:
    client = api.test_client()
    rows = csv_rows(sample_path, trained)
    assert list(rows[0]) == ["Date", *window[0]]
    expected = strict_json(client.post("/predict", json={"window": window}))
    assert strict_json(client.post("/predict", json={"window": rows})) == expected
    times = pd.to_datetime([row["Date"] for row in rows])
    variants = [
        [{"Datetime": f"{t:%Y-%m-%d %H:%M:%S}", **w} for t, w in zip(times, window, strict=True)],
        [{"timestamp": int(t.timestamp()), **w} for t, w in zip(times, window, strict=True)],
        [{"Date": f"{t:%Y-%m-%d}", "Time": "16:00", **w} for t, w in zip(times, window,
                                                                          strict=True)],
    ]
    for variant in variants:
        assert strict_json(client.post("/predict", json={"window": variant})) == expected


@pytest.mark.parametrize(("at", "date", "message"), [
    (5, 3, "timestamps go backwards at row 6"),  # window[5] gets window[3]'s date
    (5, 4, "duplicate timestamps at row 6"),
    (2, "yesterday", "unreadable timestamps at row 3 ('yesterday')"),
])
def test_rows_out_of_time_order_are_refused_naming_the_row(api, sample_path, trained,
                                                           at: int, date: int | str,
                                                           message: str) -> None:
    rows = csv_rows(sample_path, trained)
    rows[at]["Date"] = rows[date]["Date"] if isinstance(date, int) else date
    error = error_of(api.test_client().post("/predict", json={"window": rows}), 422)
    assert error["field"] == f"window[{at}].Date" and message in error["error"]


# ------------------------------------------------- the body before the model is loaded


INVALID_BODIES = [("not json", 400), ("[1, 2]", 400), ('{"windw": []}', 400),
                  ('{"window": "abc"}', 422), ('{"window": []}', 422),
                  ('{"window": [{}], "seed": 1}', 422), ('{"features": {}}', 400),
                  ('{"window": [{}], "sample": "yes"}', 422)]


def test_an_invalid_body_never_loads_a_library_model(client, library, window,
                                                     monkeypatch) -> None:
    loads: list[Path] = []
    real = web.hosted.load_model
    monkeypatch.setattr(web.hosted, "load_model", lambda path: loads.append(path) or real(path))
    for body, status in INVALID_BODIES:
        error_of(client.post(f"/api/models/{library}/predict", data=body,
                             content_type="application/json"), status)
    assert loads == []
    reply = client.post(f"/api/models/{library}/predict", json={"window": window})
    assert reply.status_code == 200 and len(loads) == 1


def test_an_invalid_body_never_asks_the_blueprint_for_its_model() -> None:
    asked: list[int] = []
    app = Flask(__name__)
    app.register_blueprint(prediction_blueprint(lambda: asked.append(1)))
    for body, status in INVALID_BODIES:
        error_of(app.test_client().post("/predict", data=body,
                                        content_type="application/json"), status)
    assert asked == []
    error_of(app.test_client().post("/predict", json={"window": [{}]}), 503)
    assert asked == [1]


# ------------------------------------------------------------ no absolute paths out


def test_no_reply_carries_an_absolute_path(app, client, library, models_dir: Path,
                                           tmp_path: Path, window) -> None:
    data_dir = Path(app.config["DATA_DIR"])
    model = models_dir / library
    config_file = next(model.glob("*_config.yaml"))
    config = yaml.safe_load(config_file.read_text())
    config["data_file"] = str(data_dir / "bars.csv")
    config_file.write_text(yaml.safe_dump(config))
    broken = models_dir / "PPO_broken"
    broken.mkdir()
    (broken / "broken_config.yaml").write_text("model_name: broken\nType: ppo\n")
    run_id = new_run(app, data_file=str(data_dir / "bars.csv"))
    store = RunStore(app.config["DATABASE_URL"])
    store.update_run(run_id, model_dir=str(model))
    (models_dir / ".checkpoints").mkdir()
    (models_dir / ".checkpoints" / "c.pt").write_bytes(b"state")  # pages list files on disk
    store.log_events(run_id, [("checkpoint", {"path": str(models_dir / ".checkpoints" / "c.pt"),
                                              "step": 1}, time.time()),
                              ("log", {"message": f"saved to {model}"}, time.time())])
    store.set_status(run_id, "failed", error=f"ArtifactError: {broken}: cannot be loaded")
    assert client.post("/hosting", data={"model": library}).status_code == 302

    replies = {url: client.get(url) for url in (
        "/api/training-runs", f"/api/training-runs/{run_id}", f"/runs/{run_id}/live.json",
        "/api/models", f"/api/models/{library}", "/api/models/PPO_broken", "/info")}
    replies["predict broken"] = client.post("/api/models/PPO_broken/predict",
                                            json={"window": window})
    replies["predict"] = client.post("/predict", json={"window": window})
    for name, reply in replies.items():
        assert reply.status_code in (200, 503) and reply.is_json, (name, reply.status_code)
        text = reply.get_data(as_text=True)
        assert str(tmp_path) not in text and str(tmp_path.resolve()) not in text, (name, text)
    assert replies["predict broken"].status_code == 503

    run = replies[f"/api/training-runs/{run_id}"].get_json()
    assert run["metadata"]["data_file"] == "data/bars.csv"
    assert run["metadata"]["model_dir"] == f"Models/{library}"
    assert run["metadata"]["error"] == "ArtifactError: Models/PPO_broken: cannot be loaded"
    assert run["checkpoint_paths"][0]["path"] == "Models/.checkpoints/c.pt"
    described = replies[f"/api/models/{library}"].get_json()
    assert described["data_file"] == described["config"]["data_file"] == "data/bars.csv"
    assert described["run"]["model_dir"] == f"Models/{library}"


def test_hide_paths_shows_each_root_by_its_name(tmp_path: Path) -> None:
    models, data = tmp_path / "lib" / "Models", tmp_path / "lib"
    text = f"{models}/PPO_x: bad; see {data}/x.csv, {models}, {Path.cwd()}/sample.csv"
    assert hide_paths({"e": [text, 1.5, None]}, [models, data]) == \
        {"e": ["Models/PPO_x: bad; see lib/x.csv, Models, sample.csv", 1.5, None]}
    assert hide_paths("/etc/passwd", ["/"]) == "/etc/passwd"  # "/" is no folder to hide
