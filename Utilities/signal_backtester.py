"""Backtests of the supervised types: every window's output at once, through the one
mapping of :mod:`NetworkConfigs.signals` (flat → Hold, up → Buy, down → Sell; a
predicted return by the label threshold), then the shared engine.

The account does not enter a direction model's input, so the actions are an open-loop
tape: one batched call predicts every bar (the loop PPO needs is not needed here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from NetworkConfigs.base import ACTION_NAMES
from Utilities.accounting import EnvParams
from Utilities.backtest_report import BacktestInputError, decision_frame
from Utilities.model_backtester import ModelBacktester


class SignalBacktester(ModelBacktester):
    """Backtests a model whose loader has ``outputs(windows)`` and ``actions(outputs)``."""

    def decide(self, windows: np.ndarray, bars: pd.DataFrame,
               params: EnvParams) -> tuple[np.ndarray, pd.DataFrame]:
        if self.sample:
            raise BacktestInputError(f"{self.loader.config['Type']} models cannot sample their "
                                     "actions; leave 'sample' out")
        outputs = self.loader.outputs(windows)
        actions = self.loader.actions(outputs)
        if outputs.ndim == 2:
            named = {name: outputs[:, i] for i, name in enumerate(ACTION_NAMES)}
        else:
            named = {"predicted_return": outputs}
        return actions, decision_frame(bars.index, actions, named)
