"""The contract every model type follows.

- ``Trainer(config, callbacks).fit(bars, model_name=..., models_dir=...) -> Path``:
  train from validated bars, write ``Models/<PREFIX>_<name>/`` atomically, return it.
- ``Loader.load(model_dir)``: read the config, scaler and model file back.
- ``loader.predict(window, state=None) -> Prediction``: one window of bars (the model's
  feature columns; ``lookback + warmup`` rows) to one envelope, the same for every type.
  Types that can draw their action (``can_sample``) also take ``sample=`` and ``rng=``;
  callers go through :meth:`ModelLoader.predict_with`, so other types never see them.

Trainers stay blind to logging, progress bars and control: those are callbacks
(Stable-Baselines3's shape), and returning False from ``on_iteration_end`` stops training.
"""

from __future__ import annotations

import copy
import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from NetworkConfigs import artifacts
from Utilities.accounting import EnvParams
from Utilities.data_utils import (
    DataError,
    FeatureSpec,
    check_lookback,
    scale_stack,
    scale_window,
    stacked_values,
)

# Trading actions, shared by the env, the backtester and the API (ARCHITECTURE.md).
# Checkpoint files a run keeps (the newest) unless train_params.keep_checkpoints says.
DEFAULT_KEEP_CHECKPOINTS = 3
ACTION_NAMES = ("Hold", "Buy", "Sell")
# The account ``state`` predict() takes: one account of ``accounting.Accounts`` by its
# field names, plus "price", the raw price it is marked at (default: the window's last
# Close). Every key is optional; a missing one is that of a flat, untouched account.
ACCOUNT_FIELDS = ("cash", "units", "position", "entry_price", "entry_cost")


@dataclass(frozen=True)
class Prediction:
    """One prediction envelope; fields a type does not produce stay None and are omitted."""

    prediction: int | float
    action_name: str
    confidence: float
    probabilities: dict[str, float] | None = None
    value_estimate: float | None = None
    predicted_return: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON envelope: what ``asdict`` gives, without the fields left None (built
        by hand: ``asdict`` deep-copies field by field, a tenth of a batched answer)."""
        out: dict[str, Any] = {"prediction": self.prediction, "action_name": self.action_name,
                               "confidence": self.confidence}
        if self.probabilities is not None:
            out["probabilities"] = dict(self.probabilities)
        for key in ("value_estimate", "predicted_return"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class Callback:
    """Observes training. Every hook is optional; ``on_iteration_end`` returning False stops.

    The trainer calls :meth:`set_trainer` first, so a callback can read its state (for
    checkpoints or evaluation) without the trainer knowing what the callback does.
    """

    trainer: Any = None

    def set_trainer(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_training_start(self, info: dict[str, Any]) -> None:
        """Called once before the first iteration with run facts (name, sizes, config)."""

    def on_iteration_end(self, metrics: dict[str, Any]) -> bool:
        """Called after each iteration/epoch with its metrics; False stops training."""
        return True

    def on_training_end(self, summary: dict[str, Any]) -> None:
        """Called once at the end (also after a stop or a failure) with the summary."""


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in, section by section."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def notify_iteration(callbacks: Iterable[Callback], metrics: dict[str, Any]) -> bool:
    """Tell every callback (none is skipped); training continues only if all agree."""
    results = [cb.on_iteration_end(metrics) for cb in callbacks]
    return all(result is not False for result in results)


def run_with_callbacks(owner: Any, callbacks: Sequence[Callback], info: dict[str, Any],
                       loop: Callable[[], str],
                       extra: Callable[[], dict[str, Any]] = dict) -> str:
    """The training life cycle every type shares: callbacks meet ``owner`` (whose
    ``iteration``/``global_step``/``status`` they read), hear the start, then ``loop()``
    runs and returns "completed" or "stopped"; every callback hears the end in reverse
    order (a stack), also after a failure ("failed") or Ctrl-C ("interrupted": cut
    mid-iteration, not a consistent state to checkpoint). ``extra()`` adds to the
    summary (e.g. feature importance)."""
    for callback in callbacks:
        callback.set_trainer(owner)
    for callback in callbacks:
        callback.on_training_start({**info, "iteration": owner.iteration,
                                    "global_step": owner.global_step})
    status, error = "running", None
    owner.status = status
    try:
        status = loop()
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        owner.status = status
        summary = {"status": status, "error": error, "iterations": owner.iteration,
                   "global_step": owner.global_step}
        if status in ("completed", "stopped"):
            summary.update(extra())
        for callback in reversed(callbacks):
            callback.on_training_end(summary)
    return status


class Trainer(ABC):
    """Trains one model type. Subclasses implement :meth:`fit`.

    ``smoke_config`` is the type's tiny-budget preset (``--mode smoke``), merged over its
    defaults; ``progress_total`` is what a progress bar counts to (steps or epochs).
    """

    smoke_config: dict[str, Any] = {}  # noqa: RUF012 (read-only class default)
    checkpoint_every: int = 10  # iterations between checkpoints, for types that checkpoint
    progress_unit: str = "step"  # what progress_total counts, for the progress bar
    # What a checkpoint of this type must hold for ``fit(resume_state=...)``.
    checkpoint_keys: tuple[str, ...] = ("model", "iteration", "global_step")

    def __init__(self, config: dict[str, Any], callbacks: Sequence[Callback] = ()) -> None:
        self.config = config
        self.callbacks = list(callbacks)

    @property
    def progress_total(self) -> int | None:
        return None

    @property
    def keep_checkpoints(self) -> int:
        """How many checkpoint files a run keeps (the newest): the config's
        ``train_params.keep_checkpoints``, else DEFAULT_KEEP_CHECKPOINTS."""
        train = self.config.get("train_params") or {}
        return int(train.get("keep_checkpoints", DEFAULT_KEEP_CHECKPOINTS))

    @property
    def status(self) -> str:
        """How the last fit ended: completed, stopped (by a callback), failed, …"""
        return "completed"

    def prepared(self, bars: pd.DataFrame, source: str | None = None, *,
                 keep: bool = True) -> Any:
        """``self.prepare(bars, source)`` (types that prepare data define it), computed
        once per bars object: the CLI checks the data (:meth:`check_data`) before it
        records a run, and ``fit`` then takes that very result instead of transforming,
        splitting and scaling the file again. ``keep=False`` (``fit``) hands it over and
        forgets it, so the trainer does not hold the data after training."""
        cached = getattr(self, "_prepared", None)
        if cached is not None and cached[0] is bars and cached[1] == source:
            data = cached[2]
        else:
            data = self.prepare(bars, source)  # type: ignore[attr-defined]
        self._prepared = (bars, source, data) if keep else None
        return data

    def check_data(self, bars: pd.DataFrame, source: str | None = None) -> None:  # noqa: B027
        """Raise DataError now if ``bars`` cannot train this config (before a run starts).

        Optional: the default accepts anything and leaves the errors to ``fit``.
        """

    def check_resume(self, state: dict[str, Any], bars: pd.DataFrame,  # noqa: B027
                     source: str | None = None) -> None:
        """Raise ValueError now if ``state`` cannot continue on this config and data.

        Optional: the default leaves the errors to ``fit``."""

    @abstractmethod
    def fit(self, bars: pd.DataFrame, *, model_name: str, models_dir: Path,
            data_file: str | None = None, overwrite: bool = False,
            resume_state: dict[str, Any] | None = None) -> Path:
        """Train on ``bars`` and write the artifact folder; return its path.

        ``resume_state`` is a checkpoint to continue from, for types that support it.
        """


class ModelLoader(ABC):
    """A trained model read back from its folder. Subclasses implement the two hooks."""

    # True when predict() also takes ``sample: bool`` and ``rng: np.random.Generator``
    # (draw the action from the probabilities instead of taking the most likely one).
    can_sample: ClassVar[bool] = False

    def __init__(self, model_dir: Path, config: dict[str, Any]) -> None:
        self.model_dir = model_dir
        self.config = config
        self.name: str = config["model_name"]
        self.where = artifacts.shown_path(model_dir, model_dir)  # for messages
        missing = [key for key in ("feature_spec", "lookback") if key not in config]
        if missing:  # a KeyError would not say which model folder is broken
            raise artifacts.ArtifactError(f"{self.where}: the config is missing key(s) "
                                          f"{missing}")
        from NetworkConfigs.config_sections import size  # imports this module

        try:
            self.spec = FeatureSpec.from_dict(config["feature_spec"])
            self.lookback: int = config["lookback"]
            check_lookback(self.lookback)
            size(config, "lookback_window", key="lookback")  # a planted config's 10**9
        except (TypeError, ValueError) as exc:  # DataError is a ValueError
            raise artifacts.ArtifactError(
                f"{self.where}: invalid feature_spec or lookback in the config: {exc}") \
                from None
        try:  # every type's account rules: streams and backtests book trades with them
            self.env_params = EnvParams.from_dict(config.get("env_params") or {})
        except (TypeError, ValueError) as exc:
            raise artifacts.ArtifactError(
                f"{self.where}: invalid env_params in the config: {exc}") from None
        self.scaler = artifacts.load_scaler(model_dir, self.name)
        _check_scaler(self.scaler, self.spec, model_dir, self.name)

    @classmethod
    def load(cls, model_dir: str | Path) -> Self:
        """Read config, scaler and model file; errors name the folder and the problem."""
        path = Path(model_dir)
        loader = cls(path, artifacts.read_config(path))
        loader._load_model()
        return loader

    @abstractmethod
    def _load_model(self) -> None:
        """Read the type's own model file(s) from ``self.model_dir``."""

    def predict(self, window: Any, state: dict[str, Any] | None = None,
                **options: Any) -> Prediction:
        """One prediction from a window of bars (+ optional account state): by default
        :meth:`answers` of :meth:`model_inputs`, the path batches take too. A type that
        defines neither hook overrides this instead (and answers batches one by one)."""
        return self.answers([self.model_inputs(window, state)], **options)[0]

    def model_inputs(self, window: Any, state: dict[str, Any] | None = None) -> Any:
        """One item's model input, every check done (DataError names a problem)."""
        raise NotImplementedError

    def input_from(self, features: np.ndarray, last_bar: np.ndarray,
                   state: dict[str, Any] | None) -> Any:
        """One item's model input from its scaled window (lookback x features, float32),
        its newest bar's values and its account state: what :meth:`model_inputs` returns
        once the window is read and scaled. A type that defines it gets batches read and
        scaled as one stack (:meth:`model_inputs_many`)."""
        raise NotImplementedError

    def model_inputs_many(self, items: Sequence[tuple[Any, dict[str, Any] | None]]
                          ) -> list[Any]:
        """:meth:`model_inputs` of every (window, state) item, or the DataError it raises.
        When every window is plain and of one length (:func:`stacked_values`), they are
        checked, transformed and scaled as one stack, bit for bit what each alone gives;
        otherwise (or for a type without :meth:`input_from`) one by one, which names
        each window's problem."""
        if type(self).input_from is not ModelLoader.input_from:
            values = stacked_values([window for window, _ in items], self.spec.features)
            if values is not None:
                scaled = scale_stack(values, self.spec, self.scaler, self.lookback)
                if scaled is not None:
                    return self.inputs_from(scaled, values[:, -1], [s for _, s in items])
        out: list[Any] = []
        for window, state in items:
            try:
                out.append(self.model_inputs(window, state))
            except DataError as exc:
                out.append(exc)
        return out

    def inputs_from(self, scaled: np.ndarray, last_bars: np.ndarray,
                    states: list[dict[str, Any] | None]) -> list[Any]:
        """:meth:`input_from` of every window of a scaled stack, or its DataError."""
        out: list[Any] = []
        for features, last_bar, state in zip(scaled, last_bars, states, strict=True):
            try:
                out.append(self.input_from(features, last_bar, state))
            except DataError as exc:
                out.append(exc)
        return out

    def answers(self, inputs: list[Any], **options: Any) -> list[Prediction]:
        """The predictions for inputs of :meth:`model_inputs`, in one model call."""
        raise NotImplementedError

    def predict_with(self, window: Any, state: dict[str, Any] | None = None, *,
                     sample: bool = False, rng: np.random.Generator | None = None) -> Prediction:
        """:meth:`predict` with the options a client may ask for; the sampling options
        reach only types that can sample, and asking another type is a DataError. An
        output that is not finite (inputs far beyond training) is a DataError naming the
        window or, when the window alone gives a finite answer, the account_state."""
        prediction = self.predict(window, state, **self._options(sample, rng))
        if not _is_finite(prediction):  # JSON has no NaN; a client must not get one either
            raise self._not_finite(window, state)
        return prediction

    def predict_many(self, items: Sequence[tuple[Any, dict[str, Any] | None]], *,
                     sample: bool = False,
                     rng: np.random.Generator | None = None) -> list[Prediction | DataError]:
        """:meth:`predict_with` of many (window, state) items: each item's Prediction, or
        the DataError :meth:`predict_with` would raise for it alone. Valid items go
        through the model in one call (types with :meth:`answers`); a sampled batch
        draws its actions with ``rng`` in item order, as one call per item would."""
        options = self._options(sample, rng)
        if type(self).answers is ModelLoader.answers:  # no batch hooks: one at a time
            return [_caught(self.predict_with, window, state, sample=sample, rng=rng)
                    for window, state in items]
        out: list[Prediction | DataError | None] = [None] * len(items)
        ready: list[tuple[int, Any]] = []
        for i, given in enumerate(self.model_inputs_many(items)):
            if isinstance(given, DataError):
                out[i] = given
            else:
                ready.append((i, given))
        if ready:
            answered = self.answers([x for _, x in ready], **options)
            for (i, _), prediction in zip(ready, answered, strict=True):
                out[i] = prediction if _is_finite(prediction) else self._not_finite(*items[i])
        return out  # type: ignore[return-value]  (every slot is filled)

    def _options(self, sample: bool, rng: np.random.Generator | None) -> dict[str, Any]:
        if sample and not self.can_sample:
            raise DataError(f"{self.config['Type']} models cannot sample their action; "
                            "leave 'sample' out", source="sample")
        return {"sample": True, "rng": rng} if sample else {}

    def _not_finite(self, window: Any, state: dict[str, Any] | None) -> DataError:
        """Whose fault a non-finite output is: the window's, unless it alone gives a
        finite answer (then the account_state's)."""
        blamed = "window" if state is None or not _is_finite(self.predict(window)) \
            else "account_state"
        return DataError(f"the model's output is not a finite number for this {blamed}: "
                         "its values are far outside what the model was trained on",
                         source=blamed)

    @property
    def window_size(self) -> int:
        """Rows a request window needs: lookback plus the transform's warm-up."""
        return self.lookback + self.spec.warmup

    def model_input(self, window: Any) -> np.ndarray:
        """The shared serving path: validate, transform, scale (exactly as in training)."""
        return scale_window(window, self.spec, self.scaler, self.lookback)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.config["Type"],
                "features": list(self.spec.features), "lookback": self.lookback,
                "window_size": self.window_size, "action_names": list(ACTION_NAMES)}


def _caught(call: Callable[..., Prediction], *args: Any, **kwargs: Any) -> Prediction | DataError:
    try:
        return call(*args, **kwargs)
    except DataError as exc:
        return exc


def _is_finite(prediction: Prediction) -> bool:
    numbers = [prediction.prediction, prediction.confidence, prediction.value_estimate,
               prediction.predicted_return, *(prediction.probabilities or {}).values()]
    return all(math.isfinite(n) for n in numbers if n is not None)


def choose_action(probabilities: np.ndarray, sample: bool = False,
                  rng: np.random.Generator | None = None) -> int:
    """The most likely action, or one drawn from ``probabilities`` with ``rng`` (a fresh,
    unseeded generator when None)."""
    if not sample:
        return int(np.argmax(probabilities))
    p = np.asarray(probabilities, dtype=np.float64)
    rng = rng if rng is not None else np.random.default_rng()
    return int(rng.choice(len(p), p=p / p.sum()))


def _check_scaler(scaler: Any, spec: FeatureSpec, model_dir: Path, name: str) -> None:
    n = getattr(scaler, "n_features_in_", None)
    if n is not None and n != len(spec.features):
        path = artifacts.artifact_path(model_dir, name, artifacts.SCALER_KIND)
        raise artifacts.ArtifactError(
            f"{artifacts.shown_path(path, model_dir)}: scaler expects {n} "
            f"features but the config lists {len(spec.features)}; the model folder is "
            "inconsistent")


def _resolve(target: type | str) -> type:
    """A class, or a 'module:Class' path imported on first use (keeps imports light)."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class ModelType:
    """A registry entry: how to train and load one kind of model."""

    name: str                 # registry key and CLI name, e.g. "ppo"
    label: str                # shown to people, e.g. "PPO Agent"
    prefix: str               # artifact folder prefix, e.g. "PPO" -> Models/PPO_<name>/
    trainer: type | str = field(repr=False)
    loader: type | str = field(repr=False)
    default_config: dict[str, Any] = field(default_factory=dict, repr=False)
    backtester: type | str | None = field(default=None, repr=False)

    def trainer_class(self) -> type[Trainer]:
        return _resolve(self.trainer)

    def backtester_class(self) -> type:
        if self.backtester is None:
            raise artifacts.ArtifactError(f"model type {self.name!r} has no backtester")
        return _resolve(self.backtester)

    def loader_class(self) -> type[ModelLoader]:
        return _resolve(self.loader)
