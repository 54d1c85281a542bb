"""The loader side of the supervised types: window → model input → output → envelope.

A subclass reads its model file (``_load_model``) and maps a batch of scaled windows to
outputs (``outputs``): (N, 3) direction probabilities or (N,) predicted returns. The
single-window ``predict`` and the backtester's batch both go through ``outputs`` and
the one mapping of :mod:`NetworkConfigs.signals`, so they cannot disagree.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from NetworkConfigs.account_state import account_from_state
from NetworkConfigs.artifacts import ArtifactError
from NetworkConfigs.base import ModelLoader, Prediction
from NetworkConfigs.signals import DIRECTIONS, TARGETS, actions_from, prediction_from


class SignalLoader(ModelLoader):
    """A trained next-bar direction/return model."""

    targets: tuple[str, ...] = TARGETS  # what the type's trainer can learn

    def __init__(self, model_dir: Path, config: dict[str, Any]) -> None:
        super().__init__(model_dir, config)
        try:
            self.target = str(config["target"])
            self.threshold = float(config["threshold"])
            self.residual_std = float(config.get("residual_std") or 0.0)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{self.where}: the config lacks a valid target/threshold "
                                f"({exc!r})") from None
        if self.target not in self.targets:
            raise ArtifactError(f"{self.where}: target {self.target!r} in the config is not one "
                                f"this type predicts ({list(self.targets)})")

    @abstractmethod
    def outputs(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) probabilities (flat, up, down) or (N,) returns for (N, lookback, F)."""

    def actions(self, outputs: np.ndarray) -> np.ndarray:
        return actions_from(outputs, self.target, self.threshold)

    def model_inputs(self, window: Any, state: dict[str, Any] | None = None) -> np.ndarray:
        """The scaled window. ``state`` (the account) is checked like PPO's and not used:
        a direction model's view of the next bar does not depend on the position held."""
        account_from_state(state, self.env_params.initial_balance)
        return self.model_input(window)

    def input_from(self, features: np.ndarray, last_bar: np.ndarray,
                   state: dict[str, Any] | None) -> np.ndarray:
        """The scaled window itself; ``state`` checked as :meth:`model_inputs` does."""
        account_from_state(state, self.env_params.initial_balance)
        return features

    def answers(self, inputs: list[np.ndarray], **options: Any) -> list[Prediction]:
        """One envelope per window, from one :meth:`outputs` call over all of them."""
        return [prediction_from(output, self.target, self.threshold, self.residual_std)
                for output in self.outputs(np.stack(inputs))]

    def info(self) -> dict[str, Any]:
        return {**super().info(), "target": self.target, "threshold": self.threshold,
                "directions": list(DIRECTIONS)}
