"""What a PPO run emits for the live monitor (issue 14, /README "What a run emits"):
episode statistics by the backtest's rule, the featured accounts' rate-limited account
snapshots, trades and decisions, and the ``monitor:`` config section."""

from __future__ import annotations

import itertools
import math
import statistics
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from NetworkConfigs.live_monitor import LiveMonitor, RateLimit, WindowLimit
from NetworkConfigs.ppo_config import MonitorSettings
from NetworkConfigs.trading_env import VecTradingEnv
from Utilities.accounting import BUY, HOLD, SELL, EnvParams
from Utilities.input_errors import InputError, InputErrors
from Utilities.performance import TRADE_COLUMNS, compute_statistics

# The contract's payload keys (README, "What a run emits").
ACCOUNT_KEYS = {"agent", "step", "bar", "cash", "position", "holdings_value", "equity",
                "episode", "episode_reward", "total_reward", "trades", "profitable_trades",
                "win_rate", "fees", "trades_unlogged"}
TRADE_KEYS = {"agent", "step", "bar", "time", "side", "price", "quantity", "pnl", "fee"}
DECISION_KEYS = {"agent", "step", "bar", "probabilities", "value", "action", "confidence"}


def _env(prices: list[float] | np.ndarray, times: Any = None, *, num_envs: int = 1,
         **params: Any) -> VecTradingEnv:
    prices = np.asarray(prices, dtype=float)
    features = np.arange(len(prices), dtype=np.float32)[:, None]
    env = VecTradingEnv(features, prices, 1, EnvParams(**params), num_envs=num_envs,
                        random_start=False, times=times)
    env.reset(seed=0)
    return env


# ------------------------------------------------------------------ episode statistics


def test_a_hand_computed_episode() -> None:
    """Six daily bars, 1 % commission, no slippage: buy, hold, sell (a win), sell short,
    buy back (a loss). Every number below is worked out by hand from the fill rule."""
    prices = [100.0, 100.0, 110.0, 121.0, 125.0, 99.0]
    times = pd.date_range("2024-01-05", periods=6, freq="D")  # Fri..Wed: weekends traded
    env = _env(prices, times, initial_balance=1000.0, commission=0.01, slippage=0.0,
               episode_length=None, reward_scale=1.0)
    c = 0.01
    units = 1000 / (100 * 1.01)  # all equity, fee included
    fee0 = c * units * 100
    fee2 = c * units * 110
    pnl_long = units * (110 - 100) - fee0 - fee2  # > 0: profitable
    cash2 = units * 110 - fee2
    short = cash2 / (121 * 1.01)
    fee3 = c * short * 121
    cash3 = cash2 + short * 121 - fee3
    fee4 = c * short * 125
    pnl_short = short * (121 - 125) - fee3 - fee4  # < 0
    cash4 = cash3 - short * 125 - fee4
    path = [1000.0, units * 100, units * 110, cash2, cash3 - short * 125, cash4]
    assert pnl_long > 0 > pnl_short

    rewards = 0.0
    for action in (BUY, HOLD, SELL, SELL, BUY):
        _, reward, terminated, truncated, infos = env.step(np.array([action]))
        rewards += float(reward[0])
    assert truncated[0] and not terminated[0]  # the last bar: cut, not ruined

    returns = [b / a - 1 for a, b in itertools.pairwise(path)]  # one bar a day
    sharpe = statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(365)
    peak, deepest = path[0], 0.0
    for value in path:
        peak = max(peak, value)
        deepest = max(deepest, 1 - value / peak)
    assert infos["_sharpe"][0] and infos["_max_drawdown"][0] and infos["_fees"][0]
    assert infos["final_equity"][0] == pytest.approx(cash4)
    assert infos["trades"][0] == 2 and infos["profitable_trades"][0] == 1
    assert infos["fees"][0] == pytest.approx(fee0 + fee2 + fee3 + fee4)
    assert infos["return_pct"][0] == pytest.approx((cash4 / 1000 - 1) * 100)
    assert infos["sharpe"][0] == pytest.approx(sharpe)
    assert infos["max_drawdown"][0] == pytest.approx(-deepest * 100)
    assert infos["max_drawdown"][0] < 0
    assert rewards == pytest.approx((cash4 - 1000) / 1000, rel=1e-5)  # float32 rewards


def test_episode_statistics_are_the_backtest_reports_on_the_same_curve() -> None:
    """Hourly bars over two weeks (weekends included): the env's fast path (days found
    once for the data) gives the report's Sharpe, Max. Drawdown and Return exactly."""
    rng = np.random.default_rng(3)
    n = 400
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    times = pd.date_range("2024-03-01 09:00", periods=n, freq="h")
    env = _env(prices, times, num_envs=3, episode_length=300)
    starts = np.array([0, 40, 99])
    env.reset(options={"start": starts})
    actions = rng.integers(0, 3, size=(300, 3))
    paths = [[10_000.0] for _ in range(3)]
    for step in range(300):
        _, _, _, truncated, infos = env.step(actions[step])
        for i in range(3):
            paths[i].append(float(infos["final_equity"][i]) if truncated[i]
                            else float(infos["equity"][i]))
    assert truncated.all()
    for i in range(3):
        index = times[starts[i]:starts[i] + 301]
        curve = pd.Series(paths[i], index=index)
        bars = pd.DataFrame({"Close": prices[starts[i]:starts[i] + 301]}, index=index)
        report = compute_statistics(curve, pd.DataFrame(columns=TRADE_COLUMNS), bars)
        assert infos["sharpe"][i] == report["Sharpe Ratio"]
        assert infos["max_drawdown"][i] == report["Max. Drawdown [%]"]
        assert infos["return_pct"][i] == report["Return [%]"]


def test_without_dates_there_is_no_sharpe_but_the_rest_is_there() -> None:
    env = _env([100.0, 101.0, 99.0, 102.0], episode_length=None)
    for action in (BUY, HOLD, SELL):
        *_, infos = env.step(np.array([action]))
    assert not infos["_sharpe"][0]  # undefined (NaN) is masked, never logged
    assert infos["_max_drawdown"][0] and infos["_return_pct"][0]


def test_an_unbounded_episode_outgrows_its_first_path_buffer() -> None:
    """9,000 steps with no length limit (the ring starts at 4,096 and doubles) score as
    the same episode does in an env sized for it from the start."""
    n = 9001
    prices = 100 + np.sin(np.arange(n) / 50)
    times = pd.date_range("2020-01-01", periods=n, freq="D")
    unbounded = _env(prices, times, num_envs=2, episode_length=None)
    sized = _env(prices, times, num_envs=2, episode_length=n)
    actions = np.random.default_rng(1).integers(0, 3, size=(n - 1, 2))
    for step in range(n - 1):
        *_, grown = unbounded.step(actions[step])
        *_, truncated, fixed = sized.step(actions[step])
    assert truncated.all() and len(unbounded.get_state()["ring"]) >= n - 1
    for key in ("return_pct", "sharpe", "max_drawdown", "fees", "final_equity"):
        assert np.array_equal(grown[key], fixed[key]), key


def test_the_state_keeps_the_episode_paths_for_exact_resume() -> None:
    env = _env(np.linspace(100, 120, 50), episode_length=10, num_envs=2)
    for _ in range(4):
        env.step(np.array([BUY, SELL]))
    state = env.get_state()
    twin = _env(np.linspace(100, 120, 50), episode_length=10, num_envs=2)
    twin.set_state(state)
    for _ in range(6):
        *_, a = env.step(np.array([HOLD, BUY]))
        *_, b = twin.step(np.array([HOLD, BUY]))
    for key in ("fees", "return_pct", "max_drawdown", "final_equity"):
        assert np.array_equal(a[key], b[key]), key


# ----------------------------------------------------------------------- the monitor


class Recorder:
    """A MetricsLogger stand-in that notes each call with the fake clock's time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, float, dict]] = []

    def log_account(self, **payload: Any) -> None:
        self.calls.append(("account", self.clock(), payload))

    def log_trade(self, **payload: Any) -> None:
        self.calls.append(("trade", self.clock(), payload))

    def log_decision(self, **payload: Any) -> None:
        self.calls.append(("decision", self.clock(), payload))

    def log_metrics(self, step: int, prefix: str = "custom", **metrics: float) -> None:
        for key, value in metrics.items():
            self.calls.append(("metric", self.clock(), {"key": f"{prefix}/{key}",
                                                        "step": step, "value": value}))

    def of(self, kind: str, agent: int | None = None) -> list[tuple[float, dict]]:
        return [(t, p) for k, t, p in self.calls
                if k == kind and (agent is None or p.get("agent") == agent)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeAgent:
    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.arange(len(obs), dtype=torch.float32) + 0.5


PROBS = torch.tensor([0.2, 0.5, 0.3])


def _drive(env: VecTradingEnv, settings: MonitorSettings, seconds: float,
           actions: Any, dt: float = 0.001) -> tuple[Recorder, LiveMonitor, SimpleNamespace]:
    """Step ``env`` every ``dt`` fake seconds with the monitor listening, as PPO does."""
    clock = FakeClock()
    sink = Recorder(clock)
    trainer = SimpleNamespace(envs=env, agent=FakeAgent(), device="cpu", global_step=0,
                              episode_returns=np.zeros(env.num_envs))
    monitor = LiveMonitor(sink, settings, clock=clock)
    monitor.set_trainer(trainer)
    monitor.on_training_start({})
    log_probs = PROBS.log().repeat(env.num_envs, 1)
    obs, _ = env.reset(seed=0)
    for step in range(round(seconds / dt)):
        action = actions(step)
        obs_next, *_ = env.step(action)
        trainer.global_step += env.num_envs
        monitor.on_rollout_step(obs, log_probs, torch.as_tensor(action))
        obs = obs_next
        clock.now += dt
    return sink, monitor, trainer


def _long_env(num_envs: int = 6) -> VecTradingEnv:
    n = 5000
    prices = 100 + 5 * np.sin(np.arange(n) / 40)
    times = pd.date_range("2024-01-01", periods=n, freq="min")
    return _env(prices, times, num_envs=num_envs, episode_length=None)


def _flip(step: int, n: int = 6) -> np.ndarray:
    """Buy then sell, again and again: a fill on every step of every account."""
    return np.full(n, BUY if step % 2 == 0 else SELL)


def test_the_rates_hold_per_featured_account_on_a_fake_clock() -> None:
    settings = MonitorSettings(featured_accounts=4, account_hz=4.0, decision_hz=2.0,
                               trades_per_second=20)
    sink, monitor, _ = _drive(_long_env(), settings, seconds=3.0, actions=_flip)
    assert {p["agent"] for _, p in sink.of("account")} == {0, 1, 2, 3}  # 4 of 6 envs
    logged = {}
    for agent in range(4):
        snapshots = [t for t, _ in sink.of("account", agent)]
        decisions = [t for t, _ in sink.of("decision", agent)]
        trades = [t for t, _ in sink.of("trade", agent)]
        assert len(snapshots) == 12 and min(np.diff(snapshots)) >= 0.25 - 1e-9
        assert len(decisions) == 6 and min(np.diff(decisions)) >= 0.5 - 1e-9
        assert len(trades) == 60  # 20 in each second of 1,000 fills
        assert max(sum(t <= u < t + 1.0 for u in trades) for t in trades) == 20
        logged[agent] = len(trades)
    monitor.log_accounts()  # a last snapshot: the fills not logged since the one before
    for agent in range(4):
        unlogged = sum(p["trades_unlogged"] for _, p in sink.of("account", agent))
        assert logged[agent] + unlogged == 3000  # every fill is logged or counted
    equity = [p for _, p in sink.of("metric") if p["key"] == "agents/0/equity"]
    assert len(equity) == 13 and equity[0]["step"] == 6  # after the first vector step
    assert [p["step"] for p in equity] == sorted(p["step"] for p in equity)


def test_the_monitor_is_silent_between_due_times() -> None:
    settings = MonitorSettings(featured_accounts=2, account_hz=1.0, decision_hz=1.0)
    sink, *_ = _drive(_long_env(), settings, seconds=0.999,
                      actions=lambda step: np.zeros(6, dtype=np.int64))  # no fills
    assert [k for k, *_ in sink.calls] == ["decision", "decision", "account", "metric",
                                           "account", "metric"]


def test_rate_limit_helpers() -> None:
    limit = RateLimit(4.0)
    assert [limit.due(t) for t in (0.0, 0.1, 0.25, 0.3, 0.5)] == [True, False, True,
                                                                   False, True]
    window = WindowLimit(2)
    assert [window.allow(t) for t in (0.0, 0.1, 0.9, 1.0, 1.05, 1.1)] == [
        True, True, False, True, False, True]


def test_payloads_follow_the_contract() -> None:
    settings = MonitorSettings(featured_accounts=1, account_hz=10.0, decision_hz=10.0,
                               trades_per_second=1000)
    env = _long_env(num_envs=2)
    sink, *_ = _drive(env, settings, seconds=0.5, dt=0.01,
                      actions=lambda s: np.array([(BUY, SELL, SELL, BUY)[s % 4]] * 2))
    accounts, trades, decisions = (sink.of(kind) for kind in ("account", "trade", "decision"))
    assert accounts and trades and decisions
    for _, p in accounts:
        assert set(p) == ACCOUNT_KEYS and p["agent"] == 0
        assert p["equity"] == pytest.approx(p["cash"] + p["holdings_value"])
        assert isinstance(p["bar"], int) and isinstance(p["step"], int)
        assert p["episode"] == 1
        assert p["win_rate"] is None if p["trades"] == 0 else 0 <= p["win_rate"] <= 1
        assert p["trades_unlogged"] == 0
    sides = [p["side"] for _, p in trades]
    assert sides[:4] == ["BUY", "CLOSE", "SELL", "CLOSE"]
    for _, p in trades:
        assert set(p) == TRADE_KEYS
        assert (p["pnl"] is None) == (p["side"] != "CLOSE")
        assert p["price"] == pytest.approx(env.market.prices[p["bar"]], rel=1.01e-4)  # 1 bp
    for _, p in decisions:
        assert set(p) == DECISION_KEYS
        assert p["probabilities"] == pytest.approx({"hold": 0.2, "buy": 0.5, "sell": 0.3})
        assert p["confidence"] == pytest.approx(p["probabilities"][p["action"].lower()])
        assert p["value"] == 0.5  # the fake critic's value of row 0
        assert p["action"] in ("HOLD", "BUY", "SELL")
    first = trades[0][1]
    assert first["time"] == "2024-01-01T00:00:00" and first["bar"] == 0
    assert first["fee"] > 0 and first["quantity"] > 0


# ------------------------------------------------------------------ config and a run


@pytest.mark.parametrize(("monitor", "field"), [
    ({"featured_accounts": 5}, "featured_accounts"),
    ({"featured_accounts": -1}, "featured_accounts"),
    ({"featured_accounts": 1.5}, "featured_accounts"),
    ({"account_hz": 0}, "account_hz"),
    ({"account_hz": "fast"}, "account_hz"),
    ({"decision_hz": 1000}, "decision_hz"),
    ({"trades_per_second": 0}, "trades_per_second"),
    ({"trades_per_second": True}, "trades_per_second"),
    ({"featured": 2}, "featured"),
])
def test_bad_monitor_settings_name_their_field(monitor: dict, field: str) -> None:
    from NetworkConfigs.PPOTrainer import PPOTrainer

    with pytest.raises(InputError) as caught:
        PPOTrainer({"monitor": monitor})
    assert caught.value.field == field and field in str(caught.value)


def test_all_bad_monitor_settings_at_once_and_flat_keys_are_filed() -> None:
    from NetworkConfigs.PPOTrainer import PPOTrainer

    with pytest.raises(InputErrors) as caught:
        PPOTrainer({"monitor": {"account_hz": -1, "decision_hz": 0}})
    assert set(caught.value.errors) == {"account_hz", "decision_hz"}
    assert PPOTrainer({"featured_accounts": 2}).monitor.featured_accounts == 2
    assert PPOTrainer().monitor == MonitorSettings()  # 4 accounts, 4 Hz, 2 Hz, 20 / s


def test_the_cli_says_a_bad_monitor_setting_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    from pathlib import Path

    from Utilities import run_training

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    root = Path(__file__).resolve().parent.parent
    code = run_training.main(["--csv_path", str(root / "sample.csv"), "--models-dir",
                              str(tmp_path / "M"), "--mode", "smoke", "--no-progress",
                              "--training_params", '{"monitor": {"account_hz": 0}}'])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "account_hz must be in [0.01, 50.0]" in err


def _training(store, sample_bars, monitor: dict) -> tuple[str, Any]:
    from NetworkConfigs.base import deep_merge
    from NetworkConfigs.callbacks import StoreLogger
    from NetworkConfigs.ppo_config import SMOKE
    from NetworkConfigs.PPOTrainer import PPOTrainer
    from NetworkConfigs.trading_env import bar_times, env_arrays

    config = deep_merge(SMOKE, {
        "train_params": {"total_timesteps": 1024, "n_envs": 4, "n_steps": 64,
                         "batch_size": 128, "ppo_epochs": 1, "device": "cpu"},
        "env_params": {"episode_length": 24}, "monitor": monitor})
    run = store.create_run(name="live", model_type="ppo")
    trainer = PPOTrainer(config, [StoreLogger(store, run, heartbeat_interval=math.inf)])
    data = trainer.prepare(sample_bars)
    envs = VecTradingEnv(*env_arrays(data, "train"), trainer.lookback, trainer.env_params,
                         num_envs=4, times=bar_times(data, "train"))
    trainer.learn(envs, network_kwargs={"lookback": trainer.lookback,
                                        "n_features": len(data.spec.features)})
    return run, trainer


@pytest.mark.usefixtures("one_torch_thread")
def test_a_training_run_emits_the_contract(store, sample_bars) -> None:
    run, _trainer = _training(store, sample_bars, {"account_hz": 50.0, "decision_hz": 50.0})
    keys = set(store.metric_keys(run))
    episode = {f"episode/{k}" for k in ("reward", "steps", "win", "return_pct", "final_equity",
                                        "trades", "profitable_trades", "fees", "sharpe",
                                        "max_drawdown", "account")}
    train = {f"train/{k}" for k in ("policy_loss", "value_loss", "loss", "entropy",
                                    "approx_kl", "clip_fraction", "explained_variance",
                                    "learning_rate", "env_steps", "steps_per_second",
                                    "value_mean", "value_std")}
    assert episode | train <= keys
    assert {f"agents/{i}/equity" for i in range(4)} <= keys
    env_steps = [p["value"] for p in store.metric_series(run, "train/env_steps")]
    assert env_steps == [256.0, 512.0, 768.0, 1024.0]  # 4 envs x 64 steps an update
    accounts = [p["value"] for p in store.metric_series(run, "episode/account")]
    assert set(accounts) == {0.0, 1.0, 2.0, 3.0}  # 4 accounts, 24-step episodes
    assert len(accounts) >= 4 * (256 // 24)  # 256 steps per account, <= 24 per episode
    drawdowns = [p["value"] for p in store.metric_series(run, "episode/max_drawdown")]
    assert all(d <= 0 for d in drawdowns)
    events = store.events_after(0, run_id=run, kinds=["account", "trade", "decision"],
                                limit=10_000)
    kinds = {e["kind"] for e in events}
    assert kinds == {"account", "trade", "decision"}
    for e in events:
        expected = {"account": ACCOUNT_KEYS, "trade": TRADE_KEYS,
                    "decision": DECISION_KEYS}[e["kind"]]
        assert set(e["payload"]) == expected, e
    last = [e["payload"] for e in events if e["kind"] == "account"][-4:]
    assert [p["agent"] for p in last] == [0, 1, 2, 3] and all(p["step"] == 1024 for p in last)
    assert all(p["episode"] >= 11 for p in last)  # the 11th (or later) is running


@pytest.mark.usefixtures("one_torch_thread")
def test_featured_accounts_zero_turns_the_monitor_off(store, sample_bars) -> None:
    run, trainer = _training(store, sample_bars, {"featured_accounts": 0})
    assert not any(isinstance(c, LiveMonitor) for c in trainer.callbacks)
    assert not store.events_after(0, run_id=run, kinds=["account", "trade", "decision"])
    assert not any(k.startswith("agents/") for k in store.metric_keys(run))
    assert "episode/sharpe" in store.metric_keys(run)  # episodes are always scored


@pytest.mark.parametrize("seed", range(5))
def test_the_sharpe_ratio_keeps_numpys_mean_and_std_to_the_bit(seed: int) -> None:
    """sharpe_ratio spells out ndarray.mean / std(ddof=1) (for speed): the same bits."""
    from Utilities.performance import sharpe_ratio

    rng = np.random.default_rng(seed)
    returns = rng.normal(0.001, 0.02, size=int(rng.integers(2, 3000)))
    strided = returns[::3] if returns.size >= 6 else returns
    for values in (returns, strided, returns * 1e6, returns[:2]):
        expected = values.mean() / values.std(ddof=1) * math.sqrt(252.0)
        assert sharpe_ratio(values, 252.0) == expected
    with_nan = returns.copy()
    with_nan[0] = np.nan
    assert math.isnan(sharpe_ratio(with_nan, 252.0))


@pytest.mark.parametrize(("times", "expected"), [
    (pd.date_range("2024-01-01 09:30", periods=3000, freq="min"), "2024-01-02T22:49:00"),
    (pd.date_range("2024-01-01 09:30", periods=3000, freq="min", tz="America/New_York"),
     "2024-01-03T03:49:00"),
    (pd.date_range("2024-01-01", periods=3000, freq="250ms"), "2024-01-01T00:09:19.750000"),
])
def test_trade_times_are_the_bars_times(times: pd.DatetimeIndex, expected: str) -> None:
    """Times are formatted a block of bars at a time; any bar reads as its own."""
    monitor = LiveMonitor(Recorder(FakeClock()), MonitorSettings(featured_accounts=1))
    monitor.set_trainer(SimpleNamespace(envs=_env(np.linspace(100, 110, 3000), times)))
    monitor.on_training_start({})
    assert monitor._time(2239) == expected  # bar 2,239: 2,239 steps after the first
    utc = times.tz_convert("UTC").tz_localize(None) if times.tz is not None else times
    for bar in (0, 1023, 1024, 2999):  # ISO-8601 that reads back as the bar's time
        assert pd.Timestamp(monitor._time(bar)) == utc[bar]


@pytest.mark.parametrize("case", ["plain", "nan", "zero", "inf", "flat", "ruin", "intraday"])
def test_the_fast_episode_score_is_the_reports(case: str) -> None:
    """curve_summary's shortcuts give what compute_statistics reports, edge cases too."""
    rng = np.random.default_rng(7)
    n = 300
    freq = "h" if case == "intraday" else "D"
    times = pd.date_range("2024-01-01", periods=n, freq=freq)
    values = 1000 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    if case == "nan":
        values[[5, 50, 51]] = np.nan
    elif case == "zero":
        values[100:110] = 0.0
    elif case == "inf":
        values[200] = np.inf
    elif case == "flat":
        values[:] = 1000.0
    elif case == "ruin":
        values[150:] = 0.0
    bars = pd.DataFrame({"Close": np.linspace(1, 2, n)}, index=times)
    with np.errstate(all="ignore"):
        report = compute_statistics(pd.Series(values, index=times),
                                    pd.DataFrame(columns=TRADE_COLUMNS), bars)
    from Utilities.performance import curve_summary, period_labels, periods_per_year

    with warnings_as_errors():
        fast = curve_summary(values, period_labels(times), periods_per_year(times))
    for key, name in (("sharpe", "Sharpe Ratio"), ("max_drawdown", "Max. Drawdown [%]"),
                      ("return_pct", "Return [%]")):
        assert fast[key] == report[name] or (math.isnan(fast[key])
                                             and math.isnan(report[name])), (key, case)


def warnings_as_errors() -> Any:
    import warnings

    manager = warnings.catch_warnings()
    manager.__enter__()
    warnings.simplefilter("error")

    class Exit:
        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            manager.__exit__(*exc)
    return Exit()
