"""The backtest every model type shares: load the model and the CSV, choose the period,
build the model's input windows, let the type decide the actions, then score them with
the engine (:mod:`Utilities.backtester`) beside buy-and-hold and ranked among seeded
random policies.

A type's backtester (named in its registry entry) implements only :meth:`decide`:
PPO plays closed-loop (:mod:`Utilities.ppo_backtester`), the supervised types map their
batch outputs to actions (:mod:`Utilities.signal_backtester`). :func:`backtest_model`
picks the right one for a model folder, so callers never branch on a type name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from NetworkConfigs import load_model, model_type_of
from NetworkConfigs.base import ModelLoader
from Utilities.accounting import EnvParams
from Utilities.backtest_report import BacktestReport, choose_period, env_params_for
from Utilities.backtester import (
    BASELINE_SEED,
    RANDOM_POLICIES,
    baselines,
    random_policies,
    run_backtest,
)
from Utilities.data_utils import load_bars, transform_features, windows_ending_at

# ``progress(fraction, stage)``: how far a run is (0 to 1) and what it is doing, for a
# caller that shows it (the web's background backtests). Called a few dozen times per
# run at most, so a caller may do a little work in it (take a lock, store a number).
Progress = Callable[[float, str], None]
# Where each stage starts; deciding (PPO's closed loop, a model's batch outputs) is
# most of a long run's time.
_LOADED, _DECIDING, _SCORING = 0.1, 0.15, 0.9


class ModelBacktester(ABC):
    """``Backtester(config_or_model_dir, csv_path).load_artifacts().run_with_results()``.

    ``start``/``end`` bound the bars (default: the held-out test slice when the CSV is
    the training file, else the whole file); ``commission``, ``slippage`` and
    ``initial_balance`` override the model's env_params; ``fill`` is ``"close"`` or
    ``"next_open"``; ``sample`` draws actions (seeded) where the type can sample;
    ``progress`` (see :data:`Progress`) is told how far the run is;
    ``random_policies`` random policies of ``random_kind`` (``"matched"`` or
    ``"uniform"``, seeded by ``random_seed``) rank the result (see
    :func:`Utilities.backtester.random_policies`; 0 ranks nothing and shows one uniform
    random policy, as before the ranking, for a timing that leaves it out).
    """

    def __init__(self, model: str | Path, csv_path: str | Path, *, start: Any = None,
                 end: Any = None, commission: float | None = None,
                 slippage: float | None = None, initial_balance: float | None = None,
                 fill: str = "close", sample: bool = False, seed: int = 0,
                 progress: Progress | None = None, random_policies: int = RANDOM_POLICIES,
                 random_seed: int = BASELINE_SEED, random_kind: str = "matched") -> None:
        path = Path(model)
        self.model_dir = path.parent if path.suffix in (".yaml", ".yml") else path
        self.csv_path = Path(csv_path)
        self.start, self.end, self.fill = start, end, fill
        self.overrides = {"commission": commission, "slippage": slippage,
                          "initial_balance": initial_balance}
        self.sample, self.seed = sample, seed
        self.progress = progress
        self.random = {"count": random_policies, "seed": random_seed, "kind": random_kind}
        self.loader: Any = None
        self.bars: pd.DataFrame | None = None

    def load_artifacts(self) -> Self:
        """Read the model (config, scaler, weights) and the CSV; errors say what is wrong."""
        self.loader = self._load(self.model_dir)
        self.bars = load_bars(self.csv_path)
        return self

    def _load(self, model_dir: Path) -> ModelLoader:
        return load_model(model_dir)

    def run_with_results(self) -> BacktestReport:
        if self.loader is None or self.bars is None:
            self._report(0.0, "reading the model and the data")
            self.load_artifacts()
        self._report(_LOADED, "preparing the model's inputs")
        loader, bars = self.loader, self.bars
        params = env_params_for(loader.config, **self.overrides)
        features = transform_features(bars, loader.spec, source=str(self.csv_path))
        period = choose_period(features.index, loader.lookback - 1, config=loader.config,
                               csv_path=self.csv_path, start=self.start, end=self.end)
        scaled = loader.scaler.transform(features.to_numpy()).astype(np.float32)
        windows = windows_ending_at(scaled, loader.lookback, period.first, period.last + 1)
        period_bars = bars.loc[features.index[period.first:period.last + 1]]
        self.deciding(0.0)
        actions, decisions = self.decide(windows, period_bars, params)
        self._report(_SCORING, "scoring the trades and the baselines")
        result = run_backtest(period_bars, actions=actions, params=params, fill=self.fill)
        ranked = random_policies(period_bars, params, self.fill, model_trades=len(result.trades),
                                 **self.random) if self.random["count"] else None
        return BacktestReport(loader.name, loader.config["Type"], str(self.csv_path), period,
                              result, baselines(period_bars, params, self.fill, random=ranked),
                              decisions, ranked)

    def deciding(self, fraction: float) -> None:
        """A type's :meth:`decide` says how far it is (0 to 1), if it can tell."""
        self._report(_DECIDING + (_SCORING - _DECIDING) * min(max(fraction, 0.0), 1.0),
                     "the model is deciding")

    def _report(self, fraction: float, stage: str) -> None:
        if self.progress is not None:
            self.progress(fraction, stage)

    @abstractmethod
    def decide(self, windows: np.ndarray, bars: pd.DataFrame,
               params: EnvParams) -> tuple[np.ndarray, pd.DataFrame]:
        """Actions for the period's bars (window ``i`` ends at bar ``i``) and a per-bar
        decisions frame (action, action_name, and whatever the type outputs)."""


def backtester_for(model: str | Path, csv_path: str | Path, **options: Any) -> ModelBacktester:
    """The registered backtester of the model's type, set up for ``csv_path``."""
    path = Path(model)
    model_dir = path.parent if path.suffix in (".yaml", ".yml") else path
    return model_type_of(model_dir).backtester_class()(model, csv_path, **options)


def backtest_model(model: str | Path, csv_path: str | Path, **options: Any) -> BacktestReport:
    """Backtest any saved model on a CSV (options as :class:`ModelBacktester`)."""
    return backtester_for(model, csv_path, **options).run_with_results()
