"""PPOBacktester: the closed loop plays exactly as the training env would, through the
shared engine, with baselines, files and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from NetworkConfigs.base import deep_merge
from NetworkConfigs.ppo_network import ActorCritic
from NetworkConfigs.ppo_replay_policy import ReplayPolicy
from NetworkConfigs.PPOTrainer import PPOTrainer
from NetworkConfigs.trading_env import TradingEnvironment, env_arrays
from Utilities import run_backtest as backtest_cli
from Utilities.accounting import ACCOUNT_FEATURES, EnvParams
from Utilities.backtest_report import BacktestInputError, choose_period
from Utilities.backtester import run_backtest
from Utilities.data_utils import load_bars, prepare_data
from Utilities.ppo_backtester import PPOBacktester

TINY = {"train_params": {"total_timesteps": 2_048, "n_envs": 2, "n_steps": 128,
                         "ppo_epochs": 1, "eval_every": 2, "seed": 3},
        "model_params": {"lookback_window": 10, "hidden_dim": 32}}


@pytest.fixture(scope="module")
def trained(sample_bars: pd.DataFrame, tmp_path_factory) -> tuple[Path, Path]:
    """(model folder, the CSV it was trained on): 900 bars of sample.csv."""
    root = tmp_path_factory.mktemp("ppo_bt")
    csv = root / "train.csv"
    sample_bars.iloc[:900].to_csv(csv, index_label="Date")
    model_dir = PPOTrainer(TINY).fit(load_bars(csv), model_name="bt", models_dir=root,
                                     data_file=str(csv))
    return model_dir, csv


@pytest.mark.parametrize("encoder", ["mlp", "conv", "gru"])
def test_replay_policy_equals_the_network(encoder: str) -> None:
    torch.manual_seed(0)
    lookback, n_features = 6, 3
    agent = ActorCritic(lookback * n_features + ACCOUNT_FEATURES, 3, hidden_dim=16, depth=2,
                        lookback=lookback, n_features=n_features, encoder=encoder)
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(50, lookback, n_features)).astype(np.float32)
    account = rng.normal(size=(20, ACCOUNT_FEATURES)).astype(np.float32)
    probs, values = ReplayPolicy(agent, windows)(slice(30, 50), account)
    obs = np.concatenate([windows[30:50].reshape(20, -1), account], axis=1)
    expected_probs, expected_values = agent.policy(torch.as_tensor(obs))
    np.testing.assert_allclose(probs, expected_probs.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values, expected_values.numpy(), rtol=1e-5, atol=1e-5)


def env_greedy_play(model_dir: Path, csv: Path) -> tuple[np.ndarray, float]:
    """The trainer's view: greedy steps in the training env on the test part."""
    backtester = PPOBacktester(model_dir, csv).load_artifacts()
    loader, config = backtester.loader, backtester.loader.config
    data = prepare_data(backtester.bars, loader.spec, lookback=loader.lookback)
    features, prices = env_arrays(data, "test")
    params = EnvParams.from_dict({**config["env_params"], "episode_length": None})
    env = TradingEnvironment(features, prices, loader.lookback, params=params)
    obs, _ = env.reset(options={"start": env.market.first})
    actions, done, info = [], False, {}
    while not done:
        probs, _ = loader.agent.policy(torch.as_tensor(obs)[None])
        actions.append(int(probs.argmax()))
        obs, _, terminated, truncated, info = env.step(actions[-1])
        done = terminated or truncated
    return np.array(actions), info["final_equity"]


def test_closed_loop_plays_as_the_training_env(trained) -> None:
    model_dir, csv = trained
    report = PPOBacktester(model_dir, csv).run_with_results()
    assert report.period.source == "held-out test slice"
    actions, final_equity = env_greedy_play(model_dir, csv)
    np.testing.assert_array_equal(report.decisions["action"].to_numpy()[:-1], actions)
    open_end = run_backtest(report.result.bars, actions=report.decisions["action"].to_numpy(),
                            params=report.result.params, finalize=False)
    assert open_end.equity.iloc[-1] == pytest.approx(final_equity, rel=1e-9)
    assert report.result.trades["entry_bar"].min() >= 0 and len(report.result.trades) > 0


def test_report_carries_baselines_decisions_and_statistics(trained) -> None:
    model_dir, csv = trained
    report = PPOBacktester(model_dir / "bt_config.yaml", csv,
                           commission=0.0, slippage=0.0).run_with_results()
    bars = report.result.bars
    assert set(report.baselines) == {"Buy & Hold", "Random"}
    hold = report.baselines["Buy & Hold"].equity
    assert hold.iloc[-1] == pytest.approx(10_000 * bars["Close"].iloc[-1] / bars["Close"].iloc[0])
    decisions = report.decisions
    assert list(decisions.columns) == ["action", "action_name", "Hold", "Buy", "Sell", "value"]
    np.testing.assert_allclose(decisions[["Hold", "Buy", "Sell"]].sum(axis=1), 1.0, rtol=1e-5)
    assert (decisions.index == bars.index).all()
    summary = report.summary()
    json.dumps(summary)  # JSON-ready all the way down
    assert summary["statistics"]["# Trades"] == len(report.result.trades)
    assert summary["params"]["commission"] == 0.0
    assert "Buy & Hold" in report.table() and "Sharpe Ratio" in report.table()


def test_other_files_and_ranges(trained, sample_bars: pd.DataFrame, tmp_path: Path) -> None:
    model_dir, csv = trained
    other = tmp_path / "other.csv"
    sample_bars.iloc[900:1300].to_csv(other, index_label="Date")
    whole = PPOBacktester(model_dir, other).run_with_results()
    assert whole.period.source == "whole file"
    lookback = whole.result.bars.index[0]
    assert lookback == load_bars(other).index[10]  # 1 warm-up bar + a 10-bar window
    custom = PPOBacktester(model_dir, csv, start="2001-01-01", end="2001-06-30").run_with_results()
    index = custom.result.bars.index
    assert custom.period.source == "custom range"
    assert index[0] >= pd.Timestamp("2001-01-01") and index[-1] <= pd.Timestamp("2001-06-30")


def test_sampling_is_seeded(trained) -> None:
    model_dir, csv = trained
    first = PPOBacktester(model_dir, csv, sample=True, seed=1).run_with_results()
    again = PPOBacktester(model_dir, csv, sample=True, seed=1).run_with_results()
    other = PPOBacktester(model_dir, csv, sample=True, seed=2).run_with_results()
    np.testing.assert_array_equal(first.decisions["action"], again.decisions["action"])
    assert not np.array_equal(first.decisions["action"], other.decisions["action"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"start": "2003-01-01", "end": "2002-01-01"}, "is after end"),
    ({"start": "2030-01-01"}, "no bars between"),
    ({"start": "yesterday-ish"}, "is not a date"),
    ({"commission": -0.1}, "commission cannot be negative"),
    ({"start": "2000-03-21", "end": "2000-03-25"}, "a backtest needs at least 2"),
])
def test_bad_requests_are_refused(trained, kwargs, message) -> None:
    model_dir, csv = trained
    with pytest.raises(BacktestInputError, match=message):
        PPOBacktester(model_dir, csv, **kwargs).run_with_results()


def test_cli_writes_the_files(trained, tmp_path: Path, capsys) -> None:
    model_dir, csv = trained
    out = tmp_path / "out"
    assert backtest_cli.main(["--model-dir", str(model_dir), "--csv_path", str(csv),
                                "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held-out test slice" in printed and "Return [%]" in printed
    trades = pd.read_csv(out / "trades.csv")
    equity = pd.read_csv(out / "equity.csv")
    assert {"entry_time", "exit_time", "pnl", "return_pct"} <= set(trades.columns)
    assert {"equity", "drawdown", "equity_buy_hold", "equity_random"} <= set(equity.columns)
    assert (out / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "equity.png").stat().st_size > 20_000  # a drawn chart, not an empty canvas


@pytest.mark.parametrize("case", ["no model", "bad csv", "bad range"])
def test_cli_errors_are_one_line(trained, tmp_path: Path, capsys, case: str) -> None:
    model_dir, csv = trained
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("Date,Open,High,Low,Close\n2020-01-01,1,2,0.5,abc\n")
    args = {"no model": ["--model-dir", str(tmp_path / "missing"), "--csv_path", str(csv)],
            "bad csv": ["--model-dir", str(model_dir), "--csv_path", str(bad_csv)],
            "bad range": ["--model-dir", str(model_dir), "--csv_path", str(csv),
                          "--start", "2030-01-01"]}[case]
    assert backtest_cli.main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_a_larger_network_config_still_replays(sample_bars, tmp_path: Path) -> None:
    config = deep_merge(TINY, {"model_params": {"encoder": "gru", "num_layers": 3}})
    bars = sample_bars.iloc[:700]
    model_dir = PPOTrainer(config).fit(bars, model_name="g", models_dir=tmp_path)
    csv = tmp_path / "bars.csv"
    bars.to_csv(csv, index_label="Date")
    report = PPOBacktester(model_dir, csv).run_with_results()
    assert report.period.source == "whole file"  # trained without a data file: no hash
    assert len(report.decisions) == len(report.result.equity)


def test_blank_bounds_keep_the_held_out_default(trained) -> None:
    model_dir, csv = trained
    report = PPOBacktester(model_dir, csv, start="", end=" ").run_with_results()
    assert report.period.source == "held-out test slice"


def test_period_bounds_on_intraday_bars() -> None:
    index = pd.date_range("2024-01-01 09:30", periods=600, freq="min")
    day = choose_period(index, 0, config={}, csv_path=Path("none.csv"),
                        start="2024-01-01", end="2024-01-01")
    assert (day.first, day.last, day.source) == (0, 599, "custom range")  # the whole day
    aware = choose_period(index, 0, config={}, csv_path=Path("none.csv"),
                          start="2024-01-01T10:30:00+01:00")
    assert index[aware.first] == pd.Timestamp("2024-01-01 09:30")  # 10:30+01:00 is 09:30 UTC
    with pytest.raises(BacktestInputError, match="no bars left"):
        choose_period(index[:0], 0, config={}, csv_path=Path("none.csv"))


def test_the_market_pass_leaves_torchs_thread_count_as_it_was() -> None:
    agent = ActorCritic(2 * 2 + ACCOUNT_FEATURES, 3, hidden_dim=8, lookback=2, n_features=2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        policy = ReplayPolicy(agent, np.zeros((10, 2, 2), dtype=np.float32))
        assert torch.get_num_threads() == 2
        policy(slice(0, 10), np.zeros((10, ACCOUNT_FEATURES), dtype=np.float32))
        assert torch.get_num_threads() == 2  # the loop's batches too
    finally:
        torch.set_num_threads(before)
