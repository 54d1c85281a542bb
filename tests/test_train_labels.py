"""The Train form's run labels (experiment with suggestions, comma-separated tags, a
description): claimed with the run before the child starts, kept when the child adopts
it, refused beside their inputs; Train again and Resume carry the experiment and tags."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest

from Main import create_app
from tests.helpers.training_stubs import slow_child
from Utilities.run_store import RunStore
from web.train import jobs


@pytest.fixture()
def app(tmp_path: Path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/runs.db",
                      "MODELS_DIR": str(tmp_path / "Models"), "DATA_DIR": str(tmp_path / "data"),
                      "TESTING": True})
    app.instance_path = str(tmp_path / "instance")
    return app


def field_errors(response) -> dict[str, str]:
    html = response.get_data(as_text=True)
    return {name: unescape(message) for name, message in
            re.findall(r'class="field-error" id="([^"]+)-error">([^<]*)</small>', html)}


FORM = {"model_type": "xgboost", "model_name": "labelled", "csv": "sample.csv",
        "mode": "smoke"}


def test_the_form_suggests_the_recorded_experiments(app) -> None:
    store = RunStore(app.config["DATABASE_URL"])
    store.create_run(name="a", model_type="xgboost", experiment="lr-sweep")
    store.create_run(name="b", model_type="xgboost", experiment="depth")
    html = app.test_client().get("/train?model=xgboost").get_data(as_text=True)
    assert '<input id="experiment" name="experiment" list="experiment-names"' in html
    assert re.search(r'<datalist id="experiment-names"><option value="depth">'
                     r'<option value="lr-sweep"></datalist>', html)
    assert 'id="tags" name="tags"' in html and 'id="description" name="description"' in html


def test_the_labels_are_claimed_with_the_run_and_kept_by_the_child(app) -> None:
    form = {**FORM, "experiment": "sweep", "tags": "b, a", "description": "try depth 3"}
    assert app.test_client().post("/train", data=form).status_code == 302
    with app.app_context():
        (run_id,) = jobs()._children
        store = RunStore(app.config["DATABASE_URL"])
        claimed = store.get_run(run_id)  # before the child adopted it, or after: the same
        assert (claimed["experiment"], claimed["tags"], claimed["description"]) == (
            "sweep", ["a", "b", "smoke"], "try depth 3")
        assert jobs().wait(run_id, timeout=300) == 0
    run = store.get_run(run_id)
    assert run["status"] == "completed", run["error"]
    assert (run["experiment"], run["tags"], run["description"]) == (
        "sweep", ["a", "b", "smoke"], "try depth 3")


def test_the_claim_carries_the_labels_before_the_child_starts(app, tmp_path: Path,
                                                              monkeypatch) -> None:
    gate = slow_child(tmp_path, monkeypatch)  # a child that records nothing itself
    form = {**FORM, "experiment": "early", "tags": "x"}
    assert app.test_client().post("/train", data=form).status_code == 302
    with app.app_context():
        (run_id,) = jobs()._children
    run = RunStore(app.config["DATABASE_URL"]).get_run(run_id)
    assert (run["status"], run["experiment"], run["tags"]) == ("starting", "early",
                                                               ["smoke", "x"])
    gate.touch()
    with app.app_context():
        jobs().wait(run_id, timeout=60)


def test_bad_labels_are_shown_beside_their_inputs(app) -> None:
    form = {**FORM, "experiment": "e" * 101, "tags": "fine, " + "t" * 51,
            "description": "kept\x01"}
    response = app.test_client().post("/train", data=form)
    assert response.status_code == 422
    errors = field_errors(response)
    assert errors["experiment"].startswith("experiment is longer than 100 characters")
    assert errors["tags"].startswith("a tag is longer than 50 characters")
    assert "control character" in errors["description"]
    html = response.get_data(as_text=True)
    assert 'value="fine, ' in html  # what was typed stays
    assert RunStore(app.config["DATABASE_URL"]).list_runs()[1] == 0


def test_train_again_carries_the_experiment_and_tags(app, sample_path: Path) -> None:
    store = RunStore(app.config["DATABASE_URL"])
    run_id = store.create_run(name="ibm", model_type="xgboost", tags=["smoke", "base"],
                              experiment="sweep", description="old purpose",
                              data_file=str(sample_path))
    store.set_status(run_id, "completed")
    html = unescape(app.test_client().get(f"/train?from_run={run_id}").get_data(as_text=True))
    assert re.search(r'id="experiment" name="experiment"[^>]*value="sweep"', html)
    assert re.search(r'id="tags" name="tags" value="base"', html)  # smoke is the preset's
    assert "old purpose" not in html


def test_resume_keeps_the_runs_experiment_and_tags(app, sample_path: Path) -> None:
    from Utilities import run_training

    url, models = app.config["DATABASE_URL"], app.config["MODELS_DIR"]
    assert run_training.main(["--csv_path", str(sample_path), "--model", "xgboost",
                              "--model_name", "again", "--mode", "smoke", "--no-progress",
                              "--experiment", "sweep", "--tag", "base", "--description", "d",
                              "--models-dir", models, "--database-url", url]) == 0
    store = RunStore(url)
    (first,), _ = store.list_runs()
    reply = app.test_client().post(f"/runs/{first['run_id']}/resume")
    assert reply.status_code == 302
    new_id = reply.headers["Location"].rsplit("/", 1)[1]
    with app.app_context():
        assert jobs().wait(new_id, timeout=300) == 0
    resumed = store.get_run(new_id)
    assert resumed["status"] == "completed", resumed["error"]
    assert (resumed["experiment"], resumed["tags"], resumed["description"]) == (
        "sweep", ["base"], "d")
