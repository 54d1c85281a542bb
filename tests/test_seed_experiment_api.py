"""The seed's Python API (../shared/seeds/metrics_alerts_experiments.md) runs as written.

Every snippet below is copied verbatim from the seed and executed. The seed's package is
``nexlify.monitoring``: its module names are aliased to ours (metrics_logger and
experiment_tracker) and its TrainingDashboard, which here is the web app, to a stand-in,
so even the import lines run unchanged. Names a snippet uses without defining them
(``profit``, ``exp_id1``) are defined around it. DATABASE_URL points every snippet at a
temporary store (the default store of a script is the dashboard's), and the working
folder is a temporary one (``experiments/``, ``training_logs/``). Not run: the snippets
that are pseudo-code in the seed itself (``...`` as an argument; the AlertSystem; made-up
ids such as ``'exp1_timestamp'``).
"""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import pytest

from Utilities import experiment_tracker, metrics_logger
from Utilities.run_store import RunStore

# --------------------------------------------------------------- the seed's snippets

QUICK_START = '''
from nexlify.monitoring.metrics_logger import MetricsLogger
from nexlify.monitoring.training_dashboard import TrainingDashboard

# Create metrics logger
logger = MetricsLogger(experiment_name="my_training")

# Start dashboard
dashboard = TrainingDashboard(logger, port=8050)
dashboard.start(blocking=False)

# Training loop
for episode in range(1000):
    # ... your training code ...

    # Log metrics
    logger.log_episode(
        episode=episode,
        profit=profit,
        sharpe=sharpe,
        win_rate=win_rate,
        epsilon=epsilon,
        learning_rate=lr
    )

    logger.log_model_metrics(
        loss=loss,
        q_values=q_values
    )
'''

METRICS_LOGGER_USAGE = '''
from nexlify.monitoring.metrics_logger import MetricsLogger

logger = MetricsLogger(
    experiment_name="dqn_training",
    output_dir="training_logs",
    buffer_size=100,
    auto_save_interval=50,
    enable_async=True
)

# Log episode
logger.log_episode(
    episode=1,
    profit=100.0,
    sharpe=1.5,
    win_rate=0.6,
    drawdown=50.0,
    num_trades=10,
    epsilon=0.5,
    learning_rate=0.001
)

# Log model metrics
logger.log_model_metrics(
    loss=0.5,
    q_values=[1.0, 2.0, 3.0],
    gradients={'mean': 0.01, 'std': 0.001}
)

# Get statistics
stats = logger.get_statistics()
print(f"Best profit: ${stats['best_profit']:.2f}")

# Save
logger.save_metrics(format='json')
logger.save_metrics(format='csv')
'''

TRACKER_USAGE = '''
from nexlify.monitoring.experiment_tracker import ExperimentTracker

tracker = ExperimentTracker(experiments_dir="experiments")

# Create experiment
exp_id = tracker.create_experiment(
    name="dqn_baseline",
    hyperparameters={
        'learning_rate': 0.001,
        'gamma': 0.99,
        'epsilon_decay': 0.995
    },
    description="Baseline DQN with standard hyperparameters",
    tags=['dqn', 'baseline']
)

# Log results
for episode in range(1000):
    # ... training ...

    tracker.log_result(
        exp_id,
        episode=episode,
        profit=profit,
        sharpe=sharpe,
        win_rate=win_rate
    )

# Complete experiment
tracker.complete_experiment(exp_id, final_metrics={
    'total_episodes': 1000,
    'best_profit': 5000.0
})

# Compare experiments
comparison = tracker.compare_experiments([exp_id1, exp_id2])

# Get leaderboard
leaderboard = tracker.get_leaderboard(metric='profit', top_n=10)

# Export comparison
tracker.export_comparison([exp_id1, exp_id2], format='json')
'''

MINIMAL_INTEGRATION = '''
# Minimal - just logging, no dashboard
logger = MetricsLogger("my_training")

for episode in range(1000):
    # ... training ...
    logger.log_episode(episode, profit, sharpe)

logger.save_metrics()
'''

CUSTOM_METRICS = '''
# Log custom metrics
logger.log_episode(
    episode=1,
    profit=100.0,
    # Custom metrics
    custom_score=0.95,
    volatility=0.15,
    risk_score=0.3
)
'''

CONTEXT_MANAGERS = '''
# Use context managers
with MetricsLogger("training") as logger:
    # Training code
    pass
# Auto-saves on exit

# Or explicit cleanup
logger = MetricsLogger("training")
try:
    # Training
    pass
finally:
    logger.close()  # Ensures final save
'''

EXPERIMENT_ORGANIZATION = '''
# Good: Descriptive names and tags
tracker.create_experiment(
    name="dqn_lr0.001_gamma0.99",
    tags=['dqn', 'tuning', 'lr_sweep']
)

# Bad: Generic names
tracker.create_experiment(name="test")
'''

TUNING_AND_TROUBLESHOOTING = '''
# Good: Auto-save every 50-100 episodes
MetricsLogger(auto_save_interval=50)

# Too frequent (disk I/O overhead)
MetricsLogger(auto_save_interval=1)

# Too infrequent (risk of data loss)
MetricsLogger(auto_save_interval=1000)

MetricsLogger(buffer_size=50)  # Default: 100

MetricsLogger(auto_save_interval=25)  # Default: 50

MetricsLogger(enable_async=True)

# Keep only last N episodes
logger.episode_metrics = logger.episode_metrics[-1000:]

print(len(logger.episode_metrics))

tracker.save_experiment(exp_id)

tracker.complete_experiment(exp_id)  # Auto-saves
'''


# ---------------------------------------------------------------------------- set-up


class StandInDashboard:
    """The seed's TrainingDashboard: here the web app shows the run, so the stand-in only
    records that the snippet started it."""

    def __init__(self, metrics_logger, port: int = 8050, **options) -> None:
        self.metrics_logger, self.port, self.running = metrics_logger, port, False

    def start(self, blocking: bool = False) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False


@pytest.fixture()
def seed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, store):
    """Run snippets as the seed's user would: its module names, a fresh working folder,
    and DATABASE_URL at a temporary store (every run a script makes lands there)."""
    package = types.ModuleType("nexlify")
    monitoring = types.ModuleType("nexlify.monitoring")
    dashboard = types.ModuleType("nexlify.monitoring.training_dashboard")
    dashboard.TrainingDashboard = StandInDashboard
    for name, module in {"nexlify": package, "nexlify.monitoring": monitoring,
                         "nexlify.monitoring.metrics_logger": metrics_logger,
                         "nexlify.monitoring.experiment_tracker": experiment_tracker,
                         "nexlify.monitoring.training_dashboard": dashboard}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)
    return store  # its tables are dropped after the test (PostgreSQL's outlive it)


def run(snippet: str, names: dict) -> dict:
    exec(compile(snippet, "<seed snippet>", "exec"), names)  # the seed's text, verbatim
    return names


def runs_named(store: RunStore, name: str) -> list[dict]:
    return store.list_runs(name=name, archived=None)[0]


# ----------------------------------------------------------------------------- tests


def test_quick_start_records_a_run_the_web_lists(seed: RunStore) -> None:
    names = run(QUICK_START, {"profit": 12.5, "sharpe": 1.1, "win_rate": 0.55, "epsilon": 0.3,
                              "lr": 1e-3, "loss": 0.42, "q_values": [0.5, 1.5]})
    names["logger"].close()  # the snippet leaves it open; a script's exit closes it
    assert names["dashboard"].running
    [logged] = runs_named(seed, "my_training")
    assert (logged["experiment"], logged["model_type"], logged["status"]) == (
        "my_training", "experiment", "completed")
    stats = seed.series_statistics([logged["run_id"]])[logged["run_id"]]
    for key in ("episode/profit", "episode/sharpe", "episode/win_rate", "episode/epsilon",
                "episode/learning_rate", "train/loss", "train/q_values_mean",
                "train/q_values_std", "train/q_values_min", "train/q_values_max"):
        assert stats[key]["points"] == 1000, key
    # The profit is also each episode's reward (its profit/loss): the run page's P/L chart
    assert stats["episode/reward"]["points"] == 1000
    assert stats["episode/reward"]["total"] == stats["episode/profit"]["total"]
    assert stats["episode/profit"]["first_step"] == 0
    assert stats["episode/profit"]["last_step"] == 999
    assert stats["train/q_values_mean"]["last_value"] == pytest.approx(1.0)
    assert stats["train/q_values_std"]["last_value"] == pytest.approx(0.5)


def test_metrics_logger_usage(seed: RunStore, tmp_path: Path,
                              capsys: pytest.CaptureFixture) -> None:
    names = run(METRICS_LOGGER_USAGE, {})
    assert capsys.readouterr().out == "Best profit: $100.00\n"
    logger = names["logger"]
    logger.close()
    [logged] = runs_named(seed, "dqn_training")
    assert logged["experiment"] == "dqn_training" and logged["status"] == "completed"
    latest = seed.latest_metrics(logged["run_id"])
    assert {key: point["value"] for key, point in latest.items()} == pytest.approx({
        "episode/profit": 100.0, "episode/reward": 100.0, "episode/sharpe": 1.5,
        "episode/win_rate": 0.6, "episode/drawdown": 50.0, "episode/num_trades": 10,
        "episode/epsilon": 0.5,
        "episode/learning_rate": 0.001, "train/loss": 0.5, "train/q_values_mean": 2.0,
        "train/q_values_std": (2 / 3) ** 0.5, "train/q_values_min": 1.0,
        "train/q_values_max": 3.0, "train/gradients_mean": 0.01,
        "train/gradients_std": 0.001})
    files = sorted(p.name for p in (tmp_path / "training_logs").iterdir())
    assert files == [f"{logged['run_id']}.csv", f"{logged['run_id']}.json"]
    with (tmp_path / "training_logs" / f"{logged['run_id']}.csv").open() as fh:
        assert next(csv.DictReader(fh))["profit"] == "100.0"
    assert (logger.buffer_size, logger.auto_save_interval, logger.enable_async) == (100, 50, True)


def test_experiment_tracker_usage(seed: RunStore, tmp_path: Path) -> None:
    # exp_id1 and exp_id2 are earlier experiments in the seed's text: two made before it.
    with experiment_tracker.ExperimentTracker(store=seed) as earlier:
        exp_id1 = earlier.create_experiment("dqn_lr_high", {"learning_rate": 0.01,
                                                            "gamma": 0.99})
        exp_id2 = earlier.create_experiment("dqn_lr_low", {"learning_rate": 0.0001,
                                                           "gamma": 0.99})
        for episode in range(10):
            earlier.log_result(exp_id1, episode, profit=6000.0 + episode, sharpe=2.0)
            earlier.log_result(exp_id2, episode, profit=-50.0 + episode, sharpe=-0.5)
        earlier.complete_experiment(exp_id1)
        earlier.complete_experiment(exp_id2)

    names = run(TRACKER_USAGE, {"profit": 250.0, "sharpe": 1.2, "win_rate": 0.58,
                                "exp_id1": exp_id1, "exp_id2": exp_id2})
    names["tracker"].close()
    exp_id = names["exp_id"]
    logged = seed.get_run(exp_id)
    assert (logged["name"], logged["experiment"], logged["status"]) == (
        "dqn_baseline", "dqn_baseline", "completed")
    assert logged["config"] == {"learning_rate": 0.001, "gamma": 0.99, "epsilon_decay": 0.995}
    assert logged["tags"] == ["baseline", "dqn"]
    assert logged["description"] == "Baseline DQN with standard hyperparameters"
    assert logged["summary"] == {"total_episodes": 1000, "best_profit": 5000.0}
    stats = seed.series_statistics([exp_id])[exp_id]
    assert {key: row["points"] for key, row in stats.items()} == {
        "episode/profit": 1000, "episode/sharpe": 1000, "episode/win_rate": 1000,
        "episode/reward": 1000}  # the profit, as the episode's reward

    comparison = names["comparison"]
    assert list(comparison["experiments"]) == [exp_id1, exp_id2]
    assert comparison["hyperparameters"]["differing"] == ["learning_rate"]
    assert comparison["hyperparameters"]["keys"] == ["learning_rate", "gamma"]
    assert comparison["metrics"]["profit"][exp_id1]["final"] == 6009.0
    assert comparison["metrics"]["profit"][exp_id2]["best"] == -41.0
    assert comparison["best"] == {"profit": exp_id1, "sharpe": exp_id1, "reward": exp_id1}

    board = names["leaderboard"]
    assert [row["exp_id"] for row in board] == [exp_id1, exp_id, exp_id2]
    assert [row["value"] for row in board] == [6009.0, 250.0, -41.0]
    assert [row["rank"] for row in board] == [1, 2, 3]

    [export] = list((tmp_path / "experiments").iterdir())
    assert export.name.startswith("comparison_") and export.suffix == ".json"
    assert json.loads(export.read_text())["metrics"]["sharpe"][exp_id2]["final"] == -0.5


def test_minimal_integration_positional_calls(seed: RunStore) -> None:
    from Utilities.metrics_logger import MetricsLogger

    names = run(MINIMAL_INTEGRATION, {"MetricsLogger": MetricsLogger, "profit": 3.5,
                                      "sharpe": 0.7})
    saved = Path("instance/metrics") / f"{names['logger'].run_id}.json"
    assert saved.is_file()  # save_metrics() with no output_dir
    run(CUSTOM_METRICS, names)
    names["logger"].close()
    [logged] = runs_named(seed, "my_training")
    stats = seed.series_statistics([logged["run_id"]])[logged["run_id"]]
    assert stats["episode/profit"]["points"] == 1001  # episode 1 logged twice
    assert stats["episode/sharpe"]["points"] == 1000
    assert stats["episode/custom_score"]["last_value"] == 0.95
    assert stats["episode/risk_score"]["last_step"] == 1


def test_context_managers_end_their_runs(seed: RunStore) -> None:
    from Utilities.metrics_logger import MetricsLogger

    run(CONTEXT_MANAGERS, {"MetricsLogger": MetricsLogger})
    assert [r["status"] for r in runs_named(seed, "training")] == ["completed", "completed"]


def test_a_with_block_that_raises_fails_its_run(seed: RunStore) -> None:
    from Utilities.metrics_logger import MetricsLogger

    with pytest.raises(RuntimeError), MetricsLogger("crashing") as logger:
        logger.log_episode(1, 5.0)
        raise RuntimeError("diverged")
    [logged] = runs_named(seed, "crashing")
    assert (logged["status"], logged["error"]) == ("failed", "RuntimeError: diverged")
    assert seed.latest_metrics(logged["run_id"])["episode/profit"]["value"] == 5.0


def test_organisation_tuning_and_troubleshooting_snippets(seed: RunStore) -> None:
    from Utilities.experiment_tracker import ExperimentTracker
    from Utilities.metrics_logger import MetricsLogger

    tracker = ExperimentTracker(store=seed)
    logger = MetricsLogger(None)
    for episode in range(1500):
        logger.log_episode(episode, float(episode))
    exp_id = tracker.create_experiment("sweep", {"lr": 0.1})
    tracker.log_result(exp_id, 1, profit=2.0)
    names = run(EXPERIMENT_ORGANIZATION + TUNING_AND_TROUBLESHOOTING,
                {"MetricsLogger": MetricsLogger, "tracker": tracker, "logger": logger,
                 "exp_id": exp_id})
    assert len(names["logger"].episode_metrics) == 1000
    assert names["logger"].episode_metrics[0]["episode"] == 500
    assert seed.get_run(exp_id)["status"] == "completed"
    assert seed.latest_metrics(exp_id)["episode/profit"]["value"] == 2.0
    made = {r["name"]: r for r in seed.list_runs(model_type="experiment")[0]}
    assert made["dqn_lr0.001_gamma0.99"]["tags"] == ["dqn", "lr_sweep", "tuning"]
    assert made["test"]["config"] == {}
    tracker.close()
    # Experiments left open are ended when the tracker closes, not left to be lost.
    assert {made["test"]["run_id"]: "stopped"} == {
        made["test"]["run_id"]: seed.get_run(made["test"]["run_id"])["status"]}
