"""Train page: every parameter of every type on the form, every error at once beside its
field, uploads kept while the form is refused, the preset's real values shown, and a
valid form recording its run before starting the CLI's own training in a child process
(which alone parses the data, once); training again from a run and resuming one."""

from __future__ import annotations

import io
import re
import sys
from html import unescape
from pathlib import Path

import pytest
import yaml

from NetworkConfigs import get_model_type, model_type_names
from tests.helpers.apps import field_errors, make_app
from tests.helpers.training_stubs import slow_child
from Utilities import run_training
from Utilities.run_store import RunStore
from Utilities.training_request import TrainingRequest
from web import training_jobs
from web.train import jobs
from web.training_form import fields_of, help_texts


@pytest.fixture()
def app(tmp_path: Path):
    return make_app(f"sqlite:///{tmp_path}/runs.db", tmp_path / "Models", tmp_path)



def input_value(html: str, name: str) -> str:
    """The value an input shows (its value attribute, or a select's selected option)."""
    tag = re.search(rf'<(input|select)[^>]*name="{re.escape(name)}"[^>]*>', html)
    assert tag, name
    if tag.group(1) == "input":
        return unescape(re.search(r'value="([^"]*)"', tag.group(0)).group(1))
    body = html[tag.end():html.index("</select>", tag.end())]
    return unescape(re.search(r'<option value="([^"]*)" selected', body).group(1))


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
    ({"env_params.commission": "2"}, "env_params.commission",
     "commission must be a fraction of the traded value in [0, 1)"),
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


def test_the_child_runs_the_cli_entry_point_with_the_requests_arguments(app) -> None:
    request = TrainingRequest(Path("x.csv"), model_type="ppo", model_name="n", mode="smoke",
                              models_dir=Path("M"), run_id="id", progress=False)
    with app.app_context():
        command = jobs().command(request, Path("c.yaml"))
    assert command[:2] == [sys.executable, str(training_jobs.ENTRY_POINT)]
    assert training_jobs.ENTRY_POINT.name == "run_training.py"
    args = run_training.parse_args(command[2:])  # the CLI reads back what was asked
    assert (args.csv_path, args.model, args.model_name, args.mode, args.run_id,
            args.no_progress, args.config) == ("x.csv", "ppo", "n", "smoke", "id", True,
                                                Path("c.yaml"))


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
    request = TrainingRequest(Path("x.csv"), model_type="ppo", model_name="n",
                              database_url="postgresql://user:secret@db/runs")
    with app.app_context():
        command = jobs().command(request, Path("c.yaml"))
    assert not any("secret" in part for part in command)


def test_a_refused_form_keeps_its_upload_for_the_next_submit(app, sample_path: Path) -> None:
    client = app.test_client()
    data = {"model_type": "xgboost", "model_name": "bad name", "mode": "smoke",
            "csv_upload": (io.BytesIO(sample_path.read_bytes()), "my bars (1).csv")}
    refused = client.post("/train", data=data, content_type="multipart/form-data")
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    # Re-selected under the person's own name; the stored name is never shown.
    assert input_value(html, "csv") == "@upload"
    assert ">my bars (1).csv (your upload)</option>" in html
    token = input_value(html, "staged_upload")
    assert token not in html.replace(f'value="{token}"', "")
    uploads = Path(app.config["DATA_DIR"]) / "uploads"
    assert [p.name for p in uploads.iterdir()] == [f".tmp-{token}"]  # hidden: not listed
    assert "uploads/" not in html
    fixed = {"model_type": "xgboost", "model_name": "good", "mode": "smoke", "csv": "@upload",
             "staged_upload": token, "upload_name": "my bars (1).csv"}
    gate = uploads / "never"  # the child is not needed: the upload is kept before it runs
    assert client.post("/train", data=fixed).status_code == 302
    assert [p.name for p in uploads.iterdir()] == [token]  # listed now
    with app.app_context():
        (run_id,) = jobs()._children
        jobs().wait(run_id, timeout=300)
    assert RunStore(app.config["DATABASE_URL"]).get_run(run_id)["data_file"] == str(
        uploads / token)
    assert not gate.exists()


@pytest.mark.parametrize("token", ["../../etc/passwd", ".tmp-x.csv", "0123abcd-gone.csv", ""])
def test_a_kept_upload_that_is_gone_or_forged_is_a_csv_error(app, token: str) -> None:
    data = {"model_type": "xgboost", "model_name": "x", "csv": "@upload",
            "staged_upload": token, "upload_name": "mine.csv"}
    response = app.test_client().post("/train", data=data)
    assert response.status_code == 422
    assert "mine.csv is no longer kept" in field_errors(response)["csv"]


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
        "starting", "early", "xgboost", ["smoke"])
    gate.touch()
    with app.app_context():
        assert jobs().wait(run_id, timeout=60) == 0
    ended = RunStore(app.config["DATABASE_URL"]).get_run(run_id)
    assert ended["status"] == "failed"  # exit 0 without recording its end is no success
    assert ended["error"].startswith("exit 0")


def test_four_mistakes_are_four_messages_in_one_submit(app) -> None:
    data = {"model_type": "ppo", "model_name": "no spaces", "csv": "sample.csv",
            "mode": "smoke", "model_params.hidden_dim": "100000000",
            "train_params.gamma": "x", "data_params.val_fraction": "0.9",
            "data_params.test_fraction": "0.9"}
    response = app.test_client().post("/train", data=data)
    assert response.status_code == 422
    errors = field_errors(response)
    assert set(errors) == {"model_name", "model_params.hidden_dim", "train_params.gamma",
                           "data_params.val_fraction"}, errors
    # The fractions are named, not the file ("sample.csv: has -163 rows" before).
    assert "val_fraction + test_fraction must be below 1" in errors["data_params.val_fraction"]
    html = response.get_data(as_text=True)
    assert "4 problems to fix" in html
    assert re.search(r'<details id="all-params" open', html)  # folded ones shown


def test_a_split_too_small_for_the_file_is_on_the_fraction(app, sample_path: Path) -> None:
    rows = len(sample_path.read_text().splitlines()) - 1
    data = {"model_type": "xgboost", "model_name": "x", "csv": "sample.csv",
            "data_params.test_fraction": "0.001"}
    errors = field_errors(app.test_client().post("/train", data=data))
    assert set(errors) == {"data_params.test_fraction"}, errors
    assert f"test_fraction 0.001 of {rows - 1} rows leaves" in errors[
        "data_params.test_fraction"]


def test_the_form_shows_the_values_the_smoke_preset_really_uses(app) -> None:
    client = app.test_client()
    html = client.get("/train?model=ppo").get_data(as_text=True)
    assert input_value(html, "mode") == "smoke"
    assert input_value(html, "train_params.total_timesteps") == "8192"  # not 200000
    assert input_value(html, "model_params.lookback_window") == "20"    # not 30
    assert 'data-full="200000" data-smoke="8192"' in html  # what train.js switches to
    # A refused full-preset form shows the full values, with what was typed kept.
    refused = client.post("/train", data={"model_type": "ppo", "model_name": "bad name",
                                          "csv": "sample.csv", "mode": "full",
                                          "model_params.hidden_dim": "32"})
    full = refused.get_data(as_text=True)
    assert input_value(full, "train_params.total_timesteps") == "200000"
    assert input_value(full, "model_params.hidden_dim") == "32"


def test_fixed_choices_are_selects_and_numbers_number_inputs(app) -> None:
    html = app.test_client().get("/train?model=ppo").get_data(as_text=True)
    for name in ("model_params.encoder", "train_params.device", "data_params.scaler",
                 "data_params.transform", "train_params.anneal_lr", "mode", "csv"):
        assert re.search(rf'<select id="{re.escape(name)}"', html), name
    hidden = re.search(r'<input id="model_params.hidden_dim"[^>]*>', html).group(0)
    assert 'type="number"' in hidden and 'max="2048"' in hidden and 'step="1"' in hidden
    assert 'type="number"' in re.search(r'<input id="train_params.gamma"[^>]*>', html).group(0)
    # The common fields come first; the rest are folded.
    essentials = html[html.index('id="essentials"'):html.index('id="all-params"')]
    for name in ("csv", "model_name", "mode", "train_params.total_timesteps",
                 "model_params.lookback_window"):
        assert f'id="{name}"' in essentials, name
    assert 'id="model_params.hidden_dim"' not in essentials


def test_only_values_changed_from_the_preset_are_passed_on(app, tmp_path: Path,
                                                           monkeypatch) -> None:
    gate = slow_child(tmp_path, monkeypatch)
    client = app.test_client()
    shown = {"model_type": "ppo", "model_name": "as_shown", "csv": "sample.csv",
             "mode": "smoke", "train_params.total_timesteps": "8192",
             "model_params.lookback_window": "20"}
    assert client.post("/train", data=shown).status_code == 302
    changed = {**shown, "model_name": "changed", "train_params.total_timesteps": "200000"}
    assert client.post("/train", data=changed).status_code == 302
    gate.touch()
    with app.app_context():
        for run_id in list(jobs()._children):
            jobs().wait(run_id, timeout=60)
    configs = {}
    for name in ("as_shown", "changed"):
        config_file = Path(app.instance_path) / "train_logs" / f"{run_id_of(app, name)}.yaml"
        configs[name] = yaml.safe_load(config_file.read_text())  # what the child is given
    assert configs == {"as_shown": {}, "changed": {"train_params": {"total_timesteps": 200000}}}
    # The run records the whole config the training will use from its first moment.
    recorded = RunStore(app.config["DATABASE_URL"]).list_runs(name="changed")[0][0]["config"]
    assert recorded["train_params"]["total_timesteps"] == 200000
    assert recorded["train_params"]["n_envs"] == 4 and recorded["model_params"][
        "lookback_window"] == 20  # the smoke preset's


def run_id_of(app, name: str) -> str:
    return RunStore(app.config["DATABASE_URL"]).list_runs(name=name)[0][0]["run_id"]


def test_the_run_row_exists_before_the_child_starts(app, tmp_path: Path,
                                                    monkeypatch) -> None:
    seen = {}
    real_popen = training_jobs.subprocess.Popen

    def popen(command, **kwargs):
        run_id = command[command.index("--run-id") + 1]
        seen["status"] = RunStore(app.config["DATABASE_URL"]).get_run(run_id)["status"]
        return real_popen([sys.executable, "-c", "pass"], **kwargs)

    monkeypatch.setattr(training_jobs.subprocess, "Popen", popen)
    form = {"model_type": "xgboost", "model_name": "first", "csv": "sample.csv"}
    response = app.test_client().post("/train", data=form)
    assert response.status_code == 302
    assert seen == {"status": "starting"}  # recorded, and visible, before the child runs
    with app.app_context():
        (run_id,) = jobs()._children
        jobs().wait(run_id, timeout=60)
    page = app.test_client().get(f"/runs/{run_id}")
    assert page.status_code == 200  # the run page, never a "not recorded yet" gap


def test_the_request_thread_reads_only_the_csvs_header_and_rows(app, tmp_path: Path,
                                                                monkeypatch) -> None:
    from NetworkConfigs import supervised
    from Utilities import data_loading

    def never(*args, **kwargs):
        raise AssertionError("the request thread parsed the data")

    gate = slow_child(tmp_path, monkeypatch)
    for module, name in ((data_loading, "load_bars"), (run_training, "load_bars"),
                         (supervised, "prepare_from_params"), (data_loading, "_read_frame")):
        monkeypatch.setattr(module, name, never)
    client = app.test_client()
    form = {"model_type": "xgboost", "model_name": "light", "csv": "sample.csv"}
    assert client.post("/train", data=form).status_code == 302
    short = {**form, "model_name": "short", "data_params.val_fraction": "0.5",
             "data_params.test_fraction": "0.495"}  # 16 of 3,256 rows left to train on
    assert "leaves" in field_errors(client.post("/train", data=short))[
        "data_params.val_fraction"]
    gate.touch()
    with app.app_context():
        for run_id in list(jobs()._children):
            jobs().wait(run_id, timeout=60)


def test_a_run_deleted_while_its_child_runs_stays_deleted(app, tmp_path: Path,
                                                          monkeypatch) -> None:
    gate = slow_child(tmp_path, monkeypatch)
    form = {"model_type": "xgboost", "model_name": "gone", "csv": "sample.csv"}
    assert app.test_client().post("/train", data=form).status_code == 302
    store = RunStore(app.config["DATABASE_URL"])
    with app.app_context():
        (run_id,) = jobs()._children
    store.set_status(run_id, "failed")  # only a finished run can be deleted
    store.delete_run(run_id)
    gate.touch()
    with app.app_context():
        jobs().wait(run_id, timeout=60)
    assert store.list_runs()[1] == 0  # the reaper records the end of runs, never creates one


def test_train_again_from_a_run_fills_in_its_type_data_and_config(app,
                                                                  sample_path: Path) -> None:
    store = RunStore(app.config["DATABASE_URL"])
    run_id = store.create_run(name="ibm", model_type="xgboost", tags=["smoke"],
                              data_file=str(sample_path), config={
                                  "model_params": {"max_depth": 7, "target": "direction"},
                                  "train_params": {"epochs": 12}})
    store.set_status(run_id, "completed")
    (Path(app.config["MODELS_DIR"]) / "XGB_ibm_2").mkdir(parents=True)  # taken
    response = app.test_client().get(f"/train?from_run={run_id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'value="xgboost"' in html and "Filled in from run" in html
    assert input_value(html, "model_name") == "ibm_3"
    assert input_value(html, "csv") == "sample.csv"
    assert input_value(html, "mode") == "smoke"
    assert input_value(html, "model_params.max_depth") == "7"
    assert input_value(html, "train_params.epochs") == "12"
    assert field_errors(response) == {}


@pytest.mark.parametrize("run_id", ["nope", "00000000-0000-4000-8000-000000000000"])
def test_train_again_from_an_unknown_run_is_404(app, run_id: str) -> None:
    response = app.test_client().get(f"/train?from_run={run_id}")
    assert response.status_code == 404 and "Run not found" in response.get_data(as_text=True)


def test_resume_is_refused_while_running_without_checkpoint_or_unknown(app) -> None:
    store = RunStore(app.config["DATABASE_URL"])
    live = store.create_run(name="live", model_type="xgboost")
    ended = store.create_run(name="ended", model_type="xgboost")
    store.set_status(ended, "failed", error="boom")
    client = app.test_client()
    reply = client.post(f"/runs/{live}/resume", json={})
    assert reply.status_code == 409 and "is still running" in reply.get_json()["error"]
    reply = client.post(f"/runs/{ended}/resume", headers={"Accept": "application/json"})
    assert reply.status_code == 409 and "no checkpoint" in reply.get_json()["error"]
    page = client.post(f"/runs/{ended}/resume")  # the run page's form: a styled page
    assert page.status_code == 409 and "Cannot resume this run" in page.get_data(as_text=True)
    assert client.post("/runs/nope/resume", json={}).status_code == 404
    assert store.list_runs()[1] == 2  # nothing started


def test_resume_continues_a_run_from_its_checkpoint(app, sample_path: Path,
                                                    monkeypatch) -> None:
    commands = []
    real_popen = training_jobs.subprocess.Popen

    def popen(command, **kwargs):
        commands.append(command)
        return real_popen(command, **kwargs)

    monkeypatch.setattr(training_jobs.subprocess, "Popen", popen)
    url, models = app.config["DATABASE_URL"], app.config["MODELS_DIR"]
    assert run_training.main(["--csv_path", str(sample_path), "--model", "xgboost",
                              "--model_name", "again", "--mode", "smoke", "--no-progress",
                              "--training_params", '{"train_params": {"epochs": 10}}',
                              "--models-dir", models, "--database-url", url]) == 0
    store = RunStore(url)
    (first,), _ = store.list_runs()
    client = app.test_client()
    reply = client.post(f"/runs/{first['run_id']}/resume")
    assert reply.status_code == 302
    new_id = reply.headers["Location"].rsplit("/", 1)[1]
    assert new_id != first["run_id"]
    with app.app_context():
        assert jobs().wait(new_id, timeout=300) == 0
    resumed = store.get_run(new_id)
    assert resumed["status"] == "completed", resumed["error"]
    assert (resumed["name"], resumed["model_dir"]) == ("again", first["model_dir"])
    assert resumed["config"] == first["config"]  # the checkpoint's, recorded as a CLI run's
    (command,) = commands
    assert command[command.index("--resume") + 1] == first["run_id"]
    assert command[command.index("--csv_path") + 1] == str(sample_path)


@pytest.mark.parametrize(("cpus", "threads", "running"), [(2, None, 2), (8, 2, 4), (2, 4, 1)])
def test_trainings_at_once_and_their_threads_are_one_budget(cpus: int, threads, running: int,
                                                            tmp_path: Path,
                                                            monkeypatch) -> None:
    monkeypatch.setattr(training_jobs.os, "cpu_count", lambda: cpus)
    if threads is None:
        monkeypatch.delenv("TRAIN_THREADS", raising=False)
    else:
        monkeypatch.setenv("TRAIN_THREADS", str(threads))
    jobs_here = training_jobs.TrainingJobs(tmp_path)
    assert (jobs_here.threads, jobs_here.max_running) == (threads or 1, running)


def test_a_web_training_is_started_with_its_thread_budget(app, monkeypatch) -> None:
    seen = {}
    real_popen = training_jobs.subprocess.Popen

    def popen(command, **kwargs):
        seen["threads"] = command[command.index("--threads") + 1]
        return real_popen([sys.executable, "-c", "pass"], **kwargs)

    monkeypatch.setattr(training_jobs.subprocess, "Popen", popen)
    form = {"model_type": "xgboost", "model_name": "budget", "csv": "sample.csv"}
    assert app.test_client().post("/train", data=form).status_code == 302
    with app.app_context():
        (run_id,) = jobs()._children
        jobs().wait(run_id, timeout=60)
        assert seen == {"threads": str(jobs().threads)}
