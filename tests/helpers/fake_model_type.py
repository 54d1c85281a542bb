"""A tiny test-only model type that exercises the whole registry contract.

It "learns" how often the next bar went up, down or flat in the training part and
tilts those frequencies by the window's mean scaled close return, so its prediction
depends on the window exactly through the shared serving path.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from NetworkConfigs.artifacts import ensure_available, write_model
from NetworkConfigs.base import (
    ACTION_NAMES,
    ModelLoader,
    ModelType,
    Prediction,
    Trainer,
    notify_iteration,
)
from Utilities.data_utils import build_feature_spec, prepare_data

PREFIX = "FREQ"


class FrequencyTrainer(Trainer):
    def fit(self, bars: pd.DataFrame, *, model_name: str, models_dir: Path,
            data_file: str | None = None, overwrite: bool = False,
            resume_state: dict[str, Any] | None = None) -> Path:
        ensure_available(models_dir, PREFIX, model_name, overwrite)
        lookback = int(self.config.get("lookback", 5))
        spec = build_feature_spec(bars, self.config.get("features"))
        data = prepare_data(bars, spec, lookback=lookback)
        close = data.bars["Close"].to_numpy()
        start, stop = data.split.train
        moves = np.sign(np.diff(close[start:stop]))
        counts = [int((moves == 0).sum()), int((moves > 0).sum()), int((moves < 0).sum())]
        frequencies = [c / sum(counts) for c in counts]
        for epoch in range(int(self.config.get("epochs", 3))):
            if not notify_iteration(self.callbacks, {"epoch": epoch, "loss": 1.0 / (epoch + 1)}):
                break
        with write_model(models_dir, PREFIX, "frequency", model_name, overwrite=overwrite) as w:
            w.save_scaler(data.scaler)
            w.path("model.json").write_text(json.dumps({"frequencies": frequencies}))
            w.config.update(lookback=lookback, feature_spec=spec.to_dict(),
                            data_file=data_file, split=data.split_dates(),
                            metrics={"train_up_share": frequencies[1]})
        return w.target


class FrequencyLoader(ModelLoader):
    def _load_model(self) -> None:
        path = self.model_dir / f"{self.name}_model.json"
        self.frequencies = json.loads(path.read_text())["frequencies"]

    def predict(self, window: Any, state: dict[str, Any] | None = None) -> Prediction:
        x = self.model_input(window)
        tilt = float(x[:, list(self.spec.features).index("Close")].mean())
        weights = [self.frequencies[0], self.frequencies[1] * math.exp(tilt),
                   self.frequencies[2] * math.exp(-tilt)]
        probabilities = {n: w / sum(weights) for n, w in zip(ACTION_NAMES, weights, strict=True)}
        best = int(np.argmax(weights))
        return Prediction(best, ACTION_NAMES[best], probabilities[ACTION_NAMES[best]],
                          probabilities=probabilities)


def seed_dashboard(app: Any, bars: pd.DataFrame, models_dir: Path) -> None:
    """One saved model and three runs (completed, failed, running) for page tests.

    The caller registers FREQUENCY_TYPE (and unregisters it afterwards).
    """
    from web.store import get_store

    FrequencyTrainer({"lookback": 10}).fit(bars, model_name="demo", models_dir=models_dir,
                                           data_file="sample.csv")
    with app.app_context():
        store = get_store()
        finished = store.create_run(name="ppo-agent", model_type="ppo", algorithm="PPO")
        store.set_status(finished, "completed")
        failed = store.create_run(name="xgb-agent", model_type="xgboost")
        store.set_status(failed, "failed", error="diverged")
        store.create_run(name="live-agent", model_type="ppo")


FREQUENCY_TYPE = ModelType("frequency", "Frequency (test only)", PREFIX,
                           trainer=FrequencyTrainer, loader=FrequencyLoader)
