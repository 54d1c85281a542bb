"""The supervised types' shared rules: targets, the output → action mapping, windowed
samples without look-ahead, and the epoch loop (early stopping, best model, stop)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from NetworkConfigs.base import ACTION_NAMES, Callback
from NetworkConfigs.signals import (
    DIRECTIONS,
    Samples,
    actions_from,
    direction_of,
    majority_accuracy,
    next_returns,
    prediction_from,
    return_probabilities,
    samples,
)
from NetworkConfigs.supervised import SupervisedTrainer
from Utilities.data_utils import build_feature_spec, prepare_data

ROOT = Path(__file__).resolve().parent.parent


def test_directions_are_numbered_like_the_actions_they_become() -> None:
    assert [ACTION_NAMES[i] for i in range(3)] == ["Hold", "Buy", "Sell"]
    assert DIRECTIONS == ("flat", "up", "down")
    returns = np.array([0.002, -0.002, 0.0005, -0.0005, 0.0, 0.00051])
    assert direction_of(returns, 0.0005).tolist() == [1, 2, 0, 0, 0, 1]


def test_next_returns_look_one_bar_ahead_and_end_with_nan() -> None:
    close = np.array([100.0, 110.0, 99.0])
    out = next_returns(close)
    assert out[:2] == pytest.approx([np.log(1.1), np.log(0.9)])
    assert np.isnan(out[2])


def test_classifier_and_regressor_outputs_map_through_one_rule() -> None:
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2]])
    assert actions_from(probs, "direction", 0.001).tolist() == [0, 2, 1]
    predicted = np.array([0.002, -0.002, 0.0004])
    assert actions_from(predicted, "return", 0.001).tolist() == [1, 2, 0]


def test_return_probabilities_are_a_distribution_that_follows_the_prediction() -> None:
    predicted = np.linspace(-0.01, 0.01, 41)
    probs = return_probabilities(predicted, 0.001, 0.004)
    assert probs.sum(axis=1) == pytest.approx(np.ones(41))
    assert (np.diff(probs[:, 1]) > 0).all() and (np.diff(probs[:, 2]) < 0).all()
    assert probs[20, 0] == probs[:, 0].max()  # flat is likeliest at a zero prediction


def test_the_envelope_of_each_target() -> None:
    classifier = prediction_from(np.array([0.2, 0.7, 0.1]), "direction", 0.001, 0.0).to_dict()
    assert classifier == {"prediction": 1, "action_name": "Buy", "confidence": 0.7,
                          "probabilities": {"Hold": 0.2, "Buy": 0.7, "Sell": 0.1}}
    regressor = prediction_from(np.array([-0.003]), "return", 0.001, 0.002).to_dict()
    assert regressor["action_name"] == "Sell" and regressor["predicted_return"] == -0.003
    assert "probabilities" not in regressor
    chance = return_probabilities(np.array([-0.003]), 0.001, 0.002)[0, 2]
    assert regressor["confidence"] == pytest.approx(chance)


def test_samples_end_at_their_bar_and_never_reach_into_the_next_part(bars) -> None:
    lookback = 5
    spec = build_feature_spec(bars, ["Close", "Volume"])
    data = prepare_data(bars, spec, lookback=lookback)
    close = data.bars["Close"].to_numpy()
    for part in ("train", "validation", "test"):
        s = samples(data, part, 0.0005)
        start, stop = data.split.parts()[part]
        rows = data.features.index.get_indexer(s.index)
        assert rows[0] == max(start, lookback - 1) and rows[-1] == stop - 2  # last bar left out
        t = rows[len(rows) // 2]
        assert np.array_equal(s.x[len(rows) // 2], data.scaled[t - lookback + 1:t + 1])
        assert s.returns == pytest.approx(np.log(close[rows + 1] / close[rows]))
        assert (rows + 1 < stop).all()  # every target is inside its own part
        assert np.array_equal(s.labels, direction_of(s.returns, 0.0005))


def test_majority_accuracy_uses_the_training_majority() -> None:
    train = np.array([1, 1, 1, 2])
    assert majority_accuracy(train, np.array([2, 2, 1, 0])) == 0.25


# ----------------------------------------------------------------- the epoch loop


class ScriptedTrainer(SupervisedTrainer):
    """A 'model' whose validation losses are scripted; its weights are the epoch number."""

    prefix, type_name = "SCR", "scripted"
    losses: tuple[float, ...] = ()

    def _build(self, n_features: int, train: Samples) -> None:
        self.weights = 0

    def _train(self, parts: dict[str, Samples]) -> None:
        for loss in self.losses[self.iteration:]:
            self.weights += 1
            if not self.end_epoch(1.0, loss, 0.5, 0.5):
                return

    def _snapshot(self) -> int:
        return self.weights

    def _restore(self, snapshot: int) -> None:
        self.weights = snapshot

    def outputs(self, x: np.ndarray) -> np.ndarray:
        return np.tile([0.2, 0.5, 0.3], (len(x), 1))

    def _save_model(self, writer: Any) -> None:
        writer.path("model.json").write_text(str(self.weights))

    def _state(self) -> dict[str, Any]:
        return {"model": self.weights}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.weights = state["model"]


def scripted(losses: tuple[float, ...], **train: Any) -> ScriptedTrainer:
    trainer = ScriptedTrainer({"train_params": {"epochs": len(losses), **train},
                               "model_params": {"lookback_window": 5}})
    trainer.losses = losses
    return trainer


def test_patience_stops_training_and_the_best_epoch_is_saved(bars, tmp_path: Path) -> None:
    trainer = scripted((0.9, 0.7, 0.8, 0.75, 0.72, 0.6), patience=3)
    model_dir = trainer.fit(bars, model_name="s", models_dir=tmp_path)
    assert trainer.iteration == 5  # epochs 3, 4, 5 did not beat epoch 2
    assert trainer.best_epoch == 2 and trainer.weights == 2
    assert (model_dir / "s_model.json").read_text() == "2"
    config = yaml.safe_load((model_dir / "s_config.yaml").read_text())
    assert config["metrics"]["best_epoch"] == 2 and config["metrics"]["status"] == "completed"
    assert [h["val_loss"] for h in config["validation_history"]] == [0.9, 0.7, 0.8, 0.75, 0.72]


class StopAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch, self.seen = epoch, []

    def on_iteration_end(self, metrics: dict[str, Any]) -> bool:
        self.seen.append(metrics["epoch"])
        return metrics["epoch"] < self.epoch


def test_a_callback_stops_training_and_the_run_is_stopped(bars, tmp_path: Path) -> None:
    trainer = scripted((0.9, 0.8, 0.7, 0.6, 0.5))
    stop = StopAt(3)
    trainer.callbacks.append(stop)
    trainer.fit(bars, model_name="s", models_dir=tmp_path)
    assert stop.seen == [1, 2, 3] and trainer.status == "stopped" and trainer.weights == 3


class LastState(Callback):
    """What the Checkpoints callback saves when training ends."""

    def on_training_end(self, summary: dict[str, Any]) -> None:
        self.state = self.trainer.state_dict()


def test_a_checkpoint_continues_where_it_left_off(bars, tmp_path: Path) -> None:
    first = scripted((0.9, 0.8, 0.85, 0.7, 0.6))
    last = LastState()
    first.callbacks += [StopAt(3), last]
    first.fit(bars, model_name="a", models_dir=tmp_path)
    assert first.weights == 2  # the saved model is the best epoch's ...
    state = last.state
    assert state["model"] == 3  # ... the checkpoint is the last epoch's, to continue from
    second = scripted((0.9, 0.8, 0.85, 0.7, 0.6))
    second.fit(bars, model_name="b", models_dir=tmp_path, resume_state=state)
    assert second.iteration == 5 and second.best_epoch == 5 and second.weights == 5
    assert [h["epoch"] for h in second.history] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(("config", "key"), [
    ({"model_params": {"threshold": -1}}, "threshold"),
    ({"model_params": {"target": "price"}}, "target"),
    ({"train_params": {"epochs": 0}}, "epochs"),
    ({"train_params": {"nonsense": 1}}, "nonsense"),
    ({"env_params": {"commission": 2}}, "commission"),
])
def test_bad_config_values_are_named(config: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        ScriptedTrainer(config)


def test_training_needs_a_validation_part(bars, tmp_path: Path) -> None:
    trainer = ScriptedTrainer({"data_params": {"val_fraction": 0.0}})
    with pytest.raises(ValueError, match="val_fraction"):
        trainer.fit(bars, model_name="s", models_dir=tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("type_name", ["xgboost", "transformer"])
def test_example_config_documents_every_key_with_its_default(type_name: str) -> None:
    from NetworkConfigs import get_model_type

    path = ROOT / "NetworkConfigs" / f"example_{type_name}_config.yaml"
    example = yaml.safe_load(path.read_text())
    assert example == get_model_type(type_name).trainer_class().defaults
    lines = [line for line in path.read_text().splitlines() if line.startswith("  ")]
    assert all("#" in line for line in lines), "every key needs a comment"


def test_frames_are_not_mutated_by_sampling(bars) -> None:
    before = bars.copy()
    spec = build_feature_spec(bars, None)
    samples(prepare_data(bars, spec, lookback=5), "train", 0.0005)
    pd.testing.assert_frame_equal(bars, before)


def test_a_threshold_above_most_moves_is_warned_about(bars, tmp_path: Path, caplog) -> None:
    trainer = scripted((0.9, 0.8))
    trainer.config["model_params"]["threshold"] = trainer.threshold = 1.0  # every bar flat
    with caplog.at_level("WARNING", logger="NetworkConfigs.supervised"):
        trainer.fit(bars, model_name="flat", models_dir=tmp_path)
    assert "100.0% of the training bars are 'flat'" in caplog.text
    caplog.clear()
    scripted((0.9, 0.8)).fit(bars, model_name="normal", models_dir=tmp_path)
    assert "flat" not in caplog.text
