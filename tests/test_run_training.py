"""The training CLI: smoke runs on both data files, recorded runs, errors, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from NetworkConfigs import get_model_type
from NetworkConfigs.callbacks import latest_checkpoint
from Utilities import run_training
from Utilities.run_store import RunStore

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "Utilities" / "run_training.py"


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    """A child process environment with its own store and model library."""
    return {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/runs.db",
            "MODELS_DIR": str(tmp_path / "Models"), "PYTHONPATH": str(ROOT)}


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def test_smoke_run_on_sample_csv_is_saved_and_recorded(env, tmp_path: Path) -> None:
    result = run_cli(["--csv_path", str(ROOT / "sample.csv"), "--model", "ppo",
                      "--mode", "smoke", "--model_name", "smoke", "--no-progress"],
                     env, tmp_path)
    assert result.returncode == 0, result.stderr
    model_dir = tmp_path / "Models" / "PPO_smoke"
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "smoke_checkpoint.pt", "smoke_config.yaml", "smoke_model.pt", "smoke_scaler.json"]
    assert f"completed: model saved to {model_dir}" in result.stdout
    store = RunStore(env["DATABASE_URL"])
    (run,), _ = store.list_runs()
    assert run["status"] == "completed" and run["model_dir"] == str(model_dir)
    assert run["summary"]["test_return_pct"] is not None and run["tags"] == ["smoke"]
    keys = store.metric_keys(run["run_id"])
    for key in ("episode/reward", "episode/final_equity", "episode/trades", "episode/win",
                "train/policy_loss", "train/value_loss", "train/entropy", "train/approx_kl",
                "train/clip_fraction", "train/explained_variance", "train/learning_rate",
                "train/steps_per_second"):
        assert key in keys, key
    checkpoints = store.events_after(0, run_id=run["run_id"], kinds=["checkpoint"])
    assert checkpoints and Path(checkpoints[-1]["payload"]["path"]).is_file()
    store.close()


def test_smoke_run_on_the_users_nq_file(nq_path: Path, tmp_path: Path, monkeypatch,
                                        capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    code = run_training.main(["--csv_path", str(nq_path), "--mode", "smoke", "--model_name",
                              "nq", "--models-dir", str(tmp_path), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "PPO_nq" / "nq_model.pt").is_file()


def test_resume_from_a_model_folder_continues_training(tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    common = ["--csv_path", str(ROOT / "sample.csv"), "--models-dir", str(tmp_path),
              "--no-progress"]
    params = json.dumps({"train_params": {"total_timesteps": 1024, "n_envs": 2,
                                          "n_steps": 256}})
    assert run_training.main([*common, "--mode", "smoke", "--model_name", "r",
                              "--training_params", params]) == 0
    assert run_training.main([*common, "--resume", str(tmp_path / "PPO_r"),
                              "--total-timesteps", "2048"]) == 0
    out = capsys.readouterr().out
    assert "timesteps: 2048" in out and "iterations: 4" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--csv_path", "missing.csv"], "missing.csv: file not found"),
    (["--model", "lstm"], "unknown model type 'lstm'; valid types: ppo"),
    (["--training_params", "{not json"], "--training_params is not valid"),
    (["--training_params", '{"train_params": {"gama": 1}}'], "unknown key(s) ['gama']"),
    (["--training_params", '{"train_params": {"n_envs": 0}}'], "n_envs must be in [1, 512]"),
    (["--model_name", "../escape"], "invalid model name '../escape'"),
    (["--config", "nope.yaml"], "config file not found: nope.yaml"),
    (["--resume", "no-such-run"], "no-such-run"),
    (["--training_params", '{"train_params": {"n_envs": null}}'], "n_envs must be int"),
    (["--training_params", '{"train_params": {"n_envs": 2.7}}'], "n_envs must be int"),
    (["--training_params", '{"model_params": {"hidden_dim": [64]}}'], "hidden_dim must be"),
    (["--training_params", '{"train_params": {"checkpoint_every": "x"}}'],
     "checkpoint_every must be int"),
    (["--training_params", '{"data_params": {"features": "Close"}}'],
     "features must be a list"),
    (["--training_params", '{"env_params": {"commission": -1}}'], "commission"),
    (["--training_params", '{"train_params": {"device": "tpu"}}'], "device must be one of"),
    (["--total-timesteps", "0"], "total_timesteps must be in [1, 10000000000]"),
    (["--training_params", '{"model_params": {"lookback_window": 5000}}'],
     "lookback_window must be in [1, 2000]"),
    (["--threads", "0"], "--threads must be a whole number of CPU threads from 1 to 1024"),
    (["--threads", "two"], "--threads must be a whole number of CPU threads"),
    (["--training_params", '{"training_dashboard": {"theme": "neon"}}'],
     "training_dashboard.theme must be one of dark, light, cyberpunk"),
    (["--training_params", '{"training_dashboard": {"auto_start": true, "port": 0}}'],
     "training_dashboard.port must be a fixed port"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path,
                                          monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    base = ["--csv_path", str(ROOT / "sample.csv"), "--models-dir", str(tmp_path / "M"),
            "--mode", "smoke", "--no-progress"]
    code = run_training.main([*base, *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not (tmp_path / "M").exists() or not any((tmp_path / "M").iterdir())
    store = RunStore(f"sqlite:///{tmp_path}/runs.db")
    assert store.list_runs()[1] == 0, "bad input must be refused before a run is recorded"
    store.close()


def test_bad_csv_is_named(tmp_path: Path, monkeypatch, capsys) -> None:
    bad = tmp_path / "bars.csv"
    bad.write_text("Date;Open;High;Low;Close\n2024-01-01;1;2;1;1\n")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    assert run_training.main(["--csv_path", str(bad), "--models-dir", str(tmp_path)]) == 2
    assert "bars.csv: uses semicolon" in capsys.readouterr().err


def test_ctrl_c_saves_a_checkpoint_and_marks_the_run_stopped(env, tmp_path: Path) -> None:
    params = json.dumps({"train_params": {"total_timesteps": 10_000_000,
                                          "checkpoint_every": 1}})
    child = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--csv_path", str(ROOT / "sample.csv"), "--mode",
         "smoke", "--model_name", "interrupted", "--training_params", params, "--no-progress"],
        env=env, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for line in child.stderr:  # wait for the event, not for time
        if "checkpoint saved" in line:
            child.send_signal(signal.SIGINT)
            break
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    assert "stopped: model saved" in out
    store = RunStore(env["DATABASE_URL"])
    (run,), _ = store.list_runs()
    assert run["status"] == "stopped" and run["summary"]["status"] == "stopped"
    # Keyed by run: a later run of the same name cannot clobber it.
    checkpoint = latest_checkpoint(tmp_path / "Models" / ".checkpoints" / run["run_id"])
    assert checkpoint is not None and checkpoint.is_file()
    assert (tmp_path / "Models" / "PPO_interrupted" / "interrupted_model.pt").is_file()
    store.close()


def test_resume_refuses_weights_files_other_data_and_foreign_names(tmp_path: Path, monkeypatch,
                                                                   capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    common = ["--models-dir", str(tmp_path), "--no-progress", "--mode", "smoke"]
    params = json.dumps({"train_params": {"total_timesteps": 512, "n_envs": 2,
                                          "n_steps": 256}})
    sample = str(ROOT / "sample.csv")
    for name in ("base", "other"):
        assert run_training.main(["--csv_path", sample, "--model_name", name,
                                  "--training_params", params, *common]) == 0
    capsys.readouterr()
    weights_only = tmp_path / "PPO_base" / "base_model.pt"
    assert run_training.main(["--csv_path", sample, "--resume", str(weights_only),
                              *common]) == 2
    assert "not a training checkpoint" in capsys.readouterr().err
    shorter = tmp_path / "short.csv"
    shorter.write_text("".join((ROOT / "sample.csv").read_text().splitlines(True)[:1500]))
    assert run_training.main(["--csv_path", str(shorter), "--resume",
                              str(tmp_path / "PPO_base"), *common]) == 2
    assert "is not the data this checkpoint was trained on" in capsys.readouterr().err
    before = (tmp_path / "PPO_other" / "other_model.pt").read_bytes()
    code = run_training.main(["--csv_path", sample, "--resume", str(tmp_path / "PPO_base"),
                              "--model_name", "other", *common])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert (tmp_path / "PPO_other" / "other_model.pt").read_bytes() == before


def test_a_model_that_is_training_is_refused_a_second_training(tmp_path: Path, monkeypatch,
                                                               capsys) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    monkeypatch.setenv("DATABASE_URL", url)
    store = RunStore(url)
    live = store.claim_run(name="busy", model_type="ppo")  # e.g. started from the dashboard
    base = ["--csv_path", str(ROOT / "sample.csv"), "--models-dir", str(tmp_path / "M"),
            "--mode", "smoke", "--no-progress", "--model_name", "busy"]
    assert run_training.main(base) == 2
    err = capsys.readouterr().err
    assert "a ppo model named 'busy' is already training" in err and live in err
    assert store.list_runs()[1] == 1 and not (tmp_path / "M").exists()
    store.close()


def test_the_launchers_claimed_run_is_taken_over_or_failed(tmp_path: Path, monkeypatch,
                                                           capsys) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    monkeypatch.setenv("DATABASE_URL", url)
    store = RunStore(url)
    common = ["--csv_path", str(ROOT / "sample.csv"), "--models-dir", str(tmp_path),
              "--mode", "smoke", "--no-progress", "--model", "xgboost"]
    claimed = store.claim_run(name="web", model_type="xgboost", config={"partial": True},
                              status="starting")
    assert run_training.main([*common, "--model_name", "web", "--run-id", claimed]) == 0
    run = store.get_run(claimed)
    assert run["status"] == "completed" and run["tags"] == ["smoke"]
    statuses = [e["payload"]["status"] for e in store.events_after(0, run_id=claimed,
                                                                    kinds=["status"])]
    assert statuses == ["starting", "running", "completed"]
    assert "partial" not in run["config"] and run["algorithm"] == get_model_type("xgboost").label
    assert store.list_runs()[1] == 1  # the same run, not a second one
    bad = store.claim_run(name="bad", model_type="xgboost", status="starting")
    assert run_training.main([*common, "--model_name", "bad", "--run-id", bad,
                              "--training_params", '{"train_params": {"gama": 1}}']) == 2
    refused = store.get_run(bad)
    assert refused["status"] == "failed" and "unknown key(s) ['gama']" in refused["error"]
    capsys.readouterr()
    store.close()


@pytest.mark.parametrize("variable", ["RUN_HEARTBEAT_SECONDS", "RUN_LOST_AFTER_SECONDS"])
def test_a_bad_liveness_setting_is_one_line_and_exit_2(variable: str, tmp_path: Path,
                                                       monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    monkeypatch.setenv(variable, "soon")
    code = run_training.main(["--csv_path", str(ROOT / "sample.csv"), "--models-dir",
                              str(tmp_path / "M"), "--mode", "smoke", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"error: {variable} must be a number of seconds > 0; got 'soon'"


@pytest.mark.parametrize(("model", "params"), [
    ("xgboost", {}),
    ("ppo", {"train_params": {"total_timesteps": 512, "n_envs": 2, "n_steps": 256}}),
])
def test_the_data_is_read_and_prepared_once(model: str, params: dict, sample_path: Path,
                                            tmp_path: Path, monkeypatch, capsys) -> None:
    """The CLI checks the data before it records a run, and fit trains on that very
    preparation: one parse of the CSV and one transform/split/scale per training."""
    from NetworkConfigs import PPOTrainer, supervised

    calls = {"load_bars": 0, "prepare_from_params": 0}

    def counted(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    counted(run_training, "load_bars")
    for module in (PPOTrainer, supervised):
        counted(module, "prepare_from_params")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    assert run_training.main(["--csv_path", str(sample_path), "--model", model, "--mode",
                              "smoke", "--model_name", "once", "--models-dir", str(tmp_path),
                              "--training_params", json.dumps(params), "--no-progress"]) == 0
    assert calls == {"load_bars": 1, "prepare_from_params": 1}
    capsys.readouterr()


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"val_fraction": 0.9, "test_fraction": 0.9}, "val_fraction",
     "val_fraction + test_fraction must be below 1"),
    ({"test_fraction": 1.5}, "test_fraction", "test_fraction must be in [0, 1)"),
    ({"val_fraction": 0.001}, "val_fraction", "val_fraction 0.001 of"),
])
def test_a_bad_fraction_is_reported_on_its_field(params: dict, field: str, message: str,
                                                 sample_path: Path, tmp_path: Path,
                                                 monkeypatch, capsys) -> None:
    args = ["--csv_path", str(sample_path), "--model", "xgboost", "--mode", "smoke",
            "--models-dir", str(tmp_path), "--training_params",
            json.dumps({"data_params": params})]
    with pytest.raises(run_training.UsageError) as caught:
        run_training.prepare(run_training.TrainingRequest.from_args(
            run_training.parse_args(args)), store=None)
    assert caught.value.field == field and message in str(caught.value)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    assert run_training.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "rows;" not in err.replace(message, ""), err


def test_usage_errors_name_their_option(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases = {"csv_path": ["--csv_path", "missing.csv"],
             "model": ["--model", "lstm"],
             "training_params": ["--training_params", "{not json"],
             "config": ["--config", "nope.yaml"],
             "model_name": ["--model_name", "../escape"],
             "n_envs": ["--training_params", '{"train_params": {"n_envs": 0}}'],
             "run_id": ["--run-id", "x"]}
    for field, extra in cases.items():
        args = run_training.parse_args(["--csv_path", str(ROOT / "sample.csv"), *extra])
        with pytest.raises(run_training.UsageError) as caught:
            run_training.prepare(run_training.TrainingRequest.from_args(args), store=None)
        assert caught.value.field == field, (field, caught.value)


def test_a_bad_thread_budget_in_the_environment_is_named(tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    monkeypatch.setenv("TRAIN_THREADS", "-3")
    code = run_training.main(["--csv_path", str(ROOT / "sample.csv"), "--models-dir",
                              str(tmp_path / "M"), "--model", "xgboost", "--mode", "smoke"])
    assert code == 2
    assert "TRAIN_THREADS must be a whole number of CPU threads" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "environment", "expected"), [
    (["--threads", "1"], None, 1),
    ([], "1", 1),                 # TRAIN_THREADS when the command line says nothing
    (["--threads", "2"], "1", 2),  # the command line wins
])
def test_a_training_uses_the_thread_budget_it_is_given(option: list[str], environment,
                                                       expected: int, tmp_path: Path,
                                                       monkeypatch) -> None:
    import torch

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    if environment is None:
        monkeypatch.delenv("TRAIN_THREADS", raising=False)
    else:
        monkeypatch.setenv("TRAIN_THREADS", environment)
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # neither budget, so the training must have set it
    try:
        code = run_training.main(["--csv_path", str(ROOT / "sample.csv"), "--models-dir",
                                  str(tmp_path / "M"), "--model", "xgboost", "--mode",
                                  "smoke", "--no-progress", *option])
        assert code == 0
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
