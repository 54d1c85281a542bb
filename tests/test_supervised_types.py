"""XGBoost and Transformer end to end: CLI training on sample.csv and the users' NQ file,
what the run store records, loading and the prediction envelope, /predict, train/serve
parity, backtests beside their baselines, bad input, resume, and no branching on type
names outside the registry.

Every model is trained once per module (small budgets), through a lazy cache in a
module-scoped fixture, so a test asks only for the models it needs.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from flask.testing import FlaskClient

from Api_Loader import create_api_app
from NetworkConfigs import MODEL_TYPES, get_model_type, load_model
from NetworkConfigs.artifacts import ArtifactError, read_config
from NetworkConfigs.base import ACTION_NAMES, deep_merge
from NetworkConfigs.callbacks import latest_checkpoint
from NetworkConfigs.signal_loader import SignalLoader
from NetworkConfigs.supervised import SupervisedTrainer
from tests.helpers.models import TrainedModel
from Utilities import run_backtest as backtest_cli
from Utilities import run_training
from Utilities.data_utils import load_bars
from Utilities.model_backtester import backtest_model
from Utilities.run_store import RunStore

ROOT = Path(__file__).resolve().parent.parent
TYPES = ["xgboost", "transformer"]
PROBABILITY_COLUMNS = [f"p_{d}" for d in ("flat", "up", "down")]  # trainer.predictions
EPOCH_KEYS = ("train/train_loss", "train/val_loss", "train/train_accuracy",
              "train/val_accuracy")
# The default threshold (5 bp) leaves 496 of the NQ file's 499 one-minute moves "flat":
# every tree would be a stump. At 0.5 bp the three classes are 219/128/152.
DATA_PARAMS: dict[str, dict[str, Any]] = {"sample": {},
                                          "nq": {"model_params": {"threshold": 5e-5}}}
# In-process fits for the parity checks: (type, what is merged over its smoke config).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "xgboost": ("xgboost", {}),
    "transformer": ("transformer", {}),
    "transformer-return": ("transformer", {"model_params": {"target": "return"}}),
}
# Resume runs: a budget of epochs, a checkpoint after every one, no early stop.
RESUME_PARAMS = {"train_params": {"checkpoint_every": 1, "patience": 100}}
RESUME_EXTRA = {"xgboost": {}, "transformer": {"train_params": {"batch_size": 256}}}
# The only randomness left in training once these are off is the seeded init.
NO_SAMPLING = {"xgboost": {"model_params": {"subsample": 1.0, "colsample_bytree": 1.0}},
               "transformer": {"model_params": {"dropout": 0.0}}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------ fixtures


@dataclass(frozen=True)
class Workspace:
    root: Path
    models: Path
    database_url: str


@dataclass(frozen=True)
class Trained:
    """A model trained through the CLI, and its run in the store."""

    type_name: str
    csv: Path
    model_dir: Path
    run: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return read_config(self.model_dir)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("supervised")
    return Workspace(root, root / "Models", f"sqlite:///{root}/runs.db")


@pytest.fixture(scope="module")
def run_store(workspace: Workspace) -> Iterator[RunStore]:
    store = RunStore(workspace.database_url)
    yield store
    store.close()


def train_cli(workspace: Workspace, *args: str) -> int:
    return run_training.main([*args, "--models-dir", str(workspace.models), "--database-url",
                              workspace.database_url, "--no-progress"])


def only_run(store: RunStore, name: str, type_name: str) -> dict[str, Any]:
    """The newest run of that name and type."""
    runs, _ = store.list_runs(name=name, model_type=type_name)
    assert runs, f"no {type_name} run named {name!r} was recorded"
    return runs[0]


@pytest.fixture(scope="module")
def cli_model(workspace: Workspace, run_store: RunStore, sample_path: Path,
              nq_path: Path) -> Callable[[str, str], Trained]:
    """``cli_model(type, "sample" | "nq")``: a smoke run of the CLI, trained on first use."""
    cache: dict[tuple[str, str], Trained] = {}

    def get(type_name: str, data: str = "sample") -> Trained:
        if (type_name, data) not in cache:
            csv = {"sample": sample_path, "nq": nq_path}[data]
            code = train_cli(workspace, "--csv_path", str(csv), "--model", type_name,
                             "--mode", "smoke", "--model_name", data, "--training_params",
                             json.dumps(DATA_PARAMS[data]))
            assert code == 0, f"{type_name} smoke run on {csv.name} exited {code}"
            model_dir = workspace.models / f"{get_model_type(type_name).prefix}_{data}"
            cache[type_name, data] = Trained(type_name, csv, model_dir,
                                             only_run(run_store, data, type_name))
        return cache[type_name, data]

    return get


@pytest.fixture(scope="module")
def fitted(sample_bars: pd.DataFrame, sample_path: Path,
           tmp_path_factory) -> Callable[[str], tuple[SupervisedTrainer, Path]]:
    """``fitted(variant)``: (trainer, model folder) of an in-process fit on sample.csv,
    whose ``trainer.predictions`` are the test part's outputs in the training path."""
    root = tmp_path_factory.mktemp("fitted")
    cache: dict[str, tuple[SupervisedTrainer, Path]] = {}

    def get(variant: str) -> tuple[SupervisedTrainer, Path]:
        if variant not in cache:
            type_name, extra = VARIANTS[variant]
            trainer_class = get_model_type(type_name).trainer_class()
            trainer = trainer_class(deep_merge(trainer_class.smoke_config, extra))
            model_dir = trainer.fit(sample_bars, model_name=variant.replace("-", "_"),
                                    models_dir=root, data_file=str(sample_path))
            cache[variant] = trainer, model_dir
        return cache[variant]

    return get


def api_client(model_dir: Path) -> FlaskClient:
    return create_api_app(model_dir, {"TESTING": True}).test_client()


def last_window(csv: Path, loader: SignalLoader) -> list[dict[str, Any]]:
    """The newest ``window_size`` bars of the CSV, as a client sends them."""
    bars = load_bars(csv)
    return bars[list(loader.spec.features)].iloc[-loader.window_size:].to_dict("records")


def window_ending_at(bars: pd.DataFrame, when: pd.Timestamp,
                     loader: SignalLoader) -> list[dict[str, Any]]:
    """The raw window a client would send to have the bar at ``when`` decided."""
    window = bars.loc[:when, list(loader.spec.features)].iloc[-loader.window_size:]
    assert window.index[-1] == when and len(window) == loader.window_size
    return window.to_dict("records")


def spread(index: pd.Index, n: int = 20) -> pd.Index:
    """``n`` entries spread evenly over ``index``, first and last included."""
    return index[np.unique(np.linspace(0, len(index) - 1, n).round().astype(int))]


def one_line_error(err: str) -> str:
    err = err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


# --------------------------------------------------- 1. smoke training through the CLI


@pytest.mark.parametrize("data", ["sample", "nq"])
@pytest.mark.parametrize("type_name", TYPES)
def test_smoke_training_writes_the_model_folder(cli_model, type_name: str, data: str) -> None:
    trained = cli_model(type_name, data)
    folder = trained.model_dir
    assert folder.name == f"{get_model_type(type_name).prefix}_{data}"
    model_file = {"xgboost": f"{data}_model.json", "transformer": f"{data}_model.pt"}[type_name]
    names = {p.name for p in folder.iterdir()}
    assert {f"{data}_config.yaml", f"{data}_scaler.json", model_file} <= names, names
    assert not any(name.endswith(".pkl") for name in names)  # nothing is pickled

    config = yaml.safe_load((folder / f"{data}_config.yaml").read_text())
    assert config["Type"] == type_name and config["model_name"] == data
    metrics = config["metrics"]
    for key in ("validation_accuracy", "validation_majority_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
    assert 1 <= metrics["best_epoch"] <= metrics["epochs"]
    assert len(config["validation_history"]) == metrics["epochs"]
    assert Path(config["data_file"]).name == trained.csv.name


@pytest.mark.parametrize("data", ["sample", "nq"])
def test_the_xgboost_model_is_xgboosts_own_json(cli_model, data: str) -> None:
    import xgboost as xgb

    trained = cli_model("xgboost", data)
    path = trained.model_dir / f"{data}_model.json"
    document = json.loads(path.read_text())  # valid JSON, not a pickle
    assert "learner" in document and "version" in document
    booster = xgb.Booster()
    booster.load_model(path)
    assert booster.num_boosted_rounds() == trained.config["boosted_rounds"]
    features = trained.config["feature_spec"]["features"]
    assert booster.num_features() == trained.config["lookback"] * len(features)


def test_the_transformer_model_is_a_plain_state_dict(cli_model) -> None:
    trained = cli_model("transformer", "sample")
    state = torch.load(trained.model_dir / "sample_model.pt", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())


# ---------------------------------------------------------------- 2. the run store


@pytest.mark.parametrize("data", ["sample", "nq"])
@pytest.mark.parametrize("type_name", TYPES)
def test_the_run_store_has_every_epoch(cli_model, run_store: RunStore, type_name: str,
                                       data: str) -> None:
    trained = cli_model(type_name, data)
    run, metrics = trained.run, trained.config["metrics"]
    assert run["status"] == "completed" and run["model_type"] == type_name
    assert run["model_dir"] == str(trained.model_dir) and run["tags"] == ["smoke"]
    assert run["summary"]["epochs"] == metrics["epochs"]
    keys = run_store.metric_keys(run["run_id"])
    epochs = list(range(1, metrics["epochs"] + 1))
    history = trained.config["validation_history"]
    for key in EPOCH_KEYS:
        assert key in keys, (key, keys)
        series = run_store.metric_series(run["run_id"], key)
        assert [point["step"] for point in series] == epochs, key
        name = key.split("/", 1)[1]
        assert [p["value"] for p in series] == pytest.approx([h[name] for h in history])
    checkpoints = run_store.events_after(0, run_id=run["run_id"], kinds=["checkpoint"])
    assert checkpoints and Path(checkpoints[-1]["payload"]["path"]).is_file()


@pytest.mark.parametrize("data", ["sample", "nq"])
def test_xgboost_records_its_importance_by_lagged_feature(cli_model, run_store: RunStore,
                                                          data: str) -> None:
    trained = cli_model("xgboost", data)
    config = trained.config
    (event,) = run_store.events_after(0, run_id=trained.run["run_id"], kinds=["importance"])
    assert event["payload"]["kind"] == "total_gain"
    importance = event["payload"]["importance"]
    assert importance and sum(importance.values()) == pytest.approx(1.0, abs=1e-4)
    features, lookback = config["feature_spec"]["features"], config["lookback"]
    for key in importance:
        name, lag = re.fullmatch(r"(.+)_lag(\d+)", key).groups()
        assert name in features and 0 <= int(lag) < lookback, key
    top = config["feature_importance"]  # the config keeps the largest ones
    assert 0 < len(top) <= 25 and set(top) <= set(importance)
    assert list(top.values()) == sorted(top.values(), reverse=True)


# ------------------------------------------------------------ 3. load and predict


def check_envelope(envelope: dict[str, Any], target: str) -> None:
    assert envelope["prediction"] in (0, 1, 2)
    assert envelope["action_name"] == ACTION_NAMES[envelope["prediction"]]
    assert 0.0 <= envelope["confidence"] <= 1.0
    if target == "direction":
        assert set(envelope) == {"prediction", "action_name", "confidence", "probabilities"}
        probabilities = envelope["probabilities"]
        assert list(probabilities) == list(ACTION_NAMES)
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert all(0.0 <= p <= 1.0 for p in probabilities.values())
        assert envelope["confidence"] == max(probabilities.values())
        assert envelope["action_name"] == max(probabilities, key=probabilities.get)
    else:
        assert set(envelope) == {"prediction", "action_name", "confidence",
                                 "predicted_return"}
        assert np.isfinite(envelope["predicted_return"])


@pytest.mark.parametrize("data", ["sample", "nq"])
@pytest.mark.parametrize("type_name", TYPES)
def test_a_loaded_model_predicts_a_raw_window(cli_model, type_name: str, data: str) -> None:
    trained = cli_model(type_name, data)
    loader = load_model(trained.model_dir)
    assert type(loader) is get_model_type(type_name).loader_class()
    assert loader.window_size == trained.config["lookback"] + loader.spec.warmup
    envelope = loader.predict(last_window(trained.csv, loader)).to_dict()
    check_envelope(envelope, "direction")


def test_a_return_transformer_predicts_a_return_and_no_probabilities(fitted,
                                                                     sample_path) -> None:
    _, model_dir = fitted("transformer-return")
    loader = load_model(model_dir)
    assert loader.target == "return" and loader.residual_std > 0
    envelope = loader.predict(last_window(sample_path, loader)).to_dict()
    check_envelope(envelope, "return")
    value, threshold = envelope["predicted_return"], loader.threshold
    expected = 1 if value > threshold else 2 if value < -threshold else 0
    assert envelope["prediction"] == expected


# ------------------------------------------------------------------- 4. /predict


@pytest.mark.parametrize("type_name", TYPES)
def test_predict_and_info_over_http(cli_model, type_name: str) -> None:
    trained = cli_model(type_name, "sample")
    loader = load_model(trained.model_dir)
    client = api_client(trained.model_dir)
    window = last_window(trained.csv, loader)

    response = client.post("/predict", json={"window": window})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == loader.predict(window).to_dict()  # floats round-trip

    info = client.get("/info").get_json()
    assert info["type"] == type_name and info["name"] == "sample"
    assert info["window_size"] == loader.window_size and info["lookback"] == loader.lookback
    assert info["features"] == list(loader.spec.features) and info["can_sample"] is False
    assert info["target"] == "direction" and info["directions"] == ["flat", "up", "down"]
    assert client.get("/health").get_json() == {"status": "ok", "model": "sample",
                                                "type": type_name}


@pytest.mark.parametrize("variant", ["xgboost", "transformer-return"])
def test_a_stream_answers_its_full_window_as_predict_does(fitted, sample_path,
                                                          variant: str) -> None:
    _, model_dir = fitted(variant)
    loader = load_model(model_dir)
    client = api_client(model_dir)
    window = last_window(sample_path, loader)
    replies = [client.post("/predict", json={"features": bar, "stream_id": "s"}).get_json()
               for bar in window]
    assert [r["status"] for r in replies] == ["warming_up"] * (len(window) - 1) + ["ready"]
    expected = loader.predict(window).to_dict()
    assert {key: replies[-1][key] for key in expected} == expected


def test_a_signal_model_refuses_to_sample_over_http(cli_model, sample_path) -> None:
    trained = cli_model("xgboost", "sample")
    loader = load_model(trained.model_dir)
    body = {"window": last_window(sample_path, loader), "sample": True}
    response = api_client(trained.model_dir).post("/predict", json=body)
    assert response.status_code == 422 and response.get_json()["field"] == "sample"


# ------------------------------------------------------------ 5. train/serve parity


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_serving_predicts_what_training_predicted(fitted, sample_bars: pd.DataFrame,
                                                  variant: str) -> None:
    """For test-part bars spread over the slice: the raw CSV window through /predict
    (and the loader) gives the trainer's own outputs and action for that bar."""
    trainer, model_dir = fitted(variant)
    predictions = trainer.predictions
    assert predictions is not None and len(predictions) > 100
    loader = load_model(model_dir)
    client = api_client(model_dir)
    target = VARIANTS[variant][1].get("model_params", {}).get("target", "direction")
    for when in spread(predictions.index):
        window = window_ending_at(sample_bars, when, loader)
        reply = client.post("/predict", json={"window": window}).get_json()
        assert reply == loader.predict(window).to_dict(), when
        expected = predictions.loc[when]
        if target == "direction":
            served = [reply["probabilities"][name] for name in ACTION_NAMES]
            np.testing.assert_allclose(served, expected[PROBABILITY_COLUMNS].to_numpy(float),
                                       rtol=0, atol=1e-6, err_msg=str(when))
        else:
            assert "probabilities" not in reply
            assert reply["predicted_return"] == pytest.approx(expected["predicted_return"],
                                                              rel=0, abs=1e-6), when
        assert reply["prediction"] == expected["action"], when


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_backtest_decides_what_training_predicted(fitted, sample_path: Path,
                                                      variant: str) -> None:
    """Every test-part bar: the backtest's batch path gives the trainer's outputs."""
    trainer, model_dir = fitted(variant)
    predictions = trainer.predictions
    decisions = backtest_model(model_dir, sample_path).decisions
    assert predictions.index.isin(decisions.index).all()
    decided = decisions.loc[predictions.index]
    columns = (list(ACTION_NAMES) if "predicted_return" not in decided
               else ["predicted_return"])
    trained_columns = PROBABILITY_COLUMNS if columns == list(ACTION_NAMES) else columns
    np.testing.assert_allclose(decided[columns].to_numpy(float),
                               predictions[trained_columns].to_numpy(float), rtol=0, atol=1e-6)
    assert (decided["action"].to_numpy() == predictions["action"].to_numpy()).all()


# ----------------------------------------------------- 6. backtests with baselines


def check_decisions(report, loader: SignalLoader) -> None:
    decisions = report.decisions
    assert set(report.baselines) == {"Buy & Hold", "Random"}
    assert len(report.result.equity) == len(decisions)
    for baseline in report.baselines.values():
        assert len(baseline.equity) == len(decisions)
        assert baseline.equity.index.equals(report.result.equity.index)
    assert decisions.index.equals(report.result.equity.index)
    assert (decisions["action_name"] == np.asarray(ACTION_NAMES)[decisions["action"]]).all()
    if loader.target == "direction":
        assert list(decisions.columns) == ["action", "action_name", *ACTION_NAMES]
        probabilities = decisions[list(ACTION_NAMES)].to_numpy()
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        assert (probabilities.argmax(axis=1) == decisions["action"]).all()
    else:
        assert list(decisions.columns) == ["action", "action_name", "predicted_return"]
        predicted, threshold = decisions["predicted_return"].to_numpy(), loader.threshold
        expected = np.where(predicted > threshold, 1, np.where(predicted < -threshold, 2, 0))
        assert (decisions["action"].to_numpy() == expected).all()
        probabilities = predicted
    assert (loader.actions(probabilities) == decisions["action"].to_numpy()).all()
    for column in ("Return [%]", "# Trades", "Max. Drawdown [%]"):
        assert column in report.statistics


@pytest.mark.parametrize("type_name", TYPES)
def test_a_backtest_on_the_training_file_scores_its_test_slice(cli_model,
                                                               type_name: str) -> None:
    trained = cli_model(type_name, "sample")
    report = backtest_model(trained.model_dir, trained.csv)
    assert report.period.source == "held-out test slice"
    assert report.model_type == type_name
    test = trained.config["split"]["test"]
    index = report.decisions.index
    assert pd.Timestamp(test["start"]) <= index[0] and index[-1] == pd.Timestamp(test["end"])
    check_decisions(report, load_model(trained.model_dir))


def test_a_return_transformer_backtests_by_the_threshold_rule(fitted, sample_path) -> None:
    _, model_dir = fitted("transformer-return")
    report = backtest_model(model_dir, sample_path)
    check_decisions(report, load_model(model_dir))


@pytest.mark.parametrize("type_name", TYPES)
def test_a_backtest_on_another_nq_file_scores_the_whole_file(cli_model, type_name: str,
                                                              tmp_path: Path) -> None:
    """The NQ model on a copy of its file without the last bar: not the training file
    (another SHA-256), so every bar with a full window is decided."""
    trained = cli_model(type_name, "nq")
    lines = trained.csv.read_text().splitlines(keepends=True)
    other = tmp_path / "nq_other.csv"
    other.write_text("".join(lines[:-1]))
    loader = load_model(trained.model_dir)
    report = backtest_model(trained.model_dir, other)
    assert report.period.source == "whole file"
    bars = load_bars(other)
    assert len(report.decisions) == len(bars) - loader.window_size + 1
    assert report.decisions.index[-1] == bars.index[-1]
    check_decisions(report, loader)


@pytest.mark.parametrize("type_name", TYPES)
def test_the_backtest_cli_writes_its_files(cli_model, type_name: str, tmp_path: Path,
                                           capsys) -> None:
    trained = cli_model(type_name, "sample")
    out = tmp_path / "bt"
    code = backtest_cli.main(["--model-dir", str(trained.model_dir), "--csv_path",
                              str(trained.csv), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert f"sample ({type_name})" in capsys.readouterr().out
    for name in ("trades.csv", "equity.csv", "decisions.csv", "statistics.json", "equity.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "statistics.json").read_text())
    assert summary["type"] == type_name and summary["period"]["source"] == "held-out test slice"
    assert set(summary["baselines"]) == {"Buy & Hold", "Random"}


# ------------------------------------------------------------------- 7. bad input


@pytest.fixture()
def cli_base(tmp_path: Path, sample_path: Path) -> list[str]:
    return ["--csv_path", str(sample_path), "--models-dir", str(tmp_path / "M"),
            "--database-url", f"sqlite:///{tmp_path}/bad.db", "--mode", "smoke",
            "--no-progress", "--model_name", "bad"]


def assert_nothing_written(tmp_path: Path) -> None:
    models = tmp_path / "M"
    assert not models.exists() or not any(models.iterdir())
    store = RunStore(f"sqlite:///{tmp_path}/bad.db")
    assert store.list_runs()[1] == 0, "bad input must be refused before a run is recorded"
    store.close()


@pytest.mark.parametrize(("type_name", "params", "message"), [
    ("xgboost", {"model_params": {"max_dept": 3}}, "unknown key(s) ['max_dept']"),
    ("transformer", {"train_params": {"epoch": 3}}, "unknown key(s) ['epoch']"),
    ("transformer", {"optimiser": {"lr": 1}}, "unknown config key 'optimiser'"),
    ("xgboost", {"model_params": {"target": "return"}}, "target must be one of ['direction']"),
    ("transformer", {"model_params": {"d_model": 18, "n_heads": 4}},
     "d_model (18) must be even and divisible by n_heads (4)"),
    ("transformer", {"model_params": {"target": "price"}}, "target must be one of"),
    ("xgboost", {"model_params": {"max_depth": 0}}, "max_depth"),
])
def test_a_bad_config_is_one_line_and_exit_2(cli_base, tmp_path: Path, capsys, type_name: str,
                                             params: dict, message: str) -> None:
    code = run_training.main([*cli_base, "--model", type_name, "--training_params",
                              json.dumps(params)])
    err = one_line_error(capsys.readouterr().err)
    assert code == 2 and message in err, err
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
@pytest.mark.parametrize("type_name", TYPES)
def test_a_damaged_model_file_is_an_artifact_error_naming_it(cli_model, tmp_path: Path,
                                                              type_name: str,
                                                              damage: str) -> None:
    trained = cli_model(type_name, "sample")
    folder = Path(shutil.copytree(trained.model_dir, tmp_path / trained.model_dir.name))
    (model_file,) = folder.glob("sample_model.*")
    data = model_file.read_bytes()
    model_file.write_bytes({"garbage": b"\x00garbage\xff" * 10, "truncated": data[:len(data) // 2],
                            "empty": b""}[damage])
    with pytest.raises(ArtifactError) as caught:
        load_model(folder)
    assert str(caught.value).startswith(f"{tmp_path.name}/{folder.name}/{model_file.name}: ")
    assert str(tmp_path.parent) not in str(caught.value)  # no absolute path in messages
    assert trained.model_dir.joinpath(model_file.name).read_bytes() == data  # a copy broke


@pytest.mark.parametrize("type_name", TYPES)
def test_a_too_short_window_is_422_naming_the_problem(cli_model, type_name: str) -> None:
    trained = cli_model(type_name, "sample")
    loader = load_model(trained.model_dir)
    window = last_window(trained.csv, loader)[-3:]
    response = api_client(trained.model_dir).post("/predict", json={"window": window})
    assert response.status_code == 422 and response.is_json
    error = response.get_json()
    assert error["field"] == "window"
    assert f"has 3 rows; at least {loader.window_size} are needed" in error["error"], error


@pytest.mark.parametrize("type_name", TYPES)
def test_sampling_a_backtest_of_a_signal_model_is_exit_2(cli_model, type_name: str,
                                                         tmp_path: Path, capsys) -> None:
    trained = cli_model(type_name, "sample")
    code = backtest_cli.main(["--model-dir", str(trained.model_dir), "--csv_path",
                              str(trained.csv), "--out", str(tmp_path / "bt"), "--sample"])
    err = one_line_error(capsys.readouterr().err)
    assert code == 2 and "cannot sample" in err and type_name in err
    assert not (tmp_path / "bt").exists()


@pytest.fixture(scope="module")
def ppo_folder(tiny_ppo: TrainedModel) -> Path:
    """A tiny PPO model: its folder holds <name>_checkpoint.pt."""
    return tiny_ppo.folder


@pytest.mark.parametrize(("handle", "args", "message"), [
    ("ppo", ["--model", "xgboost"],
     "the checkpoint is of a 'ppo' model; resume it with --model ppo"),
    ("xgboost", ["--model", "transformer"],
     "the checkpoint is of a 'xgboost' model; resume it with --model xgboost"),
    ("transformer", ["--model", "xgboost"],
     "the checkpoint is of a 'transformer' model; resume it with --model transformer"),
    ("xgboost", ["--csv_path", "NQ"], "is not the data this checkpoint was trained on"),
    ("transformer weights", [], "is not a training checkpoint"),
    ("xgboost model file", [], "cannot read checkpoint"),
], ids=["ppo-as-xgboost", "xgboost-as-transformer", "transformer-as-xgboost", "other-data",
        "weights-only-file", "not-a-torch-file"])
def test_a_bad_resume_is_one_line_and_exit_2(cli_model, ppo_folder: Path, cli_base,
                                             tmp_path: Path, nq_path: Path, capsys,
                                             handle: str, args: list[str],
                                             message: str) -> None:
    folders = {"ppo": ppo_folder, "xgboost": cli_model("xgboost", "sample").model_dir,
               "transformer": cli_model("transformer", "sample").model_dir}
    target = {**folders, "transformer weights": folders["transformer"] / "sample_model.pt",
              "xgboost model file": folders["xgboost"] / "sample_model.json"}[handle]
    args = [str(nq_path) if arg == "NQ" else arg for arg in args]
    capsys.readouterr()  # what training logged is not the CLI's answer
    code = run_training.main([*cli_base, "--resume", str(target), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    one_line_error(err)
    assert_nothing_written(tmp_path)


# ------------------------------------------------------------------------ 8. resume


@dataclass(frozen=True)
class Step:
    """One run of a resume chain: how it was started, its run and the saved config."""

    how: str
    epochs: int
    run: dict[str, Any]
    config: dict[str, Any]


def resume_params(type_name: str, epochs: int, extra: dict[str, Any] | None = None) -> str:
    params = deep_merge(deep_merge(RESUME_PARAMS, RESUME_EXTRA[type_name]), extra or {})
    return json.dumps(deep_merge(params, {"train_params": {"epochs": epochs}}))


def fresh_run(workspace: Workspace, run_store: RunStore, csv: Path, type_name: str, name: str,
              epochs: int, extra: dict[str, Any] | None = None) -> Step:
    code = train_cli(workspace, "--csv_path", str(csv), "--model", type_name, "--mode",
                     "smoke", "--model_name", name, "--training_params",
                     resume_params(type_name, epochs, extra))
    assert code == 0
    folder = workspace.models / f"{get_model_type(type_name).prefix}_{name}"
    return Step("fresh", epochs, only_run(run_store, name, type_name), read_config(folder))


def resumed_run(workspace: Workspace, run_store: RunStore, csv: Path, type_name: str,
                name: str, how: str, handle: str | Path, epochs: int) -> Step:
    """Continue with a larger budget; the checkpoint brings its config, type and name."""
    code = train_cli(workspace, "--csv_path", str(csv), "--resume", str(handle),
                     "--training_params", json.dumps({"train_params": {"epochs": epochs}}))
    assert code == 0, f"--resume by {how} exited {code}"
    folder = workspace.models / f"{get_model_type(type_name).prefix}_{name}"
    return Step(how, epochs, only_run(run_store, name, type_name), read_config(folder))


@pytest.fixture(scope="module")
def resume_chain(workspace: Workspace, run_store: RunStore,
                 sample_path: Path) -> Callable[[str], list[Step]]:
    """``resume_chain(type)``: 2 epochs, then resumed by run id (to 4 epochs), by the
    model folder (to 6) and by the checkpoint file of the previous run (to 8)."""
    cache: dict[str, list[Step]] = {}

    def get(type_name: str) -> list[Step]:
        if type_name not in cache:
            steps = [fresh_run(workspace, run_store, sample_path, type_name, "resumed", 2)]
            prefix = get_model_type(type_name).prefix
            handles = [("run id", lambda: steps[-1].run["run_id"]),
                       ("model folder", lambda: workspace.models / f"{prefix}_resumed"),
                       ("checkpoint file", lambda: latest_checkpoint(
                           workspace.models / ".checkpoints" / steps[-1].run["run_id"]))]
            for (how, handle), epochs in zip(handles, (4, 6, 8), strict=True):
                steps.append(resumed_run(workspace, run_store, sample_path, type_name,
                                         "resumed", how, handle(), epochs))
            cache[type_name] = steps
        return cache[type_name]

    return get


@pytest.mark.parametrize("type_name", TYPES)
def test_resume_continues_the_run_past_its_epochs(resume_chain, run_store: RunStore,
                                                  type_name: str) -> None:
    steps = resume_chain(type_name)
    assert len({step.run["run_id"] for step in steps}) == len(steps)  # one run each
    for before, step in itertools.pairwise(steps):
        metrics, history = step.config["metrics"], step.config["validation_history"]
        assert step.run["status"] == "completed", step.how
        assert metrics["epochs"] == step.epochs, (step.how, metrics)
        assert [h["epoch"] for h in history] == list(range(1, step.epochs + 1)), step.how
        # The earlier epochs are the previous run's, carried over, not retrained.
        assert history[:before.epochs] == before.config["validation_history"], step.how
        # The new run records only its own epochs.
        series = run_store.metric_series(step.run["run_id"], "train/val_loss")
        assert [p["step"] for p in series] == list(range(before.epochs + 1, step.epochs + 1))
        assert step.run["summary"]["epochs"] == step.epochs


@pytest.mark.parametrize("type_name", TYPES)
def test_a_resumed_run_without_sampling_equals_an_uninterrupted_one(
        workspace: Workspace, run_store: RunStore, sample_path: Path, type_name: str) -> None:
    """With row/column subsampling and dropout off, 2 epochs + resume to 4 is bit for bit
    the 4-epoch run."""
    extra = NO_SAMPLING[type_name]
    straight = fresh_run(workspace, run_store, sample_path, type_name, "exact_full", 4, extra)
    fresh_run(workspace, run_store, sample_path, type_name, "exact_part", 2, extra)
    folder = workspace.models / f"{get_model_type(type_name).prefix}_exact_part"
    resumed = resumed_run(workspace, run_store, sample_path, type_name, "exact_part",
                          "model folder", folder, 4)
    assert resumed.config["validation_history"] == straight.config["validation_history"]


# With sampling on too: xgboost restarts its sampler at fixed rounds and a resume
# replays the rounds since the last restart (XGBoostTrainer.RESEED_EVERY).
@pytest.mark.parametrize("type_name", TYPES)
def test_a_resumed_run_equals_an_uninterrupted_one(resume_chain, workspace: Workspace,
                                                   run_store: RunStore, sample_path: Path,
                                                   type_name: str) -> None:
    """README: '--resume continues exactly where the checkpoint left off'."""
    straight = fresh_run(workspace, run_store, sample_path, type_name, "straight", 4)
    resumed = resume_chain(type_name)[1]  # 2 epochs, resumed by run id to 4
    assert resumed.epochs == 4
    assert resumed.config["validation_history"] == straight.config["validation_history"]


# ------------------------------------------------------------- 9. no type branching


def source_files() -> list[Path]:
    """Every .py file of the project outside tests/, the venv and the registry."""
    skipped = {Path("NetworkConfigs/__init__.py")}
    files = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in ("tests", ".venv") or relative in skipped or any(
                part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        files.append(path)
    return files


def type_branches(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, literal) of every type name, prefix or label in a condition: if/elif,
    conditional expressions, while, comprehension filters and match cases."""
    names = {alias.lower() for model_type in MODEL_TYPES.values()
             for alias in (model_type.name, model_type.prefix, model_type.label)}
    for node in ast.walk(tree):
        if isinstance(node, ast.If | ast.IfExp | ast.While):
            conditions: list[ast.AST] = [node.test]
        elif isinstance(node, ast.comprehension):
            conditions = list(node.ifs)
        elif isinstance(node, ast.match_case):
            conditions = [node.pattern, *([node.guard] if node.guard else [])]
        else:
            continue
        for condition in conditions:
            for leaf in ast.walk(condition):
                if (isinstance(leaf, ast.Constant) and isinstance(leaf.value, str)
                        and leaf.value.strip().lower() in names):
                    yield leaf.lineno, leaf.value


def test_the_scan_finds_a_type_branch() -> None:
    code = ("if kind == 'ppo':\n    pass\nelif kind in ('XGB', 'other'):\n    pass\n"
            "x = 1 if t == 'Transformer' else 2\nmatch t:\n    case 'xgboost':\n        pass\n")
    assert sorted(type_branches(ast.parse(code))) == [(1, "ppo"), (3, "XGB"),
                                                      (5, "Transformer"), (7, "xgboost")]
    assert not list(type_branches(ast.parse('"""if the type is "ppo"."""\nname = "ppo"\n')))


def test_nothing_outside_the_registry_branches_on_a_type_name() -> None:
    files = source_files()
    assert ROOT / "Api_Loader.py" in files and ROOT / "Utilities" / "run_training.py" in files
    found = [f"{path.relative_to(ROOT)}:{line}: {literal!r}" for path in files
             for line, literal in type_branches(ast.parse(path.read_text(), str(path)))]
    assert not found, "type-name branches outside NetworkConfigs/__init__.py:\n" + \
        "\n".join(found)
