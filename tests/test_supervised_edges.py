"""Edge cases of the supervised types found in review: account rules of served models,
diverged training, malformed requests and checkpoints, edited model folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from Api_Loader import create_api_app
from NetworkConfigs import load_model
from NetworkConfigs.artifacts import ArtifactError
from NetworkConfigs.base import deep_merge
from NetworkConfigs.XGBoostTrainer import SMOKE, XGBoostTrainer
from Utilities import run_training
from Utilities.run_store import RunStore

NO_SHORTS = {"env_params": {"allow_short": False, "commission": 0.01}}


@pytest.fixture(scope="module")
def no_short_model(sample_bars: pd.DataFrame, sample_path: Path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    trainer = XGBoostTrainer(deep_merge(SMOKE, NO_SHORTS))
    return trainer.fit(sample_bars, model_name="long_only", models_dir=folder,
                       data_file=str(sample_path))


def copy_of(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / model_dir.name
    shutil.copytree(model_dir, target)
    return target


def edit_config(model_dir: Path, **changes) -> None:
    path = next(model_dir.glob("*_config.yaml"))
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config))


def test_a_stream_books_trades_with_the_models_own_account_rules(no_short_model: Path,
                                                                  sample_bars) -> None:
    loader = load_model(no_short_model)
    assert loader.env_params.allow_short is False and loader.env_params.commission == 0.01
    client = create_api_app(no_short_model).test_client()
    positions, sells = [], 0
    for _, bar in sample_bars.iloc[-300:].iterrows():
        reply = client.post("/predict", json={"stream_id": "s",
                                              "features": bar.to_dict()}).get_json()
        if reply["status"] == "ready":
            positions.append(reply["account"]["position"])
            sells += reply["action_name"] == "Sell"
    assert sells > 0 and min(positions) >= 0  # Sell signals came, no short was opened


def test_a_malformed_account_state_is_422_for_every_type(no_short_model: Path,
                                                         sample_bars) -> None:
    loader = load_model(no_short_model)
    window = sample_bars.iloc[-loader.window_size:].reset_index(drop=True)
    client = create_api_app(no_short_model).test_client()
    for state, field in (("x", "account_state"), ({"foo": 1}, "foo"),
                         ({"position": 1, "units": -2.0, "entry_price": 5.0}, "units")):
        reply = client.post("/predict", json={"window": window.to_dict("records"),
                                              "account_state": state})
        assert reply.status_code == 422, state
        assert field in str(reply.get_json())


def test_a_value_that_overflows_after_scaling_is_422(no_short_model: Path, sample_bars) -> None:
    loader = load_model(no_short_model)
    window = sample_bars.iloc[-loader.window_size:].reset_index(drop=True)
    window.loc[len(window) - 1, "Volume"] = 1e308
    reply = create_api_app(no_short_model).test_client().post(
        "/predict", json={"window": window.to_dict("records")})
    assert reply.status_code == 422 and "too large" in reply.get_json()["error"]


@pytest.mark.parametrize(("change", "message"), [
    ({"lookback": -3}, "lookback"),
    ({"lookback": 20.7}, "lookback"),
    ({"target": "return"}, "target 'return'"),
    ({"env_params": {"commission": 3}}, "commission"),
])
def test_an_edited_config_is_refused_at_load(no_short_model: Path, tmp_path: Path,
                                             change: dict, message: str) -> None:
    folder = copy_of(no_short_model, tmp_path)
    edit_config(folder, **change)
    with pytest.raises(ArtifactError, match=message):
        load_model(folder)


def cli(tmp_path: Path, sample_path: Path, *args: str) -> int:
    return run_training.main(["--csv_path", str(sample_path), "--mode", "smoke", "--no-progress",
                              "--models-dir", str(tmp_path / "M"),
                              "--database-url", f"sqlite:///{tmp_path}/runs.db", *args])


def one_error_line(capsys) -> str:
    """The one error line (log lines may come before it on stderr)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    return errors[0]


def test_diverged_training_saves_no_model(tmp_path: Path, sample_path: Path, capsys) -> None:
    code = cli(tmp_path, sample_path, "--model", "transformer", "--model_name", "nan",
               "--training_params", '{"train_params": {"learning_rate": 1e30, "epochs": 2},'
                                    ' "model_params": {"target": "return"}}')
    assert code == 2
    assert "diverged" in one_error_line(capsys)
    assert not (tmp_path / "M" / "TRF_nan").exists()


def test_a_checkpoint_missing_keys_is_one_line(no_short_model: Path, tmp_path: Path,
                                               sample_path: Path, capsys) -> None:
    state = torch.load(next(no_short_model.glob("*_checkpoint.pt")), weights_only=True)
    del state["best_epoch"]
    damaged = tmp_path / "damaged.pt"
    torch.save(state, damaged)
    assert cli(tmp_path, sample_path, "--resume", str(damaged)) == 2
    assert "lacks ['best_epoch']" in one_error_line(capsys)


def test_an_xgboost_resume_cannot_change_the_window(no_short_model: Path, tmp_path: Path,
                                                    sample_path: Path, capsys) -> None:
    folder = copy_of(no_short_model, tmp_path)
    code = cli(tmp_path, sample_path, "--resume", str(folder), "--models-dir", str(tmp_path),
               "--training_params", '{"model_params": {"lookback_window": 5}}')
    assert code == 2
    assert "cannot change on resume" in one_error_line(capsys)
    assert RunStore(f"sqlite:///{tmp_path}/runs.db").list_runs()[1] == 0  # none started


@pytest.mark.parametrize(("params", "key"), [
    ('{"model_params": {"threshold": NaN}}', None),
    ('{"data_params": {"val_fraction": "x"}}', "val_fraction"),
    ('{"data_params": {"scaler": ["a"]}}', "scaler"),
])
def test_bad_values_name_their_key(tmp_path: Path, sample_path: Path, capsys, params: str,
                                   key: str | None) -> None:
    if key is None:  # JSON has no NaN literal: a YAML config file can hold one
        config = tmp_path / "c.yaml"
        config.write_text("model_params:\n  threshold: .nan\n")
        code, key = cli(tmp_path, sample_path, "--model", "xgboost", "--config",
                        str(config)), "threshold"
    else:
        code = cli(tmp_path, sample_path, "--model", "xgboost", "--training_params", params)
    assert code == 2
    assert key in one_error_line(capsys)
