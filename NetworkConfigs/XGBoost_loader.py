"""Loads a saved XGBoost direction model (``Models/XGB_<name>/``) for serving and
backtests; predictions go through the trainer's own ``booster_outputs``."""

from __future__ import annotations

import re

import numpy as np
import xgboost as xgb

from NetworkConfigs.artifacts import ArtifactError, ModelNotFound, artifact_path, shown_path
from NetworkConfigs.signal_loader import SignalLoader
from NetworkConfigs.XGBoostTrainer import XGBoostTrainer, booster_outputs

_XGB_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: ")


class XGBoostModelLoader(SignalLoader):
    """``XGBoostModelLoader.load("Models/XGB_demo").predict(window)``."""

    targets = XGBoostTrainer.targets

    def _load_model(self) -> None:
        path = artifact_path(self.model_dir, self.name, "model.json")
        if not path.is_file():
            raise ModelNotFound(f"{self.where}: model file {path.name} is missing")
        where = shown_path(path, self.model_dir)
        booster = xgb.Booster()
        try:
            booster.load_model(path)
        except xgb.core.XGBoostError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            first_line = _XGB_PREFIX.sub("", first_line)  # xgboost's time and source file
            for form in (str(path.resolve()), str(path)):  # xgboost may quote the file
                first_line = first_line.replace(form, path.name)
            raise ArtifactError(f"{where}: not a readable xgboost model ({first_line})") from None
        expected = self.lookback * len(self.spec.features)
        if booster.num_features() != expected:
            raise ArtifactError(
                f"{where}: the model takes {booster.num_features()} inputs but the config's "
                f"lookback x features is {expected}; the model folder is inconsistent")
        booster.set_param({"nthread": 1})  # one window per request; see XGBoostTrainer
        self.booster = booster

    def outputs(self, x: np.ndarray) -> np.ndarray:
        return booster_outputs(self.booster, x)
