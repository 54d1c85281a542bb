"""Runs with known series, configs and backtests for the compare, leaderboard and
experiment tests (and their browser test): every figure is a function of the run's index."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from Utilities.run_store import RunStore

SECONDS_PER_EPISODE = 0.5  # wall time between two episodes' points


def config_of(index: int) -> dict:
    """Configs that differ in learning_rate and n_envs (by index) and share the rest."""
    return {"model_params": {"hidden_dim": 64, "lookback_window": 10},
            "train_params": {"learning_rate": 1e-4 * (index + 1), "gamma": 0.99,
                             "n_envs": 2 if index % 2 else 4}}


def reward(index: int, episode: int) -> float:
    """A noisy rising reward; NaN at every 37th episode (a NaN the figures must skip)."""
    if episode % 37 == 0:
        return float("nan")
    return (index + 1) * math.log1p(episode) + math.sin(episode) * 0.5


def loss(index: int, update: int) -> float:
    return 1.0 / (update + index) + 0.01 * index


def add_run(store: RunStore, index: int, *, episodes: int = 120, updates: int = 12,
            experiment: str = "", model_dir: str = "", tags: tuple[str, ...] = (),
            data_file: str = "/data/sample.csv", status: str = "completed") -> str:
    """One run: episode/reward per episode, train/policy_loss and train/global_step per
    update (64 env steps each; an update every episodes/updates episodes), the config
    above and a test return in its summary."""
    run_id = store.create_run(name=f"run-{index}", model_type="ppo", config=config_of(index),
                              experiment=experiment, model_dir=model_dir, tags=list(tags),
                              data_file=data_file)
    start = time.time()  # points after the run's start, as a training's are
    rows = [("episode/reward", e, reward(index, e), start + e * SECONDS_PER_EPISODE)
            for e in range(1, episodes + 1)]
    for u in range(1, updates + 1):
        wall = start + u * episodes / updates * SECONDS_PER_EPISODE
        rows += [("train/policy_loss", u, loss(index, u), wall),
                 ("train/global_step", u, float(64 * u), wall)]
    store.log_metrics(run_id, rows)
    store.update_run(run_id, summary={"test_return_pct": 2.0 * index - 5,
                                      "status": "completed"})
    store.set_status(run_id, status)
    return run_id


def save_backtest(root: Path, model: str, result_id: str, *, return_pct: float,
                  created_at: str, in_sample: bool = False) -> None:
    """A saved backtest result as web.backtest_results writes it (meta.json and
    statistics.json), with a Buy & Hold and a Random baseline."""
    folder = root / result_id
    folder.mkdir(parents=True)
    stats = {"Return [%]": return_pct, "Sharpe Ratio": return_pct / 10,
             "Max. Drawdown [%]": -abs(return_pct) / 2, "# Trades": 7, "Duration": "3 days"}
    summary = {"model": model, "data_file": "IBM.csv",
               "period": {"start": "2020-01-01", "end": "2020-06-30", "bars": 120},
               "statistics": stats,
               "baselines": {"Buy & Hold": {"Return [%]": 4.0, "Sharpe Ratio": 0.4,
                                            "Max. Drawdown [%]": -9.0, "# Trades": 1},
                             "Random": {"Return [%]": -1.5, "Sharpe Ratio": -0.1,
                                        "Max. Drawdown [%]": -12.0, "# Trades": 40}}}
    (folder / "statistics.json").write_text(json.dumps(summary))
    (folder / "view.json").write_text("{}")
    (folder / "meta.json").write_text(json.dumps({
        "id": result_id, "created_at": created_at, "model": model, "csv": "IBM.csv",
        "return_pct": return_pct, "in_sample": in_sample}))
