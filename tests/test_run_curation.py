"""Issue 15's curation in the store: experiment, tags, notes, archive, delete, filters,
and the migration that adds the new columns to a store created before them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from Utilities.run_store import RunBusy, RunNotFound, RunStore


def _finished(store: RunStore, name: str, **fields) -> str:
    run_id = store.create_run(name=name, model_type="ppo", **fields)
    store.set_status(run_id, "completed")
    return run_id


def test_curation_fields_are_set_and_replaced(any_store: RunStore) -> None:
    run_id = any_store.create_run(name="a", model_type="ppo", experiment="lr-sweep",
                                  tags=["baseline"], description="first")
    run = any_store.get_run(run_id)
    assert (run["experiment"], run["tags"], run["notes"], run["archived"]) == (
        "lr-sweep", ["baseline"], "", False)
    run = any_store.update_run(run_id, tags=["b", "a", "b"], notes="looks good",
                               experiment="other", description="second")
    assert (run["tags"], run["notes"], run["experiment"], run["description"]) == (
        ["a", "b"], "looks good", "other", "second")
    assert any_store.update_run(run_id, summary={"x": 1})["tags"] == ["a", "b"]  # untouched
    assert any_store.update_run(run_id, tags=[])["tags"] == []
    with pytest.raises(ValueError, match="tags"):
        any_store.update_run(run_id, tags="not-a-list")
    with pytest.raises(ValueError, match="experiment"):
        any_store.update_run(run_id, experiment=3)


def test_filters_by_experiment_tag_and_archive(any_store: RunStore) -> None:
    a = _finished(any_store, "a", experiment="e1", tags=["x"])
    b = _finished(any_store, "b", experiment="e1", tags=["y"])
    c = _finished(any_store, "c", experiment="e2", tags=["x"])
    ids = lambda page: sorted(run["run_id"] for run in page[0])  # noqa: E731
    assert ids(any_store.list_runs(experiment="e1")) == sorted([a, b])
    assert ids(any_store.list_runs(experiment="e1", tag="x")) == [a]
    archived = any_store.archive_run(b)
    assert archived["archived"] and archived["archived_at"].endswith("Z")
    assert ids(any_store.list_runs(experiment="e1")) == [a]
    assert ids(any_store.list_runs(archived=True)) == [b]
    assert ids(any_store.list_runs(archived=None)) == sorted([a, b, c])
    assert any_store.archive_run(b)["archived_at"] == archived["archived_at"]  # kept
    assert not any_store.restore_run(b)["archived"]
    assert ids(any_store.list_runs(experiment="e1")) == sorted([a, b])
    assert any_store.experiment_names() == ["e1", "e2"]
    assert any_store.tag_names() == ["x", "y"]
    with any_store.reading() as reads:
        assert ids(reads.list_runs(tag="x")) == sorted([a, c])
        assert reads.experiment_names() == ["e1", "e2"]
    with pytest.raises(ValueError, match="archived"):
        any_store.list_runs(archived="yes")


def test_live_runs_cannot_be_archived_or_deleted(any_store: RunStore) -> None:
    live = any_store.create_run(name="live", model_type="ppo")
    for action in (any_store.archive_run, any_store.delete_run):
        with pytest.raises(RunBusy, match="stop it") as caught:
            action(live)
        assert caught.value.reason == "active"
    assert any_store.get_run(live)["status"] == "running"
    any_store.set_status(live, "stopped")
    any_store.delete_run(live)
    with pytest.raises(RunNotFound):
        any_store.get_run(live)


def test_delete_removes_metrics_and_events_only_of_that_run(any_store: RunStore) -> None:
    gone, kept = _finished(any_store, "gone"), _finished(any_store, "kept")
    for run_id in (gone, kept):
        any_store.log_metrics(run_id, [("episode/reward", 1, 2.0, 1.0)])
        any_store.log_events(run_id, [("log", {"message": "hi"}, 1.0)])
    any_store.delete_run(gone)
    assert any_store.metric_keys(kept) == ["episode/reward"]
    assert [e["run_id"] for e in any_store.events_after(0)] == [kept] * 3  # status×2 + log
    with pytest.raises(RunNotFound):
        any_store.delete_run(gone)


def test_an_older_store_gains_the_new_columns(tmp_path: Path) -> None:
    """A runs table written before issue 15 (no experiment, notes, archived_at) opens,
    keeps its rows, and takes the new fields."""
    path = tmp_path / "old.db"
    RunStore(f"sqlite:///{path}").create_run(name="old", model_type="ppo")
    with sqlite3.connect(path) as db:
        for column in ("experiment", "notes", "archived_at"):
            db.execute("DROP INDEX IF EXISTS ix_runs_" + column)
            db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    store = RunStore(f"sqlite:///{path}")
    (run,), _ = store.list_runs()
    assert (run["name"], run["experiment"], run["notes"], run["archived"]) == (
        "old", "", "", False)
    assert store.update_run(run["run_id"], experiment="e")["experiment"] == "e"
    with sqlite3.connect(path) as db:
        indexes = {row[1] for row in db.execute("PRAGMA index_list(runs)")}
    assert {"ix_runs_experiment", "ix_runs_archived_at"} <= indexes
