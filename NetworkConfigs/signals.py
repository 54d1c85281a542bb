"""Next-bar direction targets and the one mapping from a model's output to an action.

Used by every supervised type (XGBoost, Transformer), in training, serving and
backtesting alike, so the three can never disagree:

- **Target.** ``r[t] = log(Close[t+1] / Close[t])``, the next bar's log return.
  Its direction is *up* when ``r > threshold``, *down* when ``r < -threshold``, *flat*
  otherwise (``threshold`` is ``model_params.threshold``; moves inside it are too small
  to be worth a trade).
- **Mapping.** Classes are numbered like the actions they become: flat 0 → Hold,
  up 1 → Buy, down 2 → Sell. A classifier's action is its most likely class; a
  regressor's predicted return goes through the same threshold rule as the labels.
- **Semantics.** The action is an order on the account, exactly as for PPO and the
  env (``accounting.target_positions``): Buy steps the position up one (short → flat →
  long), Sell steps it down, Hold keeps it. So two "down" bars take a long account to
  short, and a /predict client that applies the actions to its account sees what the
  backtest books. (A signal read as a target position would make the API and the
  backtest disagree about the same prediction.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr

from NetworkConfigs.base import ACTION_NAMES, Prediction
from Utilities.accounting import BUY, HOLD, SELL
from Utilities.data_utils import PreparedData, windows_ending_at

DIRECTIONS = ("flat", "up", "down")  # index == the action it maps to (Hold, Buy, Sell)
TARGETS = ("direction", "return")


def next_returns(close: np.ndarray) -> np.ndarray:
    """``log(close[t+1] / close[t])``; the last entry, with no next bar, is NaN."""
    close = np.asarray(close, dtype=np.float64)
    out = np.full(len(close), np.nan)
    out[:-1] = np.log(close[1:] / close[:-1])
    return out


def direction_of(returns: np.ndarray, threshold: float) -> np.ndarray:
    """0 flat, 1 up, 2 down: labels of realised returns and actions of predicted ones."""
    returns = np.asarray(returns, dtype=np.float64)
    return np.where(returns > threshold, BUY, np.where(returns < -threshold, SELL, HOLD))


def actions_from(outputs: np.ndarray, target: str, threshold: float) -> np.ndarray:
    """Actions of a batch of model outputs: (N, 3) probabilities or (N,) returns."""
    if target == "direction":
        return np.asarray(outputs).argmax(axis=1).astype(np.int64)
    return direction_of(outputs, threshold).astype(np.int64)


def return_probabilities(predicted: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    """(N, 3) chances of flat/up/down if the realised return is N(predicted, sigma²);
    ``sigma`` is the model's root-mean-square error on the validation part."""
    predicted = np.asarray(predicted, dtype=np.float64)
    sigma = max(float(sigma), 1e-12)
    down = ndtr((-threshold - predicted) / sigma)
    up = 1.0 - ndtr((threshold - predicted) / sigma)
    return np.column_stack([np.clip(1.0 - up - down, 0.0, 1.0), up, down])


def prediction_from(output: np.ndarray | float, target: str, threshold: float,
                    sigma: float) -> Prediction:
    """The common envelope for one output: ``probabilities`` for a classifier;
    ``predicted_return`` for a regressor, whose confidence is the Gaussian chance of the
    chosen direction (see :func:`return_probabilities`)."""
    if target == "direction":
        probs = np.asarray(output, dtype=np.float64)
        action = int(probs.argmax())
        named = {name: float(p) for name, p in zip(ACTION_NAMES, probs, strict=True)}
        return Prediction(action, ACTION_NAMES[action], float(probs[action]),
                          probabilities=named)
    value = float(np.asarray(output).reshape(-1)[0])
    action = int(direction_of(np.array([value]), threshold)[0])
    chance = return_probabilities(np.array([value]), threshold, sigma)[0, action]
    return Prediction(action, ACTION_NAMES[action], float(chance), predicted_return=value)


@dataclass(frozen=True)
class Samples:
    """One part's training examples: windows ending at each decision bar and targets."""

    x: np.ndarray          # (N, lookback, n_features) float32, scaled features
    returns: np.ndarray    # (N,) next-bar log return
    labels: np.ndarray     # (N,) direction class 0/1/2
    index: pd.Index        # timestamp of each decision bar

    def __len__(self) -> int:
        return len(self.labels)


def samples(data: PreparedData, part: str, threshold: float) -> Samples:
    """Windows and targets of the decision bars of ``part`` (train/validation/test).

    A part's last bar is left out: its target is the next part's first bar, which
    would leak validation prices into training. Windows of validation and test bars
    look back into the previous part, which is past data at prediction time.
    """
    start, stop = data.split.parts()[part]
    lookback = data.lookback
    first = max(start, lookback - 1)
    rows = np.arange(first, max(stop - 1, first))
    returns = next_returns(data.bars["Close"].to_numpy())[rows]
    x = np.ascontiguousarray(windows_ending_at(data.scaled, lookback, first, first + len(rows)),
                             dtype=np.float32)
    return Samples(x, returns, direction_of(returns, threshold), data.features.index[rows])


def majority_accuracy(train_labels: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy on ``labels`` of always answering the training part's most common class."""
    if len(labels) == 0:
        return float("nan")
    majority = np.bincount(train_labels, minlength=len(DIRECTIONS)).argmax()
    return float((labels == majority).mean())
