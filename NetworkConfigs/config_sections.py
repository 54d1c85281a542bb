"""Sectioned model configs: the one rule for merging user keys over a type's defaults
and for checking single values, shared by every model type.

A type's defaults are a mapping of sections (``model_params``, ``train_params``, …) to
keys. Users may give keys inside their section or flat at the top level
(``{"gamma": 0.98}``); flat keys are filed into their section. An unknown key is an
error naming it and the valid ones, never silently ignored. Every error is an
:class:`~Utilities.input_errors.InputError` whose ``field`` is the key, so a form places
it by data, never by reading the message.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from NetworkConfigs.base import deep_merge
from Utilities.accounting import MAX_EPISODE_LENGTH
from Utilities.input_errors import InputError, raise_collected

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


# Where a torch model type may train: "auto" is CUDA when a GPU is there, else the CPU
# (torch_utils.resolve_device); here, without torch, so a form can offer the choices.
DEVICES = ("auto", "cpu", "cuda")

def normalise_sections(config: dict[str, Any] | None,
                       defaults: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Defaults + user config (sectioned or flat). Every unknown key is reported at once
    (InputError, or InputErrors for several), each under its own name as ``field``."""
    if config is not None and not isinstance(config, dict):
        raise InputError(f"a config must be a mapping; got {type(config).__name__}")
    section_of = {key: section for section, keys in defaults.items() for key in keys}
    sectioned: dict[str, dict[str, Any]] = {}
    errors: dict[str | None, str] = {}
    for key, value in (config or {}).items():
        if key in defaults:
            if not isinstance(value, dict):
                errors[key] = f"config section {key!r} must be a mapping"
                continue
            for unknown in sorted(set(value) - set(defaults[key]), key=str):
                errors[unknown] = (f"unknown key(s) {[unknown]} in {key}; valid: "
                                   f"{sorted(defaults[key])}")
            sectioned.setdefault(key, {}).update(value)
        elif key in section_of:
            sectioned.setdefault(section_of[key], {})[key] = value
        else:
            errors[key] = f"unknown config key {key!r}; sections: {sorted(defaults)}"
    raise_collected(errors)
    return deep_merge(defaults, sectioned)


class Checks:
    """Runs several checks and keeps every InputError instead of stopping at the first,
    so a form can show all of a config's mistakes at once: ``value = check(size,
    section, "n_envs")`` gives the checked value (None when it failed), and
    :meth:`raise_any` raises what was found."""

    def __init__(self) -> None:
        self.errors: dict[str | None, str] = {}

    def __call__(self, check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return check(*args, **kwargs)
        except InputError as exc:
            self.errors.update(exc.errors)
            return None

    def raise_any(self) -> None:
        raise_collected(self.errors)


def checked(section: dict[str, Any], name: str, kind: type, *, low: float | None = None,
            high: float | None = None, optional: bool = False) -> Any:
    """``section[name]`` checked for type and range; InputError(field=name)."""
    value = section[name]
    if value is None and optional:
        return None
    ok = (isinstance(value, bool) if kind is bool
          else isinstance(value, int) and not isinstance(value, bool) if kind is int
          else isinstance(value, int | float) and not isinstance(value, bool) if kind is float
          else isinstance(value, kind))
    if not ok:
        raise InputError(f"{name} must be "
                         f"{kind.__name__ if kind is not float else 'a number'}; got {value!r}",
                         field=name)
    if kind is float and not math.isfinite(value):
        raise InputError(f"{name} must be a finite number; got {value!r}", field=name)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InputError(f"{name} must be {bounds}; got {value!r}", field=name)
    return kind(value)


def size(section: dict[str, Any], name: str, *, low: int = 1, optional: bool = False,
         key: str | None = None) -> Any:
    """An integer size setting in ``[low, LIMITS[name]]``; errors name the key and the
    bound. ``key`` reads another entry under ``name``'s bound (a saved ``lookback``)."""
    return checked(section, key or name, int, low=low, high=LIMITS[name], optional=optional)


def choice(section: dict[str, Any], name: str, valid: tuple[str, ...]) -> str:
    """``section[name]`` if it is one of ``valid``; the error lists them (field=name)."""
    if section[name] not in valid:
        raise InputError(f"{name} must be one of {list(valid)}; got {section[name]!r}",
                         field=name)
    return str(section[name])
