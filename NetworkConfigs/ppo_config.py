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

from dataclasses import asdict, dataclass
from typing import Any

from NetworkConfigs.base import deep_merge
from NetworkConfigs.ppo_network import ENCODERS
from NetworkConfigs.trading_env import EnvParams

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
    "env_params": EnvParams().to_dict(),  # one source for the env's defaults
    "data_params": {"features": None, "transform": "returns", "val_fraction": 0.15,
                    "test_fraction": 0.15, "scaler": "standard"},
}

# Smoke mode: a complete run on sample.csv in well under a minute on two cores.
SMOKE = {"train_params": {"total_timesteps": 8_192, "n_envs": 4, "n_steps": 256,
                          "ppo_epochs": 2, "checkpoint_every": 4, "eval_every": 4},
         "model_params": {"lookback_window": 20},
         "env_params": {"episode_length": 128}}

_SECTION_OF = {key: section for section, keys in DEFAULTS.items() for key in keys}


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


def _get(section: dict[str, Any], name: str, kind: type, *, low: float | None = None,
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
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}; got {value!r}")
    return kind(value)


def settings_from(config: dict[str, Any]) -> PPOSettings:
    """Map a normalised config to PPOSettings; ``epochs`` (seed) counts iterations."""
    train, model = config["train_params"], config["model_params"]
    n_envs, n_steps = _get(train, "n_envs", int, low=1), _get(train, "n_steps", int, low=1)
    epochs = _get(train, "epochs", int, low=1, optional=True)
    total = epochs * n_envs * n_steps if epochs else _get(train, "total_timesteps", int, low=1)
    settings = PPOSettings(
        total_timesteps=total, n_envs=n_envs, n_steps=n_steps,
        learning_rate=_get(train, "learning_rate", float, low=1e-12),
        anneal_lr=_get(train, "anneal_lr", bool), anneal_clip=_get(train, "anneal_clip", bool),
        gamma=_get(train, "gamma", float, low=0, high=1),
        gae_lambda=_get(train, "gae_lambda", float, low=0, high=1),
        minibatch_size=_get(train, "batch_size", int, low=2),
        update_epochs=_get(train, "ppo_epochs", int, low=1),
        clip_coef=_get(train, "clip_ratio", float, low=1e-9),
        clip_vloss=_get(train, "clip_value_loss", bool),
        ent_coef=_get(train, "entropy_coef", float, low=0),
        vf_coef=_get(train, "value_coef", float, low=0),
        max_grad_norm=_get(train, "max_grad_norm", float, low=1e-9),
        target_kl=_get(train, "target_kl", float, low=0, optional=True),
        norm_adv=_get(train, "norm_adv", bool),
        seed=_get(train, "seed", int, low=0, high=2**32 - 1),
        device=_choice(train, "device", ("auto", "cpu", "cuda")),
        hidden_dim=_get(model, "hidden_dim", int, low=1),
        depth=_get(model, "num_layers", int, low=1),
        encoder=_choice(model, "encoder", ENCODERS))
    for name in ("checkpoint_every", "eval_every"):
        _get(train, name, int, low=1)
    _get(model, "lookback_window", int, low=1)
    if settings.minibatch_size > settings.batch_size:
        raise ValueError(f"batch_size (minibatch) {settings.minibatch_size} exceeds "
                         f"n_envs*n_steps = {settings.batch_size}")
    return settings


def _choice(section: dict[str, Any], name: str, valid: tuple[str, ...]) -> str:
    if section[name] not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}; got {section[name]!r}")
    return str(section[name])
