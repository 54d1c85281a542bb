"""PPOModelLoader: a trained PPO agent read back from ``Models/PPO_<name>/``.

Weights are read with ``torch.load(weights_only=True)`` (no code runs from the file) and
checked tensor by tensor against the network the config describes, so a folder whose
pieces disagree fails at load with the file and the mismatch named, never at the first
request. The network class is the trainer's own (``ppo_network.ActorCritic``); the
window goes through the very feature transform and scaler used in training
(``window_values`` + ``scale_values``: ``ModelLoader.model_input`` in two steps, so the
window is validated once and its last Close read from it). The account part of the
observation comes from ``accounting.account_features``, as in the training env. The
policy is evaluated with numpy where that mirrors the network
(``NetworkConfigs/numpy_policy.py`` says why, and how closely).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from NetworkConfigs.account_state import account_from_state
from NetworkConfigs.artifacts import ArtifactError, artifact_path, shown_path
from NetworkConfigs.base import (
    ACCOUNT_FIELDS,
    ACTION_NAMES,
    ModelLoader,
    Prediction,
    choose_action,
)
from NetworkConfigs.config_sections import size
from NetworkConfigs.numpy_policy import serving_policy
from NetworkConfigs.ppo_network import ActorCritic
from NetworkConfigs.weights_file import read_state_dict
from Utilities.accounting import ACCOUNT_FEATURES, Accounts, account_features
from Utilities.data_utils import DataError, scale_values, window_values

__all__ = ["ACCOUNT_FIELDS", "PPOModelLoader", "account_from_state"]


class PPOModelLoader(ModelLoader):
    """Loads a PPO model and answers one window of bars (+ optional account state)."""

    can_sample = True

    def _load_model(self) -> None:
        self.agent = self._network()
        path = artifact_path(self.model_dir, self.name, "model.pt")
        state = read_state_dict(path, self.model_dir)
        _check_weights(state, self.agent.state_dict(), shown_path(path, self.model_dir),
                       self._architecture())
        self.agent.load_state_dict(state)
        self.agent.eval()
        self._policy = serving_policy(self.agent)  # numpy where it mirrors the network

    def _setting(self, section: str, key: str) -> Any:
        try:
            return self.config[section][key]
        except (KeyError, TypeError):  # TypeError: the section is not a mapping
            raise ArtifactError(f"{self.where}: the config has no {section}.{key}") from None

    def _network(self) -> ActorCritic:
        """The network the config describes, before any weights are read."""
        extras = self._setting("observation", "account_features")
        if extras != ACCOUNT_FEATURES:  # account_features() always builds exactly these
            raise ArtifactError(f"{self.where}: the config's observation has {extras!r} "
                                f"account features; this loader builds {ACCOUNT_FEATURES}")
        n_features = len(self.spec.features)
        model = {key: self._setting("model_params", key)
                 for key in ("hidden_dim", "num_layers", "encoder")}
        try:  # the trainer's bounds: a config may not make the server allocate terabytes
            return ActorCritic(self.lookback * n_features + extras, len(ACTION_NAMES),
                               hidden_dim=size(model, "hidden_dim"),
                               depth=size(model, "num_layers"), lookback=self.lookback,
                               n_features=n_features, encoder=str(model["encoder"]))
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{self.where}: invalid model_params in the config: "
                                f"{exc}") from None

    def _architecture(self) -> str:
        """The config's network in words, for weight-mismatch messages."""
        model = self.config["model_params"]
        return (f"lookback {self.lookback} x {len(self.spec.features)} features + "
                f"{ACCOUNT_FEATURES} account values, {model['encoder']} encoder, "
                f"hidden_dim {model['hidden_dim']}, num_layers {model['num_layers']}")

    def account(self, state: dict[str, Any] | None, price: float | None) -> np.ndarray:
        """The observation's account entries: a flat, untouched account by default."""
        accounts, marked = account_from_state(state, self.env_params.initial_balance)
        price = marked if marked is not None else price
        if price is None:  # Close is not a model feature and no price was given
            if accounts.position[0] != 0:
                raise DataError("an open position needs a price to be valued: give "
                                "'price' (Close is not among the model's features)",
                                source="account_state", column="price")
            price = 1.0  # a flat account's entries do not depend on the price
        return account_features(accounts, np.array([price]), self.env_params.initial_balance)[0]

    def model_inputs(self, window: Any, state: dict[str, Any] | None = None) -> np.ndarray:
        """One observation: the scaled window, flat, then the account's entries (float32)."""
        values = window_values(window, self.spec.features)
        return self.input_from(scale_values(values, self.spec, self.scaler, self.lookback),
                               values[-1], state)

    def input_from(self, features: np.ndarray, last_bar: np.ndarray,
                   state: dict[str, Any] | None) -> np.ndarray:
        """The observation of a scaled window: flat, then the account's entries marked
        at the newest bar's Close (float32)."""
        price = float(last_bar[self._close]) if self._close is not None else None
        return np.concatenate([features.reshape(-1), self.account(state, price)]) \
            .astype(np.float32)

    def inputs_from(self, scaled: np.ndarray, last_bars: np.ndarray,
                    states: list[dict[str, Any] | None]) -> list[Any]:
        """:meth:`input_from` of a scaled stack. The items without an account state (a
        flat account: the usual request) get their account entries in one pass, the
        same float operations as :meth:`account` item by item."""
        flat = np.array([state is None for state in states])
        out: list[Any] = [None] * len(states)
        if flat.any():
            n = int(flat.sum())
            prices = last_bars[flat, self._close] if self._close is not None else np.ones(n)
            balance = self.env_params.initial_balance
            accounts = account_features(Accounts.open(n, balance), prices, balance)
            rows = np.concatenate([scaled[flat].reshape(n, -1), accounts], axis=1) \
                .astype(np.float32)
            for i, row in zip(np.flatnonzero(flat), rows, strict=True):
                out[i] = row
        held = np.flatnonzero(~flat)
        given = super().inputs_from(scaled[held], last_bars[held], [states[i] for i in held])
        for i, item in zip(held, given, strict=True):
            out[i] = item
        return out

    def answers(self, inputs: list[np.ndarray], *, sample: bool = False,
                rng: np.random.Generator | None = None) -> list[Prediction]:
        """Action probabilities and value for each observation, in one forward pass; the
        most likely action, or with ``sample`` one drawn from the probabilities with
        ``rng`` (in order)."""
        probs, values = self._policy(np.stack(inputs))
        return [_prediction(p, float(v), sample, rng)
                for p, v in zip(probs, values.tolist(), strict=True)]

    @property
    def _close(self) -> int | None:
        """Where Close is among the features (the account's mark price), if it is."""
        features = self.spec.features
        return features.index("Close") if "Close" in features else None


def _prediction(probs: np.ndarray, value: float, sample: bool,
                rng: np.random.Generator | None) -> Prediction:
    action = choose_action(probs, sample, rng)
    named = dict(zip(ACTION_NAMES, probs.tolist(), strict=True))
    return Prediction(action, ACTION_NAMES[action], named[ACTION_NAMES[action]],
                      probabilities=named, value_estimate=value)


def _check_weights(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                   path: str, architecture: str) -> None:
    """Same tensor names and shapes as the network the config describes."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing or unexpected:
        raise ArtifactError(f"{path}: weights do not match the config ({architecture}): "
                            f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    for key, tensor in expected.items():
        if found[key].shape != tensor.shape:
            raise ArtifactError(
                f"{path}: weights do not match the config ({architecture}): {key} is "
                f"{tuple(found[key].shape)} in the file, the config needs {tuple(tensor.shape)}")
