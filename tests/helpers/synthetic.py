"""Synthetic bars with a planted, learnable structure (for learning checks)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def ar1_bars(seed: int, n: int = 3000, phi: float = 0.6, sigma: float = 0.01) -> pd.DataFrame:
    """Daily OHLC whose log returns follow AR(1): r[t] = phi * r[t-1] + noise.

    With phi > 0 the sign of the last return predicts the next one, so a policy that
    reads its window can beat buy-and-hold after costs; a random policy cannot.
    """
    rng = np.random.default_rng(seed)
    noise = sigma * rng.standard_normal(n)
    returns = np.zeros(n)
    for t in range(1, n):
        returns[t] = phi * returns[t - 1] + noise[t]
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.r_[close[0], close[:-1]]
    index = pd.date_range("2020-01-01", periods=n, freq="D", name="Datetime")
    return pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) * 1.001,
                         "Low": np.minimum(open_, close) * 0.999, "Close": close}, index=index)


def random_policy_return(env, seed: int) -> float:
    """Baseline: uniformly random actions over the env's whole slice, return in %."""
    rng = np.random.default_rng(seed)
    env.reset(options={"start": env.market.first})
    done, info = False, {}
    while not done:
        _, _, terminated, truncated, info = env.step(int(rng.integers(0, 3)))
        done = terminated or truncated
    return (info["final_equity"] / env.params.initial_balance - 1.0) * 100.0
