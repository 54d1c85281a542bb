"""What the supervised types (XGBoost, Transformer) share: config, data, the epoch
loop's bookkeeping (callbacks, early stopping, best model), metrics and artifacts.

A subclass names its defaults and files and implements the model itself:

- ``_build(n_features, train)``: create the model (and optimiser);
- ``_train(parts)``: train, calling :meth:`end_epoch` after every epoch (or boosting
  round) and stopping when it returns False;
- ``_snapshot()`` / ``_restore(snapshot)``: the best model so far, in memory (tensors
  or plain values: it is also part of checkpoints, read with ``weights_only=True``);
- ``outputs(x)``: (N, 3) probabilities or (N,) predicted returns for windows ``x``;
- ``_save_model(writer)``: write ``<name>_model.<ext>``;
- ``_state()`` / ``_load_state(state)``: the type's part of a checkpoint.

Early stopping watches the validation loss: the epoch with the lowest one is the
model that is saved; ``patience`` epochs without a new best end training.
"""

from __future__ import annotations

import copy
import logging
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from NetworkConfigs.artifacts import ModelWriter, ensure_available, file_sha256, write_model
from NetworkConfigs.base import (
    DEFAULT_KEEP_CHECKPOINTS,
    Callback,
    Trainer,
    notify_iteration,
    run_with_callbacks,
)
from NetworkConfigs.config_sections import Checks, checked, choice, normalise_sections, size
from NetworkConfigs.signals import (
    DIRECTIONS,
    TARGETS,
    Samples,
    actions_from,
    majority_accuracy,
    samples,
)
from Utilities.accounting import EnvParams
from Utilities.data_utils import DataError, PreparedData, prepare_from_params

log = logging.getLogger(__name__)

PARTS = ("train", "validation", "test")
MOSTLY_FLAT = 0.9  # share of flat training labels above which fit() warns
# Sections every supervised type has; a type adds its own model/train keys.
COMMON_DEFAULTS: dict[str, dict[str, Any]] = {
    "model_params": {"lookback_window": 20, "target": "direction", "threshold": 0.0005},
    "train_params": {"epochs": 50, "patience": 5, "seed": 1, "checkpoint_every": 5,
                     "keep_checkpoints": DEFAULT_KEEP_CHECKPOINTS},
    # The backtest's costs and sizing (the RL-only keys of EnvParams do not apply).
    "env_params": {key: value for key, value in EnvParams().to_dict().items()
                   if key in ("initial_balance", "commission", "slippage",
                              "position_fraction", "allow_short")},
    "data_params": {"features": None, "transform": "returns", "val_fraction": 0.15,
                    "test_fraction": 0.15, "scaler": "standard"},
}


class SupervisedTrainer(Trainer):
    """Registry trainer base for next-bar direction/return models."""

    defaults: ClassVar[dict[str, dict[str, Any]]] = COMMON_DEFAULTS
    prefix: ClassVar[str] = ""
    type_name: ClassVar[str] = ""
    targets: ClassVar[tuple[str, ...]] = TARGETS  # which targets the type can learn
    progress_unit = "epoch"

    def __init__(self, config: dict[str, Any] | None = None,
                 callbacks: list[Callback] | tuple = ()) -> None:
        super().__init__(normalise_sections(config, self.defaults), callbacks)
        model, train = self.config["model_params"], self.config["train_params"]
        check = Checks()  # every bad key at once, so a form shows them all
        self.lookback = check(size, model, "lookback_window")
        self.target = check(choice, model, "target", self.targets)
        self.threshold = check(checked, model, "threshold", float, low=0)
        self.epochs = check(size, train, "epochs")
        self.patience = check(size, train, "patience", optional=True)
        self.seed = check(checked, train, "seed", int, low=0, high=2**32 - 1)
        check(checked, train, "checkpoint_every", int, low=1)
        check(checked, train, "keep_checkpoints", int, low=1)
        check(EnvParams.from_dict, self.config["env_params"])  # a bad cost fails now
        self._check_params(check)
        check.raise_any()
        self.iteration = self.global_step = 0
        self._status = "new"
        self.best_epoch, self.best_loss, self.best = 0, float("inf"), None
        self.history: list[dict[str, float]] = []
        self._parts: dict[str, Samples] = {}
        self.features: list[str] = []
        self._stopped_by_callback = False
        self.predictions: pd.DataFrame | None = None  # test-part outputs, training path

    # ---------------------------------------------------------------- subclass hooks

    def _check_params(self, check: Checks) -> None:
        """Check the type's own keys through ``check`` (which keeps every InputError;
        each names its key as ``field``)."""

    @abstractmethod
    def _build(self, n_features: int, train: Samples) -> None:
        """Create the model (and optimiser) for ``n_features`` inputs."""

    @abstractmethod
    def _train(self, parts: dict[str, Samples]) -> None:
        """Train, calling :meth:`end_epoch` after every epoch; stop when it is False."""

    @abstractmethod
    def _snapshot(self) -> Any:
        """The current model, in memory (tensors or plain values)."""

    @abstractmethod
    def _restore(self, snapshot: Any) -> None:
        """Make ``snapshot`` the current model."""

    @abstractmethod
    def outputs(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) probabilities or (N,) returns for windows ``x``."""

    @abstractmethod
    def _save_model(self, writer: ModelWriter) -> None:
        """Write ``<name>_model.<ext>`` through ``writer``."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The type's part of a checkpoint."""

    @abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore the type's part of a checkpoint."""

    def _summary_extra(self) -> dict[str, Any]:
        return {}

    def _model_record(self) -> dict[str, Any]:
        """Type-specific facts for the saved config (e.g. the return scale)."""
        return {}

    # -------------------------------------------------------------------- contract

    @property
    def status(self) -> str:
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        self._status = value

    @property
    def progress_total(self) -> int:
        return self.epochs

    @property
    def checkpoint_every(self) -> int:  # type: ignore[override]
        return int(self.config["train_params"]["checkpoint_every"])

    def check_data(self, bars: pd.DataFrame, source: str | None = None) -> None:
        self.prepared(bars, source)

    def check_resume(self, state: dict[str, Any], bars: pd.DataFrame,
                     source: str | None = None) -> None:
        """Build the model for this config and data and load ``state`` into it: a window
        or network that changed since the checkpoint fails here, before a run starts."""
        data = self.prepared(bars, source)
        self.features = list(data.spec.features)
        self._build(len(self.features), samples(data, "train", self.threshold))
        self.load_state(state)

    def prepare(self, bars: pd.DataFrame, source: str | None = None) -> PreparedData:
        return prepare_from_params(bars, self.config["data_params"], lookback=self.lookback,
                                   source=source)

    def fit(self, bars: pd.DataFrame, *, model_name: str, models_dir: Path,
            data_file: str | None = None, overwrite: bool = False,
            resume_state: dict[str, Any] | None = None) -> Path:
        """Train on the train part, stop early on the validation loss, save the best."""
        ensure_available(models_dir, self.prefix, model_name, overwrite)
        data = self.prepared(bars, Path(data_file).name if data_file else None, keep=False)
        parts = {name: samples(data, name, self.threshold) for name in PARTS}
        if len(parts["validation"]) == 0:
            raise DataError("data_params.val_fraction must leave a validation part: early "
                            "stopping and model selection need one")
        _warn_if_mostly_flat(parts["train"], self.threshold)
        self.features = list(data.spec.features)
        self._build(len(self.features), parts["train"])
        if resume_state is not None:
            self.load_state(resume_state)
        info = {"epochs": self.epochs, "total": self.epochs,
                "samples": {name: len(p) for name, p in parts.items()}}
        self._parts = parts
        run_with_callbacks(self, self.callbacks, info, self._loop, self._summary_extra)
        if self.best is None:  # NaN losses never beat infinity
            raise ValueError("training diverged: no epoch reached a finite validation loss "
                             "(lower train_params.learning_rate); no model was saved")
        # Only now: checkpoints (the final one is taken as training ends, and the one in
        # the model folder) hold the last weights, so a resume continues the run itself;
        # the saved model is the best epoch's. A copy: state_dict() tensors share storage
        # with the live model, which _restore() loads the best weights into in place.
        final_state = copy.deepcopy(self.state_dict())
        if self.best is not None:
            self._restore(self.best)
        return self._save(data, parts, model_name, models_dir, data_file, overwrite,
                          final_state)

    def _loop(self) -> str:
        self._stopped_by_callback = False
        if self.iteration < self.epochs and self._patience_left():  # a resume may be done
            self._train(self._parts)
        return "stopped" if self._stopped_by_callback else "completed"

    def end_epoch(self, train_loss: float, val_loss: float, train_accuracy: float,
                  val_accuracy: float) -> bool:
        """Book one finished epoch: history, best model, callbacks. False: stop now
        (a callback asked, patience ran out, or the epoch budget is spent)."""
        self.iteration += 1
        self.global_step = self.iteration
        metrics = {"iteration": self.iteration, "global_step": self.iteration,
                   "epoch": self.iteration, "loss": train_loss, "train_loss": train_loss,
                   "val_loss": val_loss, "train_accuracy": train_accuracy,
                   "val_accuracy": val_accuracy}
        self.history.append({k: float(v) for k, v in metrics.items()})
        if val_loss < self.best_loss:
            self.best_epoch, self.best_loss, self.best = self.iteration, val_loss, self._snapshot()
        if not notify_iteration(self.callbacks, metrics):
            log.info("training stopped by a callback at epoch %d", self.iteration)
            self._stopped_by_callback = True
            return False
        if not self._patience_left():
            log.info("early stopping at epoch %d: best validation loss %.5g at epoch %d",
                     self.iteration, self.best_loss, self.best_epoch)
            return False
        return self.iteration < self.epochs

    def _patience_left(self) -> bool:
        return self.patience is None or self.iteration - self.best_epoch < self.patience

    # ----------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: the type's model state plus the loop's."""
        return {**self._state(), "iteration": self.iteration, "global_step": self.global_step,
                "best_epoch": self.best_epoch, "best_loss": self.best_loss, "best": self.best,
                "history": self.history}

    def load_state(self, state: dict[str, Any]) -> None:
        try:
            self._load_state(state)
            self.iteration = self.global_step = int(state["iteration"])
            self.best_epoch, self.best_loss = int(state["best_epoch"]), float(state["best_loss"])
        except KeyError as exc:
            raise ValueError(f"the checkpoint lacks {exc}; it is damaged or from another "
                             "type") from None
        self.best = state.get("best")
        self.history = list(state.get("history", []))

    # ---------------------------------------------------------------------- saving

    def accuracy(self, part: Samples) -> float:
        """Direction accuracy of the current model on one part (NaN when empty)."""
        if len(part) == 0:
            return float("nan")
        actions = actions_from(self.outputs(part.x), self.target, self.threshold)
        return float((actions == part.labels).mean())

    def _final_metrics(self, parts: dict[str, Samples]) -> dict[str, Any]:
        metrics: dict[str, Any] = {"epochs": self.iteration, "best_epoch": self.best_epoch,
                                   "best_val_loss": round(self.best_loss, 6),
                                   "status": self.status}
        train_labels = parts["train"].labels
        for name, part in parts.items():
            if len(part):
                metrics[f"{name}_accuracy"] = round(self.accuracy(part), 4)
                metrics[f"{name}_majority_accuracy"] = round(
                    majority_accuracy(train_labels, part.labels), 4)
        counts = np.bincount(train_labels, minlength=len(DIRECTIONS))
        metrics["train_class_shares"] = {d: round(float(c / counts.sum()), 4)
                                         for d, c in zip(DIRECTIONS, counts, strict=True)}
        return metrics

    def _test_predictions(self, part: Samples) -> pd.DataFrame:
        """The test part's outputs through the training path (train/serve skew check)."""
        out = self.outputs(part.x)
        columns = [f"p_{d}" for d in DIRECTIONS] if out.ndim == 2 else ["predicted_return"]
        frame = pd.DataFrame(np.asarray(out, dtype=np.float64).reshape(len(part), -1),
                             index=part.index, columns=columns)
        frame["action"] = actions_from(out, self.target, self.threshold)
        return frame

    def residual_std(self, part: Samples) -> float | None:
        """Root-mean-square error of a return model on ``part`` (bias included, unlike a
        standard deviation): the confidence scale at serving (see
        ``signals.return_probabilities``). None for direction models."""
        if self.target != "return":
            return None
        return float(np.sqrt(np.mean((self.outputs(part.x) - part.returns) ** 2)))

    def _save(self, data: PreparedData, parts: dict[str, Samples], model_name: str,
              models_dir: Path, data_file: str | None, overwrite: bool,
              final_state: dict[str, Any]) -> Path:
        metrics = self._final_metrics(parts)
        self.predictions = self._test_predictions(parts["test"]) if len(parts["test"]) else None
        data_hash = file_sha256(Path(data_file)) if data_file and Path(data_file).is_file() \
            else None
        with write_model(models_dir, self.prefix, self.type_name, model_name,
                         overwrite=overwrite) as writer:
            self._save_model(writer)
            writer.save_scaler(data.scaler)
            torch.save({**final_state, "config": self.config, "model_name": model_name,
                        "data_hash": data_hash, "model_type": self.type_name},
                       writer.path("checkpoint.pt"))
            writer.config.update({
                **self.config, **self._model_record(), "feature_spec": data.spec.to_dict(),
                "lookback": self.lookback, "target": self.target, "threshold": self.threshold,
                "directions": list(DIRECTIONS),
                "residual_std": self.residual_std(parts["validation"]),
                "data_file": str(data_file or ""),
                "data_hash": data_hash, "data_rows": len(data.bars),
                "split": data.split_dates(), "metrics": metrics,
                "validation_history": self.history})
        return writer.target


def _warn_if_mostly_flat(train: Samples, threshold: float) -> None:
    """A threshold above most moves (minute bars at the daily default) teaches "always
    flat": legal, but rarely what the user meant, so say it and how to change it."""
    flat = float((train.labels == 0).mean()) if len(train) else 0.0
    if flat > MOSTLY_FLAT:
        typical = float(np.median(np.abs(train.returns)))
        log.warning("%.1f%% of the training bars are 'flat' at model_params.threshold %g "
                    "(the median move is %.2g): the model will mostly Hold; lower the "
                    "threshold to learn smaller moves", 100 * flat, threshold, typical)
