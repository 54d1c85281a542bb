"""Train page: every parameter of every type on the form, errors beside their fields,
and a valid form starting the CLI's own training in a child process."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
import yaml

from Main import create_app
from NetworkConfigs import get_model_type, model_type_names
from tests.helpers.training_stubs import slow_child
from Utilities import run_training
from Utilities.run_store import RunStore
from web import training_jobs
from web.train import jobs
from web.training_form import fields_of, help_texts


@pytest.fixture()
def app(tmp_path: Path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/runs.db",
                      "MODELS_DIR": str(tmp_path / "Models"), "DATA_DIR": str(tmp_path / "data"),
                      "TESTING": True})
    app.instance_path = str(tmp_path / "instance")
    return app


def field_errors(response) -> dict[str, str]:
    html = response.get_data(as_text=True)
    found = re.findall(r'<label for="([^"]+)">.*?(?:field-error">([^<]*)</small>|</div>)', html,
                       re.S)
    return {name: message for name, message in found if message}


@pytest.mark.parametrize("type_name", model_type_names())
def test_the_form_has_every_parameter_with_its_default_and_help(app, type_name: str) -> None:
    html = app.test_client().get(f"/train?model={type_name}").get_data(as_text=True)
    defaults = get_model_type(type_name).trainer_class()(None).config
    expected = [f"{s}.{k}" for s, keys in defaults.items() if isinstance(keys, dict)
                for k in keys]
    assert [f.name for f in fields_of(type_name)] == expected
    for name in expected:
        assert f'name="{name}"' in html, name
    helps = help_texts(type_name)
    assert len(helps) >= len(expected) - 1  # the example config documents every key
    assert helps["lookback_window"].split(";")[0] in html


def test_the_seeds_ppo_parameters_are_on_the_form(app) -> None:
    html = app.test_client().get("/train?model=ppo").get_data(as_text=True)
    for key in ("input_dim", "hidden_dim", "num_actions", "lookback_window", "learning_rate",
                "epochs", "batch_size", "ppo_epochs", "clip_ratio", "value_coef",
                "entropy_coef", "initial_balance", "commission", "slippage"):
        assert re.search(rf'name="\w+\.{key}"', html), key


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"model_params.max_depth": "0"}, "model_params.max_depth", "max_depth must be in"),
    ({"model_params.max_depth": "deep"}, "model_params.max_depth", "must be a whole number"),
    ({"model_params.learning_rate": "-1"}, "model_params.learning_rate", "learning_rate"),
    ({"env_params.commission": "2"}, "env_params.commission", "commission must be in"),
    ({"model_params.target": "price"}, "model_params.target", "target must be one of"),
    ({"model_name": "no spaces"}, "model_name", "invalid model name"),
    ({"csv": "../etc/passwd"}, "csv", "unknown data file"),
])
def test_a_bad_value_is_shown_beside_its_field(app, form: dict, field: str,
                                               message: str) -> None:
    data = {"model_type": "xgboost", "model_name": "x", "csv": "sample.csv", **form}
    response = app.test_client().post("/train", data=data)
    assert response.status_code == 422
    errors = field_errors(response)
    assert message in errors.get(field, ""), errors
    assert not Path(app.config["MODELS_DIR"]).exists()


def test_a_network_size_past_its_bound_is_shown_beside_its_field(app) -> None:
    data = {"model_type": "ppo", "model_name": "p", "csv": "sample.csv",
            "model_params.hidden_dim": "100000000"}
    response = app.test_client().post("/train", data=data)
    assert response.status_code == 422
    assert "hidden_dim must be in [1, 2048]; got 100000000" in field_errors(response).get(
        "model_params.hidden_dim", "")
    assert not Path(app.config["MODELS_DIR"]).exists()


def test_every_unreadable_field_is_reported_at_once(app) -> None:
    data = {"model_type": "xgboost", "model_name": "x", "csv": "sample.csv",
            "model_params.max_depth": "deep", "train_params.epochs": "many"}
    errors = field_errors(app.test_client().post("/train", data=data))
    assert set(errors) >= {"model_params.max_depth", "train_params.epochs"}


def test_a_bad_upload_is_shown_beside_the_csv_field_and_not_kept(app) -> None:
    data = {"model_type": "ppo", "model_name": "p",
            "csv_upload": (io.BytesIO(b"Date,Open,Close\n2020-01-01,1,2\n"), "bars.csv")}
    response = app.test_client().post("/train", data=data, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "missing required column" in field_errors(response)["csv"]
    assert not (Path(app.config["DATA_DIR"]) / "uploads").exists() or not any(
        (Path(app.config["DATA_DIR"]) / "uploads").iterdir())


def test_too_few_rows_for_the_lookback_is_a_form_error(app, sample_path: Path) -> None:
    short = sample_path.read_text().splitlines()[:40]
    data = {"model_type": "xgboost", "model_name": "x",
            "csv_upload": (io.BytesIO("\n".join(short).encode()), "short.csv")}
    response = app.test_client().post("/train", data=data, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "rows" in field_errors(response)["csv"]


def test_a_valid_form_trains_exactly_like_the_cli(app, tmp_path: Path, sample_path: Path) -> None:
    form = {"model_type": "xgboost", "model_name": "web", "csv": "sample.csv", "mode": "smoke",
            "model_params.max_depth": "3"}
    response = app.test_client().post("/train", data=form)
    assert response.status_code == 302
    with app.app_context():
        (run_id,) = jobs()._children
        assert jobs().wait(run_id, timeout=300) == 0
    cli_dir = tmp_path / "cli_models"
    assert run_training.main(["--csv_path", str(sample_path), "--model", "xgboost",
                              "--model_name", "cli", "--mode", "smoke", "--no-progress",
                              "--training_params", '{"model_params": {"max_depth": 3}}',
                              "--models-dir", str(cli_dir),
                              "--database-url", app.config["DATABASE_URL"]]) == 0
    store = RunStore(app.config["DATABASE_URL"])
    web, cli = store.get_run(run_id), store.list_runs(name="cli")[0][0]
    assert web["status"] == cli["status"] == "completed"
    for key in ("model_type", "algorithm", "config", "tags", "summary"):
        assert web[key] == cli[key], key
    web_config = yaml.safe_load(next(Path(web["model_dir"]).glob("*_config.yaml")).read_text())
    assert web_config["model_params"]["max_depth"] == 3


def test_a_child_that_dies_at_start_is_recorded_as_failed(app, tmp_path: Path,
                                                          monkeypatch) -> None:
    crash = tmp_path / "crash.py"
    crash.write_text("import sys\nsys.stderr.write('boom at start-up\\n')\nsys.exit(3)\n")
    monkeypatch.setattr(training_jobs, "ENTRY_POINT", crash)
    form = {"model_type": "xgboost", "model_name": "crash", "csv": "sample.csv"}
    app.test_client().post("/train", data=form)
    with app.app_context():
        (run_id,) = jobs()._children
        assert jobs().wait(run_id, timeout=60) == 3
    run = RunStore(app.config["DATABASE_URL"]).get_run(run_id)
    assert run["status"] == "failed" and "boom at start-up" in run["error"]


def test_run_control_refuses_bad_actions_unknown_and_finished_runs(app) -> None:
    store = RunStore(app.config["DATABASE_URL"])
    live = store.create_run(name="live", model_type="ppo")
    done = store.create_run(name="done", model_type="ppo")
    store.set_status(done, "completed")
    client = app.test_client()
    assert client.post(f"/runs/{live}/control", json={"action": "explode"}).status_code == 422
    assert client.post("/runs/nope/control", json={"action": "stop"}).status_code == 404
    assert client.post(f"/runs/{done}/control", json={"action": "stop"}).status_code == 409
    reply = client.post(f"/runs/{live}/control", json={"action": "pause"})
    assert reply.status_code == 200 and store.get_control(live) == "pause"


def test_the_child_runs_the_cli_entry_point(app) -> None:
    with app.app_context():
        launch = training_jobs.Launch("ppo", "n", Path("x.csv"), "smoke", {}, Path("M"),
                                      "sqlite://")
        command = jobs().command(launch, "id", Path("c.yaml"))
    assert command[:2] == [sys.executable, str(training_jobs.ENTRY_POINT)]
    assert training_jobs.ENTRY_POINT.name == "run_training.py"


def test_an_upload_over_the_size_limit_is_413_beside_the_csv_field(app, sample_path) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 100_000  # sample.csv is ~250 KB
    data = {"model_type": "ppo", "model_name": "p",
            "csv_upload": (io.BytesIO(sample_path.read_bytes()), "big.csv")}
    response = app.test_client().post("/train", data=data, content_type="multipart/form-data")
    assert response.status_code == 413
    assert "larger than the 0 MiB limit" not in response.get_data(as_text=True)
    assert "the upload is larger than" in field_errors(response)["csv"]



def test_the_same_model_cannot_train_twice_at_once(app, tmp_path: Path, monkeypatch) -> None:
    gate = slow_child(tmp_path, monkeypatch)
    form = {"model_type": "xgboost", "model_name": "twice", "csv": "sample.csv"}
    client = app.test_client()
    assert client.post("/train", data=form).status_code == 302
    second = client.post("/train", data=form)
    assert second.status_code == 409
    assert "already training" in field_errors(second)["model_name"]
    gate.touch()
    with app.app_context():
        (run_id,) = jobs()._children
        jobs().wait(run_id, timeout=60)
    assert client.post("/train", data=form).status_code == 302  # free again afterwards
    with app.app_context():
        for run_id in list(jobs()._children):
            jobs().wait(run_id, timeout=60)


def test_trainings_beyond_the_machines_limit_wait(app, tmp_path: Path, monkeypatch) -> None:
    gate = slow_child(tmp_path, monkeypatch)
    with app.app_context():
        jobs().max_running = 1
    client = app.test_client()
    first = {"model_type": "xgboost", "model_name": "a", "csv": "sample.csv"}
    assert client.post("/train", data=first).status_code == 302
    second = client.post("/train", data={**first, "model_name": "b"})
    assert second.status_code == 409 and "already running" in second.get_data(as_text=True)
    gate.touch()
    with app.app_context():
        for run_id in list(jobs()._children):
            jobs().wait(run_id, timeout=60)


def test_a_child_killed_mid_run_leaves_a_failed_run(app, tmp_path: Path, monkeypatch) -> None:
    script = tmp_path / "killed.py"
    url = app.config["DATABASE_URL"]
    script.write_text(
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})\n"
        "from Utilities.run_store import RunStore\n"
        "run_id = sys.argv[sys.argv.index('--run-id') + 1]\n"
        "RunStore(os.environ['DATABASE_URL']).adopt_run(run_id, name='k', "
        "model_type='xgboost')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    monkeypatch.setattr(training_jobs, "ENTRY_POINT", script)
    app.test_client().post("/train", data={"model_type": "xgboost", "model_name": "k",
                                           "csv": "sample.csv"})
    with app.app_context():
        (run_id,) = jobs()._children
        assert jobs().wait(run_id, timeout=60) == -9
    run = RunStore(url).get_run(run_id)
    assert run["status"] == "failed" and run["error"].startswith("exit -9")


def test_the_store_url_reaches_the_child_by_environment_not_argv(app) -> None:
    with app.app_context():
        launch = training_jobs.Launch("ppo", "n", Path("x.csv"), "smoke", {}, Path("M"),
                                      "postgresql://user:secret@db/runs")
        command = jobs().command(launch, "id", Path("c.yaml"))
    assert not any("secret" in part for part in command)


def test_a_refused_form_keeps_no_upload(app, sample_path: Path) -> None:
    data = {"model_type": "xgboost", "model_name": "bad name",
            "csv_upload": (io.BytesIO(sample_path.read_bytes()), "good.csv")}
    response = app.test_client().post("/train", data=data, content_type="multipart/form-data")
    assert response.status_code == 422
    uploads = Path(app.config["DATA_DIR"]) / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


@pytest.mark.parametrize("body", ['"pause"', "[1]", "null"])
def test_control_with_a_body_that_is_not_an_object_is_400(app, body: str) -> None:
    run_id = RunStore(app.config["DATABASE_URL"]).create_run(name="r", model_type="ppo")
    reply = app.test_client().post(f"/runs/{run_id}/control", data=body,
                                   content_type="application/json")
    assert reply.status_code == 400  # web.json_io's rule, as on every JSON route
    assert "the body must be a JSON object" in reply.get_json()["error"]


@pytest.mark.parametrize("text", ["1_000", "１２", "nan", "inf", "1e5.5", "0x10"])
def test_only_plain_numbers_are_read_as_numbers(app, text: str) -> None:
    data = {"model_type": "xgboost", "model_name": "x", "csv": "sample.csv",
            "model_params.max_depth": text, "model_params.learning_rate": text}
    errors = field_errors(app.test_client().post("/train", data=data))
    assert "must be a whole number" in errors["model_params.max_depth"]
    assert "must be a number" in errors["model_params.learning_rate"]


def test_the_run_is_claimed_before_the_child_starts(app, tmp_path: Path, monkeypatch) -> None:
    gate = slow_child(tmp_path, monkeypatch)  # a child that records nothing itself
    form = {"model_type": "xgboost", "model_name": "early", "csv": "sample.csv",
            "mode": "smoke"}
    assert app.test_client().post("/train", data=form).status_code == 302
    with app.app_context():
        (run_id,) = jobs()._children
    run = RunStore(app.config["DATABASE_URL"]).get_run(run_id)
    assert (run["status"], run["name"], run["model_type"], run["tags"]) == (
        "running", "early", "xgboost", ["smoke"])
    gate.touch()
    with app.app_context():
        assert jobs().wait(run_id, timeout=60) == 0
    ended = RunStore(app.config["DATABASE_URL"]).get_run(run_id)
    assert ended["status"] == "failed"  # exit 0 without recording its end is no success
    assert ended["error"].startswith("exit 0")
