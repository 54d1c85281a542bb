"""Training throughput of our PPO against stable-baselines3's PPO. Prints one JSON object.

Both train on the SAME ``TradingEnvironment`` (sample.csv, train part, lookback 30,
default ``EnvParams``) with identical hyperparameters: 8 envs x 256 steps per rollout,
minibatch 256 (8 minibatches), 4 update epochs, separate 64-64 tanh actor and critic,
orthogonal init, Adam (lr 3e-4 annealed linearly to 0, eps 1e-5), gamma 0.99, GAE 0.95,
clip 0.2 on the ratio and the value, entropy 0.01, value 0.5, grad norm 0.5, advantage
normalisation per minibatch, truncated steps bootstrapped with V(final obs). One torch
thread each, CPU, the same fixed budget of env steps.

Runs, interleaved (ours, sb3, [sb3-vec], ours, sb3, ...; ``--repeats`` each):

- ``ours``: ``PPOTrainer.learn`` on our ``VecTradingEnv`` (8 accounts, one numpy step);
- ``sb3``: SB3's PPO on ``make_vec_env`` (``DummyVecEnv`` of 8 ``Monitor``-wrapped
  ``TradingEnvironment`` copies): what an SB3 user would write;
- ``sb3_vec`` (``--sb3-vec``): SB3's PPO on our ``VecTradingEnv`` behind a small SB3
  ``VecEnv`` adapter, separating the algorithms' cost from the envs'.

Throughput is env steps / wall seconds of ``learn`` (our agent is built inside it; SB3's
model construction is outside, it is milliseconds). A warm-up run of each comes first
and is not counted. Throughput is noisy on a shared machine: compare medians, and the
per-repeat ratios (each ours run against the sb3 run right after it). Afterwards one
extra run of ours with timers wrapped around its parts gives the time breakdown (see
:func:`breakdown`; ``--profile`` adds cProfile's top functions of one more run).

Usage: python bench/ppo_throughput.py [--steps 65536] [--repeats 3] [--sb3-vec] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import platform
import pstats
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import NetworkConfigs.ppo_algorithm as ppo_algorithm  # noqa: E402
from bench.timing import Clock  # noqa: E402
from NetworkConfigs.ppo_algorithm import PPO  # noqa: E402
from NetworkConfigs.ppo_config import normalise, settings_from  # noqa: E402
from NetworkConfigs.PPOTrainer import PPOTrainer  # noqa: E402
from NetworkConfigs.trading_env import (  # noqa: E402
    EnvParams,
    TradingEnvironment,
    VecTradingEnv,
    env_arrays,
)
from Utilities.data_utils import build_feature_spec, load_bars, prepare_data  # noqa: E402

N_ENVS, N_STEPS, MINIBATCH, EPOCHS, HIDDEN, LOOKBACK = 8, 256, 256, 4, 64, 30
LR, GAMMA, GAE_LAMBDA, CLIP, ENT, VF, MAX_GRAD = 3e-4, 0.99, 0.95, 0.2, 0.01, 0.5, 0.5


def load_market(csv: Path) -> tuple[np.ndarray, np.ndarray, int]:
    bars = load_bars(csv)
    data = prepare_data(bars, build_feature_spec(bars), lookback=LOOKBACK)
    features, prices = env_arrays(data, "train")
    return features, prices, features.shape[1]


def our_config(steps: int, seed: int) -> dict[str, Any]:
    return {"train_params": {"total_timesteps": steps, "n_envs": N_ENVS, "n_steps": N_STEPS,
                             "batch_size": MINIBATCH, "ppo_epochs": EPOCHS,
                             "learning_rate": LR, "anneal_lr": True, "gamma": GAMMA,
                             "gae_lambda": GAE_LAMBDA, "clip_ratio": CLIP,
                             "clip_value_loss": True, "entropy_coef": ENT, "value_coef": VF,
                             "max_grad_norm": MAX_GRAD, "norm_adv": True, "seed": seed,
                             "device": "cpu"},
            "model_params": {"hidden_dim": HIDDEN, "num_layers": 2, "encoder": "mlp",
                             "lookback_window": LOOKBACK}}


# --------------------------------------------------------------------------- runs


def run_ours(market: tuple, steps: int, seed: int) -> Clock:
    features, prices, n_features = market
    envs = VecTradingEnv(features, prices, LOOKBACK, EnvParams(), num_envs=N_ENVS)
    trainer = PPOTrainer(our_config(steps, seed))
    with Clock() as clock:
        trainer.learn(envs, network_kwargs={"lookback": LOOKBACK, "n_features": n_features})
    assert trainer.algorithm.global_step == steps, trainer.algorithm.global_step
    return clock


def sb3_model(env: Any, seed: int) -> Any:
    from stable_baselines3 import PPO as SB3PPO

    return SB3PPO("MlpPolicy", env, learning_rate=lambda progress: LR * progress,
                  n_steps=N_STEPS, batch_size=MINIBATCH, n_epochs=EPOCHS, gamma=GAMMA,
                  gae_lambda=GAE_LAMBDA, clip_range=CLIP, clip_range_vf=CLIP,
                  normalize_advantage=True, ent_coef=ENT, vf_coef=VF, max_grad_norm=MAX_GRAD,
                  policy_kwargs={"net_arch": {"pi": [HIDDEN, HIDDEN], "vf": [HIDDEN, HIDDEN]},
                                 "activation_fn": nn.Tanh, "ortho_init": True},
                  seed=seed, device="cpu", verbose=0)


def run_sb3(market: tuple, steps: int, seed: int) -> Clock:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    features, prices, _ = market
    env = make_vec_env(lambda: TradingEnvironment(features, prices, LOOKBACK, EnvParams()),
                       n_envs=N_ENVS, seed=seed, vec_env_cls=DummyVecEnv)
    model = sb3_model(env, seed)
    with Clock() as clock:
        model.learn(total_timesteps=steps)
    assert model.num_timesteps == steps, model.num_timesteps
    return clock


def run_sb3_vec(market: tuple, steps: int, seed: int) -> Clock:
    features, prices, _ = market
    env = sb3_adapter(VecTradingEnv(features, prices, LOOKBACK, EnvParams(), num_envs=N_ENVS))
    env.seed(seed)
    model = sb3_model(env, seed)
    with Clock() as clock:
        model.learn(total_timesteps=steps)
    assert model.num_timesteps == steps, model.num_timesteps
    return clock


def sb3_adapter(vec: VecTradingEnv) -> Any:
    """Our SAME_STEP-autoreset VecTradingEnv as an SB3 VecEnv (terminal_observation and
    TimeLimit.truncated in the per-env infos of finished envs, as DummyVecEnv gives)."""
    from stable_baselines3.common.vec_env import VecEnv

    class Adapter(VecEnv):
        def __init__(self) -> None:
            super().__init__(vec.num_envs, vec.single_observation_space, vec.single_action_space)
            self._seed: int | None = None
            self._actions: np.ndarray | None = None

        def reset(self) -> np.ndarray:
            obs, _ = vec.reset(seed=self._seed)
            self._seed = None
            return obs

        def seed(self, seed: int | None = None) -> list[int | None]:
            self._seed = seed
            return [seed] * self.num_envs

        def step_async(self, actions: np.ndarray) -> None:
            self._actions = np.asarray(actions).reshape(-1)

        def step_wait(self) -> tuple:
            obs, rewards, terminated, truncated, info = vec.step(self._actions)
            dones = terminated | truncated
            infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
            for i in np.flatnonzero(dones):
                infos[i] = {"terminal_observation": info["final_obs"][i],
                            "TimeLimit.truncated": bool(truncated[i])}
            return obs, rewards, dones, infos

        def close(self) -> None:
            vec.close()

        def get_attr(self, name: str, indices: Any = None) -> list[Any]:
            return [getattr(vec, name)] * self.num_envs

        def set_attr(self, name: str, value: Any, indices: Any = None) -> None:
            setattr(vec, name, value)

        def env_method(self, name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list:
            return [getattr(vec, name)(*args, **kwargs)]

        def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
            return [False] * self.num_envs

    return Adapter()


RUNS = {"ours": run_ours, "sb3": run_sb3, "sb3_vec": run_sb3_vec}


# ---------------------------------------------------------------------- breakdown


class Timers:
    """Wall time accumulated per named section; ``wrap`` times a callable."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.active: set[str] = set()

    def wrap(self, name: str, fn: Any, only_inside: str | None = None) -> Any:
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            if only_inside is not None and only_inside not in self.active:
                return fn(*args, **kwargs)
            self.active.add(name)
            started = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += clock() - started
                self.calls[name] += 1
                self.active.discard(name)

        return timed


# The rollout's policy call: whichever of these the agent has (the first found), so the
# bench also times older versions of the code.
POLICY_CALLS = ("act", "get_action_and_value")


def breakdown(market: tuple, steps: int, seed: int) -> dict[str, Any]:
    """One run of ours with timers wrapped around its parts (not counted in the throughput).

    Rollout: env step, the per-step policy call, the critic's values (batched at the end
    of a rollout, plus truncation bootstraps), GAE, and the rest (buffers, episode
    bookkeeping). Update: the network forward, backward, gradient clipping, the Adam
    step, and the rest (minibatch gathers, losses, zero_grad, diagnostics).
    """
    features, prices, n_features = market
    envs = VecTradingEnv(features, prices, LOOKBACK, EnvParams(), num_envs=N_ENVS)
    algo = PPO(settings_from(normalise(our_config(steps, seed))),
               network_kwargs={"lookback": LOOKBACK, "n_features": n_features})
    algo._build(envs)  # build now, so the agent's methods can be wrapped
    timers, agent = Timers(), algo.agent
    envs.step = timers.wrap("env_step", envs.step)
    policy_call = next(name for name in POLICY_CALLS if hasattr(agent, name))
    setattr(agent, policy_call, timers.wrap("policy_forward", getattr(agent, policy_call),
                                            "rollout"))
    agent.get_value = timers.wrap("critic_values", agent.get_value, "rollout")
    agent.get_action_and_value = timers.wrap("forward", agent.get_action_and_value, "update")
    algo.optimizer.step = timers.wrap("adam_step", algo.optimizer.step)
    algo._rollout = timers.wrap("rollout", algo._rollout)
    algo._update = timers.wrap("update", algo._update)
    patched = {name: getattr(ppo_algorithm, name) for name in ("compute_gae", "clip_grad_norm")
               if hasattr(ppo_algorithm, name)}
    for name, fn in patched.items():
        setattr(ppo_algorithm, name, timers.wrap(name, fn))
    backward = torch.Tensor.backward
    torch.Tensor.backward = timers.wrap("backward", backward, "update")
    try:
        started = time.perf_counter()
        algo.learn(envs)
        total = time.perf_counter() - started
    finally:
        torch.Tensor.backward = backward
        for name, fn in patched.items():
            setattr(ppo_algorithm, name, fn)
    t = timers.seconds
    rollout = {"env_step": t["env_step"], "policy_forward": t["policy_forward"],
               "critic_values": t["critic_values"], "gae": t["compute_gae"]}
    rollout["bookkeeping"] = t["rollout"] - sum(rollout.values())
    update = {"forward": t["forward"], "backward": t["backward"],
              "clip_grad_norm": t["clip_grad_norm"], "adam_step": t["adam_step"]}
    update["losses_gathers_other"] = t["update"] - sum(update.values())
    iterations = algo.iteration
    rollout_steps = iterations * N_STEPS
    minibatches = iterations * EPOCHS * (N_ENVS * N_STEPS // MINIBATCH)
    return {
        "steps_per_s_with_timers": round(steps / total, 1), "seconds": round(total, 3),
        "policy_call": policy_call,
        "percent": {"rollout": round(100 * t["rollout"] / total, 1),
                    "update": round(100 * t["update"] / total, 1),
                    "other": round(100 * (total - t["rollout"] - t["update"]) / total, 1)},
        "rollout_s": {k: round(v, 3) for k, v in rollout.items()},
        "update_s": {k: round(v, 3) for k, v in update.items()},
        "rollout_us_per_vector_step": {k: round(1e6 * v / rollout_steps, 1)
                                       for k, v in rollout.items()},
        "update_us_per_minibatch": {k: round(1e6 * v / minibatches, 1)
                                    for k, v in update.items()},
    }


def profile_top(market: tuple, steps: int, seed: int, n: int = 25) -> list[str]:
    profiler = cProfile.Profile()
    profiler.enable()
    run_ours(market, steps, seed)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(n)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return [line.rstrip() for line in lines[start:] if line.strip()]


# --------------------------------------------------------------------------- main


def summary(clocks: list[Clock], steps: int) -> dict[str, Any]:
    rates = [steps / c.wall for c in clocks]
    cpu_rates = [steps / c.cpu for c in clocks]
    median = statistics.median(rates)
    return {"steps_per_s_median": round(median, 1),
            "steps_per_s_samples": [round(r, 1) for r in rates],
            "spread_pct": round(100 * (max(rates) - min(rates)) / median, 1),
            "seconds": [round(c.wall, 3) for c in clocks],
            "steps_per_cpu_s_median": round(statistics.median(cpu_rates), 1),
            "steps_per_cpu_s_samples": [round(r, 1) for r in cpu_rates]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=ROOT / "sample.csv")
    parser.add_argument("--steps", type=int, default=65_536,
                        help="env steps per training run (a multiple of 2048)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup-steps", type=int, default=8192,
                        help="env steps of the uncounted warm-up run of each contender")
    parser.add_argument("--sb3-vec", action="store_true",
                        help="also run SB3 on our VecTradingEnv through an SB3 VecEnv adapter")
    parser.add_argument("--only", choices=sorted(RUNS), action="append",
                        help="run only these (repeatable); default ours and sb3")
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="add cProfile's top functions of one run of ours")
    args = parser.parse_args()
    batch = N_ENVS * N_STEPS
    for flag, value in (("--steps", args.steps), ("--warmup-steps", args.warmup_steps)):
        if value < batch or value % batch:
            parser.error(f"{flag} must be a positive multiple of {batch}")
    torch.set_num_threads(1)
    market = load_market(args.csv)
    names = args.only or ["ours", "sb3"] + (["sb3_vec"] if args.sb3_vec else [])
    for name in names:  # warm-up: imports, first-call costs, first touches of fresh memory
        RUNS[name](market, args.warmup_steps, args.seed)
    clocks: dict[str, list[Clock]] = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:
            clocks[name].append(RUNS[name](market, args.steps, args.seed))
    result: dict[str, Any] = {
        "bench": "ppo_throughput",
        "config": {"env_steps": args.steps, "repeats": args.repeats, "n_envs": N_ENVS,
                   "n_steps": N_STEPS, "minibatch": MINIBATCH, "epochs": EPOCHS,
                   "net": f"{HIDDEN}-{HIDDEN} tanh, separate actor/critic",
                   "lookback": LOOKBACK, "observation_size": LOOKBACK * market[2] + 4,
                   "torch_threads": torch.get_num_threads(), "device": "cpu",
                   "data": args.csv.name, "train_bars": len(market[1])},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, **sb3_versions()},
    }
    for name in names:
        result[name] = summary(clocks[name], args.steps)
    for other in ("sb3", "sb3_vec"):
        if "ours" in names and other in names:
            ours, theirs = result["ours"], result[other]
            pairs = [b.wall / a.wall for a, b in zip(clocks["ours"], clocks[other], strict=True)]
            result[f"ratio_ours_over_{other}"] = {
                "of_medians": round(ours["steps_per_s_median"]
                                    / theirs["steps_per_s_median"], 2),
                "per_repeat": [round(r, 2) for r in pairs],
                "of_cpu_medians": round(ours["steps_per_cpu_s_median"]
                                        / theirs["steps_per_cpu_s_median"], 2)}
    if "ours" in names and not args.no_breakdown:
        result["ours_breakdown"] = breakdown(market, args.steps, args.seed)
    if args.profile:
        result["ours_profile_tottime"] = profile_top(market, args.steps, args.seed)
    print(json.dumps(result, indent=2))


def sb3_versions() -> dict[str, str]:
    try:
        import gymnasium
        import stable_baselines3
    except ImportError:
        return {}
    return {"stable_baselines3": stable_baselines3.__version__,
            "gymnasium": gymnasium.__version__}


if __name__ == "__main__":
    main()
