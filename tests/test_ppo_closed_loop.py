"""The batched closed loop (Utilities.ppo_backtester.play) against the plain one: every
bar's observation built from its account, the network's own torch forward on that one
row, argmax, and ``apply_actions`` on a one-account book, bar after bar.

The lead's decision for issue 13: the logits may differ from the per-bar forward within
float32 rounding (the batched loop splits the first layer's sum and runs batches of
hundreds of rows). The actions, and so every trade and the equity curve, must be the
per-bar loop's. An action could only differ where a bar's two best logits are within
that rounding of each other; each case below also checks that its nearest such tie is
far wider than the largest logit difference seen, so the agreement is not luck.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from NetworkConfigs.ppo_network import ActorCritic, _run
from NetworkConfigs.ppo_replay_policy import ReplayPolicy
from Utilities import ppo_backtester
from Utilities.accounting import (
    ACCOUNT_FEATURES,
    BUY,
    SELL,
    Accounts,
    EnvParams,
    account_features,
    apply_actions,
)
from Utilities.backtester import run_backtest
from Utilities.ppo_backtester import LoopAccount, WindowLoop, play

LOOKBACK, N_FEATURES = 4, 3


def per_bar_play(agent: ActorCritic, windows: np.ndarray, close: np.ndarray,
                 fill_price: np.ndarray, params: EnvParams, noise: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(actions, logits) stepped one bar at a time, as the training env plays: ruin
    (equity <= 0 at a mark while in a position) closes the position, and the last
    bar's decision never fills."""
    n, balance = len(close), params.initial_balance
    book = Accounts.open(1, balance)
    actions = np.zeros(n, dtype=np.int64)
    logits = np.zeros((n, 3), dtype=np.float32)
    for i in range(n):
        entries = account_features(book, close[i:i + 1], balance).astype(np.float32)
        obs = np.concatenate([windows[i].reshape(1, -1), entries], axis=1)
        with torch.no_grad():
            logits[i] = _run(agent._actor_layers, agent.encode(torch.from_numpy(obs)))[0]
        action = int(np.argmax(logits[i] + (noise[i] if noise is not None else 0.0)))
        position = int(book.position[0])
        if position != 0 and book.equity(close[i])[0] <= 0:
            action = SELL if position > 0 else BUY
        actions[i] = action
        if i < n - 1:
            apply_actions(book, np.array([action]), fill_price[i], params)
    return actions, logits


def random_case(seed: int, n: int, *, hidden: int, encoder: str = "mlp",
                account_scale: float = 1.0, crash: bool = False
                ) -> tuple[ActorCritic, np.ndarray, np.ndarray, np.ndarray]:
    """(agent, windows, close, next bar's open) of a random policy on a random walk.

    The actor's head is scaled so its logits are O(1) (a fresh head's are ~0.01) and
    the first layer's account columns by ``account_scale``: the larger, the more the
    agent's choices hang on its equity and open profit, which the batched loop's
    guesses cannot know in advance. ``crash`` makes the walk swing hard enough to ruin
    a short (the price triples) and a long (it falls to a tenth)."""
    torch.manual_seed(seed)
    agent = ActorCritic(LOOKBACK * N_FEATURES + ACCOUNT_FEATURES, 3, hidden_dim=hidden,
                        lookback=LOOKBACK, n_features=N_FEATURES, encoder=encoder)
    first, head = agent._actor_layers[0], agent._actor_layers[-1]
    with torch.no_grad():
        head.weight *= 100.0
        first.weight[:, -ACCOUNT_FEATURES:] *= account_scale
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.01, n)
    if crash:
        steps[n // 4:n // 4 + 20] += np.log(3.0) / 20
        steps[n // 2:n // 2 + 20] -= np.log(30.0) / 20
    close = 100.0 * np.exp(np.cumsum(steps))
    opens = close * np.exp(rng.normal(0.0, 0.002, n))
    windows = rng.normal(size=(n, LOOKBACK, N_FEATURES)).astype(np.float32)
    return agent, windows, close, np.r_[opens[1:], np.nan]


CASES = [  # seed, bars, hidden, encoder, account scale, costs, fill, sampled
    (1, 1500, 16, "mlp", 1.0, {}, "close", False),
    (2, 1500, 32, "mlp", 1.0, {"commission": 0.002, "slippage": 5.0}, "next_open", False),
    (3, 1500, 64, "mlp", 1.0, {"allow_short": False}, "close", False),
    (4, 1500, 32, "mlp", 1.0, {}, "close", True),
    (5, 1500, 16, "conv", 1.0, {"position_fraction": 0.5}, "next_open", False),
    (6, 1000, 16, "gru", 1.0, {}, "close", True),
    (7, 1500, 32, "mlp", 30.0, {"commission": 0.0}, "close", False),
    (8, 1500, 64, "mlp", 30.0, {"slippage": 20.0, "initial_balance": 5.0}, "next_open", True),
    (9, 1500, 16, "mlp", 100.0, {}, "close", False),
    (10, 2, 16, "mlp", 1.0, {}, "close", False),  # the shortest backtest
    (11, 40, 16, "mlp", 1.0, {}, "next_open", True),  # shorter than a window
]


@pytest.mark.parametrize(("seed", "n", "hidden", "encoder", "scale", "costs", "fill",
                          "sampled"), CASES)
def test_the_batched_loop_trades_as_the_per_bar_loop(seed, n, hidden, encoder, scale, costs,
                                                     fill, sampled) -> None:
    agent, windows, close, opens = random_case(seed, n, hidden=hidden, encoder=encoder,
                                               account_scale=scale)
    check_against_per_bar(agent, windows, close, close if fill == "close" else opens,
                          EnvParams(**costs), sampled, seed)


@pytest.mark.parametrize(("seed", "bias"), [(11, 50.0), (12, 50.0), (13, 3.0), (14, 3.0)])
def test_ruin_closes_the_position_as_in_the_per_bar_loop(seed: int, bias: float) -> None:
    """Crash paths: the price triples under a short, which is ruined, closed there, and
    a ruined account never opens again (the per-bar loop's book, through apply_actions,
    agrees). A long cannot be ruined (it never borrows)."""
    agent, windows, close, _ = random_case(seed, 800, hidden=16, crash=True)
    head = agent._actor_layers[-1]
    with torch.no_grad():  # an agent that mostly sells: it shorts and holds the short
        head.bias[SELL] = bias
    params = EnvParams(commission=0.001, slippage=0.0)
    actions = check_against_per_bar(agent, windows, close, close, params, False, seed)
    result = run_backtest(_bars(close), actions=actions, params=params)
    assert result.equity.min() <= 0  # ruined ...
    assert len(result.trades) == 1  # ... once, and never traded again


def check_against_per_bar(agent: ActorCritic, windows: np.ndarray, close: np.ndarray,
                          fill_price: np.ndarray, params: EnvParams, sampled: bool,
                          seed: int) -> np.ndarray:
    """Same actions, trades and equity; logits within float32 rounding; returns the
    actions."""
    noise = np.random.default_rng(seed).gumbel(size=(len(close), 3)) if sampled else None
    expected, expected_logits = per_bar_play(agent, windows, close, fill_price, params, noise)
    policy = ReplayPolicy(agent, windows)
    book = LoopAccount(fill_price, params, close)
    actions, logits = WindowLoop(policy, book, close, noise).run()
    np.testing.assert_array_equal(actions, expected)
    assert len(close) < 100 or len(np.unique(actions)) > 1  # a case that trades
    # float32 rounding of the split sum: |difference| <= 1e-5 of the row's scale
    scale = np.abs(expected_logits).max(axis=1, keepdims=True) + 1e-3
    error = np.abs(logits - expected_logits) / scale
    assert error.max() < 1e-5
    # the nearest tie the argmax had to break is far outside that rounding
    scores = np.sort(expected_logits + (noise if sampled else 0.0), axis=1)
    assert ((scores[:, -1] - scores[:, -2]) / scale[:, 0]).min() > 10 * error.max()
    bars = _bars(close, fill_price)
    fill = "close" if fill_price is close else "next_open"
    ours = run_backtest(bars, actions=actions, params=params, fill=fill)
    theirs = run_backtest(bars, actions=expected, params=params, fill=fill)
    assert ours.trades.equals(theirs.trades) and ours.equity.equals(theirs.equity)
    # and the probabilities and values of the whole run, from the rebuilt accounts
    _, probs, values = play(policy, close, fill_price, params, noise)
    np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(expected_logits), 1),
                               rtol=1e-5, atol=1e-6)
    assert values.shape == (len(close),) and np.isfinite(values).all()
    return actions


def _bars(close: np.ndarray, fill_price: np.ndarray | None = None) -> pd.DataFrame:
    """Bars whose next open is ``fill_price`` (when given and not the close)."""
    opens = close if fill_price is None or fill_price is close else np.r_[close[0],
                                                                          fill_price[:-1]]
    index = pd.date_range("2024-01-01", periods=len(close), freq="min")
    return pd.DataFrame({"Open": opens, "High": np.maximum(opens, close) * 1.001,
                         "Low": np.minimum(opens, close) * 0.999, "Close": close},
                        index=index)


def test_a_policy_blind_to_its_account_is_solved_in_whole_windows() -> None:
    """The guesses: an agent whose account weights are zero chooses the same at a bar
    whatever its account, so after the seeds every window is verified whole."""
    agent, windows, close, _ = random_case(21, 3000, hidden=16, account_scale=0.0)
    policy = ReplayPolicy(agent, windows)
    loop = WindowLoop(policy, LoopAccount(close, EnvParams(), close), close, None)
    loop.run()
    assert loop.rows == 4 * 3000  # 3 seed rows and 1 verified row per bar
    batches = -(-3000 // ppo_backtester._WINDOW)  # windows of the largest width
    assert loop.batches <= batches + -(-3000 // ppo_backtester._SEED)


def test_the_loop_rebuilds_every_bars_account_entries() -> None:
    """LoopAccount.rows: the entries of each bar's account, as account_features gives
    them for the account of that moment (flat, long, flat again, short)."""
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(2).normal(0.0, 0.01, 30)))
    params = EnvParams(commission=0.001, slippage=0.5, initial_balance=1_000.0)
    book = LoopAccount(close, params, close)
    stepped = Accounts.open(1, params.initial_balance)
    expected = np.zeros((30, ACCOUNT_FEATURES), dtype=np.float32)
    t, state = 0, book.state()
    for action, bar in ((BUY, 4), (SELL, 11), (SELL, 17), (BUY, 25)):
        for i in range(t, bar + 1):
            expected[i] = account_features(stepped, close[i:i + 1], params.initial_balance)
        apply_actions(stepped, np.array([action]), close[bar], params)
        state = book.fill(state, int(stepped.position[0]), bar)
        t = bar + 1
    for i in range(t, 30):
        expected[i] = account_features(stepped, close[i:i + 1], params.initial_balance)
    np.testing.assert_allclose(book.rows(close), expected, rtol=1e-6, atol=1e-7)
    assert state == (0, -1, pytest.approx(float(stepped.cash[0]), rel=1e-12))
    assert book.rows(close)[:5].tolist() == [[0.0, 0.0, 0.0, 0.0]] * 5
    assert (book.rows(close)[5:12, 1] == 1).all() and (book.rows(close)[18:26, 1] == -1).all()
