"""Issue 16 for trainings: every run is watched without user code (the CLI and the web
start the same way), its thresholds chosen by --alerts, the config's alerts: section or
the Train form; a bad choice or alerts.yaml is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from Utilities import alert_records, run_training
from Utilities.run_store import RunStore
from Utilities.training_request import TrainingRequest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def alert_file(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text("throttle_seconds: 0\n")
    monkeypatch.setenv("ALERTS_CONFIG", str(path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    return path


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--csv_path", str(ROOT / "sample.csv"), "--models-dir", str(tmp_path / "M"),
            "--mode", "smoke", "--no-progress", "--model", "xgboost", "--model_name", "w",
            *extra]


def test_a_cli_training_raises_complete_and_new_best_alerts(tmp_path: Path, capsys) -> None:
    assert run_training.main(_args(tmp_path)) == 0, capsys.readouterr().err
    store = RunStore(f"sqlite:///{tmp_path}/runs.db")
    (run,), _ = store.list_runs()
    alerts, _ = alert_records.list_alerts(store, run_id=run["run_id"])
    rules = {a["rule"] for a in alerts}
    assert "training_complete" in rules, rules
    assert "new_best" in rules, rules  # the validation loss fell at least once
    complete = next(a for a in alerts if a["rule"] == "training_complete")
    assert complete["level"] == "info" and complete["data"]["training_time"] >= 0
    events = [e for e in store.events_after(0, run_id=run["run_id"]) if e["kind"] == "alert"]
    assert len(events) == len(alerts)  # the run page and its stream show the same alerts
    store.close()


def test_alerts_off_for_one_run(tmp_path: Path, capsys) -> None:
    assert run_training.main(_args(tmp_path, "--alerts", "off")) == 0, capsys.readouterr().err
    store = RunStore(f"sqlite:///{tmp_path}/runs.db")
    assert alert_records.list_alerts(store)[1] == 0
    store.close()


def test_the_choice_travels_from_flag_section_and_launcher(tmp_path: Path) -> None:
    args = run_training.parse_args(_args(tmp_path, "--alerts", "conservative"))
    assert TrainingRequest.from_args(args).alerts == "CONSERVATIVE"
    section = {"alerts": {"no_improvement_episodes": 7}}
    args = run_training.parse_args(_args(tmp_path, "--training_params", json.dumps(section)))
    request = TrainingRequest.from_args(args)
    assert request.alerts == {"no_improvement_episodes": 7}
    assert "alerts" not in request.overrides  # not a model parameter
    again = TrainingRequest.from_args(run_training.parse_args(request.argv()))
    assert again.alerts == {"no_improvement_episodes": 7}
    assert run_training.alert_settings(again).thresholds.no_improvement_episodes == 7


@pytest.mark.parametrize(("args", "message"), [
    (["--alerts", "reckless"], "alerts: thresholds: unknown preset 'reckless'"),
    (["--training_params", '{"alerts": {"typo": 1}}'], "unknown key 'typo'"),
    (["--alerts", "{bad json"], "alerts: not a JSON object"),
])
def test_bad_choices_are_one_line_and_exit_2(tmp_path: Path, capsys, args, message) -> None:
    assert run_training.main(_args(tmp_path, *args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err


def test_an_unusable_alerts_yaml_stops_the_training_at_start(tmp_path: Path, alert_file,
                                                             capsys) -> None:
    alert_file.write_text("email:\n  smtp_host: h\n  password: hunter2\n  to_addrs: [a@b]\n")
    assert run_training.main(_args(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert "email.password: secrets may not be written in the config file" in err, err


def test_the_train_form_offers_the_presets_and_names_a_bad_one(tmp_path: Path) -> None:
    from Main import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/runs.db",
                      "MODELS_DIR": str(tmp_path / "Models"), "DATA_DIR": str(tmp_path / "d"),
                      "TESTING": True})
    client = app.test_client()
    html = client.get("/train?model=xgboost").get_data(as_text=True)
    for choice in ("default", "CONSERVATIVE", "MODERATE", "AGGRESSIVE", "off"):
        assert f'<option value="{choice}"' in html
    form = {"model_type": "xgboost", "model_name": "a", "csv": "sample.csv", "mode": "smoke",
            "alerts": "reckless"}
    reply = client.post("/train", data=form)
    assert reply.status_code == 422
    assert 'id="alerts-error">choose one of default, CONSERVATIVE' in reply.get_data(as_text=True)
    assert RunStore(app.config["DATABASE_URL"]).list_runs()[1] == 0
