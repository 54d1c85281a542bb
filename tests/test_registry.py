"""The model-type registry and the artifact contract, through a test-only type."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import Api_Loader
from NetworkConfigs import (
    UnknownModelType,
    get_model_type,
    load_model,
    register_model_type,
    type_label,
    unregister_model_type,
)
from NetworkConfigs.artifacts import (
    ArtifactError,
    ModelExists,
    ModelNotFound,
    delete_model,
    list_models,
    model_dir_for,
    validate_name,
    write_model,
)
from NetworkConfigs.base import Callback
from tests.helpers.fake_model_type import FREQUENCY_TYPE, FrequencyTrainer
from Utilities.data_utils import DataError, build_feature_spec, prepare_data


@pytest.fixture()
def frequency_type():
    register_model_type(FREQUENCY_TYPE)
    yield FREQUENCY_TYPE
    unregister_model_type(FREQUENCY_TYPE.name)


@pytest.fixture()
def trained(frequency_type, bars: pd.DataFrame, models_dir: Path) -> Path:
    trainer = frequency_type.trainer_class()({"lookback": 10})
    return trainer.fit(bars, model_name="demo", models_dir=models_dir, data_file="sample.csv")


def test_lookup_by_name_prefix_or_label_ignoring_case(frequency_type) -> None:
    for key in ("frequency", "FREQ", "frequency (TEST only)"):
        assert get_model_type(key) is frequency_type
    assert type_label("freq") == "Frequency (test only)"


def test_unknown_type_lists_the_valid_ones(frequency_type) -> None:
    with pytest.raises(UnknownModelType,
                       match=r"unknown model type 'nope'; valid types: .*frequency"):
        get_model_type("nope")


def test_a_clashing_registration_is_refused(frequency_type) -> None:
    with pytest.raises(ValueError, match="clashes"):
        register_model_type(FREQUENCY_TYPE)


def test_train_writes_the_artifact_layout(trained: Path) -> None:
    assert trained.name == "FREQ_demo"
    assert sorted(p.name for p in trained.iterdir()) == [
        "demo_config.yaml", "demo_model.json", "demo_scaler.json"]
    config = yaml.safe_load((trained / "demo_config.yaml").read_text())
    assert config["Type"] == "frequency" and config["model_name"] == "demo"
    assert config["lookback"] == 10 and config["data_file"] == "sample.csv"
    assert set(config["split"]) == {"train", "validation", "test"}
    assert config["artifact_paths"] == ["demo_model.json", "demo_scaler.json",
                                        "demo_config.yaml"]
    assert config["created_at"].endswith("Z")


def test_load_through_registry_and_api_loader_then_predict(trained: Path,
                                                            bars: pd.DataFrame) -> None:
    loader = load_model(trained)
    assert type(loader) is type(Api_Loader.load_model(trained))
    window = bars[list(loader.spec.features)].iloc[-loader.window_size:]
    envelope = loader.predict(window.to_dict("records")).to_dict()
    assert set(envelope) == {"prediction", "action_name", "confidence", "probabilities"}
    assert envelope["action_name"] in ("Hold", "Buy", "Sell")
    assert sum(envelope["probabilities"].values()) == pytest.approx(1.0)
    assert envelope["confidence"] == max(envelope["probabilities"].values())
    assert loader.info()["window_size"] == 11


def test_loader_serves_with_the_training_transform(trained: Path, bars: pd.DataFrame) -> None:
    loader = load_model(trained)
    data = prepare_data(bars, build_feature_spec(bars), lookback=10)
    t = 250
    window = bars[list(loader.spec.features)].iloc[t - 9: t + 2]
    np.testing.assert_allclose(loader.model_input(window), data.scaled[t - 9: t + 1], rtol=1e-6)


def test_loader_rejects_a_bad_window(trained: Path) -> None:
    with pytest.raises(DataError, match="missing feature"):
        load_model(trained).predict([{"Close": 1.0}])


def test_listing_shows_type_time_and_metrics(trained: Path, models_dir: Path) -> None:
    (models_dir / "junk").mkdir()
    rows = {r["dir_name"]: r for r in list_models(models_dir)}
    assert rows["FREQ_demo"]["type"] == "frequency"
    assert rows["FREQ_demo"]["metrics"]["train_up_share"] > 0
    assert rows["FREQ_demo"]["created_at"].endswith("Z")
    assert "expected one *_config.yaml" in rows["junk"]["error"]


def test_existing_name_is_refused_before_training(trained: Path, bars, models_dir) -> None:
    with pytest.raises(ModelExists, match="FREQ_demo"):
        FrequencyTrainer({"lookback": 10}).fit(bars, model_name="demo", models_dir=models_dir)


def test_overwrite_replaces_the_old_model(trained: Path, bars, models_dir: Path) -> None:
    FrequencyTrainer({"lookback": 12}).fit(bars, model_name="demo", models_dir=models_dir,
                                          overwrite=True)
    assert load_model(trained).lookback == 12
    assert [p.name for p in models_dir.iterdir()] == ["FREQ_demo"]


def test_a_crash_while_writing_leaves_nothing(models_dir: Path) -> None:
    with pytest.raises(RuntimeError), write_model(models_dir, "FREQ", "frequency", "x") as w:
        w.path("model.json").write_text("{}")
        raise RuntimeError("disk full")
    assert list(models_dir.iterdir()) == []


def test_callback_returning_false_stops_training(frequency_type, bars, models_dir) -> None:
    class StopAfterOne(Callback):
        calls = 0

        def on_iteration_end(self, metrics: dict) -> bool:
            self.calls += 1
            return False

    stopper = StopAfterOne()
    FrequencyTrainer({"lookback": 10, "epochs": 5}, [stopper]).fit(
        bars, model_name="stopped", models_dir=models_dir)
    assert stopper.calls == 1


@pytest.mark.parametrize("name", ["", ".hidden", "../escape", "a/b", "a b", "x" * 101, "é"])
def test_unsafe_names_are_refused(name: str, models_dir: Path) -> None:
    with pytest.raises(ArtifactError, match="invalid model name"):
        model_dir_for(models_dir, "FREQ", name)


def test_valid_names_pass() -> None:
    assert validate_name("My_model-2.1") == "My_model-2.1"


def test_inconsistent_scaler_is_reported(trained: Path) -> None:
    config_path = trained / "demo_config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["feature_spec"]["features"] = config["feature_spec"]["features"][:3]
    config["feature_spec"]["price_columns"] = config["feature_spec"]["features"]
    config_path.write_text(yaml.safe_dump(config))
    with pytest.raises(ArtifactError, match="scaler expects 9 features but the config lists 3"):
        load_model(trained)


@pytest.mark.parametrize("content", [
    b"", b"not json", b"\x80\x04\x95garbage", b"[1, 2]", b'{"format": "other"}',
    b'{"format": "galaxy-models scaler", "version": 1, "class": "os.system"}',
    b'{"format": "galaxy-models scaler", "version": 1, "class": "StandardScaler", '
    b'"params": {}, "fitted": {"n_features_in_": 1, "mean_": {"dtype": "float64", '
    b'"values": [NaN]}}}',
    b'{"format": "galaxy-models scaler", "version": 1, "class": "StandardScaler", '
    b'"params": {}, "fitted": {"n_features_in_": 1, "mean_": {"dtype": "float64", '
    b'"values": [1e999]}}}',
    b'{"format": "galaxy-models scaler", "version": 1, "class": "StandardScaler", '
    b'"params": {"copy": {"__reduce__": 1}}, "fitted": {"n_features_in_": 1}}',
    b'{"format": "galaxy-models scaler", "version": 1, "class": "StandardScaler", '
    b'"params": {}, "fitted": {"n_features_in_": 1, "transform": 1}}',
])
def test_a_damaged_scaler_file_is_named(trained: Path, content: bytes) -> None:
    (trained / "demo_scaler.json").write_bytes(content)
    with pytest.raises(ArtifactError, match=r"^Models/FREQ_demo/demo_scaler\.json: not a "
                                            r"readable scaler file \(.+\)$"):
        load_model(trained)


@pytest.mark.parametrize(("removed", "named"), [
    (["feature_spec"], r"\['feature_spec'\]"),
    (["feature_spec", "lookback"], r"\['feature_spec', 'lookback'\]"),
])
def test_config_without_spec_or_lookback_names_folder_and_keys(trained: Path, removed: list,
                                                                named: str) -> None:
    config_path = trained / "demo_config.yaml"
    config = yaml.safe_load(config_path.read_text())
    for key in removed:
        del config[key]
    config_path.write_text(yaml.safe_dump(config))
    with pytest.raises(ArtifactError, match=rf"FREQ_demo: the config is missing key\(s\) {named}"):
        load_model(trained)


def test_malformed_feature_spec_is_an_artifact_error(trained: Path) -> None:
    config_path = trained / "demo_config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["feature_spec"]["features"] = "Close"
    config_path.write_text(yaml.safe_dump(config))
    with pytest.raises(ArtifactError, match=r"FREQ_demo: invalid feature_spec .* must be a list"):
        load_model(trained)


def test_missing_pieces_are_named(trained: Path, models_dir: Path) -> None:
    with pytest.raises(ModelNotFound, match="model folder not found"):
        load_model(models_dir / "FREQ_nothing")
    (trained / "demo_scaler.json").unlink()
    with pytest.raises(ModelNotFound, match=r"demo_scaler\.json is missing"):
        load_model(trained)


def test_unregistered_type_in_a_config(trained: Path) -> None:
    config_path = trained / "demo_config.yaml"
    config_path.write_text(config_path.read_text().replace("Type: frequency", "Type: lstm"))
    with pytest.raises(UnknownModelType, match="'lstm'"):
        load_model(trained)


def test_delete_model(trained: Path, models_dir: Path) -> None:
    delete_model(models_dir, "FREQ_demo")
    assert not trained.exists()
    with pytest.raises(ModelNotFound):
        delete_model(models_dir, "FREQ_demo")
    with pytest.raises(ArtifactError, match="invalid model folder"):
        delete_model(models_dir, "..")


def test_model_file_is_plain_json_not_a_pickle(trained: Path) -> None:
    assert len(json.loads((trained / "demo_model.json").read_text())["frequencies"]) == 3


@pytest.mark.parametrize(("content", "problem"), [
    (b"\xff\xfe\x00binary", "not a readable YAML file"),
    (b"Type: x\nmodel_name: x\ncreated_at: 2020-01-01\nmetrics: [1, 2]\n", None),
    (b"- just\n- a list\n", "expected a mapping"),
])
def test_odd_config_files_are_listed_not_fatal(models_dir: Path, content: bytes,
                                                problem: str | None) -> None:
    folder = models_dir / "T_x"
    folder.mkdir()
    (folder / "x_config.yaml").write_bytes(content)
    (row,) = list_models(models_dir)
    if problem:
        assert problem in row["error"]
    else:
        assert row["error"] is None and row["created_at"] == "2020-01-01"
        assert row["metrics"] == {}
