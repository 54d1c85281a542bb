"""PPO configuration: the YAML/JSON layout users write, and the flat settings PPO reads.

Users write three sections (the seed's layout; its keys stay valid)::

    model_params: {hidden_dim, num_layers, encoder, lookback_window, input_dim, num_actions}
    train_params: {learning_rate, epochs, batch_size, ppo_epochs, clip_ratio, value_coef,
                   entropy_coef, gamma, gae_lambda, n_envs, n_steps, total_timesteps, …}
    env_params:   {initial_balance, commission, slippage, position_fraction, …}
    data_params:  {features, transform, val_fraction, test_fraction, scaler}
    monitor:      {featured_accounts, account_hz, decision_hz, trades_per_second}

Keys may also be given flat at the top level (``{"gamma": 0.98}``); they are filed into
their section. An unknown key is an error naming it, never silently ignored.
``example_ppo_config.yaml`` documents every key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from NetworkConfigs.base import DEFAULT_KEEP_CHECKPOINTS
from NetworkConfigs.config_sections import (
    DEVICES,
    Checks,
    checked,
    choice,
    normalise_sections,
    size,
)
from Utilities.accounting import EnvParams
from Utilities.input_errors import InputError

# How the network reads the feature window (see ppo_network's docstring).
ENCODERS = ("mlp", "conv", "gru")

# The live monitor (NetworkConfigs.live_monitor). Most featured accounts: the live page
# has four agent cards. Above MAX_HZ a snapshot or decision per account per second is no
# longer "a few times a second": it costs throughput and store space for nothing a
# person can read.
MAX_FEATURED = 4
MAX_HZ = 50.0
MAX_TRADES_PER_SECOND = 1_000
MONITOR_DEFAULTS: dict[str, Any] = {"featured_accounts": 4, "account_hz": 4.0,
                                    "decision_hz": 2.0, "trades_per_second": 20}

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
                     "checkpoint_every": 10, "keep_checkpoints": DEFAULT_KEEP_CHECKPOINTS,
                     "eval_every": 5},
    "env_params": EnvParams().to_dict(),  # one source for the env's defaults
    "data_params": {"features": None, "transform": "returns", "val_fraction": 0.15,
                    "test_fraction": 0.15, "scaler": "standard"},
    "monitor": MONITOR_DEFAULTS,
}

# Smoke mode: a complete run on sample.csv in well under a minute on two cores.
SMOKE = {"train_params": {"total_timesteps": 8_192, "n_envs": 4, "n_steps": 256,
                          "ppo_epochs": 2, "checkpoint_every": 4, "eval_every": 4},
         "model_params": {"lookback_window": 20},
         "env_params": {"episode_length": 128}}


def normalise(config: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults + user config (sectioned or flat); unknown keys raise InputError(s)."""
    return normalise_sections(config, DEFAULTS)


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
    """Map a normalised config to PPOSettings; ``epochs`` (seed) counts iterations.
    Every bad key is reported at once (InputErrors, field = the key)."""
    train, model = config["train_params"], config["model_params"]
    check = Checks()
    n_envs, n_steps = check(size, train, "n_envs"), check(size, train, "n_steps")
    epochs = check(size, train, "epochs", optional=True)
    total = None if epochs else check(size, train, "total_timesteps")
    values = dict(
        n_envs=n_envs, n_steps=n_steps,
        learning_rate=check(checked, train, "learning_rate", float, low=1e-12),
        anneal_lr=check(checked, train, "anneal_lr", bool),
        anneal_clip=check(checked, train, "anneal_clip", bool),
        gamma=check(checked, train, "gamma", float, low=0, high=1),
        gae_lambda=check(checked, train, "gae_lambda", float, low=0, high=1),
        minibatch_size=check(size, train, "batch_size", low=2),
        update_epochs=check(size, train, "ppo_epochs"),
        clip_coef=check(checked, train, "clip_ratio", float, low=1e-9),
        clip_vloss=check(checked, train, "clip_value_loss", bool),
        ent_coef=check(checked, train, "entropy_coef", float, low=0),
        vf_coef=check(checked, train, "value_coef", float, low=0),
        max_grad_norm=check(checked, train, "max_grad_norm", float, low=1e-9),
        target_kl=check(checked, train, "target_kl", float, low=0, optional=True),
        norm_adv=check(checked, train, "norm_adv", bool),
        seed=check(checked, train, "seed", int, low=0, high=2**32 - 1),
        device=check(choice, train, "device", DEVICES),
        hidden_dim=check(size, model, "hidden_dim"),
        depth=check(size, model, "num_layers"),
        encoder=check(choice, model, "encoder", ENCODERS))
    for name in ("checkpoint_every", "keep_checkpoints", "eval_every"):
        check(checked, train, name, int, low=1)
    check(size, model, "lookback_window")
    check.raise_any()
    settings = PPOSettings(total_timesteps=epochs * n_envs * n_steps if epochs else total,
                           **values)
    if settings.minibatch_size > settings.batch_size:
        raise InputError(f"batch_size (minibatch) {settings.minibatch_size} exceeds "
                         f"n_envs*n_steps = {settings.batch_size}", field="batch_size")
    return settings


@dataclass(frozen=True)
class MonitorSettings:
    """The ``monitor:`` section of a PPO config (see example_ppo_config.yaml)."""

    featured_accounts: int = MONITOR_DEFAULTS["featured_accounts"]
    account_hz: float = MONITOR_DEFAULTS["account_hz"]
    decision_hz: float = MONITOR_DEFAULTS["decision_hz"]
    trades_per_second: int = MONITOR_DEFAULTS["trades_per_second"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def monitor_settings(config: dict[str, Any]) -> MonitorSettings:
    """The checked ``monitor`` section of a normalised config; every bad key at once
    (InputErrors, field = the key)."""
    section = config["monitor"]
    check = Checks()
    values = {
        "featured_accounts": check(checked, section, "featured_accounts", int, low=0,
                                   high=MAX_FEATURED),
        "account_hz": check(checked, section, "account_hz", float, low=0.01, high=MAX_HZ),
        "decision_hz": check(checked, section, "decision_hz", float, low=0.01, high=MAX_HZ),
        "trades_per_second": check(checked, section, "trades_per_second", int, low=1,
                                   high=MAX_TRADES_PER_SECOND),
    }
    check.raise_any()
    return MonitorSettings(**values)
