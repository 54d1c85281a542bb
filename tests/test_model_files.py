"""What is read from a model folder: no code (planted pickles never run, whichever way
the model is reached), one folder rule for links, paths in messages relative to the
library, the scaler migration, staging folders of killed writers, size bounds."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import Api_Loader
from NetworkConfigs import get_model_type, load_model
from NetworkConfigs.artifacts import (
    LEGACY_STAGING_AGE_S,
    ArtifactError,
    ModelNotFound,
    clean_staging,
    delete_model,
    list_models,
    model_folder,
)
from NetworkConfigs.config_sections import LIMITS
from NetworkConfigs.scaler_io import scaler_from_json
from tests.helpers.fake_model_type import FrequencyTrainer
from Utilities import run_training
from Utilities.model_backtester import backtest_model

ROOT = Path(__file__).resolve().parent.parent
MIGRATE = ROOT / "tools" / "migrate_scaler.py"
MIGRATION = "python tools/migrate_scaler.py Models/XGB_smoke"


class Planted:
    """Unpickling this creates ``marker``: the proof that a file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def xgb_model(smoke_xgb: Path) -> Path:
    """A real XGBoost smoke model, trained once per session; tests copy it."""
    return smoke_xgb


@pytest.fixture(scope="module")
def trf_model(tiny_transformer: Path) -> Path:
    """A real Transformer smoke model (a torch weights file), trained once per session."""
    return tiny_transformer


def add(model: Path, models_dir: Path) -> Path:
    return Path(shutil.copytree(model, models_dir / model.name))


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------- no code from model files


@pytest.fixture()
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "CODE_RAN"
    yield path
    assert not path.exists(), "a planted pickle ran"


@pytest.fixture()
def planted(xgb_model: Path, models_dir: Path, marker: Path) -> Path:
    """An old-style XGBoost folder whose scaler pickle runs code, with a checkpoint and a
    stray .pkl that do too."""
    folder = add(xgb_model, models_dir)
    (folder / "smoke_scaler.json").unlink()
    (folder / "smoke_scaler.pkl").write_bytes(pickle.dumps(Planted(marker)))
    torch.save({"model": Planted(marker), "iteration": 1}, folder / "smoke_checkpoint.pt")
    (folder / "extra.pkl").write_bytes(pickle.dumps(Planted(marker)))
    return folder


def test_the_planted_pickle_is_live(tmp_path: Path) -> None:
    """What the other tests plant really runs code when unpickled (so they prove
    something)."""
    other = tmp_path / "ran"
    pickle.loads(pickle.dumps(Planted(other))).close()
    assert other.exists()


def test_loading_refuses_the_pickled_scaler_and_names_the_migration(planted: Path) -> None:
    with pytest.raises(ArtifactError) as caught:
        load_model(planted)
    message = str(caught.value)
    assert "pickled scaler (smoke_scaler.pkl)" in message and MIGRATION in message
    assert str(planted.parent) not in message


def test_listing_and_the_library_pages_read_no_pickle(planted: Path, models_dir: Path,
                                                      client) -> None:
    (row,) = list_models(models_dir)
    # Listed with the migration as its error, found without reading the pickle.
    assert row["dir_name"] == "XGB_smoke" and MIGRATION in row["error"]
    assert client.get("/models").status_code == 200
    assert client.get("/models/XGB_smoke").status_code == 200
    assert client.get("/api/models").status_code == 200


# A body that passes the request checks, so the model is what the reply is about (the
# body is checked before any model is read).
GOOD_BODY = {"window": [[1.0, 2.0, 0.5, 1.5]] * 8}


def test_predict_refuses_the_model_and_never_runs_it(planted: Path, client,
                                                    sample_bars: pd.DataFrame) -> None:
    # A bad body is refused before any model is read; a good one meets the refusal.
    response = client.post("/api/models/XGB_smoke/predict", data="not even JSON",
                           content_type="application/json")
    assert response.status_code == 400
    window = sample_bars.iloc[:64].to_dict("records")
    response = client.post("/api/models/XGB_smoke/predict", json={"window": window})
    assert response.status_code == 503 and MIGRATION in response.get_json()["error"]


def test_the_standalone_server_refuses_to_start(planted: Path, capsys) -> None:
    with pytest.raises(ArtifactError, match="migrate_scaler"):
        Api_Loader.create_api_app(planted)
    assert Api_Loader.main(["--model-dir", str(planted), "--port", "0"]) == 2
    assert "migrate_scaler" in one_line_error(capsys.readouterr().err)


def test_backtests_refuse(planted: Path, sample_path: Path, client) -> None:
    with pytest.raises(ArtifactError, match="migrate_scaler"):
        backtest_model(planted, sample_path)
    response = client.post("/api/backtest", json={"model": "XGB_smoke", "csv": "sample.csv"})
    assert response.status_code in (404, 422) and "migrate_scaler" in response.get_json()["error"]


def test_a_resume_reads_no_code_from_the_checkpoint(planted: Path, sample_path: Path,
                                                    tmp_path: Path, capsys) -> None:
    code = run_training.main(["--csv_path", str(sample_path), "--resume", str(planted),
                              "--models-dir", str(tmp_path / "other"), "--no-progress",
                              "--database-url", f"sqlite:///{tmp_path}/runs.db"])
    assert code == 2
    one_line_error(capsys.readouterr().err)


def test_a_weights_file_that_holds_code_is_refused(trf_model: Path, models_dir: Path,
                                                   marker: Path, client) -> None:
    folder = add(trf_model, models_dir)
    torch.save({"project.weight": Planted(marker)}, folder / "smoke_model.pt")
    with pytest.raises(ArtifactError) as caught:
        load_model(folder)
    message = str(caught.value)
    assert message == ("Models/TRF_smoke/smoke_model.pt: not a plain model file: it holds "
                       "objects other than tensors, which are refused (loading them could "
                       "run code)")
    response = client.post("/api/models/TRF_smoke/predict", json=GOOD_BODY)
    assert response.status_code == 503 and response.get_json()["error"] == message


def test_nothing_in_a_trained_folder_is_a_pickle(xgb_model: Path, trf_model: Path) -> None:
    """Every file loads with pickle-free readers: JSON, YAML, torch weights_only."""
    for folder in (xgb_model, trf_model):
        for path in folder.iterdir():
            if path.suffix == ".pt":
                torch.load(path, weights_only=True)
            elif path.suffix == ".json":
                assert path.read_text().lstrip().startswith("{")
            else:
                assert path.suffix == ".yaml", path


# ------------------------------------------------------------------- the migration


@pytest.fixture()
def legacy(xgb_model: Path, models_dir: Path) -> Path:
    """The XGBoost model as an earlier version saved it: a joblib scaler."""
    folder = add(xgb_model, models_dir)
    scaler = scaler_from_json((folder / "smoke_scaler.json").read_text())
    (folder / "smoke_scaler.json").unlink()
    joblib.dump(scaler, folder / "smoke_scaler.pkl")
    config_path = folder / "smoke_config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["artifact_paths"] = [name.replace("scaler.json", "scaler.pkl")
                                for name in config["artifact_paths"]]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def migrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MIGRATE), *args], capture_output=True,
                          text=True, timeout=120, check=False, cwd=ROOT)


def test_the_migration_writes_a_json_scaler_that_transforms_bit_for_bit(
        legacy: Path, xgb_model: Path, sample_bars: pd.DataFrame) -> None:
    original = load_model(xgb_model)
    with pytest.raises(ArtifactError, match="migrate_scaler"):
        load_model(legacy)

    result = migrate(str(legacy))
    assert result.returncode == 0, result.stderr
    assert "wrote smoke_scaler.json, removed smoke_scaler.pkl" in result.stdout
    assert sorted(p.name for p in legacy.iterdir()) == sorted(
        p.name for p in xgb_model.iterdir())
    config = yaml.safe_load((legacy / "smoke_config.yaml").read_text())
    assert "smoke_scaler.json" in config["artifact_paths"]
    assert not any(name.endswith(".pkl") for name in config["artifact_paths"])

    migrated = load_model(legacy)
    features = sample_bars[list(original.spec.features)].diff().dropna().to_numpy()
    assert np.array_equal(migrated.scaler.transform(features),
                          original.scaler.transform(features))
    window = sample_bars[list(original.spec.features)].iloc[-original.window_size:]
    assert migrated.predict(window).to_dict() == original.predict(window).to_dict()
    assert "nothing to do" in migrate(str(legacy)).stdout  # a second run changes nothing


def test_the_migration_refuses_a_pickle_that_is_not_a_scaler(legacy: Path) -> None:
    joblib.dump({"not": "a scaler"}, legacy / "smoke_scaler.pkl")
    result = migrate(str(legacy))
    assert result.returncode == 2
    assert "cannot store a dict scaler" in one_line_error(result.stderr)
    assert not (legacy / "smoke_scaler.json").exists()
    assert (legacy / "smoke_scaler.pkl").exists()


def test_the_migration_of_a_folder_without_a_scaler_is_one_line(tmp_path: Path) -> None:
    result = migrate(str(tmp_path / "nope"))
    assert result.returncode == 2 and "model folder not found" in one_line_error(result.stderr)


# ------------------------------------------------------------------------- symlinks


@pytest.fixture()
def outside(xgb_model: Path, tmp_path: Path) -> Path:
    """A model folder beside (not inside) the library."""
    return Path(shutil.copytree(xgb_model, tmp_path / "elsewhere" / xgb_model.name))


def test_a_linked_model_folder_is_not_in_the_library_anywhere(outside: Path, models_dir: Path,
                                                               client) -> None:
    (models_dir / "XGB_link").symlink_to(outside, target_is_directory=True)
    assert list_models(models_dir) == []
    with pytest.raises(ModelNotFound, match="outside its folder"):
        model_folder(models_dir, "XGB_link")
    with pytest.raises(ModelNotFound, match="resolves outside"):
        load_model(models_dir / "XGB_link")
    assert client.get("/models/XGB_link").status_code == 404
    assert client.post("/api/models/XGB_link/predict", json=GOOD_BODY).status_code == 404
    reply = client.post("/api/backtest", json={"model": "XGB_link", "csv": "sample.csv"})
    assert reply.status_code == 404 and reply.get_json()["field"] == "model"
    with pytest.raises(ModelNotFound):
        delete_model(models_dir, "XGB_link")
    assert (outside / "smoke_config.yaml").is_file()


@pytest.mark.parametrize("linked", ["smoke_model.json", "smoke_scaler.json",
                                    "smoke_config.yaml"])
def test_a_linked_file_in_a_real_folder_is_refused_everywhere(
        xgb_model: Path, outside: Path, models_dir: Path, sample_path: Path, client,
        linked: str) -> None:
    folder = add(xgb_model, models_dir)
    (folder / linked).unlink()
    (folder / linked).symlink_to(outside / linked)
    expected = f"Models/XGB_smoke/{linked} resolves outside its model folder"
    with pytest.raises(ArtifactError, match=expected):
        load_model(folder)
    with pytest.raises(ArtifactError, match=expected):
        backtest_model(folder, sample_path)
    response = client.post("/api/models/XGB_smoke/predict", json=GOOD_BODY)
    if linked.endswith("config.yaml"):  # no readable config: not a servable model
        (row,) = list_models(models_dir)
        assert expected in row["error"]
        assert response.status_code == 404
    else:
        assert response.status_code == 503 and expected in response.get_json()["error"]
    reply = client.post("/api/backtest", json={"model": "XGB_smoke", "csv": "sample.csv"})
    assert reply.status_code in (404, 422) and expected in reply.get_json()["error"]


# --------------------------------------------------------------- paths in messages


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda f: (f / "smoke_model.json").unlink(),
     "Models/XGB_smoke: model file smoke_model.json is missing"),
    (lambda f: (f / "smoke_model.json").write_text("{junk"),
     "Models/XGB_smoke/smoke_model.json: not a readable xgboost model"),
    (lambda f: (f / "smoke_scaler.json").write_text("[]"),
     "Models/XGB_smoke/smoke_scaler.json: not a readable scaler file"),
    (lambda f: (f / "smoke_config.yaml").write_text("Type: xgboost\nmodel_name: smoke\n"),
     "Models/XGB_smoke: the config is missing key(s)"),
], ids=["missing-model", "damaged-model", "damaged-scaler", "config-keys"])
def test_messages_name_paths_from_the_library_not_the_disk(
        xgb_model: Path, models_dir: Path, tmp_path: Path, client, capsys, damage,
        expected: str) -> None:
    folder = add(xgb_model, models_dir)
    damage(folder)
    with pytest.raises(ArtifactError) as caught:
        load_model(folder)
    assert str(caught.value).startswith(expected), caught.value
    reply = client.post("/api/models/XGB_smoke/predict", json=GOOD_BODY).get_json()["error"]
    assert Api_Loader.main(["--model-dir", str(folder), "--port", "0"]) == 2
    err = one_line_error(capsys.readouterr().err)
    for text in (str(caught.value), reply, err):
        assert expected in text and str(tmp_path) not in text, text


def test_a_torch_refusal_carries_no_path_and_no_advice_to_unpickle(
        trf_model: Path, models_dir: Path, tmp_path: Path, marker: Path) -> None:
    folder = add(trf_model, models_dir)
    torch.save({"x": Planted(marker)}, folder / "smoke_model.pt")
    with pytest.raises(ArtifactError) as caught:
        load_model(folder)
    message = str(caught.value)
    assert "weights_only" not in message and str(tmp_path) not in message
    assert message.startswith("Models/TRF_smoke/smoke_model.pt: ")


# ------------------------------------------------------------ staging of killed writers

WRITER = """
import sys
from pathlib import Path
from NetworkConfigs.artifacts import write_model
with write_model(Path(sys.argv[1]), "FREQ", "frequency", sys.argv[2]) as w:
    w.path("model.json").write_text("{}")
    print(w.staging.name, flush=True)
    sys.stdin.read()  # holds the write open until the parent closes stdin (or kills it)
"""


def start_writer(models_dir: Path, name: str) -> tuple[subprocess.Popen, str]:
    """A real model write in another process, stopped inside its staging folder."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(models_dir), name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    staging = proc.stdout.readline().strip()
    assert staging.startswith(".tmp-"), staging
    return proc, staging


def kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=60)
    proc.stdin.close()
    proc.stdout.close()


def test_staging_of_killed_writers_is_removed_live_ones_are_kept(models_dir: Path) -> None:
    live, live_staging = start_writer(models_dir, "live")
    killed, killed_staging = start_writer(models_dir, "killed")
    kill(killed)  # SIGKILL: no finally, no clean-up; the staging folder stays behind
    assert (models_dir / killed_staging / "killed_model.json").is_file()

    elsewhere = models_dir / ".tmp-otherhost.4242.abcdef12-FREQ_x"  # another machine's
    old_style = models_dir / ".tmp-FREQ_old-0123abcd"  # an earlier version's, stale
    recent_old_style = models_dir / ".tmp-FREQ_new-4567abcd"
    for folder in (elsewhere, old_style, recent_old_style):
        folder.mkdir()
    stale = time.time() - LEGACY_STAGING_AGE_S - 60
    os.utime(old_style, (stale, stale))

    assert sorted(clean_staging(models_dir)) == sorted([killed_staging, old_style.name])
    assert (models_dir / live_staging).is_dir()
    assert elsewhere.is_dir() and recent_old_style.is_dir()

    live.stdin.close()  # the live writer finishes its model normally
    assert live.wait(timeout=60) == 0
    live.stdout.close()
    assert (models_dir / "FREQ_live" / "live_model.json").is_file()
    assert not (models_dir / live_staging).exists()


def test_a_training_start_clears_a_killed_writers_staging(models_dir: Path,
                                                          bars: pd.DataFrame) -> None:
    killed, staging = start_writer(models_dir, "x")
    kill(killed)
    assert (models_dir / staging).is_dir()
    FrequencyTrainer({"lookback": 5}).fit(bars, model_name="y", models_dir=models_dir)
    assert sorted(p.name for p in models_dir.iterdir()) == ["FREQ_y"]


def test_cleaning_a_library_that_does_not_exist_is_nothing(tmp_path: Path) -> None:
    assert clean_staging(tmp_path / "none") == []


# ------------------------------------------------------------------------ size bounds

SIZES = [  # (type, section, key): every size-like setting of every type
    *(("ppo", "model_params", key) for key in ("hidden_dim", "num_layers", "lookback_window")),
    *(("ppo", "train_params", key) for key in ("n_envs", "n_steps", "batch_size", "ppo_epochs",
                                                "epochs", "total_timesteps")),
    *(("xgboost", "model_params", key) for key in ("max_depth", "n_jobs", "lookback_window")),
    *(("xgboost", "train_params", key) for key in ("epochs", "patience")),
    *(("transformer", "model_params", key) for key in ("d_model", "n_heads", "n_layers",
                                                       "dim_feedforward", "lookback_window")),
    *(("transformer", "train_params", key) for key in ("batch_size", "epochs")),
]


@pytest.mark.parametrize(("type_name", "section", "key"), SIZES,
                         ids=[f"{t}-{k}" for t, _, k in SIZES])
def test_every_size_has_an_upper_bound_named_in_the_error(type_name: str, section: str,
                                                          key: str) -> None:
    trainer_class = get_model_type(type_name).trainer_class()
    bound = LIMITS[key]
    with pytest.raises(ValueError, match=rf"^{key} must be in \[\d+, {bound}\]; got "
                                         rf"{bound + 1}$"):
        trainer_class({section: {key: bound + 1}})


def test_episode_length_is_bounded() -> None:
    trainer_class = get_model_type("ppo").trainer_class()
    with pytest.raises(ValueError, match=rf"at most {LIMITS['episode_length']}"):
        trainer_class({"env_params": {"episode_length": LIMITS["episode_length"] + 1}})


def test_a_rollout_too_large_for_memory_is_refused_with_the_data(bars: pd.DataFrame) -> None:
    trainer = get_model_type("ppo").trainer_class()({
        "train_params": {"n_envs": 512, "n_steps": 16_384, "batch_size": 64},
        "model_params": {"lookback_window": 100}})
    with pytest.raises(ValueError, match=r"needs \d+\.\d GiB .* lower n_envs, n_steps or "
                                         r"lookback_window"):
        trainer.check_data(bars)


@pytest.mark.parametrize(("type_name", "key", "value"), [
    ("transformer", "d_model", 10**8), ("transformer", "n_layers", 10**6)])
def test_a_planted_config_cannot_make_the_loader_allocate(trf_model: Path, models_dir: Path,
                                                          type_name: str, key: str,
                                                          value: int) -> None:
    folder = add(trf_model, models_dir)
    path = folder / "smoke_config.yaml"
    config = yaml.safe_load(path.read_text())
    config["model_params"][key] = value
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ArtifactError, match=rf"{key} must be in \[\d+, {LIMITS[key]}\]"):
        load_model(folder)


def test_a_planted_lookback_is_refused_at_load(xgb_model: Path, models_dir: Path) -> None:
    folder = add(xgb_model, models_dir)
    path = folder / "smoke_config.yaml"
    config = yaml.safe_load(path.read_text())
    config["lookback"] = 10**9
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ArtifactError, match=r"lookback must be in \[1, 2000\]"):
        load_model(folder)
