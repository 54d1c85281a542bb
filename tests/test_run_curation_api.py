"""Curating runs through the JSON API (web/run_api.py, web/run_curation.py) on SQLite and
PostgreSQL: PATCH a run's labels, archive / restore, DELETE (a live run refused, a saved
model kept unless asked), the list's experiment / tag / archived filters, and the metric
downloads (CSV and JSON, streamed) that parse back to the very points logged."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.apps import drop_all, error_of, make_app, make_auth_app
from Utilities import metric_export
from Utilities.run_store import RunStore

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture()
def curation_app(engine_url: str, tmp_path: Path) -> Iterator:
    """The dashboard on each engine in turn, with its own model library."""
    from web.live_stream import close_streams
    from web.store import close_store, get_store

    (tmp_path / "Models").mkdir()
    flask_app = make_app(engine_url, tmp_path / "Models", tmp_path)
    yield flask_app
    close_streams(flask_app)
    with flask_app.app_context():
        drop_all(get_store())
    close_store(flask_app)


@pytest.fixture()
def api(curation_app):
    return curation_app.test_client()


@pytest.fixture()
def runs(curation_app) -> Iterator[RunStore]:
    store = RunStore(curation_app.config["DATABASE_URL"])
    yield store
    store.close()


def finished(store: RunStore, name: str = "r", **fields) -> str:
    run_id = store.create_run(name=name, model_type="ppo", **fields)
    store.set_status(run_id, "completed")
    return run_id


def saved_model(store: RunStore, run_id: str, models: Path, name: str = "PPO_kept") -> Path:
    folder = models / name
    folder.mkdir()
    (folder / "kept_model.pt").write_bytes(b"weights")
    store.update_run(run_id, model_dir=str(folder))
    return folder


# -------------------------------------------------------------------------- PATCH


def test_patch_sets_labels_and_returns_the_run(api, runs) -> None:
    run_id = finished(runs)
    reply = api.patch(f"/api/training-runs/{run_id}", json={
        "experiment": " lr-sweep ", "tags": ["b", "a", "b"], "description": "why",
        "notes": "it learnt\nslowly"})
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert (body["run_id"], body["experiment"], body["tags"], body["description"],
            body["notes"]) == (run_id, "lr-sweep", ["a", "b"], "why", "it learnt\nslowly")
    assert api.patch(f"/api/training-runs/{run_id}", json={"tags": []}).get_json()["tags"] == []
    kept = runs.get_run(run_id)
    assert (kept["experiment"], kept["notes"]) == ("lr-sweep", "it learnt\nslowly")  # untouched
    detail = api.get(f"/api/training-runs/{run_id}").get_json()["metadata"]
    assert (detail["experiment"], detail["notes"], detail["archived"]) == (
        "lr-sweep", "it learnt\nslowly", False)


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"name": "x"}, "name", "unknown field 'name'"),
    ({"tags": "a,b"}, "tags", "tags must be a list"),
    ({"tags": ["ok", 3]}, "tags", "a tag must be a string"),
    ({"tags": ["a,b"]}, "tags", "must not contain a comma"),
    ({"experiment": 3}, "experiment", "experiment must be a string"),
    ({"notes": None}, "notes", "notes must be a string"),
    ({"description": "x" * 2001}, "description", "at most 2,000"),
    ({"experiment": "a\x00b"}, "experiment", "control character"),
    ({}, None, "send at least one of"),
])
def test_patch_refuses_bad_fields_by_name(api, runs, body, field, message) -> None:
    run_id = finished(runs, experiment="before")
    error = error_of(api.patch(f"/api/training-runs/{run_id}", json=body), 422)
    assert error.get("field") == field and message in error["error"], error
    assert runs.get_run(run_id)["experiment"] == "before"  # nothing written


def test_patch_of_an_unknown_run_or_a_body_that_is_no_json(api, runs) -> None:
    assert error_of(api.patch(f"/api/training-runs/{MISSING}", json={"notes": "x"}),
                    404)["field"] == "run_id"
    assert error_of(api.patch("/api/training-runs/not-a-run", json={"notes": "x"}), 404)
    run_id = finished(runs)
    error_of(api.patch(f"/api/training-runs/{run_id}", data="notes=x"), 400)
    error_of(api.patch(f"/api/training-runs/{run_id}", data="[1]",
                       content_type="application/json"), 400)


# ------------------------------------------------------------- archive and lists


def test_archive_hides_a_run_from_the_list_until_restored(api, runs) -> None:
    kept, hidden = finished(runs, "kept"), finished(runs, "hidden")

    def listed(query: str = "") -> list[str]:
        reply = api.get(f"/api/training-runs{query}")
        assert reply.status_code == 200, reply.get_json()
        return sorted(run["run_id"] for run in reply.get_json())

    archived = api.post(f"/api/training-runs/{hidden}/archive").get_json()
    assert archived["archived"] and archived["archived_at"].endswith("Z")
    assert listed() == [kept]
    assert listed("?archived=1") == [hidden]
    assert listed("?archived=all") == sorted([kept, hidden])
    assert listed("?archived=0") == [kept]
    restored = api.post(f"/api/training-runs/{hidden}/restore").get_json()
    assert not restored["archived"] and listed() == sorted([kept, hidden])
    assert error_of(api.get("/api/training-runs?archived=yes"), 422)["field"] == "archived"
    assert error_of(api.post(f"/api/training-runs/{MISSING}/archive"), 404)
    assert error_of(api.post(f"/api/training-runs/{MISSING}/restore"), 404)


def test_the_list_filters_by_experiment_and_tag(api, runs) -> None:
    a = finished(runs, "a", experiment="e1", tags=["x"], description="first")
    b = finished(runs, "b", experiment="e1", tags=["y"])
    c = finished(runs, "c", experiment="e2", tags=["x"])

    def listed(query: str) -> list[str]:
        return sorted(run["run_id"] for run in api.get(f"/api/training-runs?{query}").get_json())

    assert listed("experiment=e1") == sorted([a, b])
    assert listed("tag=x") == sorted([a, c])
    assert listed("experiment=e1&tag=x") == [a]
    assert listed("experiment=none") == []
    row = next(r for r in api.get("/api/training-runs?tag=x&experiment=e1").get_json())
    assert (row["experiment"], row["tags"], row["description"], row["archived"]) == (
        "e1", ["x"], "first", False)
    assert error_of(api.get("/api/training-runs?tag=a%00b"), 400)["field"] == "tag"
    assert error_of(api.get("/api/training-runs?experiment=" + "e" * 201), 422)


def test_a_live_run_is_neither_archived_nor_deleted(api, runs) -> None:
    live = runs.create_run(name="live", model_type="ppo")
    for reply in (api.post(f"/api/training-runs/{live}/archive"),
                  api.delete(f"/api/training-runs/{live}")):
        error = error_of(reply, 409)
        assert (error["reason"], error["status"], error["field"]) == ("active", "running",
                                                                      "run_id")
        assert "stop it" in error["error"]
    assert runs.get_run(live)["status"] == "running" and not runs.get_run(live)["archived"]


# -------------------------------------------------------------------------- DELETE


def test_delete_removes_the_run_its_metrics_and_events_but_keeps_its_model(
        api, runs, curation_app) -> None:
    run_id, other = finished(runs, "gone"), finished(runs, "other")
    folder = saved_model(runs, run_id, Path(curation_app.config["MODELS_DIR"]))
    runs.log_metrics(run_id, [("episode/reward", s, float(s), 1.0) for s in range(5)])
    runs.log_metrics(other, [("episode/reward", 1, 1.0, 1.0)])
    reply = api.delete(f"/api/training-runs/{run_id}")
    assert reply.status_code == 200, reply.get_json()
    # 2 status events (running, completed)
    assert reply.get_json() == {"deleted": run_id, "points": 5, "events": 2,
                                "model_deleted": None, "model_kept": "PPO_kept"}
    assert folder.is_dir()  # never deleted without asking
    assert error_of(api.get(f"/api/training-runs/{run_id}"), 404)
    assert runs.metric_keys(other) == ["episode/reward"]
    assert error_of(api.delete(f"/api/training-runs/{run_id}"), 404)
    assert error_of(api.delete("/api/training-runs/x"), 404)


@pytest.mark.parametrize("how", ["query", "json"])
def test_delete_model_on_request_goes_through_the_librarys_rule(api, runs, curation_app,
                                                                how) -> None:
    run_id = finished(runs)
    folder = saved_model(runs, run_id, Path(curation_app.config["MODELS_DIR"]))
    reply = (api.delete(f"/api/training-runs/{run_id}?delete_model=1") if how == "query"
             else api.delete(f"/api/training-runs/{run_id}", json={"delete_model": True}))
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["model_deleted"] == "PPO_kept" and not folder.exists()
    assert api.get("/api/models/PPO_kept").status_code == 404


def test_a_model_outside_the_library_is_never_deleted(api, runs, tmp_path: Path) -> None:
    run_id = finished(runs)
    elsewhere = tmp_path / "elsewhere" / "PPO_kept"
    elsewhere.mkdir(parents=True)
    runs.update_run(run_id, model_dir=str(elsewhere))
    error = error_of(api.delete(f"/api/training-runs/{run_id}?delete_model=1"), 409)
    assert error["field"] == "delete_model" and "not in this dashboard's model library" in \
        error["error"]
    assert elsewhere.is_dir() and runs.get_run(run_id)  # nothing removed
    assert api.delete(f"/api/training-runs/{run_id}").get_json()["model_kept"] == "PPO_kept"
    assert elsewhere.is_dir()


@pytest.mark.parametrize(("kwargs", "status", "field"), [
    ({"query_string": {"delete_model": "maybe"}}, 422, "delete_model"),
    ({"json": {"delete_model": "yes"}}, 422, "delete_model"),
    ({"json": {"force": True}}, 422, "force"),
    ({"json": [True]}, 400, None),
])
def test_delete_refuses_a_bad_flag(api, runs, kwargs, status, field) -> None:
    run_id = finished(runs)
    assert error_of(api.delete(f"/api/training-runs/{run_id}", **kwargs), status).get(
        "field") == field
    assert runs.get_run(run_id)  # still there


# ---------------------------------------------------------------------- downloads


def logged_points(store: RunStore, run_id: str) -> list[tuple[str, int, float, float]]:
    """A run with three series: repeated steps, a NaN, awkward keys and floats."""
    rows = [("episode/reward", step, step * 0.1 + 1e-9, 1700000000.123 + step)
            for step in range(25)]
    rows += [("episode/reward", 7, -3.5, 1700000100.5)]  # step 7 logged twice
    rows += [("train/loss", step, math.nan if step == 2 else 1 / (step + 3), 1.5)
             for step in range(4)]
    rows += [('odd,"key"', 0, 2.0, 0.25)]
    store.log_metrics(run_id, rows)
    return rows


def expected(rows: list[tuple[str, int, float, float]]) -> list[tuple]:
    """Key by key, each in (step, write) order: what a download lists."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i][0], rows[i][1], i))
    return [rows[i] for i in order]


def same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        x[:2] == y[:2] and x[3] == y[3] and (x[2] == y[2] or (math.isnan(x[2]) and
                                                               math.isnan(y[2])))
        for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("page", [4, metric_export.PAGE])
def test_the_csv_download_parses_back_to_the_logged_points(api, runs, monkeypatch,
                                                           page) -> None:
    monkeypatch.setattr(metric_export, "PAGE", page)  # small pages: every boundary case
    run_id = finished(runs, "dl/run one")
    rows = logged_points(runs, run_id)
    reply = api.get(f"/api/training-runs/{run_id}/metrics.csv")
    assert reply.status_code == 200 and reply.mimetype == "text/csv"
    assert reply.is_streamed
    assert reply.headers["Content-Disposition"] == (
        f'attachment; filename="run-{run_id[:8]}-dl_run_one-metrics.csv"')
    table = list(csv.reader(io.StringIO(reply.get_data(as_text=True))))
    assert table[0] == ["key", "step", "value", "wall_time"]
    parsed = [(k, int(s), float(v) if v else math.nan, float(t)) for k, s, v, t in table[1:]]
    assert same(parsed, expected(rows))

    reply = api.get(f"/api/training-runs/{run_id}/metrics.json")
    assert reply.status_code == 200 and reply.mimetype == "application/json"
    body = json.loads(reply.get_data())
    assert (body["run_id"], body["name"], body["points"]) == (run_id, "dl/run one", len(rows))
    parsed = [(key, p["step"], math.nan if p["value"] is None else p["value"], p["wall_time"])
              for key, points in body["series"].items() for p in points]
    assert same(parsed, expected(rows))


def test_downloads_of_a_run_without_points_and_of_no_run(api, runs) -> None:
    run_id = finished(runs)
    assert api.get(f"/api/training-runs/{run_id}/metrics.csv").get_data(as_text=True) == (
        "key,step,value,wall_time\r\n")
    assert json.loads(api.get(f"/api/training-runs/{run_id}/metrics.json").get_data())[
        "series"] == {}
    for kind in ("csv", "json"):
        assert error_of(api.get(f"/api/training-runs/{MISSING}/metrics.{kind}"), 404)
        assert error_of(api.get(f"/api/training-runs/nope/metrics.{kind}"), 404)


# ------------------------------------------------------------------ who may write


def test_a_cross_site_page_cannot_curate(api, runs) -> None:
    run_id = finished(runs)
    evil = {"Origin": "http://evil.example"}
    assert api.patch(f"/api/training-runs/{run_id}", json={"notes": "x"},
                     headers=evil).status_code == 403
    assert api.post(f"/api/training-runs/{run_id}/archive", headers=evil).status_code == 403
    assert api.delete(f"/api/training-runs/{run_id}", headers=evil).status_code == 403
    assert runs.get_run(run_id)["notes"] == ""


def test_curation_needs_credentials_where_sign_in_is_required(database_url, models_dir,
                                                              tmp_path) -> None:
    app = make_auth_app(database_url, models_dir, tmp_path)
    client = app.test_client()
    store = RunStore(database_url)
    try:
        run_id = finished(store)
        assert client.patch(f"/api/training-runs/{run_id}", json={"notes": "x"}).status_code \
            == 401
        assert client.delete(f"/api/training-runs/{run_id}").status_code == 401
        assert client.get(f"/api/training-runs/{run_id}/metrics.csv").status_code == 401
        assert store.get_run(run_id)["notes"] == ""
    finally:
        drop_all(store)


# ------------------------------------------------------------- a JSON start's labels


def test_a_json_start_labels_its_run(app, client, tmp_path: Path, monkeypatch) -> None:
    from tests.helpers.training_stubs import slow_child
    from web.training_jobs import jobs

    gate = slow_child(tmp_path, monkeypatch)
    body = {"model_type": "xgboost", "data": "sample.csv", "model_name": "api",
            "mode": "smoke", "experiment": "api-sweep", "tags": ["b", "a"],
            "description": "from a script"}
    reply = client.post("/api/training-runs", json=body)
    assert reply.status_code == 202, reply.get_json()
    run_id = reply.get_json()["run_id"]
    store = RunStore(app.config["DATABASE_URL"])
    run = store.get_run(run_id)
    assert (run["experiment"], run["tags"], run["description"]) == (
        "api-sweep", ["a", "b", "smoke"], "from a script")
    gate.touch()
    with app.app_context():
        jobs().wait(run_id, timeout=60)
    for bad, field in (({"tags": "a"}, "tags"), ({"experiment": 1}, "experiment"),
                       ({"notes": "x"}, "notes")):
        error = error_of(client.post("/api/training-runs", json={"data": "sample.csv", **bad}),
                         422)
        assert error["field"] == field, error
    assert store.list_runs()[1] == 1
    store.close()


def test_oversized_curation_bodies_are_413(api, runs) -> None:
    run_id = finished(runs)
    big = {"notes": "x" * (300 * 1024)}
    assert error_of(api.patch(f"/api/training-runs/{run_id}", json=big), 413)
    assert error_of(api.delete(f"/api/training-runs/{run_id}", data="x" * 5000,
                               content_type="application/json"), 413)
    assert runs.get_run(run_id)["notes"] == ""
