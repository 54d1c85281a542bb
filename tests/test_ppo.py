"""PPO: the math, the contract with vector envs, reproducibility, resume, control, learning."""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from NetworkConfigs import load_model
from NetworkConfigs.base import Callback, deep_merge
from NetworkConfigs.callbacks import (
    Checkpoints,
    RunControl,
    StopOnSignal,
    checkpoint_files,
    latest_checkpoint,
)
from NetworkConfigs.ppo_algorithm import PPO, compute_gae
from NetworkConfigs.ppo_config import SMOKE, normalise, settings_from
from NetworkConfigs.ppo_network import ActorCritic
from NetworkConfigs.PPOTrainer import PPOTrainer, buy_and_hold_pct, evaluate_greedy
from NetworkConfigs.trading_env import TradingEnvironment, env_arrays
from tests.helpers.synthetic import ar1_bars, random_policy_return

TINY = deep_merge(SMOKE, {"train_params": {"total_timesteps": 2048, "n_envs": 4,
                                           "n_steps": 128, "batch_size": 128,
                                           "checkpoint_every": 1, "eval_every": 1},
                          "model_params": {"lookback_window": 10}})


class StopAfter(Callback):
    def __init__(self, iterations: int) -> None:
        self.iterations, self.calls = iterations, 0

    def on_iteration_end(self, metrics: dict) -> bool:
        self.calls += 1
        return metrics["iteration"] < self.iterations


def cartpole(n: int, mode=gym.vector.AutoresetMode.SAME_STEP) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(n)],
                                    autoreset_mode=mode)


# ---------------------------------------------------------------------------- math


def test_gae_matches_a_hand_computed_case() -> None:
    """T=3, one env, the episode ends after step 1 (index 1)."""
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    ends = torch.tensor([[0.0], [1.0], [0.0]])
    last_value = torch.tensor([2.0])
    adv, returns = compute_gae(rewards, values, ends, last_value, gamma, lam)
    d2 = 3.0 + gamma * 2.0 - 1.5            # bootstraps from the value after the rollout
    d1 = 2.0 - 1.0                          # episode ended: no bootstrap, no flow back
    d0 = 1.0 + gamma * 1.0 - 0.5
    expected = [d0 + gamma * lam * d1, d1, d2]
    np.testing.assert_allclose(adv[:, 0].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(returns.numpy(), (adv + values).numpy())


def test_truncated_steps_are_bootstrapped_from_the_final_observation() -> None:
    settings = settings_from(normalise({"train_params": {"n_envs": 2, "n_steps": 8,
                                                         "batch_size": 16, "device": "cpu"}}))
    ppo = PPO(settings)
    ppo._build(cartpole(2))
    final = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    infos = {"final_obs": final}
    bonus = ppo._truncation_bootstrap(np.array([False, True]), np.array([True, True]), infos)
    expected = settings.gamma * ppo.agent.get_value(torch.as_tensor(final[:1]))
    assert bonus[0].item() == pytest.approx(expected.item(), rel=1e-6)
    assert bonus[1].item() == 0.0  # terminated (even if also truncated): no bootstrap


def test_a_callback_returning_false_stops_after_one_call() -> None:
    stopper = StopAfter(1)
    settings = settings_from(normalise({"train_params": {
        "n_envs": 2, "n_steps": 16, "batch_size": 32, "total_timesteps": 320, "device": "cpu"}}))
    ppo = PPO(settings, [stopper])
    ppo.learn(cartpole(2))
    assert stopper.calls == 1 and ppo.iteration == 1 and ppo.status == "stopped"


def test_next_step_autoreset_is_refused() -> None:
    settings = settings_from(normalise({"train_params": {"n_envs": 2, "n_steps": 8,
                                                         "batch_size": 16}}))
    with pytest.raises(ValueError, match="SAME_STEP"):
        PPO(settings).learn(cartpole(2, gym.vector.AutoresetMode.NEXT_STEP))


@pytest.mark.parametrize("encoder", ["mlp", "conv", "gru"])
def test_encoders_see_the_whole_window(encoder: str) -> None:
    torch.manual_seed(0)
    net = ActorCritic(10 * 3 + 4, 3, hidden_dim=16, lookback=10, n_features=3, encoder=encoder)
    obs = torch.randn(5, 34)
    probs, value = net.policy(obs)
    assert probs.shape == (5, 3) and value.shape == (5,)
    changed = obs.clone()
    changed[:, 0] += 5.0  # the OLDEST bar of the window
    assert not torch.allclose(net.policy(changed)[0], probs)


def test_config_keeps_the_seed_keys_and_refuses_unknown_ones() -> None:
    settings = settings_from(normalise({"train_params": {"epochs": 3, "clip_ratio": 0.1,
                                                         "n_envs": 2, "n_steps": 64,
                                                         "batch_size": 64}}))
    assert settings.total_timesteps == 3 * 2 * 64 and settings.clip_coef == 0.1
    assert settings_from(normalise({"gamma": 0.5})).gamma == 0.5  # flat keys are filed
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['gama'\] in train_params"):
        normalise({"train_params": {"gama": 0.5}})
    with pytest.raises(ValueError, match=r"batch_size .* exceeds"):
        settings_from(normalise({"train_params": {"batch_size": 10_000, "n_envs": 2,
                                                  "n_steps": 8}}))


# ------------------------------------------------------------- trading pipeline


@pytest.fixture(scope="module")
def small_bars(sample_bars: pd.DataFrame) -> pd.DataFrame:
    return sample_bars.iloc[:700]


def weights(path: Path, name: str, kind: str = "model") -> dict[str, torch.Tensor]:
    state = torch.load(path / f"{name}_{kind}.pt", weights_only=True)
    return state if kind == "model" else state["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_same_seed_same_data_gives_identical_weights(small_bars, tmp_path: Path) -> None:
    first = PPOTrainer(TINY).fit(small_bars, model_name="a", models_dir=tmp_path)
    second = PPOTrainer(TINY).fit(small_bars, model_name="b", models_dir=tmp_path)
    assert_same_weights(weights(first, "a"), weights(second, "b"))
    other = PPOTrainer(deep_merge(TINY, {"train_params": {"seed": 7}})).fit(
        small_bars, model_name="c", models_dir=tmp_path)
    assert not torch.equal(weights(first, "a")["actor.1.weight"],
                           weights(other, "c")["actor.1.weight"])


def test_resume_continues_exactly(small_bars, tmp_path: Path) -> None:
    whole = PPOTrainer(TINY).fit(small_bars, model_name="whole", models_dir=tmp_path)
    checkpoints = Checkpoints(tmp_path / "ckpt", every=1)
    first = PPOTrainer(TINY, [checkpoints, StopAfter(2)])
    first.fit(small_bars, model_name="part", models_dir=tmp_path)
    assert first.algorithm.iteration == 2 and first.algorithm.status == "stopped"
    state = torch.load(latest_checkpoint(tmp_path / "ckpt"), weights_only=True)
    resumed = PPOTrainer(TINY).fit(small_bars, model_name="resumed", models_dir=tmp_path,
                                   resume_state=state)
    # the checkpoint's "model" is the FINAL policy; <name>_model.pt the validation-best one
    assert_same_weights(weights(whole, "whole", "checkpoint"),
                        weights(resumed, "resumed", "checkpoint"))
    assert_same_weights(weights(whole, "whole"), weights(resumed, "resumed"))
    # the stopped run's own folder resumes just as exactly
    folder_state = torch.load(tmp_path / "PPO_part" / "part_checkpoint.pt", weights_only=True)
    again = PPOTrainer(TINY).fit(small_bars, model_name="again", models_dir=tmp_path,
                                 resume_state=folder_state)
    assert_same_weights(weights(whole, "whole", "checkpoint"),
                        weights(again, "again", "checkpoint"))


def test_artifacts_reload_through_the_registry(small_bars, tmp_path: Path) -> None:
    model_dir = PPOTrainer(TINY).fit(small_bars, model_name="m", models_dir=tmp_path,
                                     data_file="sample.csv")
    loader = load_model(model_dir)
    config = loader.config
    assert config["Type"] == "ppo" and config["lookback"] == 10
    assert set(config["split"]) == {"train", "validation", "test"}
    for key in ("validation_return_pct", "test_return_pct", "test_buy_hold_pct"):
        assert key in config["metrics"]
    assert len(config["validation_history"]) == config["metrics"]["iterations"]
    window = small_bars[list(loader.spec.features)].iloc[-loader.window_size:]
    envelope = loader.predict(window).to_dict()
    assert set(envelope) == {"prediction", "action_name", "confidence", "probabilities",
                             "value_estimate"}
    assert sum(envelope["probabilities"].values()) == pytest.approx(1.0, rel=1e-5)


def test_the_saved_model_is_the_best_on_validation(small_bars, tmp_path: Path) -> None:
    trainer = PPOTrainer(TINY)
    model_dir = trainer.fit(small_bars, model_name="best", models_dir=tmp_path)
    history = trainer.validation.history
    best = max(history, key=lambda h: h["return_pct"])
    data = trainer.prepare(small_bars)
    env = TradingEnvironment(*env_arrays(data, "validation"), 10,
                             replace(trainer.env_params, episode_length=None),
                             random_start=False)
    agent = load_model(model_dir).agent
    assert evaluate_greedy(agent, env)["return_pct"] == pytest.approx(best["return_pct"])


# ------------------------------------------------------------------------ control


def test_pause_resume_and_stop_through_the_run_store(store) -> None:
    run_id = store.create_run(name="agent", model_type="ppo")
    polls = []

    def web_user_clicks_resume(seconds: float) -> None:  # stands in for waiting
        polls.append(seconds)
        store.request_control(run_id, "resume")

    control = RunControl(store, run_id, poll_seconds=0.5, wait=web_user_clicks_resume)
    assert control.on_iteration_end({}) is True
    store.request_control(run_id, "pause")
    assert control.on_iteration_end({}) is True  # paused, then resumed
    assert polls == [0.5] and store.get_run(run_id)["status"] == "running"
    statuses = [e["payload"]["status"] for e in store.events_after(0, run_id=run_id,
                                                                   kinds=["status"])]
    assert statuses == ["running", "paused", "running"]
    store.request_control(run_id, "stop")
    assert control.on_iteration_end({}) is False
    assert store.get_control(run_id) is None


def test_ctrl_c_stops_after_the_iteration_and_saves(small_bars, tmp_path: Path) -> None:
    class PressCtrlC(Callback):
        def on_iteration_end(self, metrics: dict) -> bool:
            if metrics["iteration"] == 1:
                signal.raise_signal(signal.SIGINT)
            return True

    def sentinel(signum, frame) -> None:  # the handler that was there before training
        raise AssertionError("the training handler should have caught this")

    previous = signal.signal(signal.SIGINT, sentinel)
    try:
        with StopOnSignal() as stop:
            trainer = PPOTrainer(TINY, [PressCtrlC(), stop])
            model_dir = trainer.fit(small_bars, model_name="interrupted", models_dir=tmp_path)
        assert signal.getsignal(signal.SIGINT) is sentinel  # restored on the way out
    finally:
        signal.signal(signal.SIGINT, previous)
    assert trainer.algorithm.status == "stopped" and trainer.algorithm.iteration == 1
    assert (model_dir / "interrupted_model.pt").is_file()


# ----------------------------------------------------------------- learning checks


@pytest.mark.slow
def test_cartpole_is_solved_with_the_sb3_zoo_hyperparameters() -> None:
    """rl-baselines3-zoo CartPole-v1: 8 envs x 32 steps, minibatch 256, 20 epochs,
    gamma 0.98, lambda 0.8, lr 1e-3 and clip 0.2 both annealed linearly, no entropy."""
    torch.set_num_threads(1)
    config = {"train_params": {
        "n_envs": 8, "n_steps": 32, "batch_size": 256, "ppo_epochs": 20, "gamma": 0.98,
        "gae_lambda": 0.8, "entropy_coef": 0.0, "learning_rate": 1e-3, "anneal_lr": True,
        "clip_ratio": 0.2, "anneal_clip": True, "clip_value_loss": False,
        "total_timesteps": 100_000, "seed": 1, "device": "cpu"}}
    rewards: list[float] = []

    class Episodes(Callback):
        def on_iteration_end(self, metrics: dict) -> bool:
            rewards.extend(e["reward"] for e in metrics["episodes"])
            return True

    PPOTrainer(config, [Episodes()]).learn(cartpole(8))
    assert np.mean(rewards[-20:]) >= 475, f"last 20 episodes: {rewards[-20:]}"


@pytest.mark.slow
def test_ppo_finds_a_planted_signal_on_held_out_data(tmp_path: Path) -> None:
    """AR(1) returns: greedy play on the unseen test slice beats buy-and-hold and a
    seeded random policy in mean return over three seeds."""
    torch.set_num_threads(1)
    results = []
    for seed in (1, 2, 3):
        bars = ar1_bars(seed)
        config = {"model_params": {"lookback_window": 5},
                  "train_params": {"total_timesteps": 30_000, "seed": seed, "n_envs": 8,
                                   "n_steps": 128, "batch_size": 256, "eval_every": 2},
                  "env_params": {"episode_length": 128},
                  "data_params": {"features": ["Close"]}}
        trainer = PPOTrainer(config)
        trainer.fit(bars, model_name=f"ar{seed}", models_dir=tmp_path)
        data = trainer.prepare(bars)
        env = TradingEnvironment(*env_arrays(data, "test"), 5,
                                 replace(trainer.env_params, episode_length=None),
                                 random_start=False)
        results.append((evaluate_greedy(trainer.algorithm.agent, env)["return_pct"],
                        buy_and_hold_pct(env), random_policy_return(env, seed)))
    greedy, hold, random_ = np.mean(results, axis=0)
    assert greedy > hold and greedy > random_, results


def test_example_config_documents_every_key_with_its_default() -> None:
    import yaml

    from NetworkConfigs.ppo_config import DEFAULTS

    path = Path(__file__).resolve().parent.parent / "NetworkConfigs" / "example_ppo_config.yaml"
    example = yaml.safe_load(path.read_text())
    assert example == DEFAULTS
    lines = [line for line in path.read_text().splitlines() if line.startswith("  ")]
    assert all("#" in line for line in lines), "every key needs a comment"


def test_a_one_row_minibatch_does_not_poison_the_weights() -> None:
    """batch 128 in minibatches of 127 leaves a single-row minibatch every epoch."""
    settings = settings_from(normalise({"train_params": {
        "n_envs": 2, "n_steps": 64, "batch_size": 127, "total_timesteps": 256,
        "device": "cpu"}}))
    ppo = PPO(settings)
    ppo.learn(cartpole(2))
    assert all(torch.isfinite(p).all() for p in ppo.agent.parameters())


def test_any_box_shape_trains() -> None:
    settings = settings_from(normalise({"train_params": {
        "n_envs": 2, "n_steps": 32, "batch_size": 64, "total_timesteps": 128, "device": "cpu"}}))
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.wrappers.ReshapeObservation(gym.make("CartPole-v1"), (2, 2))] * 2,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    ppo = PPO(settings)
    ppo.learn(envs)
    assert ppo.iteration == 2


def test_an_interrupted_rollout_is_never_checkpointed(small_bars, tmp_path: Path) -> None:
    class PullThePlug(Callback):
        def on_iteration_end(self, metrics: dict) -> bool:
            def interrupted(actions):
                raise KeyboardInterrupt
            self.trainer.envs.step = interrupted  # the next rollout dies mid-way
            return True

    checkpoints = Checkpoints(tmp_path / "ckpt", every=2)
    trainer = PPOTrainer(TINY, [checkpoints, PullThePlug()])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(small_bars, model_name="cut", models_dir=tmp_path)
    assert trainer.algorithm.status == "interrupted"
    assert checkpoint_files(tmp_path / "ckpt") == []  # no inconsistent state on disk
    assert not (tmp_path / "PPO_cut").exists()
