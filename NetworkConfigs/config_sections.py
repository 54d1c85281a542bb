"""Sectioned model configs: the one rule for merging user keys over a type's defaults
and for checking single values, shared by every model type.

A type's defaults are a mapping of sections (``model_params``, ``train_params``, …) to
keys. Users may give keys inside their section or flat at the top level
(``{"gamma": 0.98}``); flat keys are filed into their section. An unknown key is an
error naming it and the valid ones, never silently ignored.
"""

from __future__ import annotations

import math
from typing import Any

from NetworkConfigs.base import deep_merge
from Utilities.accounting import MAX_EPISODE_LENGTH

# Upper bounds of every size-like setting, checked with the rest of the config, so a
# slip (hidden_dim=1e8) fails at once naming the key and the bound, not minutes later
# inside the training child (or, from a model folder's config, in the server loading
# it). Each is one to two orders of magnitude above its default [in brackets], yet the
# largest network stays near 150M parameters (~0.6 GB of float32 weights, 2.4 GB with
# Adam's moments: one machine's memory): PPO's two trunks of num_layers x hidden_dim^2
# (2 x 8 x 2048^2 = 67M) plus their first layers (lookback_window x ~20 features x
# hidden_dim x 2 = 82M); the Transformer's n_layers x (4 d_model^2 + 2 d_model x
# dim_feedforward) = 16 x (1M + 4M) = 84M. Rollout sizes are bounded again with the
# data, where the observation size is known (PPOTrainer).
LIMITS: dict[str, int] = {
    "lookback_window": 2_000,          # bars per window [20-30]
    "hidden_dim": 2_048,               # PPO trunk width [64]
    "num_layers": 8,                   # PPO trunk depth [2]
    "n_envs": 512,                     # parallel PPO environments [8]
    "n_steps": 16_384,                 # steps per environment per rollout [256]
    "batch_size": 65_536,              # PPO minibatch, Transformer batch [64-256]
    "ppo_epochs": 100,                 # PPO update passes per rollout [4]
    "total_timesteps": 10_000_000_000,  # PPO budget [200k]
    "epochs": 10_000,                  # PPO iterations, boosting rounds, epochs [30-300]
    "patience": 10_000,                # epochs without a better validation loss [5-20]
    "episode_length": MAX_EPISODE_LENGTH,  # bars before an episode is cut [256]
    "max_depth": 32,                   # xgboost tree depth [4]
    "n_jobs": 1_024,                   # xgboost threads [1]
    "d_model": 512,                    # Transformer width [32]
    "n_heads": 64,                     # attention heads [4]
    "n_layers": 16,                    # Transformer layers [2]
    "dim_feedforward": 4_096,          # Transformer feed-forward width [64]
}


def normalise_sections(config: dict[str, Any] | None,
                       defaults: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Defaults + user config (sectioned or flat); unknown keys raise ValueError."""
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"a config must be a mapping; got {type(config).__name__}")
    section_of = {key: section for section, keys in defaults.items() for key in keys}
    sectioned: dict[str, dict[str, Any]] = {}
    for key, value in (config or {}).items():
        if key in defaults:
            if not isinstance(value, dict):
                raise ValueError(f"config section {key!r} must be a mapping")
            unknown = sorted(set(value) - set(defaults[key]))
            if unknown:
                raise ValueError(f"unknown key(s) {unknown} in {key}; valid: "
                                 f"{sorted(defaults[key])}")
            sectioned.setdefault(key, {}).update(value)
        elif key in section_of:
            sectioned.setdefault(section_of[key], {})[key] = value
        else:
            raise ValueError(f"unknown config key {key!r}; sections: {sorted(defaults)}")
    return deep_merge(defaults, sectioned)


def checked(section: dict[str, Any], name: str, kind: type, *, low: float | None = None,
            high: float | None = None, optional: bool = False) -> Any:
    """``section[name]`` checked for type and range; errors name the key."""
    value = section[name]
    if value is None and optional:
        return None
    ok = (isinstance(value, bool) if kind is bool
          else isinstance(value, int) and not isinstance(value, bool) if kind is int
          else isinstance(value, int | float) and not isinstance(value, bool) if kind is float
          else isinstance(value, kind))
    if not ok:
        raise ValueError(f"{name} must be {kind.__name__ if kind is not float else 'a number'}"
                         f"; got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}; got {value!r}")
    return kind(value)


def size(section: dict[str, Any], name: str, *, low: int = 1, optional: bool = False,
         key: str | None = None) -> Any:
    """An integer size setting in ``[low, LIMITS[name]]``; errors name the key and the
    bound. ``key`` reads another entry under ``name``'s bound (a saved ``lookback``)."""
    return checked(section, key or name, int, low=low, high=LIMITS[name], optional=optional)


def choice(section: dict[str, Any], name: str, valid: tuple[str, ...]) -> str:
    """``section[name]`` if it is one of ``valid``; the error lists them."""
    if section[name] not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}; got {section[name]!r}")
    return str(section[name])
