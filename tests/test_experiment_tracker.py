"""ExperimentTracker on the run store: ranking, comparison, export, archive, delete and
bad input (the seed's own snippets run in test_seed_experiment_api.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from Utilities.experiment_tracker import ExperimentTracker, metric_key
from Utilities.input_errors import InputError
from Utilities.run_store import InvalidTransition, RunBusy, RunNotFound

NEVER = 3600.0


@pytest.fixture()
def tracker(store, tmp_path: Path):
    with ExperimentTracker(tmp_path / "exports", store=store, flush_interval=NEVER) as made:
        yield made


def finished(tracker: ExperimentTracker, name: str, hyper: dict, rows: list[dict],
             **final) -> str:
    exp_id = tracker.create_experiment(name, hyper, tags=["sweep"])
    for episode, metrics in enumerate(rows):
        tracker.log_result(exp_id, episode, **metrics)
    tracker.complete_experiment(exp_id, final_metrics=final or None)
    return exp_id


def test_metric_names() -> None:
    assert metric_key("profit") == "episode/profit"
    assert metric_key("train/loss") == "train/loss"
    with pytest.raises(InputError) as caught:
        metric_key(" ")
    assert caught.value.field == "metric"


def test_leaderboard_ranks_by_direction_figure_and_summary(tracker, store) -> None:
    a = finished(tracker, "a", {"lr": 1}, [{"profit": 5, "loss": 0.9}, {"profit": 1, "loss": 0.2}])
    b = finished(tracker, "b", {"lr": 2}, [{"profit": 3, "loss": 0.5}, {"profit": 4, "loss": 0.4}])
    c = finished(tracker, "c", {"lr": 3}, [], profit=4.5)  # only a summary figure
    ranked = tracker.get_leaderboard("profit")
    assert [(r["exp_id"], r["value"], r["figure"]) for r in ranked] == [
        (a, 5.0, "best"), (c, 4.5, "summary"), (b, 4.0, "best")]
    assert [r["exp_id"] for r in tracker.get_leaderboard("profit", figure="final")] == [c, b, a]
    # A loss is best lowest.
    assert [r["exp_id"] for r in tracker.get_leaderboard("loss")] == [a, b]
    assert [r["exp_id"] for r in tracker.get_leaderboard("loss", figure="final")] == [a, b]
    assert [r["exp_id"] for r in tracker.get_leaderboard("profit", top_n=1)] == [a]
    assert tracker.get_leaderboard("unlogged") == []
    # Archived runs leave the board; filters narrow it.
    tracker.archive_experiment(a)
    assert [r["exp_id"] for r in tracker.get_leaderboard("profit")] == [c, b]
    assert [r["exp_id"] for r in tracker.get_leaderboard("profit", experiment="b")] == [b]
    assert tracker.get_leaderboard("profit", tag="other") == []
    tracker.restore_experiment(a)
    assert tracker.get_leaderboard("profit")[0]["exp_id"] == a


def test_leaderboard_includes_trainer_runs(tracker, store) -> None:
    """A trainer's run (episode/reward) ranks beside the tracker's experiments."""
    from Utilities.metrics_logger import MetricsLogger

    trained = store.create_run(name="ppo-x", model_type="ppo")
    with MetricsLogger(store, trained, flush_interval=NEVER) as metrics:
        metrics.log_episode(1, reward=9.0)
    store.set_status(trained, "completed")
    mine = finished(tracker, "mine", {}, [{"reward": 3.0}])
    assert [r["exp_id"] for r in tracker.get_leaderboard("reward")] == [trained, mine]
    assert [r["exp_id"] for r in tracker.get_leaderboard("reward", model_type="ppo")] == [trained]


def test_compare_and_csv_export(tracker, tmp_path: Path) -> None:
    a = finished(tracker, "a", {"lr": 0.1, "gamma": 0.99, "net": {"h": 64}},
                 [{"profit": 1.0, "drawdown": -0.3}, {"profit": 2.0, "drawdown": -0.1}])
    b = finished(tracker, "b", {"lr": 0.2, "gamma": 0.99}, [{"profit": 3.0}])
    comparison = tracker.compare_experiments([b, a])
    assert list(comparison["experiments"]) == [b, a]
    assert comparison["hyperparameters"]["differing"] == ["lr", "net"]
    assert comparison["hyperparameters"]["keys"] == ["lr", "net", "gamma"]
    assert comparison["metrics"]["drawdown"][b] is None
    assert comparison["metrics"]["drawdown"][a]["best"] == -0.1  # closest to zero
    # Profit logged without a reward is each episode's reward as well (metrics_logger.py)
    assert comparison["best"] == {"drawdown": a, "profit": b, "reward": b}
    only = tracker.compare_experiments([a, b], metrics=["profit"])
    assert list(only["metrics"]) == ["profit"]

    path = Path(tracker.export_comparison([a, b], format="csv"))
    assert path.parent == tmp_path / "exports" and path.suffix == ".csv"
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [row["exp_id"] for row in rows] == [a, b]
    assert rows[0]["hp.net"] == '{"h": 64}' and rows[1]["hp.net"] == ""
    assert (rows[0]["profit.final"], rows[0]["profit.best"], rows[0]["profit.mean"]) == (
        "2.0", "2.0", "1.5")
    assert rows[1]["tags"] == "sweep"
    assert not list(path.parent.glob(".*.tmp"))


def test_bad_input_names_its_field(tracker, store) -> None:
    exp_id = finished(tracker, "done", {}, [{"profit": 1.0}])
    cases = [
        (lambda: tracker.create_experiment("", {}), "name"),
        (lambda: tracker.create_experiment("x", [1, 2]), "hyperparameters"),
        (lambda: tracker.create_experiment("x", {}, tags="dqn"), "tags"),
        (lambda: tracker.compare_experiments([]), "exp_ids"),
        (lambda: tracker.compare_experiments(exp_id), "exp_ids"),
        (lambda: tracker.compare_experiments([exp_id], metrics=["sharpe"]), "metrics"),
        (lambda: tracker.get_leaderboard("profit", top_n=0), "top_n"),
        (lambda: tracker.get_leaderboard("profit", figure="worst"), "figure"),
        (lambda: tracker.export_comparison([exp_id], format="xml"), "format"),
        (lambda: tracker.log_result(exp_id, 2, profit=1.0), "exp_id"),  # completed
        (lambda: tracker.complete_experiment(exp_id, final_metrics=[1]), "final_metrics"),
    ]
    for call, field in cases:
        with pytest.raises(InputError) as caught:
            call()
        assert caught.value.field == field, (field, str(caught.value))
    unknown = "00000000-0000-0000-0000-000000000000"
    for call in (lambda: tracker.log_result(unknown, 1, profit=1.0),
                 lambda: tracker.compare_experiments([exp_id, unknown]),
                 lambda: tracker.complete_experiment(unknown)):
        with pytest.raises(RunNotFound):
            call()
    # log_result stays a queue append: a non-number fails in the caller's frame.
    open_id = tracker.create_experiment("open", {})
    with pytest.raises(TypeError, match="episode/profit"):
        tracker.log_result(open_id, 1, profit="lots")


def test_complete_archive_delete(tracker, store) -> None:
    exp_id = tracker.create_experiment("lifecycle", {"a": 1})
    tracker.log_result(exp_id, 1, 10.0, 0.5)  # the seed's positional fields
    with pytest.raises(RunBusy):
        tracker.archive_experiment(exp_id)  # still open
    run = tracker.complete_experiment(exp_id, {"best_profit": 10.0})
    assert run["status"] == "completed" and run["summary"] == {"best_profit": 10.0}
    assert tracker.complete_experiment(exp_id)["status"] == "completed"  # twice: a no-op
    got = tracker.get_experiment(exp_id)
    assert got["figures"]["profit"]["final"] == 10.0 and got["figures"]["sharpe"]["best"] == 0.5
    assert tracker.archive_experiment(exp_id)["archived"] is True
    tracker.delete_experiment(exp_id)
    with pytest.raises(RunNotFound):
        store.get_run(exp_id)


def test_delete_of_an_open_experiment_stops_it_first(tracker, store) -> None:
    exp_id = tracker.create_experiment("open", {})
    tracker.log_result(exp_id, 1, profit=1.0)
    tracker.delete_experiment(exp_id)
    assert store.list_runs(archived=None)[1] == 0


def test_a_stopped_experiment_cannot_be_completed(tracker, store) -> None:
    exp_id = tracker.create_experiment("x", {})
    store.set_status(exp_id, "stopped")
    with pytest.raises(InvalidTransition):
        tracker.complete_experiment(exp_id)


def test_open_experiments_heartbeat_and_flush(store) -> None:
    """While open, an experiment's logger writes its rows every flush interval and
    heartbeats the run (so readers do not mark it lost)."""
    with ExperimentTracker(store=store, flush_interval=0.01) as tracker:
        exp_id = tracker.create_experiment("live", {})
        tracker.log_result(exp_id, 1, profit=4.0)
        tracker.save_experiment(exp_id)
        assert store.latest_metrics(exp_id)["episode/profit"]["value"] == 4.0
        assert store.get_run(exp_id)["heartbeat_at"] is not None
    assert store.get_run(exp_id)["status"] == "stopped"  # never completed
