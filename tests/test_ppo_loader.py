"""PPOModelLoader: serving gives the trainer's policy; sampling; broken folders are named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.preprocessing import StandardScaler

from NetworkConfigs import load_model
from NetworkConfigs.artifacts import ArtifactError, ModelNotFound
from NetworkConfigs.base import ACCOUNT_FIELDS, choose_action
from NetworkConfigs.numpy_policy import NumpyPolicy
from NetworkConfigs.PPO_loader import PPOModelLoader
from NetworkConfigs.scaler_io import scaler_to_json
from NetworkConfigs.trading_env import TradingEnvironment, env_arrays
from tests.helpers.models import TINY_ROWS, TrainedModel
from Utilities.data_utils import DataError


@pytest.fixture(scope="module")
def model_bars(sample_bars: pd.DataFrame) -> pd.DataFrame:
    return sample_bars.iloc[:TINY_ROWS]


@pytest.fixture(scope="module")
def trained(tiny_ppo: TrainedModel) -> TrainedModel:
    return tiny_ppo


@pytest.fixture(scope="module")
def loader(trained) -> PPOModelLoader:
    return load_model(trained[1])


@pytest.fixture()
def folder(trained, tmp_path: Path) -> Path:
    """A copy of the trained model folder that a test may break."""
    return Path(shutil.copytree(trained[1], tmp_path / trained[1].name))


def window_at(bars: pd.DataFrame, when: pd.Timestamp, loader: PPOModelLoader) -> pd.DataFrame:
    """The raw window a client would send for the bar at ``when``."""
    return bars.loc[:when, list(loader.spec.features)].iloc[-loader.window_size:]


def state_of(env: TradingEnvironment) -> dict[str, float]:
    return {key: float(getattr(env.accounts, key)[0]) for key in ACCOUNT_FIELDS}


# ------------------------------------------------------------------ train/serve parity


def test_predict_equals_the_trainers_policy(trained, loader, model_bars) -> None:
    """Flat and open accounts: the env's observation through the trainer's network gives
    the same probabilities as the loader given the raw window and the account state."""
    trainer, _ = trained
    data = trainer.prepare(model_bars)  # training's own features, split and scaler
    env = TradingEnvironment(*env_arrays(data, "train"), trainer.lookback,
                             trainer.env_params, random_start=False)
    agent, times = trainer.algorithm.agent.cpu(), data.part("train")[0].index
    obs, info = env.reset(options={"start": 40})
    for action in (None, 1, 0, 2, 2):  # flat, long, long, flat, short
        if action is not None:
            obs, _, _, _, info = env.step(action)
        expected, value = agent.policy(torch.as_tensor(obs)[None])
        served = loader.predict(window_at(model_bars, times[info["t"]], loader), state_of(env))
        np.testing.assert_allclose(list(served.probabilities.values()), expected[0].numpy(),
                                   atol=1e-6)
        assert served.value_estimate == pytest.approx(float(value[0]), abs=1e-5)
    assert env.accounts.position[0] == -1  # the account part was really exercised


def test_a_single_window_is_answered_by_the_numpy_forward(loader, model_bars,
                                                         monkeypatch) -> None:
    """The loader wires NetworkConfigs/numpy_policy.py in for a request of a few rows
    (its equality with torch: tests/test_numpy_policy.py)."""
    rows = []
    real = NumpyPolicy.__call__
    monkeypatch.setattr(NumpyPolicy, "__call__",
                        lambda self, obs: (rows.append(len(obs)), real(self, obs))[1])
    loader.predict(model_bars.iloc[:loader.window_size])
    assert rows == [1]


def test_the_three_window_forms_agree(loader, model_bars) -> None:
    frame = model_bars[list(loader.spec.features)].iloc[100:100 + loader.window_size]
    answers = [loader.predict(form).to_dict()
               for form in (frame, frame.to_dict("records"), frame.to_numpy())]
    assert answers[0] == answers[1] == answers[2]
    assert set(answers[0]) == {"prediction", "action_name", "confidence", "probabilities",
                               "value_estimate"}


def test_a_longer_window_uses_its_last_bars(loader, model_bars) -> None:
    frame = model_bars[list(loader.spec.features)].iloc[50:200]
    assert loader.predict(frame) == loader.predict(frame.iloc[-loader.window_size:])


def test_argmax_by_default(loader, model_bars) -> None:
    envelope = loader.predict(model_bars[list(loader.spec.features)].iloc[-loader.window_size:])
    best = max(envelope.probabilities, key=envelope.probabilities.get)
    assert envelope.action_name == best
    assert envelope.confidence == envelope.probabilities[best]


# ------------------------------------------------------------------------- sampling


def test_sampling_with_a_seed_is_reproducible(loader, model_bars) -> None:
    window = model_bars[list(loader.spec.features)].iloc[-loader.window_size:]

    def draws(seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        return [loader.predict(window, sample=True, rng=rng).prediction for _ in range(30)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


def test_sampling_follows_the_probabilities(loader, model_bars) -> None:
    window = model_bars[list(loader.spec.features)].iloc[-loader.window_size:]
    greedy = loader.predict(window)
    p = np.array(list(greedy.probabilities.values()))
    for seed in range(10):  # predict draws exactly as choose_action does ...
        drawn = loader.predict(window, sample=True, rng=np.random.default_rng(seed))
        assert drawn.prediction == choose_action(p, True, np.random.default_rng(seed))
        assert drawn.confidence == drawn.probabilities[drawn.action_name]
    rng, n = np.random.default_rng(0), 20_000  # ... and its draws follow p
    counts = np.bincount([choose_action(p, True, rng) for _ in range(n)], minlength=3)
    # within 4.5 standard deviations of a binomial count; the seed fixes the draw
    assert np.all(np.abs(counts - n * p) <= 4.5 * np.sqrt(n * p * (1 - p))), (counts, n * p)


def test_choose_action_never_draws_an_impossible_action() -> None:
    rng = np.random.default_rng(0)
    p = np.array([0.5, 0.0, 0.5], dtype=np.float32)
    assert 1 not in {choose_action(p, True, rng) for _ in range(500)}
    assert choose_action(np.array([0.2, 0.7, 0.1])) == 1


def test_predict_with_passes_sampling_on(loader, model_bars) -> None:
    window = model_bars[list(loader.spec.features)].iloc[-loader.window_size:]
    first = loader.predict_with(window, sample=True, rng=np.random.default_rng(1))
    again = loader.predict(window, sample=True, rng=np.random.default_rng(1))
    assert first == again


# ---------------------------------------------------------------------- account state


@pytest.mark.parametrize(("state", "message"), [
    ({"cash": 1.0, "margin": 2.0}, r"unknown field\(s\) \['margin'\]"),
    ({"position": 0.5}, "position must be -1 .short., 0 .flat. or 1 .long.; got 0.5"),
    ({"position": 1}, "an open position needs units of its sign"),
    ({"position": -1, "units": 3.0, "entry_price": 100.0}, "units of its sign"),
    ({"position": 1, "units": 3.0}, "entry_price > 0"),
    ({"units": 2.0}, r"a flat account \(position 0\) holds no units"),
    ({"cash": True}, "cash must be a number; got True"),
    ({"cash": "100"}, "cash must be a number"),
    ({"cash": float("nan")}, "cash must be a finite number"),
    ({"cash": 10**400}, "cash must be a finite number"),
    ({"price": -1.0}, "price must be positive"),
    ({"entry_cost": -1.0}, "entry_cost must be >= 0"),
    ([1, 2], "must be an object"),
])
def test_a_bad_account_state_is_named(loader, model_bars, state, message: str) -> None:
    window = model_bars[list(loader.spec.features)].iloc[-loader.window_size:]
    with pytest.raises(DataError, match=message) as caught:
        loader.predict(window, state)
    assert caught.value.source == "account_state"


def test_an_open_position_changes_the_answer(loader, model_bars) -> None:
    window = model_bars[list(loader.spec.features)].iloc[-loader.window_size:]
    price = float(window["Close"].iloc[-1])
    long = {"position": 1, "units": 40.0, "cash": 100.0, "entry_price": price * 0.9}
    assert loader.predict(window, long).probabilities != loader.predict(window).probabilities


# ------------------------------------------------------------------- broken folders


def test_missing_weights_are_named(folder: Path) -> None:
    (folder / "tiny_model.pt").unlink()
    with pytest.raises(ModelNotFound, match=r"weights file tiny_model\.pt is missing"):
        load_model(folder)


def test_weights_of_the_wrong_shape_are_named(folder: Path) -> None:
    path = folder / "tiny_model.pt"
    state = torch.load(path, weights_only=True)
    key = next(iter(state))
    state[key] = torch.zeros(state[key].shape[0], state[key].shape[1] + 9)
    torch.save(state, path)
    with pytest.raises(ArtifactError, match=rf"tiny_model\.pt: weights do not match the config "
                                            rf"\(lookback 10 x 9 features .*\): {key} is"):
        load_model(folder)


def set_model_params(folder: Path, **params: object) -> None:
    """Rewrite the saved config's model_params, leaving the weights as trained."""
    config_path = folder / "tiny_config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["model_params"].update(params)
    config_path.write_text(yaml.safe_dump(config))


def test_weights_of_another_network_size_are_named(folder: Path) -> None:
    set_model_params(folder, hidden_dim=16)
    with pytest.raises(ArtifactError, match=r"tiny_model\.pt: .*hidden_dim 16.* is \(32, 94\) "
                                            r"in the file, the config needs \(16, 94\)"):
        load_model(folder)


def test_a_weights_file_of_another_encoder_is_named(folder: Path) -> None:
    set_model_params(folder, encoder="gru")
    with pytest.raises(ArtifactError, match=r"tiny_model\.pt: .*gru encoder.*missing \["):
        load_model(folder)


@pytest.mark.parametrize("content", [b"", b"junk", b"not a torch file"])
def test_an_unreadable_weights_file_is_named(folder: Path, content: bytes) -> None:
    (folder / "tiny_model.pt").write_bytes(content)
    with pytest.raises(ArtifactError, match=r"tiny_model\.pt: not a readable weights file"):
        load_model(folder)


def test_a_scaler_with_the_wrong_feature_count_is_named(folder: Path) -> None:
    (folder / "tiny_scaler.json").write_text(scaler_to_json(
        StandardScaler().fit(np.random.default_rng(0).normal(size=(20, 3)))))
    with pytest.raises(ArtifactError, match=r"tiny_scaler\.json: scaler expects 3 features but "
                                            r"the config lists 9"):
        load_model(folder)


@pytest.mark.parametrize(("section", "key", "message"), [
    ("model_params", "num_layers", r"the config has no model_params\.num_layers"),
    ("observation", "account_features", r"the config has no observation\.account_features"),
])
def test_a_config_without_the_network_keys_is_named(folder: Path, section: str, key: str,
                                                   message: str) -> None:
    config_path = folder / "tiny_config.yaml"
    config = yaml.safe_load(config_path.read_text())
    del config[section][key]
    config_path.write_text(yaml.safe_dump(config))
    with pytest.raises(ArtifactError, match=rf"{folder.name}: {message}"):
        load_model(folder)


def test_bad_env_params_in_the_config_are_named(folder: Path) -> None:
    config_path = folder / "tiny_config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["env_params"]["commission"] = 2
    config_path.write_text(yaml.safe_dump(config))
    with pytest.raises(ArtifactError, match=r"invalid env_params .* commission must be a "):
        load_model(folder)
