"""PPO configuration: the YAML/JSON layout users write, and the flat settings PPO reads.

Users write three sections (the seed's layout; its keys stay valid)::

    model_params: {hidden_dim, num_layers, encoder, lookback_window, input_dim, num_actions}
    train_params: {learning_rate, epochs, batch_size, ppo_epochs, clip_ratio, value_coef,
                   entropy_coef, gamma, gae_lambda, n_envs, n_steps, total_timesteps, …}
    env_params:   {initial_balance, commission, slippage, position_fraction, …}
    data_params:  {features, transform, val_fraction, test_fraction, scaler}

Keys may also be given flat at the top level (``{"gamma": 0.98}``); they are filed into
their section. An unknown key is an error naming it, never silently ignored.
``example_ppo_config.yaml`` documents every key.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields
from typing import Any

DEFAULTS: dict[str, dict[str, Any]] = {
    "model_params": {"input_dim": None, "hidden_dim": 64, "num_layers": 2, "num_actions": 3,
                     "lookback_window": 30, "encoder": "mlp"},
    "train_params": {"learning_rate": 3e-4, "anneal_lr": True, "anneal_clip": False,
                     "epochs": None,
                     "total_timesteps": 200_000, "n_envs": 8, "n_steps": 256,
                     "batch_size": 256, "ppo_epochs": 4, "clip_ratio": 0.2,
                     "clip_value_loss": True, "value_coef": 0.5, "entropy_coef": 0.01,
                     "gamma": 0.99, "gae_lambda": 0.95, "max_grad_norm": 0.5,
                     "target_kl": None, "norm_adv": True, "seed": 1, "device": "auto",
                     "checkpoint_every": 10, "eval_every": 5},
    "env_params": {"initial_balance": 10_000.0, "commission": 0.0005, "slippage": 1.0,
                   "position_fraction": 1.0, "allow_short": True, "hold_penalty": 0.0,
                   "episode_length": 256, "reward_scale": 100.0},
    "data_params": {"features": None, "transform": "returns", "val_fraction": 0.15,
                    "test_fraction": 0.15, "scaler": "standard"},
}

# Smoke mode: a complete run on sample.csv in well under a minute on two cores.
SMOKE = {"train_params": {"total_timesteps": 8_192, "n_envs": 4, "n_steps": 256,
                          "ppo_epochs": 2, "checkpoint_every": 4, "eval_every": 4},
         "model_params": {"lookback_window": 20},
         "env_params": {"episode_length": 128}}

_SECTION_OF = {key: section for section, keys in DEFAULTS.items() for key in keys}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in, section by section."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def normalise(config: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults + user config (sectioned or flat); unknown keys raise ValueError."""
    sectioned: dict[str, dict[str, Any]] = {}
    for key, value in (config or {}).items():
        if key in DEFAULTS:
            if not isinstance(value, dict):
                raise ValueError(f"config section {key!r} must be a mapping")
            unknown = sorted(set(value) - set(DEFAULTS[key]))
            if unknown:
                raise ValueError(f"unknown key(s) {unknown} in {key}; valid: "
                                 f"{sorted(DEFAULTS[key])}")
            sectioned.setdefault(key, {}).update(value)
        elif key in _SECTION_OF:
            sectioned.setdefault(_SECTION_OF[key], {})[key] = value
        else:
            raise ValueError(f"unknown config key {key!r}; sections: {sorted(DEFAULTS)}")
    return deep_merge(DEFAULTS, sectioned)


@dataclass(frozen=True)
class PPOSettings:
    """What the algorithm reads, under the paper's / CleanRL's names."""

    total_timesteps: int
    n_envs: int
    n_steps: int
    learning_rate: float
    anneal_lr: bool
    anneal_clip: bool
    gamma: float
    gae_lambda: float
    minibatch_size: int
    update_epochs: int
    clip_coef: float
    clip_vloss: bool
    ent_coef: float
    vf_coef: float
    max_grad_norm: float
    target_kl: float | None
    norm_adv: bool
    seed: int
    device: str
    hidden_dim: int
    depth: int
    encoder: str

    @property
    def batch_size(self) -> int:
        return self.n_envs * self.n_steps

    @property
    def num_iterations(self) -> int:
        return max(1, self.total_timesteps // self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings_from(config: dict[str, Any]) -> PPOSettings:
    """Map a normalised config to PPOSettings; ``epochs`` (seed) counts iterations."""
    train, model = config["train_params"], config["model_params"]
    total = train["total_timesteps"]
    if train.get("epochs"):
        total = int(train["epochs"]) * int(train["n_envs"]) * int(train["n_steps"])
    settings = PPOSettings(
        total_timesteps=int(total), n_envs=int(train["n_envs"]), n_steps=int(train["n_steps"]),
        learning_rate=float(train["learning_rate"]), anneal_lr=bool(train["anneal_lr"]),
        anneal_clip=bool(train["anneal_clip"]),
        gamma=float(train["gamma"]), gae_lambda=float(train["gae_lambda"]),
        minibatch_size=int(train["batch_size"]), update_epochs=int(train["ppo_epochs"]),
        clip_coef=float(train["clip_ratio"]), clip_vloss=bool(train["clip_value_loss"]),
        ent_coef=float(train["entropy_coef"]), vf_coef=float(train["value_coef"]),
        max_grad_norm=float(train["max_grad_norm"]),
        target_kl=None if train["target_kl"] is None else float(train["target_kl"]),
        norm_adv=bool(train["norm_adv"]), seed=int(train["seed"]), device=str(train["device"]),
        hidden_dim=int(model["hidden_dim"]), depth=int(model["num_layers"]),
        encoder=str(model["encoder"]))
    _validate(settings)
    return settings


def _validate(s: PPOSettings) -> None:
    positive = {f.name: getattr(s, f.name) for f in fields(s)
                if f.name in ("total_timesteps", "n_envs", "n_steps", "minibatch_size",
                              "update_epochs", "learning_rate", "hidden_dim", "depth")}
    for name, value in positive.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive; got {value}")
    if s.minibatch_size > s.batch_size:
        raise ValueError(f"batch_size (minibatch) {s.minibatch_size} exceeds n_envs*n_steps = "
                         f"{s.batch_size}")
    for name in ("gamma", "gae_lambda"):
        if not 0.0 <= getattr(s, name) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1]; got {getattr(s, name)}")
    if s.clip_coef <= 0 or s.max_grad_norm <= 0:
        raise ValueError("clip_ratio and max_grad_norm must be positive")
