"""PPOModelLoader: a trained PPO agent read back from ``Models/PPO_<name>/``.

Weights are read with ``torch.load(weights_only=True)`` (no code runs from the file);
the network class is the trainer's own (``ppo_network.ActorCritic``); the window goes
through the very feature transform and scaler used in training (``ModelLoader``).
The account part of the observation comes from ``trading_env.account_features``, the
same function the training environment uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from NetworkConfigs.artifacts import ArtifactError, ModelNotFound, artifact_path
from NetworkConfigs.base import ACTION_NAMES, ModelLoader, Prediction
from NetworkConfigs.ppo_network import ActorCritic
from NetworkConfigs.trading_env import Accounts, EnvParams, account_features
from Utilities.data_utils import window_frame

ACCOUNT_FIELDS = ("cash", "units", "position", "entry_price", "entry_cost")


class PPOModelLoader(ModelLoader):
    """Loads a PPO model and answers one window of bars (+ optional account state)."""

    def _load_model(self) -> None:
        model = self.config["model_params"]
        n_features = len(self.spec.features)
        obs_dim = self.lookback * n_features + int(
            self.config["observation"]["account_features"])
        self.env_params = EnvParams.from_dict(self.config["env_params"])
        self.agent = ActorCritic(obs_dim, len(ACTION_NAMES), hidden_dim=int(model["hidden_dim"]),
                                 depth=int(model["num_layers"]), lookback=self.lookback,
                                 n_features=n_features, encoder=str(model["encoder"]))
        path = artifact_path(self.model_dir, self.name, "model.pt")
        if not path.is_file():
            raise ModelNotFound(f"{self.model_dir}: weights file {path.name} is missing")
        try:
            self.agent.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, KeyError) as exc:
            raise ArtifactError(f"{path}: weights do not match the config ({exc})") from None
        self.agent.eval()

    def account(self, state: dict[str, Any] | None, price: float | None) -> np.ndarray:
        """The observation's account entries: a flat, untouched account by default."""
        accounts = Accounts.open(1, self.env_params.initial_balance)
        for key, value in (state or {}).items():
            if key not in ACCOUNT_FIELDS:
                raise ValueError(f"unknown account_state field {key!r}; valid: {ACCOUNT_FIELDS}")
            getattr(accounts, key)[0] = value
        if price is None:  # Close is not a model feature: only a flat account can be valued
            if accounts.position[0] != 0:
                raise ValueError("an open position needs Close among the model's features")
            price = 1.0
        return account_features(accounts, np.array([price]), self.env_params.initial_balance)[0]

    def predict(self, window: Any, state: dict[str, Any] | None = None) -> Prediction:
        frame = window_frame(window, self.spec.features)
        features = self.model_input(frame)
        price = float(frame["Close"].iloc[-1]) if "Close" in frame.columns else None
        obs = np.concatenate([features.reshape(-1), self.account(state, price)])
        probs, value = self.agent.policy(torch.as_tensor(obs, dtype=torch.float32)[None])
        probs = probs[0].numpy()
        best = int(probs.argmax())
        return Prediction(best, ACTION_NAMES[best], float(probs[best]),
                          probabilities=dict(zip(ACTION_NAMES, map(float, probs), strict=True)),
                          value_estimate=float(value[0]))
