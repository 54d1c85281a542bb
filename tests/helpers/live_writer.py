"""Synthetic PPO monitoring data written through MetricsLogger, as the trainer emits it
(/work/helpers/live_contract.md): episodes with the contract's extra keys, updates,
account snapshots, trades and decisions of up to 4 agents. Tests drive it batch by batch;
``python -m tests.helpers.live_writer DATABASE_URL [seconds]`` writes a live run for a
person to watch (it prints the run's id)."""

from __future__ import annotations

import logging
import math
import random
import sys
import time

from Utilities.metrics_logger import MetricsLogger
from Utilities.run_store import RunStore

log = logging.getLogger(__name__)


class SyntheticRun:
    """One fake PPO run's state; ``write(...)`` logs the next batch of everything."""

    def __init__(self, metrics: MetricsLogger, agents: int = 4, seed: int = 7) -> None:
        self.metrics, self.agents = metrics, agents
        self.rng = random.Random(seed)
        self.episode = 0
        self.update = 0
        self.env_steps = 0
        self.bar = 0
        self.equity = [10_000.0] * agents
        self.trades = [0] * agents
        self.wins = [0] * agents

    def episodes(self, count: int) -> None:
        for _ in range(count):
            self.episode += 1
            e, rng = self.episode, self.rng
            reward = math.sin(e / 15) * 5 + e / 40 + rng.gauss(0, 3)
            self.metrics.log_episode(
                e, reward=reward, steps=200, win=reward > 0,
                return_pct=reward / 10, final_equity=10_000 * (1 + reward / 1000),
                trades=rng.randint(3, 12), profitable_trades=rng.randint(0, 3),
                fees=rng.uniform(1, 5), sharpe=reward / 4 + rng.gauss(0, 0.3),
                max_drawdown=-abs(rng.gauss(3, 1.5)), account=e % self.agents)

    def updates(self, count: int) -> None:
        for _ in range(count):
            self.update += 1
            self.env_steps += 2048
            u, rng = self.update, self.rng
            self.metrics.log_update(
                u, policy_loss=-0.02 + rng.gauss(0, 0.01), value_loss=2.0 / u ** 0.5,
                loss=1.0 / u ** 0.5 + abs(rng.gauss(0, 0.05)), entropy=1.1 - u / 400,
                approx_kl=abs(rng.gauss(0.01, 0.003)), clip_fraction=0.1,
                explained_variance=min(0.95, u / 100), learning_rate=3e-4 * (1 - u / 1000),
                env_steps=self.env_steps, steps_per_second=1800 + rng.gauss(0, 60),
                value_mean=math.log1p(u), value_std=0.5 / (1 + u / 50), global_step=self.env_steps)

    def market(self, trades: int = 2) -> None:
        """Each agent's account, ``trades`` trades and a decision."""
        rng = self.rng
        self.bar += 1
        for i in range(self.agents):
            for _ in range(trades):
                side = rng.choice(["BUY", "SELL", "CLOSE"])
                pnl = None if side == "BUY" else round(rng.gauss(5, 20), 2)
                self.trades[i] += 1
                self.wins[i] += bool(pnl and pnl > 0)
                self.equity[i] += pnl or 0.0
                self.metrics.log_trade(agent=i, step=self.env_steps, bar=self.bar,
                                       time=f"2024-01-02T{self.bar % 24:02d}:00:00",
                                       side=side, price=round(100 + rng.gauss(0, 2), 2),
                                       quantity=rng.choice([1.0, 2.0, 5.0]), pnl=pnl,
                                       fee=0.5)
            hold, buy = rng.random(), rng.random()
            total = hold + buy + rng.random()
            probs = {"hold": hold / total, "buy": buy / total}
            probs["sell"] = 1 - probs["hold"] - probs["buy"]
            action = max(probs, key=probs.get)
            self.metrics.log_decision(agent=i, step=self.env_steps, bar=self.bar,
                                      probabilities=probs, value=rng.gauss(1, 0.3),
                                      action=action.upper(), confidence=probs[action])
            closed = self.trades[i]
            self.metrics.log_account(
                agent=i, step=self.env_steps, bar=self.bar, cash=self.equity[i] * 0.6,
                position=rng.choice([-2.0, 0.0, 3.0]), holdings_value=self.equity[i] * 0.4,
                equity=self.equity[i], episode=self.episode + 1,
                episode_reward=rng.gauss(1, 3), total_reward=self.equity[i] - 10_000,
                trades=closed, profitable_trades=self.wins[i],
                win_rate=self.wins[i] / closed if closed else None, fees=0.5 * closed,
                trades_unlogged=0)
            self.metrics.log_metrics(self.env_steps, prefix=f"agents/{i}", equity=self.equity[i])

    def write(self, episodes: int = 5, updates: int = 1, trades: int = 2) -> None:
        """One batch of everything, written before it returns."""
        self.episodes(episodes)
        self.updates(updates)
        self.market(trades)
        self.metrics.flush()


def main(argv: list[str]) -> int:  # pragma: no cover - a person's demo
    logging.basicConfig(level=logging.INFO)
    store = RunStore(argv[0])
    seconds = float(argv[1]) if len(argv) > 1 else 600.0
    run_id = store.create_run(name="live-demo", model_type="ppo", algorithm="PPO",
                              config={"train_params": {"total_timesteps": 2_000_000}})
    log.info("run %s: open /runs/%s", run_id, run_id)
    with MetricsLogger(store, run_id) as metrics:
        fake = SyntheticRun(metrics)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            fake.write()
            time.sleep(0.5)  # a demo's pace, for a person to watch
    store.set_status(run_id, "completed")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
