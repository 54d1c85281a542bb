"""Runs in the store with known metrics (episodes, updates, checkpoints), for the history
pages and the fuzz: the numbers are functions of the episode, so tests can expect them."""

from __future__ import annotations

from pathlib import Path

from Utilities.metrics_logger import MetricsLogger
from web.store import get_store

NEVER = 3600.0  # no test waits for the logger's timer: close() flushes
EPISODES = 200
UPDATES = 20


def reward(episode: int) -> float:
    return episode * 0.1


def won(episode: int) -> bool:
    return episode % 4 == 0


def log_ppo_run(store, run_id: str, episodes: int = EPISODES, updates: int = UPDATES,
                checkpoints: Path | None = None) -> None:
    """Episodes with known rewards and wins, PPO updates and two checkpoints: files
    ``iteration-00000002.pt`` and ``-04.pt`` written in ``checkpoints`` (the run pages
    list only files that exist), else two events naming a ``last.pt`` that is not there."""
    def saved(iteration: int) -> str:
        if checkpoints is None:
            return "Models/.checkpoints/x/last.pt"
        checkpoints.mkdir(parents=True, exist_ok=True)
        path = checkpoints / f"iteration-{iteration:08d}.pt"
        path.write_bytes(b"checkpoint")
        return str(path)

    with MetricsLogger(store, run_id, flush_interval=NEVER) as metrics:
        for episode in range(1, episodes + 1):
            metrics.log_episode(episode, reward=reward(episode), steps=50 + episode % 10,
                                win=won(episode), final_equity=10_000 + episode)
            if episode == episodes // 2:
                metrics.log_checkpoint(saved(2), 2048, iteration=2, keep=3)
        for update in range(1, updates + 1):
            metrics.log_update(policy_loss=0.5 / update, value_loss=30.0 / update**0.5 + 5,
                               entropy=1.1 - update / 50, approx_kl=0.01)
        metrics.log_checkpoint(saved(4), 4096, iteration=4, keep=3)
        metrics.log_alert("warning", "Reward plateau", "no improvement for 50 episodes")


def log_supervised_run(store, run_id: str, epochs: int = 10) -> None:
    with MetricsLogger(store, run_id, flush_interval=NEVER) as metrics:
        for epoch in range(1, epochs + 1):
            metrics.log_update(step=epoch, loss=1 / epoch, train_loss=1 / epoch,
                               val_loss=abs(epoch - 6) / 10 + 0.2,
                               train_accuracy=0.5 + epoch / 40, val_accuracy=0.5 + epoch / 50)


def seed_runs(app) -> dict[str, str]:
    """ppo (completed, 200 episodes), xgb (completed, supervised), a failed and a running run."""
    with app.app_context():
        store = get_store()
        ids = {}
        ids["ppo"] = store.create_run(
            name="ppo-agent", model_type="ppo", algorithm="PPO (clipped, GAE)",
            config={"model_params": {"hidden_dim": 64}, "train_params": {"learning_rate": 3e-4}},
            data_file="/data/sample.csv", tags=["smoke"])
        log_ppo_run(store, ids["ppo"],
                    checkpoints=Path(app.config["MODELS_DIR"]) / ".checkpoints" / "x")
        store.update_run(ids["ppo"], model_dir="/work/Models/PPO_demo",
                         summary={"validation_return_pct": 1.25})
        store.set_status(ids["ppo"], "completed")
        ids["xgb"] = store.create_run(name="xgb-agent", model_type="xgboost", algorithm="XGBoost")
        log_supervised_run(store, ids["xgb"])
        store.set_status(ids["xgb"], "completed")
        ids["failed"] = store.create_run(name="ppo-agent", model_type="ppo", algorithm="PPO")
        store.set_status(ids["failed"], "failed", error="loss diverged (NaN)")
        ids["live"] = store.create_run(name="live-agent", model_type="ppo", algorithm="PPO")
        log_ppo_run(store, ids["live"], episodes=30, updates=3,
                    checkpoints=Path(app.config["MODELS_DIR"]) / ".checkpoints" / "live")
    return ids
