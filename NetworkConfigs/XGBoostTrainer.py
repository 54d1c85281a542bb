"""XGBoost: a gradient-boosted classifier of the next bar's direction (flat/up/down).

Its input is the lookback window of transformed, scaled features, flattened into lags
(``Close_lag0`` is the newest bar). One boosting round is one "epoch" of the shared
loop (:mod:`NetworkConfigs.supervised`): callbacks, the progress bar, the run store and
early stopping on the validation log-loss see every round. The model is saved in
xgboost's own JSON format (``<name>_model.json``), never as a pickle.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import xgboost as xgb

from NetworkConfigs.artifacts import ModelWriter
from NetworkConfigs.base import deep_merge
from NetworkConfigs.config_sections import Checks, checked, size
from NetworkConfigs.signals import DIRECTIONS, Samples
from NetworkConfigs.supervised import COMMON_DEFAULTS, SupervisedTrainer

log = logging.getLogger(__name__)

DEFAULTS = deep_merge(COMMON_DEFAULTS, {
    "model_params": {"max_depth": 4, "learning_rate": 0.05, "subsample": 0.8,
                     "colsample_bytree": 0.8, "min_child_weight": 1.0, "reg_lambda": 1.0,
                     "reg_alpha": 0.0, "gamma": 0.0, "n_jobs": 1},
    "train_params": {"epochs": 300, "patience": 20, "checkpoint_every": 25},
})
TOP_IMPORTANCE = 25  # kept in the config; the run store gets every lag
# n_jobs defaults to 1: with torch loaded in the same process, xgboost's OpenMP threads
# and torch's spin against each other; on 2 cores 30 rounds took 20 s with 2 threads
# and 0.07 s with 1 (bench: 1,400 x 20 inputs, depth 4). Raise it on a big machine.
SMOKE = {"train_params": {"epochs": 30, "patience": 10, "checkpoint_every": 10}}
# Boosting starts afresh from the trees so far every RESEED_EVERY rounds, its sampler
# seeded from the run's seed and the round. xgboost keeps its row and column samplers'
# state in the booster object, not in the model, so continuing from saved trees equals
# the uninterrupted run only where that run, too, started afresh from its trees (neither
# seed_per_iteration nor set_param reseeding makes 2 + 2 rounds equal 4). A resume
# between two such points replays the rounds since the last one, from the prefix of the
# saved trees, and checks the replay reproduced them. The price: one full prediction of
# the train and validation parts per restart (300 rounds on 2,200 rows x 180 inputs:
# 8.8-9.2 s of CPU against 8.0-10.9 s in one call, within the noise); the
# ``checkpoint_every`` default (25) makes the run's checkpoints restart points.
RESEED_EVERY = 25


def booster_outputs(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    """(N, 3) flat/up/down probabilities for windows ``x`` (N, lookback, F): the one
    prediction path of training, serving and backtesting."""
    flat = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
    return np.asarray(booster.inplace_predict(flat), dtype=np.float64).reshape(len(x), -1)


def lag_names(features: list[str] | tuple[str, ...], lookback: int) -> list[str]:
    """Column names of a flattened window: row j of the window is lag ``lookback-1-j``."""
    return [f"{name}_lag{lookback - 1 - row}" for row in range(lookback) for name in features]


class _RoundBridge(xgb.callback.TrainingCallback):
    """Hands each boosting round to the shared loop; its answer can stop boosting.

    The first ``replay`` rounds only rebuild the sampler state of a resumed run (see
    ``RESEED_EVERY``): they are not booked, and the last of them must reproduce
    ``saved``, the checkpoint's trees, or boosting stops with ``diverged`` set."""

    def __init__(self, trainer: XGBoostTrainer, replay: int = 0,
                 saved: xgb.Booster | None = None) -> None:
        self.trainer, self.replay, self.saved = trainer, replay, saved
        self.done = self.diverged = False

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
        if self.replay:
            self.replay -= 1
            self.diverged = self.replay == 0 and _trees(model) != _trees(self.saved)
            return self.diverged
        self.trainer.booster = model
        train, val = evals_log["train"], evals_log["validation"]
        go_on = self.trainer.end_epoch(train["mlogloss"][-1], val["mlogloss"][-1],
                                       1.0 - train["merror"][-1], 1.0 - val["merror"][-1])
        self.done = not go_on
        return self.done  # xgboost stops when a callback returns True


def _trees(booster: xgb.Booster) -> bytes:
    return bytes(booster.save_raw(raw_format="json"))


class XGBoostTrainer(SupervisedTrainer):
    """Registry trainer for the ``xgboost`` type."""

    defaults = DEFAULTS
    smoke_config = SMOKE
    prefix, type_name = "XGB", "xgboost"
    targets = ("direction",)
    checkpoint_keys = ("model", "iteration", "global_step", "best_epoch", "best_loss")

    def _check_params(self, check: Checks) -> None:
        model = self.config["model_params"]
        self.params = {
            "objective": "multi:softprob", "num_class": len(DIRECTIONS),
            "eval_metric": ["mlogloss", "merror"], "tree_method": "hist",
            "max_depth": check(size, model, "max_depth"),
            "eta": check(checked, model, "learning_rate", float, low=1e-6, high=1),
            "subsample": check(checked, model, "subsample", float, low=0.01, high=1),
            "colsample_bytree": check(checked, model, "colsample_bytree", float, low=0.01,
                                      high=1),
            "min_child_weight": check(checked, model, "min_child_weight", float, low=0),
            "lambda": check(checked, model, "reg_lambda", float, low=0),
            "alpha": check(checked, model, "reg_alpha", float, low=0),
            "gamma": check(checked, model, "gamma", float, low=0),
            "seed": self.seed, "nthread": check(size, model, "n_jobs"),
        }
        self.booster: xgb.Booster | None = None
        self.feature_names: list[str] = []

    def _build(self, n_features: int, train: Samples) -> None:
        self.n_features = n_features

    def _matrix(self, part: Samples) -> xgb.DMatrix:
        return xgb.DMatrix(part.x.reshape(len(part), -1), label=part.labels)

    def _train(self, parts: dict[str, Samples]) -> None:
        train, val = self._matrix(parts["train"]), self._matrix(parts["validation"])
        exact = self.booster is not None or self.iteration == 0  # else nothing to replay
        while self.iteration < self.epochs:
            start = self.iteration - self.iteration % RESEED_EVERY if exact else self.iteration
            stop = min(self.iteration - self.iteration % RESEED_EVERY + RESEED_EVERY,
                       self.epochs)
            bridge = _RoundBridge(self, replay=self.iteration - start, saved=self.booster)
            xgb.train({**self.params, "seed": self._segment_seed(start)}, train,
                      num_boost_round=stop - start, evals=[(train, "train"), (val, "validation")],
                      verbose_eval=False, xgb_model=self._prefix(start), callbacks=[bridge])
            if bridge.done:
                return
            if bridge.diverged:  # keep the saved trees; continue from them, not exactly
                log.warning("replaying boosting rounds %d-%d did not reproduce the "
                            "checkpoint's trees (another xgboost version?): continuing from "
                            "the saved trees, not bit-exactly", start + 1, self.iteration)
                exact = False

    def _segment_seed(self, start: int) -> int:
        """The sampler seed of the rounds from ``start``: the run's seed and the round."""
        return int(np.random.SeedSequence([self.seed, start]).generate_state(1)[0])

    def _prefix(self, rounds: int) -> xgb.Booster | None:
        """The model as it was after ``rounds`` rounds (its trees are a prefix of ours)."""
        if rounds == 0 or self.booster is None:
            return None
        return self.booster if self.booster.num_boosted_rounds() == rounds \
            else self.booster[:rounds]

    def _snapshot(self) -> int:
        return self.iteration  # the booster keeps every round; the best is a prefix of it

    def _restore(self, snapshot: int) -> None:
        if snapshot < self.booster.num_boosted_rounds():
            self.booster = self.booster[:snapshot]

    def outputs(self, x: np.ndarray) -> np.ndarray:
        return booster_outputs(self.booster, x)

    def _state(self) -> dict[str, Any]:
        raw = bytes(self.booster.save_raw(raw_format="json")) if self.booster else b""
        return {"model": torch.frombuffer(bytearray(raw), dtype=torch.uint8)
                if raw else torch.zeros(0, dtype=torch.uint8)}

    def _load_state(self, state: dict[str, Any]) -> None:
        raw = state["model"]
        if not isinstance(raw, torch.Tensor) or raw.dtype != torch.uint8:
            raise ValueError("this checkpoint is not an xgboost checkpoint")
        self.booster = xgb.Booster(model_file=bytearray(raw.numpy().tobytes())) \
            if raw.numel() else None
        inputs = self.lookback * self.n_features
        if self.booster is not None and self.booster.num_features() != inputs:
            raise ValueError(f"the checkpoint's trees take {self.booster.num_features()} "
                             f"inputs, this config gives {inputs} (lookback x features); "
                             "lookback_window and features cannot change on resume")

    def feature_importance(self) -> dict[str, float]:
        """Total gain per lagged feature in the best rounds, as shares summing to 1,
        largest first."""
        names = lag_names(self.features, self.lookback)
        booster = self.booster
        if self.best is not None and self.best < booster.num_boosted_rounds():
            booster = booster[:self.best]
        gain = booster.get_score(importance_type="total_gain")
        total = sum(gain.values()) or 1.0
        shares = {names[int(key[1:])]: value / total for key, value in gain.items()}
        return {k: round(v, 6) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}

    def _summary_extra(self) -> dict[str, Any]:
        return {"feature_importance": self.feature_importance()} if self.booster else {}

    def _model_record(self) -> dict[str, Any]:
        top = dict(list(self.feature_importance().items())[:TOP_IMPORTANCE])
        return {"feature_importance": top, "boosted_rounds": self.booster.num_boosted_rounds()}

    def _save_model(self, writer: ModelWriter) -> None:
        self.booster.save_model(writer.path("model.json"))
