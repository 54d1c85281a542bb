"""``--resume <model folder>`` continues a run bit for bit, for every registered type.

A run of N+M iterations/epochs straight through, against the same run stopped after N
(as Stop or Ctrl-C would) and resumed from its model folder for the rest: the saved
model, the folder's checkpoint (weights, optimiser, RNGs, env state) and the metrics are
identical. And the checkpoint in a folder holds the FINAL training state even when the
saved model (the validation-best one) differs from it.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from NetworkConfigs import MODEL_TYPES, get_model_type
from NetworkConfigs.base import Callback, deep_merge
from NetworkConfigs.XGBoostTrainer import RESEED_EVERY
from Utilities import run_training
from Utilities.data_utils import load_bars

ROOT = Path(__file__).resolve().parent.parent
ROWS = 800  # of sample.csv: enough for every type's split, small enough to be quick
# Per type: what is merged over the smoke preset, and N (where the first run stops).
CASES: dict[str, tuple[dict[str, Any], int]] = {
    # 4 iterations of 512 steps; validation every 2, so the stop at 2 is validated in
    # both runs (the stopped run validates its last weights as it ends).
    "ppo": ({"train_params": {"total_timesteps": 2048, "n_steps": 128, "eval_every": 2,
                              "checkpoint_every": 2}}, 2),
    # 30 rounds (patience off): the resume replays 12 rounds since the last restart point
    # and crosses the next one (RESEED_EVERY = 25), row and column sampling on.
    "xgboost": ({"train_params": {"patience": 100}}, 12),
    # 3 epochs with dropout: the resume must bring back torch's global generator too.
    "transformer": ({"train_params": {"patience": 100, "batch_size": 256}}, 1),
}
CHECKPOINT_ONLY_NAME = ("model_name",)  # the one checkpoint entry that names the model


class StopAfter(Callback):
    """Stops training after ``n`` iterations, as the Stop button or Ctrl-C does."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_iteration_end(self, metrics: dict[str, Any]) -> bool:
        return metrics["iteration"] < self.n


def test_every_type_is_covered() -> None:
    assert set(CASES) == set(MODEL_TYPES)
    assert 0 < CASES["xgboost"][1] < RESEED_EVERY < 30


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "bars.csv"
    with (ROOT / "sample.csv").open() as source:
        path.write_text("".join(itertools.islice(source, ROWS + 1)))
    return path


def cli(csv: Path, tmp_path: Path, *args: str) -> int:
    return run_training.main(["--csv_path", str(csv), "--models-dir", str(tmp_path / "M"),
                              "--database-url", f"sqlite:///{tmp_path}/runs.db",
                              "--no-progress", *args])


def folder(tmp_path: Path, type_name: str, name: str) -> Path:
    return tmp_path / "M" / f"{get_model_type(type_name).prefix}_{name}"


def checkpoint(model_dir: Path) -> dict[str, Any]:
    state = torch.load(next(model_dir.glob("*_checkpoint.pt")), weights_only=True)
    return {k: v for k, v in state.items() if k not in CHECKPOINT_ONLY_NAME}


def model_file(model_dir: Path) -> Any:
    path = next(p for p in model_dir.iterdir() if "_model." in p.name)
    if path.suffix == ".json":  # xgboost: its own JSON, compared byte for byte
        return path.read_bytes()
    return torch.load(path, weights_only=True)


def metrics(model_dir: Path) -> dict[str, Any]:
    config = yaml.safe_load(next(model_dir.glob("*_config.yaml")).read_text())
    return {"metrics": config["metrics"],
            "history": config.get("validation_history") if "epochs" in config["metrics"]
            else None}  # PPO's validation history is per run, the others' per model


def assert_identical(a: Any, b: Any, where: str = "") -> None:
    """Equal down to every bit: tensors by torch.equal (and dtype), floats exactly."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("type_name", sorted(CASES))
def test_stop_then_resume_from_the_folder_equals_the_uninterrupted_run(
        type_name: str, csv: Path, tmp_path: Path, monkeypatch) -> None:
    extra, stop_at = CASES[type_name]
    params = ["--model", type_name, "--mode", "smoke", "--training_params", json.dumps(extra)]
    assert cli(csv, tmp_path, *params, "--model_name", "whole") == 0

    make_callbacks = run_training.make_callbacks
    with monkeypatch.context() as patch:  # the first part is stopped after N
        patch.setattr(run_training, "make_callbacks",
                      lambda *a, **k: [*make_callbacks(*a, **k), StopAfter(stop_at)])
        assert cli(csv, tmp_path, *params, "--model_name", "part") == 0
    part = folder(tmp_path, type_name, "part")
    assert checkpoint(part)["iteration"] == stop_at
    assert cli(csv, tmp_path, "--resume", str(part)) == 0  # config, type and name from the folder

    whole = folder(tmp_path, type_name, "whole")
    assert checkpoint(whole)["iteration"] > stop_at
    assert_identical(checkpoint(whole), checkpoint(part), "checkpoint")
    assert_identical(model_file(whole), model_file(part), "model")
    assert_identical(metrics(whole), metrics(part), "metrics")


# ----------------------------------------- the folder's checkpoint is the final state


class FakeBest(Callback):
    """At the end, records the final weights and makes the 'best' ones all zeros, so
    the saved model and the final training state must differ."""

    def __init__(self, weights_of: str, best_attr: str) -> None:
        self.weights_of, self.best_attr = weights_of, best_attr
        self.final: dict[str, torch.Tensor] = {}

    def on_training_end(self, summary: dict[str, Any]) -> None:
        network = getattr(self.trainer, self.weights_of)
        self.final = copy.deepcopy(network.state_dict())
        setattr(self.trainer, self.best_attr,
                {k: torch.zeros_like(v) for k, v in network.state_dict().items()})
        if hasattr(self.trainer, "best_score"):
            self.trainer.best_score = math.inf  # no later validation replaces it


@pytest.mark.parametrize(("type_name", "weights_of", "best_attr"), [
    ("ppo", "agent", "best_state"), ("transformer", "net", "best")])
def test_the_folder_checkpoint_holds_the_final_weights_not_the_best(
        type_name: str, weights_of: str, best_attr: str, csv: Path, tmp_path: Path) -> None:
    trainer_class = get_model_type(type_name).trainer_class()
    fake = FakeBest(weights_of, best_attr)
    config = deep_merge(trainer_class.smoke_config, CASES[type_name][0])
    trainer = trainer_class(config, [fake])
    model_dir = trainer.fit(load_bars(csv), model_name="x", models_dir=tmp_path)
    saved = model_file(model_dir)
    assert all(not v.any() for v in saved.values())  # the "best": zeros
    assert_identical(checkpoint(model_dir)["model"], fake.final, "checkpoint model")


def test_an_xgboost_resume_that_cannot_replay_goes_on_from_the_saved_trees(
        csv: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """A replay that does not reproduce the checkpoint (here: the sampling changed on
    resume) keeps the saved trees and says the continuation is not bit-exact."""
    params = ["--model", "xgboost", "--mode", "smoke"]
    make_callbacks = run_training.make_callbacks
    with monkeypatch.context() as patch:
        patch.setattr(run_training, "make_callbacks",
                      lambda *a, **k: [*make_callbacks(*a, **k), StopAfter(5)])
        assert cli(csv, tmp_path, *params, "--model_name", "part") == 0
    part = folder(tmp_path, "xgboost", "part")
    saved = checkpoint(part)["model"]
    assert cli(csv, tmp_path, "--resume", str(part), "--training_params",
               json.dumps({"model_params": {"subsample": 0.5}})) == 0
    assert "not bit-exactly" in capsys.readouterr().err  # the CLI logs to stderr
    after = checkpoint(part)
    assert after["iteration"] > 5
    first_trees = json.loads(bytes(saved.numpy()))["learner"]["gradient_booster"]["model"]
    later = json.loads(bytes(after["model"].numpy()))["learner"]["gradient_booster"]["model"]
    assert later["trees"][:len(first_trees["trees"])] == first_trees["trees"]
