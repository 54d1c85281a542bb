"""The PPO setup check (the seed's test_ppo_setup.py), as plain pytest tests.

Runs with the suite (`make test`) and on its own: `python test_ppo_setup.py`.
Plain asserts only: a failure here fails, it is never caught and turned into False.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent
MODULES = ["Main", "Api_Loader", "NetworkConfigs", "NetworkConfigs.base",
           "NetworkConfigs.artifacts", "NetworkConfigs.trading_env", "NetworkConfigs.PPOTrainer",
           "NetworkConfigs.PPO_loader", "NetworkConfigs.callbacks", "Utilities.data_utils",
           "Utilities.indicators", "Utilities.run_store", "Utilities.metrics_logger",
           "Utilities.logging_setup", "Utilities.run_training", "web.pages", "web.store",
           "NetworkConfigs.ppo_replay_policy", "NetworkConfigs.streams", "Utilities.backtester",
           "Utilities.performance",
           "Utilities.backtest_report", "Utilities.ppo_backtester",
           "NetworkConfigs.signals", "NetworkConfigs.supervised", "NetworkConfigs.signal_loader",
           "NetworkConfigs.XGBoostTrainer", "NetworkConfigs.XGBoost_loader",
           "NetworkConfigs.TransformerTrainer", "NetworkConfigs.Transformer_loader",
           "Utilities.model_backtester", "Utilities.signal_backtester",
           "Utilities.run_backtest"]
LOOKBACK = 20


def test_every_module_imports_without_side_effects(tmp_path: Path) -> None:
    """Importing prints nothing, creates no files and opens no database."""
    code = f"import importlib\nfor m in {MODULES!r}:\n    importlib.import_module(m)\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""}, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def data():
    from Utilities.data_utils import build_feature_spec, load_bars, prepare_data

    bars = load_bars(ROOT / "sample.csv")
    return bars, prepare_data(bars, build_feature_spec(bars), lookback=LOOKBACK)


def test_sample_csv_feeds_the_features(data) -> None:
    """sample.csv passes the data contract; the scaler is fit on the training part."""
    _, prepared = data
    assert {"Open", "High", "Low", "Close"} <= set(prepared.spec.price_columns)
    train = prepared.scaled[slice(*prepared.split.train)]
    assert np.allclose(train.mean(axis=0), 0.0, atol=1e-5)
    assert prepared.bars.index.equals(prepared.features.index)


def test_network_forward_pass_shapes(data) -> None:
    from NetworkConfigs.PPOTrainer import ActorCritic

    n_features = len(data[1].spec.features)
    net = ActorCritic(LOOKBACK * n_features + 4, 3, hidden_dim=32, lookback=LOOKBACK,
                      n_features=n_features)
    obs = torch.zeros(7, LOOKBACK * n_features + 4)
    action, logprob, entropy, value = net.get_action_and_value(obs)
    assert action.shape == logprob.shape == entropy.shape == value.shape == (7,)
    probs, _ = net.policy(obs)
    assert torch.allclose(probs.sum(dim=1), torch.ones(7))


def test_environment_reset_step_and_check_env(data) -> None:
    from gymnasium.utils.env_checker import check_env

    from NetworkConfigs.trading_env import TradingEnvironment, env_arrays

    env = TradingEnvironment(*env_arrays(data[1], "train"), LOOKBACK)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    obs, reward, terminated, truncated, info = env.step(1)
    assert isinstance(reward, float) and info["position"] == 1
    assert not (terminated and truncated) and obs.shape == env.observation_space.shape
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)


def test_trainer_initialises_from_the_seed_config() -> None:
    from NetworkConfigs.PPOTrainer import PPOTrainer

    trainer = PPOTrainer({"model_params": {"hidden_dim": 128, "lookback_window": 60},
                          "train_params": {"learning_rate": 3e-4, "epochs": 2, "batch_size": 64,
                                           "ppo_epochs": 4, "clip_ratio": 0.2,
                                           "value_coef": 0.5, "entropy_coef": 0.01}})
    assert trainer.settings.total_timesteps == 2 * 8 * 256 and trainer.lookback == 60


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    """Two PPO iterations on the first 600 bars of sample.csv, saved as a model folder."""
    from NetworkConfigs.PPOTrainer import PPOTrainer

    bars, _ = data
    config = {"model_params": {"lookback_window": LOOKBACK},
              "train_params": {"epochs": 2, "n_envs": 2, "n_steps": 128, "batch_size": 128}}
    return PPOTrainer(config).fit(bars.iloc[:600], model_name="setup",
                                  models_dir=tmp_path_factory.mktemp("models"))


def test_two_iterations_write_artifacts_that_load(data, trained: Path) -> None:
    from NetworkConfigs import load_model
    from NetworkConfigs.PPO_loader import PPOModelLoader

    assert sorted(p.name for p in trained.iterdir()) == [
        "setup_checkpoint.pt", "setup_config.yaml", "setup_model.pt", "setup_scaler.json"]
    loader = load_model(trained)
    assert isinstance(loader, PPOModelLoader)
    bars, _ = data
    window = bars[list(loader.spec.features)].iloc[:loader.window_size]
    envelope = loader.predict(window).to_dict()
    assert set(envelope) == {"prediction", "action_name", "confidence", "probabilities",
                             "value_estimate"}
    assert envelope["action_name"] == ("Hold", "Buy", "Sell")[envelope["prediction"]]
    assert sum(envelope["probabilities"].values()) == pytest.approx(1.0, rel=1e-5)
    assert envelope["confidence"] == max(envelope["probabilities"].values())


def test_loader_answers_as_the_backtester_plays(data, trained: Path, tmp_path: Path) -> None:
    """The loader (one window + account state) and the closed-loop backtester agree."""
    from NetworkConfigs.trading_env import Accounts, EnvParams, apply_actions
    from Utilities.ppo_backtester import PPOBacktester

    bars, _ = data
    csv = tmp_path / "bars.csv"
    bars.iloc[600:760].to_csv(csv, index_label="Date")
    backtester = PPOBacktester(trained, csv).load_artifacts()
    report = backtester.run_with_results()
    loader, local = backtester.loader, backtester.bars
    params = EnvParams.from_dict(loader.config["env_params"])
    acc = Accounts.open(1, params.initial_balance)
    for when, row in report.decisions.iloc[:60].iterrows():
        end = local.index.get_loc(when) + 1
        window = local[list(loader.spec.features)].iloc[end - loader.window_size:end]
        state = {k: float(getattr(acc, k)[0])
                 for k in ("cash", "units", "position", "entry_price", "entry_cost")}
        prediction = loader.predict(window, state)
        assert prediction.prediction == row["action"]
        assert prediction.probabilities["Buy"] == pytest.approx(row["Buy"], abs=1e-5)
        apply_actions(acc, np.array([prediction.prediction]), local["Close"].iloc[end - 1], params)
    assert set(report.baselines) == {"Buy & Hold", "Random"}


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
