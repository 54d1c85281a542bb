"""Accounting by hand, the env contract, no look-ahead, and vector env == N single envs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import gymnasium
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from NetworkConfigs.trading_env import TradingEnvironment, VecTradingEnv, env_arrays
from Utilities.accounting import (
    BUY,
    HOLD,
    SELL,
    Accounts,
    EnvParams,
    apply_actions,
    target_positions,
)
from Utilities.data_utils import build_feature_spec, prepare_data
from Utilities.input_errors import InputError, InputErrors

LOOKBACK = 8
# Round numbers for hand computation: 0.1% commission, 10 bps slippage.
COSTLY = EnvParams(commission=0.001, slippage=10.0)
FREE = EnvParams(commission=0.0, slippage=0.0)


@pytest.fixture()
def market(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Scaled features and raw closes of sample.csv's first 400 bars (train part)."""
    data = prepare_data(bars, build_feature_spec(bars), lookback=LOOKBACK)
    return env_arrays(data, "train")


def one_account(balance: float = 10_000.0) -> Accounts:
    return Accounts.open(1, balance)


def act(acc: Accounts, action: int, price: float, params: EnvParams):
    return apply_actions(acc, np.array([action]), price, params)


# ------------------------------------------------------------------- accounting


def test_long_round_trip_with_commission_and_slippage() -> None:
    acc = one_account()
    buy = act(acc, BUY, 100.0, COSTLY)
    # Fill 100 * 1.001 = 100.1. The 10,000 of equity pays units and fee together:
    # units = 10,000 / (100.1 * 1.001) = 99.8003; fee = 0.001 * units * 100.1 = 9.99.
    assert buy.price[0] == pytest.approx(100.1)
    assert acc.units[0] == pytest.approx(99.8002996005)
    assert buy.fee[0] == pytest.approx(9.99000999)
    assert acc.cash[0] == pytest.approx(0.0, abs=1e-9)  # all in, never below zero
    assert acc.entry_price[0] == pytest.approx(100.1) and acc.position[0] == 1
    assert acc.equity(100.0)[0] == pytest.approx(9980.02996005)  # no profit booked at entry
    assert not buy.closed[0] and buy.pnl[0] == 0.0

    sell = act(acc, SELL, 110.0, COSTLY)
    # Fill 110 * 0.999 = 109.89; proceeds 99.8003 * 109.89 = 10967.054923; fee 10.967055.
    assert sell.price[0] == pytest.approx(109.89)
    assert sell.fee[0] == pytest.approx(10.967054923)
    assert acc.cash[0] == pytest.approx(10956.087868176)
    assert sell.pnl[0] == pytest.approx(956.087868176)  # both fees included
    assert acc.equity(123.0)[0] == pytest.approx(10956.087868176)  # flat: price no longer matters
    assert (acc.position[0], acc.units[0], acc.trades[0], acc.wins[0]) == (0, 0.0, 1, 1)


def test_short_round_trip() -> None:
    acc = one_account()
    act(acc, SELL, 100.0, COSTLY)
    # Fill 99.9; sells 10,000 / (99.9 * 1.001) = 100.0001 units; cash 10,000 + proceeds - fee.
    assert acc.units[0] == pytest.approx(-100.0001000001)
    assert acc.cash[0] == pytest.approx(19_980.01998002)
    assert acc.position[0] == -1
    cover = act(acc, BUY, 90.0, COSTLY)
    # Buys back at 90.09: costs 9009.009009 plus a 9.009009 fee.
    assert cover.side[0] == 1 and cover.price[0] == pytest.approx(90.09)
    assert acc.cash[0] == pytest.approx(10962.001962002)
    assert cover.pnl[0] == pytest.approx(962.001962002)
    assert (acc.trades[0], acc.wins[0]) == (1, 1)


def test_losing_trade_is_counted_but_not_won() -> None:
    acc = one_account()
    act(acc, BUY, 100.0, COSTLY)
    fill = act(acc, SELL, 100.0, COSTLY)  # unchanged price: the costs make it a loss
    assert fill.pnl[0] < 0
    assert acc.cash[0] == pytest.approx(10_000 * 99.9 * 0.999 / (100.1 * 1.001))
    assert (acc.trades[0], acc.wins[0]) == (1, 0)


def test_no_short_makes_sell_from_flat_a_no_op() -> None:
    acc = one_account()
    fill = act(acc, SELL, 100.0, replace(COSTLY, allow_short=False))
    assert not fill.traded[0] and fill.price[0] == 0.0 and fill.fee[0] == 0.0
    assert (acc.position[0], acc.cash[0], acc.units[0]) == (0, 10_000.0, 0.0)


def test_buy_when_long_and_sell_when_short_are_no_ops() -> None:
    for first, again in ((BUY, BUY), (SELL, SELL)):
        acc = one_account()
        act(acc, first, 100.0, COSTLY)
        before = (acc.cash.copy(), acc.units.copy())
        fill = act(acc, again, 105.0, COSTLY)
        assert not fill.traded[0]
        np.testing.assert_array_equal(acc.cash, before[0])
        np.testing.assert_array_equal(acc.units, before[1])


def test_two_sells_go_long_flat_short() -> None:
    acc = one_account()
    act(acc, BUY, 100.0, FREE)
    positions = []
    for _ in range(2):
        act(acc, SELL, 100.0, FREE)
        positions.append(int(acc.position[0]))
    assert positions == [0, -1]
    assert acc.units[0] == pytest.approx(-100.0) and acc.cash[0] == pytest.approx(20_000.0)


def test_position_fraction_buys_fractional_units() -> None:
    acc = one_account()
    act(acc, BUY, 300.0, replace(FREE, position_fraction=0.5))
    assert acc.units[0] == pytest.approx(5_000 / 300)  # 16.67 units, not rounded
    assert acc.cash[0] == pytest.approx(5_000.0)
    assert acc.equity(330.0)[0] == pytest.approx(10_500.0)


def test_ruined_accounts_never_open() -> None:
    acc = Accounts.open(3, 10_000.0)
    acc.cash[:] = [0.0, -5.0, 1.0]
    fills = apply_actions(acc, np.array([BUY, SELL, BUY]), 100.0, FREE)
    assert fills.traded.tolist() == [False, False, True]
    assert acc.position.tolist() == [0, 0, 1]


def test_target_positions_table_and_bad_actions() -> None:
    position = np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1], dtype=np.int8)
    actions = np.array([HOLD, BUY, SELL] * 3)
    assert target_positions(position, actions, True).tolist() == [-1, 0, -1, 0, 1, -1, 1, 1, 0]
    assert target_positions(position, actions, False).tolist() == [-1, 0, -1, 0, 1, 0, 1, 1, 0]
    with pytest.raises(ValueError, match="0 Hold, 1 Buy, 2 Sell"):
        target_positions(position[:2], np.array([0, 3]), True)
    with pytest.raises(ValueError, match="0 Hold"):
        target_positions(position[:2], np.array([0]), True)


def test_vectorized_equals_account_by_account() -> None:
    rng = np.random.default_rng(7)
    n, params = 64, replace(COSTLY, position_fraction=0.7)
    together = Accounts.open(n, 10_000.0)
    singles = [Accounts.open(1, 10_000.0) for _ in range(n)]
    for _ in range(50):
        actions, prices = rng.integers(0, 3, n), 100 * np.exp(rng.normal(0, 0.05, n))
        fills = apply_actions(together, actions, prices, params)
        ones = [apply_actions(acc, actions[i:i + 1], prices[i], params)
                for i, acc in enumerate(singles)]
        for name in fills.__dataclass_fields__:
            np.testing.assert_allclose(getattr(fills, name),
                                       np.concatenate([getattr(one, name) for one in ones]))
    for name in together.__dataclass_fields__:
        np.testing.assert_allclose(getattr(together, name),
                                   np.concatenate([getattr(a, name) for a in singles]))
    assert together.trades.sum() > 0 and (together.position == -1).any()


def test_accounts_reset_reopens_masked_accounts_only() -> None:
    acc = Accounts.open(2, 100.0)
    apply_actions(acc, np.array([BUY, SELL]), 10.0, FREE)
    acc.reset(np.array([True, False]), 100.0)
    assert acc.position.tolist() == [0, -1] and acc.cash[0] == 100.0 and acc.units[0] == 0.0


# ---------------------------------------------------------------------- params


def test_params_round_trip_and_unknown_keys() -> None:
    params = EnvParams.from_dict({"commission": 0.001, "episode_length": None})
    assert EnvParams.from_dict(params.to_dict()) == params
    with pytest.raises(InputError, match=r"unknown env_params key\(s\) \['comission'\].*slippage"
                       ) as caught:
        EnvParams.from_dict({"comission": 0.001})
    assert caught.value.field == "comission"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("initial_balance", 0, "initial_balance must be at least 1"),
    ("initial_balance", 0.5, "initial_balance must be at least 1"),
    ("commission", -0.1, "commission cannot be negative"),
    ("commission", 1, r"commission must be a fraction of the traded value in \[0, 1\)"),
    ("slippage", float("nan"), "slippage must be a finite number"),
    ("position_fraction", 1.5, r"position_fraction must be in \(0, 1\]"),
    ("position_fraction", "0.5", "position_fraction must be a number"),
    ("allow_short", "yes", "allow_short must be true or false"),
    ("hold_penalty", -1, "hold_penalty must be >= 0"),
    ("episode_length", 0, "episode_length must be an integer >= 1 or None"),
    ("episode_length", 2.5, "episode_length must be an integer"),
    ("reward_scale", 0, "reward_scale must be > 0"),
])
def test_params_reject_bad_values(key: str, value: object, message: str) -> None:
    """Each error is an InputError whose field is the key, so a form can place it."""
    with pytest.raises(InputError, match=message) as caught:
        EnvParams.from_dict({key: value})
    assert caught.value.field == key


def test_params_report_every_bad_value_at_once() -> None:
    with pytest.raises(InputErrors) as caught:
        EnvParams(commission=-1, slippage=2e4, reward_scale=0)
    assert set(caught.value.errors) == {"commission", "slippage", "reward_scale"}


# ------------------------------------------------------------------------- env


@pytest.fixture()
def registered() -> Iterator[str]:
    """A registered id, so check_env can also re-make the env (render/close checks)."""
    env_id = "GalaxyTradingTest-v0"
    gymnasium.register(env_id, entry_point="NetworkConfigs.trading_env:TradingEnvironment")
    yield env_id
    del gymnasium.registry[env_id]


def test_check_env_passes_without_warnings(market, registered: str) -> None:
    features, prices = market
    env = gymnasium.make(registered, features=features, prices=prices, lookback=LOOKBACK)
    check_env(env.unwrapped)  # pytest turns every warning into an error
    obs, _ = env.reset(seed=0)
    assert obs.shape == (LOOKBACK * features.shape[1] + 4,) and obs.dtype == np.float32
    env.close()


def test_constructor_rejects_bad_data(market) -> None:
    features, prices = market
    cases = [
        ((features[:-1], prices, LOOKBACK), "same n"),
        ((features[:LOOKBACK], prices[:LOOKBACK], LOOKBACK), "at least lookback"),
        ((features, -prices, LOOKBACK), "positive"),
        ((np.where(features > 1, np.nan, features), prices, LOOKBACK), "NaN"),
        ((features, prices, 0), "lookback must be an integer >= 1"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            TradingEnvironment(*args)


def test_seeded_starts(market) -> None:
    env = TradingEnvironment(*market, LOOKBACK)
    starts = [env.reset(seed=seed)[1]["t"] for seed in range(10)]
    assert starts == [env.reset(seed=seed)[1]["t"] for seed in range(10)]
    assert len(set(starts)) > 5
    assert all(LOOKBACK - 1 <= t <= len(market[1]) - 2 for t in starts)
    assert env.reset(options={"start": 20})[1]["t"] == 20
    with pytest.raises(ValueError, match="start must be in"):
        env.reset(options={"start": LOOKBACK - 2})
    with pytest.raises(ValueError, match="start must be one integer"):
        env.reset(options={"start": 20.5})
    fixed = TradingEnvironment(*market, LOOKBACK, random_start=False)
    assert fixed.reset(seed=3)[1]["t"] == LOOKBACK - 1


def test_reward_is_scaled_equity_change_minus_hold_penalty(market) -> None:
    params = EnvParams(hold_penalty=0.01, reward_scale=50.0, episode_length=None)
    env = TradingEnvironment(*market, LOOKBACK, params)
    _, info = env.reset(seed=1)
    rng = np.random.default_rng(1)
    for _ in range(40):
        action = int(rng.integers(3))
        obs, reward, terminated, truncated, new = env.step(action)
        change = 50.0 * (new["equity"] - info["equity"]) / 10_000.0
        assert reward == pytest.approx(change - (0.01 if action == HOLD else 0.0))
        assert obs[-4] == pytest.approx(new["equity"] / 10_000 - 1, rel=1e-6)
        assert obs[-3] == new["position"]
        info = new
        if terminated or truncated:
            break


def test_truncated_at_episode_length(market) -> None:
    env = TradingEnvironment(*market, LOOKBACK, EnvParams(episode_length=5), random_start=False)
    env.reset()
    ends = [env.step(HOLD)[2:4] for _ in range(5)]
    assert ends == [(False, False)] * 4 + [(False, True)]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(HOLD)


def test_truncated_at_end_of_data(market) -> None:
    n = len(market[1])
    env = TradingEnvironment(*market, LOOKBACK, EnvParams(episode_length=None))
    env.reset(options={"start": n - 3})
    env.step(BUY)
    _, _, terminated, truncated, info = env.step(HOLD)
    assert (terminated, truncated, info["t"]) == (False, True, n - 1)
    assert info["final_equity"] == info["equity"] and info["win"] == (info["equity"] > 10_000)


def crash_prices(n: int, at: int) -> np.ndarray:
    """Flat at 100, then tripling at bar ``at``: ruin for a fully invested short."""
    return np.where(np.arange(n) < at, 100.0, 300.0)


def test_terminated_on_ruin(market) -> None:
    features, _ = market
    env = TradingEnvironment(features, crash_prices(len(features), 30), LOOKBACK)
    env.reset(options={"start": 27})
    # Default costs: short u = 10,000 / (99.99 * 1.0005) units at 99.99; the fee is taken
    # from the proceeds, so cash is 10,000 + u * 99.99 * (1 - 0.0005).
    assert env.step(SELL)[2:4] == (False, False)
    _, _, terminated, truncated, before = env.step(HOLD)
    assert (terminated, truncated) == (False, False)
    units = 10_000 / (99.99 * 1.0005)
    cash = 10_000 + units * 99.99 * 0.9995
    assert before["equity"] == pytest.approx(cash - 100 * units)
    obs, reward, terminated, truncated, info = env.step(HOLD)  # bar 29 -> 30: price triples
    assert (terminated, truncated) == (True, False)
    assert info["final_equity"] == pytest.approx(cash - 300 * units)  # about -10,000
    assert info["win"] is False
    assert reward == pytest.approx(100 * (info["equity"] - before["equity"]) / 10_000)
    assert np.isfinite(obs).all() and obs in env.observation_space


def test_no_look_ahead(market) -> None:
    features, prices = market
    t, start = 60, 40
    changed_f, changed_p = features.copy(), prices.copy()
    rng = np.random.default_rng(0)
    changed_f[t + 1:] = rng.normal(size=changed_f[t + 1:].shape)
    changed_p[t + 1:] *= 3.0
    actions = np.random.default_rng(1).integers(0, 3, t - start)
    runs = []
    for f, p in ((features, prices), (changed_f, changed_p)):
        env = TradingEnvironment(f, p, LOOKBACK)
        observations = [env.reset(options={"start": start})[0]]
        observations += [env.step(int(a))[0] for a in actions]
        runs.append(np.stack(observations))
    np.testing.assert_array_equal(runs[0], runs[1])  # every observation up to bar t
    changed_f[t] += 1.0  # sanity: the same run notices a change at bar t itself
    env = TradingEnvironment(changed_f, changed_p, LOOKBACK)
    env.reset(options={"start": start})
    last = [env.step(int(a)) for a in actions][-1][0]
    assert not np.array_equal(last, runs[0][-1])


def test_env_copies_its_data(market) -> None:
    features, prices = (a.copy() for a in market)
    env = TradingEnvironment(features, prices, LOOKBACK)
    obs, _ = env.reset(options={"start": 20})
    features[:] = 0.0
    prices[:] = 1.0
    np.testing.assert_array_equal(env.reset(options={"start": 20})[0], obs)


# ------------------------------------------------------------------ vector env


def volatile_prices(n: int) -> np.ndarray:
    """A wild random walk (25% a bar) so shorts get ruined inside the test."""
    return 100.0 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.25, n)))


@pytest.mark.parametrize("prices_kind", ["sample", "volatile"])
def test_vector_env_equals_single_envs(market, prices_kind: str) -> None:
    features, prices = market
    if prices_kind == "volatile":
        prices = volatile_prices(len(prices))
    params = EnvParams(episode_length=40, hold_penalty=0.001)
    n_envs, n = 6, len(prices)
    starts = np.array([LOOKBACK - 1, 30, 100, n - 60, n - 20, n - 2])
    vec = VecTradingEnv(features, prices, LOOKBACK, params, num_envs=n_envs,
                        random_start=False)
    singles = [TradingEnvironment(features, prices, LOOKBACK, params, random_start=False)
               for _ in range(n_envs)]
    obs, _ = vec.reset(options={"start": starts})
    expected = np.stack([env.reset(options={"start": int(s)})[0]
                         for env, s in zip(singles, starts, strict=True)])
    np.testing.assert_allclose(obs, expected)
    rng = np.random.default_rng(11)
    ended = np.zeros(n_envs, dtype=bool)
    ruined = False
    for _ in range(300):
        actions = rng.integers(0, 3, n_envs)
        obs, rewards, terminated, truncated, infos = vec.step(actions)
        steps = [env.step(int(a)) for env, a in zip(singles, actions, strict=True)]
        done = np.array([s[2] or s[3] for s in steps])
        np.testing.assert_allclose(rewards, [s[1] for s in steps], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(terminated, [s[2] for s in steps])
        np.testing.assert_array_equal(truncated, [s[3] for s in steps])
        assert not (terminated & truncated).any()
        if done.any():
            check_final_infos(infos, steps, done)
        for i in np.flatnonzero(done):  # SAME_STEP autoreset, done by hand for the singles
            steps[i] = (singles[i].reset()[0], *steps[i][1:])
        np.testing.assert_allclose(obs, np.stack([s[0] for s in steps]), rtol=1e-6, atol=1e-6)
        equity = [10_000.0 if d else s[4]["equity"] for s, d in zip(steps, done, strict=True)]
        np.testing.assert_allclose(infos["equity"], equity)
        ended |= done
        ruined |= terminated.any()
    assert ended.all()
    assert ruined == (prices_kind == "volatile")


def check_final_infos(infos: dict, steps: list, done: np.ndarray) -> None:
    for key in ("final_obs", "final_equity", "trades", "win"):
        np.testing.assert_array_equal(infos[f"_{key}"], done)
    for i in np.flatnonzero(done):
        obs, _, _, _, info = steps[i]
        np.testing.assert_allclose(infos["final_obs"][i], obs, rtol=1e-6, atol=1e-6)
        assert infos["final_equity"][i] == pytest.approx(info["final_equity"])
        assert infos["trades"][i] == info["trades"] and infos["win"][i] == info["win"]


def test_vector_env_spaces_seeding_and_random_autoreset(market) -> None:
    vec = VecTradingEnv(*market, LOOKBACK, EnvParams(episode_length=3), num_envs=16)
    assert vec.observation_space.shape == (16, vec.single_observation_space.shape[0])
    assert vec.action_space == gymnasium.spaces.MultiDiscrete([3] * 16)
    assert vec.metadata["autoreset_mode"] is gymnasium.vector.AutoresetMode.SAME_STEP
    first, _ = vec.reset(seed=5)
    np.testing.assert_array_equal(vec.reset(seed=5)[0], first)
    assert not np.array_equal(vec.reset(seed=6)[0], first)
    vec.reset(seed=5, options={"start": 20})
    for _ in range(3):
        obs, _, _, truncated, infos = vec.step(np.full(16, BUY))
    assert truncated.all() and infos["_final_obs"].all()
    assert (infos["final_obs"][:, -3] == 1).all()  # the long positions at the end
    assert vec.observation_space.contains(obs) and (obs[:, -3] == 0).all()  # fresh accounts
    assert len(np.unique(obs, axis=0)) > 8  # new starts drawn from np_random
    np.testing.assert_array_equal(infos["equity"], 10_000.0)
    with pytest.raises(ValueError, match="actions must be"):
        vec.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="actions must be"):
        vec.step(np.full(16, 1.0))
    with pytest.raises(ValueError, match="start must be one integer or 16 integers"):
        vec.reset(options={"start": [20, 21]})


def test_vector_env_state_round_trip_continues_identically(bars) -> None:
    from Utilities.data_utils import build_feature_spec, prepare_data

    data = prepare_data(bars, build_feature_spec(bars), lookback=10)
    features, prices = data.scaled, data.bars["Close"].to_numpy()
    params = EnvParams(episode_length=20)
    rng = np.random.default_rng(3)
    actions = rng.integers(0, 3, size=(60, 4))
    env = VecTradingEnv(features, prices, 10, params, num_envs=4)
    env.reset(seed=7)
    for step in actions[:30]:
        env.step(step)
    saved = env.get_state()
    expected = [env.step(step) for step in actions[30:]]
    other = VecTradingEnv(features, prices, 10, params, num_envs=4)
    other.reset(seed=99)  # different history; set_state must erase it
    other.set_state(saved)
    for step, (obs, reward, term, trunc, _) in zip(actions[30:], expected, strict=True):
        got = other.step(step)
        np.testing.assert_array_equal(got[0], obs)
        np.testing.assert_array_equal(got[1], reward)
        assert (got[2] == term).all() and (got[3] == trunc).all()
