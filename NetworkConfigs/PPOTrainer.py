"""PPO for trading: bars → features → vectorised trading env → PPO → ``Models/PPO_<name>/``.

``PPOTrainer(config, callbacks)`` follows the registry contract (``fit(bars, ...)``)
and also trains any gymnasium vector env directly (``learn(envs)``): CartPole in the
tests, to prove the algorithm on a problem with a known answer.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch

from NetworkConfigs.artifacts import ensure_available, file_sha256, write_model
from NetworkConfigs.base import Callback, Trainer
from NetworkConfigs.callbacks import StoreLogger
from NetworkConfigs.config_sections import Checks
from NetworkConfigs.live_monitor import LiveMonitor
from NetworkConfigs.ppo_algorithm import PPO
from NetworkConfigs.ppo_config import SMOKE, monitor_settings, normalise, settings_from
from NetworkConfigs.ppo_network import ActorCritic
from NetworkConfigs.trading_env import TradingEnvironment, VecTradingEnv, bar_times, env_arrays
from Utilities.accounting import ACCOUNT_FEATURES, HOLD, EnvParams
from Utilities.backtester import buy_and_hold, run_backtest
from Utilities.data_utils import PreparedData, prepare_from_params
from Utilities.input_errors import InputError
from Utilities.performance import return_pct

__all__ = ["ActorCritic", "PPOTrainer", "ValidationCallback", "buy_and_hold_pct",
           "evaluate_greedy"]

log = logging.getLogger(__name__)
PREFIX, TYPE_NAME = "PPO", "ppo"
# A rollout's observations beyond this fail before training (the defaults use 2.5 MB;
# 64 envs x 2,048 steps of a 100 x 20 window use 1 GiB).
MAX_ROLLOUT_BYTES = 4 << 30


@torch.no_grad()
def evaluate_greedy(agent: ActorCritic, env: TradingEnvironment,
                    device: torch.device | str = "cpu") -> dict[str, float]:
    """Play one deterministic (argmax) episode over the env's whole slice, then score
    its actions as the default backtest does (:func:`Utilities.backtester.run_backtest`):
    a position still open at the end is closed at the last close, costs paid. So
    ``return_pct`` is the backtest's Return [%] on the same bars, and ``trades`` and
    ``win_rate`` count the same closed trades."""
    market = env.market
    obs, _ = env.reset(options={"start": market.first})
    actions = np.full(market.n - market.first, HOLD, dtype=np.int64)  # last: never fills
    done, steps = False, 0
    while not done:
        probs, _ = agent.policy(torch.as_tensor(obs, device=device).unsqueeze(0))
        actions[steps] = int(probs.argmax())
        obs, _, terminated, truncated, _ = env.step(int(actions[steps]))
        done, steps = terminated or truncated, steps + 1
    bars = pd.DataFrame({"Close": market.prices[market.first:]})
    result = run_backtest(bars, actions=actions, params=env.params)
    pnl = result.trades["pnl"]
    return {"return_pct": return_pct(result.equity), "final_equity": float(result.equity.iloc[-1]),
            "trades": len(pnl), "win_rate": float((pnl > 0).mean()) if len(pnl) else 0.0,
            "steps": steps}


def buy_and_hold_pct(env: TradingEnvironment) -> float:
    """The Buy & Hold baseline's Return [%] on the env's slice (costs paid, as the
    default backtest's Buy & Hold column: :func:`Utilities.backtester.buy_and_hold`)."""
    bars = pd.DataFrame({"Close": env.market.prices[env.market.first:]})
    return return_pct(buy_and_hold(bars, params=env.params).equity)


class ValidationCallback(Callback):
    """Greedy play on the validation slice every ``every`` iterations; keeps the best
    weights (by return) on the trainer, where checkpoints and ``fit`` find them."""

    def __init__(self, env: TradingEnvironment, every: int = 5) -> None:
        self.env, self.every = env, max(1, every)
        self.history: list[dict[str, float]] = []

    def on_iteration_end(self, metrics: dict[str, Any]) -> bool:
        if metrics["iteration"] % self.every == 0:
            # Into the iteration's metrics (this callback runs first): the store logger
            # records it, and the platform's alerts see a new best model in it.
            metrics["validation_return_pct"] = self.evaluate(metrics["iteration"])["return_pct"]
        return True

    def on_training_end(self, summary: dict[str, Any]) -> None:
        done = summary["iterations"]
        if summary["status"] != "failed" and (not self.history or self.history[-1]["iteration"]
                                               != done):
            self.evaluate(done)

    def evaluate(self, iteration: int) -> dict[str, float]:
        trainer = self.trainer
        result = {"iteration": iteration, **evaluate_greedy(trainer.agent, self.env,
                                                            trainer.device)}
        self.history.append(result)
        if trainer.best_score is None or result["return_pct"] > trainer.best_score:
            trainer.best_score = result["return_pct"]
            trainer.best_state = copy.deepcopy(trainer.agent.state_dict())
        log.info("validation at iteration %d: return %.2f%% (%d trades)", iteration,
                 result["return_pct"], result["trades"])
        return result


class PPOTrainer(Trainer):
    """Registry trainer for the ``ppo`` type."""

    smoke_config = SMOKE
    checkpoint_keys = ("model", "optimizer", "iteration", "global_step", "settings")

    def __init__(self, config: dict[str, Any] | None = None,
                 callbacks: list[Callback] | tuple = ()) -> None:
        super().__init__(normalise(config), callbacks)
        check = Checks()  # every bad key at once, so a form shows them all
        self.settings = check(settings_from, self.config)
        self.env_params = check(EnvParams.from_dict, self.config["env_params"])
        self.monitor = check(monitor_settings, self.config)
        check.raise_any()
        self.algorithm: PPO | None = None
        self.validation: ValidationCallback | None = None

    @property
    def progress_total(self) -> int:
        return self.settings.num_iterations * self.settings.batch_size

    @property
    def status(self) -> str:
        return self.algorithm.status if self.algorithm is not None else "new"

    @property
    def checkpoint_every(self) -> int:  # type: ignore[override]
        return int(self.config["train_params"]["checkpoint_every"])

    def check_data(self, bars: pd.DataFrame, source: str | None = None) -> None:
        """Everything fit() will ask of the data, checked before a run is recorded."""
        self.prepared(bars, source)

    @property
    def lookback(self) -> int:
        return int(self.config["model_params"]["lookback_window"])

    def learn(self, envs: gym.vector.VectorEnv, state: dict[str, Any] | None = None,
              network_kwargs: dict[str, Any] | None = None) -> ActorCritic:
        """Train on any SAME_STEP-autoreset vector env with Box obs and Discrete actions.
        With a run store's logger among the callbacks and a trading env, the live monitor
        of its featured accounts joins them (config section ``monitor``)."""
        if self.algorithm is None:
            self._add_monitor(envs)
            self.algorithm = PPO(self.settings, self.callbacks, network_kwargs)
        return self.algorithm.learn(envs, state)

    def _add_monitor(self, envs: gym.vector.VectorEnv) -> None:
        """Last in the list, so it hears the end before the logger closes (reverse order)."""
        logger = next((c.metrics for c in self.callbacks if isinstance(c, StoreLogger)), None)
        if (logger is not None and self.monitor.featured_accounts
                and isinstance(envs, VecTradingEnv)
                and not any(isinstance(c, LiveMonitor) for c in self.callbacks)):
            self.callbacks.append(LiveMonitor(logger, self.monitor))

    def prepare(self, bars: pd.DataFrame, source: str | None = None) -> PreparedData:
        data = prepare_from_params(bars, self.config["data_params"], lookback=self.lookback,
                                   source=source)
        self._check_model_params(len(data.spec.features))
        return data

    def _check_model_params(self, n_features: int) -> None:
        model = self.config["model_params"]
        if model["input_dim"] not in (None, n_features):
            raise InputError(f"model_params.input_dim is {model['input_dim']} but the data "
                             f"has {n_features} features; leave it empty to derive it",
                             field="input_dim")
        if int(model["num_actions"]) != 3:
            raise InputError("model_params.num_actions must be 3 (Hold, Buy, Sell)",
                             field="num_actions")
        self._check_rollout_size(n_features)

    def _check_rollout_size(self, n_features: int) -> None:
        """The rollout's observations (float32, kept on the host and copied once for the
        update) must fit in memory; each setting may be in bounds and the product not."""
        s = self.settings
        values = (s.n_steps + 1) * s.n_envs * (self.lookback * n_features + ACCOUNT_FEATURES)
        if values * 4 > MAX_ROLLOUT_BYTES:
            raise InputError(
                f"a rollout of n_envs x n_steps = {s.batch_size:,} steps of "
                f"{self.lookback} x {n_features} features needs {values * 4 / 2**30:.1f} GiB "
                f"for its observations; at most {MAX_ROLLOUT_BYTES >> 30} GiB: lower n_envs, "
                "n_steps or lookback_window", field="n_envs")

    def fit(self, bars: pd.DataFrame, *, model_name: str, models_dir: Path,
            data_file: str | None = None, overwrite: bool = False,
            resume_state: dict[str, Any] | None = None) -> Path:
        """Train on the train part, validate on the validation part, save the best model."""
        ensure_available(models_dir, PREFIX, model_name, overwrite)
        data = self.prepared(bars, Path(data_file).name if data_file else None, keep=False)
        envs = VecTradingEnv(*env_arrays(data, "train"), self.lookback, self.env_params,
                             num_envs=self.settings.n_envs, times=bar_times(data, "train"))
        self._add_validation(data)
        n_features = len(data.spec.features)
        self.learn(envs, resume_state, {"lookback": self.lookback, "n_features": n_features})
        return self._save(data, model_name, models_dir, data_file, overwrite)

    def _evaluation_env(self, data: PreparedData, part: str) -> TradingEnvironment | None:
        if data.split.parts()[part][1] <= data.split.parts()[part][0]:
            return None
        return TradingEnvironment(*env_arrays(data, part), self.lookback,
                                  replace(self.env_params, episode_length=None),
                                  random_start=False)

    def _add_validation(self, data: PreparedData) -> None:
        env = self._evaluation_env(data, "validation")
        if env is not None and self.validation is None:
            every = int(self.config["train_params"]["eval_every"])
            self.validation = ValidationCallback(env, every)
            self.callbacks.insert(0, self.validation)

    def _final_metrics(self, data: PreparedData, agent: ActorCritic) -> dict[str, Any]:
        metrics: dict[str, Any] = {"iterations": self.algorithm.iteration,
                                   "timesteps": self.algorithm.global_step,
                                   "status": self.algorithm.status}
        for part in ("validation", "test"):
            env = self._evaluation_env(data, part)
            if env is not None:
                result = evaluate_greedy(agent, env, self.algorithm.device)
                # Unrounded: it is the default backtest's Return [%] to the last digits.
                metrics[f"{part}_return_pct"] = result["return_pct"]
                metrics[f"{part}_trades"] = result["trades"]
                metrics[f"{part}_buy_hold_pct"] = buy_and_hold_pct(env)
        return metrics

    def _save(self, data: PreparedData, model_name: str, models_dir: Path,
              data_file: str | None, overwrite: bool) -> Path:
        algorithm = self.algorithm
        agent = algorithm.agent
        data_hash = _hash_of(data_file)  # read the file once for both records
        # The training state is copied BEFORE the best weights are swapped in, so resuming
        # from the folder continues the run itself (final weights + their optimiser state).
        # A copy: state_dict() tensors share storage with the live parameters, which the
        # best weights are loaded into in place.
        final_state = {**copy.deepcopy(algorithm.state_dict()), "config": self.config,
                       "model_name": model_name, "data_hash": data_hash,
                       "model_type": TYPE_NAME}
        if algorithm.best_state is not None:  # the validation-best weights are the model
            agent.load_state_dict(algorithm.best_state)
        metrics = self._final_metrics(data, agent)
        with write_model(models_dir, PREFIX, TYPE_NAME, model_name, overwrite=overwrite) as w:
            torch.save(agent.state_dict(), w.path("model.pt"))
            torch.save(final_state, w.path("checkpoint.pt"))
            w.save_scaler(data.scaler)
            w.config.update(self._config_record(data, data_file, data_hash, metrics))
        return w.target

    def _config_record(self, data: PreparedData, data_file: str | None, data_hash: str | None,
                       metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.config, "feature_spec": data.spec.to_dict(), "lookback": self.lookback,
            "observation": {"window": [self.lookback, len(data.spec.features)],
                            "account_features": ACCOUNT_FEATURES},
            "algorithm": self.settings.to_dict(), "data_file": str(data_file or ""),
            "data_hash": data_hash,
            "data_rows": len(data.bars), "split": data.split_dates(), "metrics": metrics,
            "validation_history": self.validation.history if self.validation else [],
        }


def _hash_of(data_file: str | None) -> str | None:
    path = Path(data_file) if data_file else None
    return file_sha256(path) if path and path.is_file() else None
