"""Tests for Utilities.run_store; set DATABASE_URL to run the same tests against PostgreSQL."""

from __future__ import annotations

import itertools
import math
import os
import re
import sys
import threading
from datetime import datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import exc, func, insert, select, update

from Utilities.run_store import (
    EVENT_KINDS,
    RUN_STATUSES,
    InvalidTransition,
    MetricSeries,
    Run,
    RunBusy,
    RunNotFound,
    RunStore,
    RunStoreError,
    RunTag,
    StoreUnavailable,
    default_database_url,
    heartbeat_seconds,
    lost_after_seconds,
    metadata,
)
from Utilities.serialization import to_plain

# The transition table, written out independently of the module's own.
ALLOWED = {
    "starting": {"running", "stopped", "failed"},  # recorded by a launcher, not yet adopted
    "running": {"paused", "completed", "stopped", "failed"},
    "paused": {"running", "stopped", "failed"},
    "completed": set(),
    "stopped": set(),
    "failed": set(),
}


# The `store` fixture (tests/conftest.py) honours DATABASE_URL, so this whole file runs
# against PostgreSQL by changing only that variable.


def run_threads(target, args) -> None:
    """Start one thread per argument, all at once, and wait for every one."""
    threads = [threading.Thread(target=target, args=(arg,)) for arg in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def is_sqlite(store: RunStore) -> bool:
    return store.engine.dialect.name == "sqlite"


def make_run(store: RunStore, name: str = "agent", model_type: str = "ppo", **kwargs) -> str:
    return store.create_run(name=name, model_type=model_type, **kwargs)


def run_in_status(store: RunStore, status: str) -> str:
    if status == "starting":
        return store.claim_run(name="agent", model_type="ppo", status="starting")
    run_id = make_run(store)
    if status != "running":
        store.set_status(run_id, status)  # every status is reachable straight from running
    return run_id


def ids_of(page: list[dict]) -> set[str]:
    return {run["run_id"] for run in page}


def set_column(store: RunStore, run_id: str | None = None, **values) -> None:
    stmt = update(Run).values(**values)
    if run_id is not None:
        stmt = stmt.where(Run.id == run_id)
    with store.engine.begin() as conn:
        conn.execute(stmt)


def count_rows(store: RunStore, model, run_id: str) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model).where(model.run_id == run_id))


# ---- opening the store -------------------------------------------------------------------


def test_default_database_url_prefers_env(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert default_database_url() == "postgresql://u@h/db"
    monkeypatch.delenv("DATABASE_URL")
    url = default_database_url()
    assert url.startswith("sqlite:///") and url.endswith(os.path.join("instance", "runs.db"))


def test_sqlite_pragmas_are_on(store):
    if not is_sqlite(store):
        pytest.skip("SQLite only")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_foreign_keys_enforced_by_database(store):
    with pytest.raises(exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(insert(MetricSeries), [{"run_id": "nope", "key": "k", "points": 0,
                                             "finite": 0, "total": 0.0}])


def test_parent_is_a_file_raises_store_unavailable(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    path = blocker / "runs.db"
    with pytest.raises(StoreUnavailable, match=re.escape(str(path))):
        RunStore(f"sqlite:///{path}")


def test_database_that_is_a_directory_raises_store_unavailable(tmp_path):
    with pytest.raises(StoreUnavailable, match=re.escape(str(tmp_path))):
        RunStore(f"sqlite:///{tmp_path}")


def test_unreachable_server_raises_store_unavailable_with_password_masked():
    with pytest.raises(StoreUnavailable) as info:
        RunStore("postgresql+psycopg2://trainer:s3cret@127.0.0.1:1/runs")
    message = str(info.value)
    assert "127.0.0.1:1/runs" in message and "***" in message and "s3cret" not in message


def test_store_that_disappears_raises_store_unavailable(tmp_path):
    db = tmp_path / "gone.db"
    lost = RunStore(f"sqlite:///{db}")
    lost.close()
    for path in tmp_path.glob("gone.db*"):
        path.unlink()
    db.mkdir()  # the path can no longer be opened as a database
    with pytest.raises(StoreUnavailable, match=re.escape(str(db))):
        lost.list_runs()
    lost.close()


def test_concurrent_first_open_creates_the_schema_once(database_url):
    if not database_url.startswith("sqlite"):  # SQLite's file is fresh; empty the server
        engine = sa.create_engine(database_url)
        metadata.drop_all(engine)
        engine.dispose()
    openers = 8
    barrier = threading.Barrier(openers, timeout=30)
    stores: list[RunStore] = []
    errors: list[BaseException] = []

    def opener(_: int) -> None:
        barrier.wait()  # every thread reaches create_all together
        try:
            stores.append(RunStore(database_url))
        except BaseException as error:  # surfaced by the assert below
            errors.append(error)

    run_threads(opener, range(openers))
    try:
        assert errors == []
        assert len(stores) == openers
        run_id = make_run(stores[0])
        assert stores[-1].get_run(run_id)["status"] == "running"
    finally:
        if stores:
            metadata.drop_all(stores[0].engine)
        for opened in stores:
            opened.close()


def test_driverless_postgres_urls_use_psycopg2():
    # SQLAlchemy 2.1 defaults to psycopg (3), which requirements.txt does not install;
    # a connection error (not an ImportError) shows that psycopg2 was loaded.
    for scheme in ("postgresql", "postgres"):
        with pytest.raises(StoreUnavailable) as info:
            RunStore(f"{scheme}://trainer:s3cret@127.0.0.1:1/runs")
        assert isinstance(info.value.__cause__, exc.OperationalError), info.value
        assert "s3cret" not in str(info.value) and "***" in str(info.value)


def test_driverless_url_opens_the_configured_postgres(database_url):
    if not database_url.startswith("postgresql+psycopg2://"):
        pytest.skip("PostgreSQL only")
    opened = RunStore(database_url.replace("postgresql+psycopg2://", "postgresql://", 1))
    try:
        assert opened.engine.dialect.driver == "psycopg2"
        assert opened.last_seq() >= 0
    finally:
        metadata.drop_all(opened.engine)
        opened.close()


def test_explicit_driver_is_kept_and_a_missing_one_raises_store_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # as if the driver were not installed
    with pytest.raises(StoreUnavailable, match="psycopg2") as info:
        RunStore("postgresql+psycopg2://trainer:s3cret@127.0.0.1:1/runs")
    message = str(info.value)
    assert "127.0.0.1:1/runs" in message and "***" in message and "s3cret" not in message
    with pytest.raises(StoreUnavailable, match="pg8000"):  # not rewritten to psycopg2
        RunStore("postgresql+pg8000://trainer@127.0.0.1:1/runs")


@pytest.mark.parametrize("url", ["notaurl", "nosuchdb://trainer:s3cret@host/runs",
                                 "postgresql://trainer:s3cret@host:port/runs"])
def test_bad_url_raises_store_unavailable_naming_it(url):
    with pytest.raises(StoreUnavailable) as info:
        RunStore(url)
    message = str(info.value)
    assert "s3cret" not in message
    assert url.replace("s3cret", "***") in message


# ---- runs ---------------------------------------------------------------------------------


def test_create_get_round_trip(store):
    run_id = store.create_run(
        name="ppo_agent", model_type="ppo", algorithm="MaskablePPO",
        config={"lr": 3e-4, "layers": [64, 64], "nested": {"a": True}},
        tags=["zeta", "alpha", "alpha"], description="first", data_file="data/bars.csv",
        model_dir="models/ppo",
    )
    run = store.get_run(run_id)
    assert run["run_id"] == run_id
    assert (run["name"], run["model_type"], run["algorithm"]) == ("ppo_agent", "ppo",
                                                                  "MaskablePPO")
    assert run["config"] == {"lr": 3e-4, "layers": [64, 64], "nested": {"a": True}}
    assert run["tags"] == ["alpha", "zeta"]
    assert (run["description"], run["data_file"], run["model_dir"]) == (
        "first", "data/bars.csv", "models/ppo")
    assert run["status"] == "running"
    assert run["control"] is None and run["error"] is None and run["ended_at"] is None
    assert run["summary"] == {}
    for field in ("created_at", "started_at", "heartbeat_at"):
        assert run[field].endswith("Z")
        datetime.fromisoformat(run[field][:-1])  # parses as ISO-8601
    assert run["created_at"] == run["started_at"] == run["heartbeat_at"]
    assert set(run) == {"run_id", "name", "model_type", "algorithm", "status", "config",
                        "tags", "description", "data_file", "model_dir", "created_at",
                        "started_at", "ended_at", "heartbeat_at", "control", "error", "summary",
                        "experiment", "notes", "archived", "archived_at"}


def test_create_run_appends_running_status_event(store):
    run_id = make_run(store)
    events = store.events_after(0, run_id=run_id)
    assert [(e["kind"], e["payload"]) for e in events] == [("status", {"status": "running"})]


@pytest.mark.parametrize(
    "bad",
    [{"tags": "abc"}, {"tags": [1]}, {"tags": ["ok", None]}, {"tags": {"a"}}, {"tags": 5},
     {"name": ""}, {"name": 5}, {"model_type": None}, {"algorithm": 1.5},
     {"description": ["x"]}, {"config": [1, 2]}, {"config": "lr=3"}],
)
def test_create_run_rejects_bad_arguments(store, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        make_run(store, **bad)
    assert store.list_runs()[1] == 0


def test_create_run_treats_no_tags_as_none(store):
    assert store.get_run(make_run(store, tags=None))["tags"] == []


# Values numpy, pandas and trainers produce; PostgreSQL's JSON rejects NaN and inf and
# neither engine can serialise numpy scalars, so every JSON column stores to_plain(value).
ODD_VALUES = {
    "nan": math.nan, "inf": math.inf, "ninf": -math.inf, "f32": np.float32(0.1),
    "i64": np.int64(7), "flag": np.bool_(True), "array": np.array([[1.5, np.nan], [np.inf, 2]]),
    "when": datetime(2024, 5, 1, 12, 30), "nested": {"x": [np.float32(2.5), math.nan], 3: "k"},
    "pair": (1, np.float64(-math.inf)),
    "huge": 2**70, "unicode": "é\u2028😀",  # beyond orjson's integers; JSON text escapes
}


def test_config_and_summary_store_plain_json(store):
    run_id = make_run(store, config=ODD_VALUES)
    assert store.get_run(run_id)["config"] == to_plain(ODD_VALUES)
    store.update_run(run_id, summary={"best": np.float32(1.25), "loss": math.nan})
    run = store.update_run(run_id, summary=ODD_VALUES)
    assert run["summary"] == {"best": 1.25, "loss": None, **to_plain(ODD_VALUES)}
    assert store.get_run(run_id)["summary"] == run["summary"]


def test_event_payloads_store_plain_json(store):
    run_id = make_run(store)
    store.log_events(run_id, [("trade", ODD_VALUES, 0.0)])
    store.write_batch(events=[(run_id, "alert", ODD_VALUES, 0.0)])
    events = store.events_after(0, run_id=run_id, kinds=["trade", "alert"])
    assert [e["payload"] for e in events] == [to_plain(ODD_VALUES)] * 2


@pytest.mark.parametrize("bad", [{"summary": [1]}, {"summary": "x"}, {"model_dir": 3},
                                 {"description": b"bytes"}])
def test_update_run_rejects_bad_arguments(store, bad):
    run_id = make_run(store)
    with pytest.raises(ValueError, match=next(iter(bad))):
        store.update_run(run_id, **bad)


def test_get_missing_run_names_the_id(store):
    with pytest.raises(RunNotFound, match="no-such-run") as info:
        store.get_run("no-such-run")
    assert isinstance(info.value, KeyError) and isinstance(info.value, RunStoreError)


@pytest.fixture
def four_runs(store):
    runs = {
        "a": make_run(store, "alpha", "ppo", tags=["x", "y"]),
        "b": make_run(store, "alpha", "dqn", tags=["y"]),
        "c": make_run(store, "beta", "ppo"),
        "d": make_run(store, "beta", "ppo", tags=["x"]),
    }
    store.set_status(runs["b"], "completed")
    store.set_status(runs["c"], "failed")
    store.set_status(runs["d"], "paused")
    return runs


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, "abcd"),
        ({"model_type": "ppo"}, "acd"),
        ({"name": "alpha"}, "ab"),
        ({"status": "completed"}, "b"),
        ({"status": ["failed", "paused"]}, "cd"),
        ({"status": ("running",)}, "a"),
        ({"tag": "x"}, "ad"),
        ({"tag": "y", "name": "alpha"}, "ab"),
        ({"model_type": "ppo", "tag": "x", "status": "running"}, "a"),
        ({"name": "beta", "status": ["paused", "completed"]}, "d"),
        ({"tag": "missing"}, ""),
    ],
)
def test_list_runs_filters(store, four_runs, filters, expected):
    page, total = store.list_runs(**filters)
    assert ids_of(page) == {four_runs[k] for k in expected}
    assert total == len(expected)


@pytest.mark.parametrize(
    "bad",
    [{"status": "bogus"}, {"status": ["running", "bogus"]}, {"sort": "id; drop table"},
     {"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "10"}, {"limit": 2.5},
     {"limit": True}, {"limit": None}, {"offset": 1.5}, {"offset": "0"}, {"offset": 2**63},
     {"offset": None}],
)
def test_list_runs_rejects_bad_arguments(store, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        store.list_runs(**bad)


def test_list_runs_accepts_numpy_integers(store):
    make_run(store)
    page, total = store.list_runs(limit=np.int64(1), offset=np.int32(0))
    assert len(page) == 1 and total == 1


def test_sort_by_name(store):
    for name in ("charlie", "alpha", "bravo"):
        make_run(store, name)
    ascending, _ = store.list_runs(sort="name", descending=False)
    descending, _ = store.list_runs(sort="name", descending=True)
    assert [r["name"] for r in ascending] == ["alpha", "bravo", "charlie"]
    assert [r["name"] for r in descending] == ["charlie", "bravo", "alpha"]


def test_sort_by_ended_at_puts_unfinished_runs_last(store):
    early, late, running = make_run(store), make_run(store), make_run(store)
    store.set_status(early, "completed")
    store.set_status(late, "stopped")
    set_column(store, early, ended_at=datetime(2024, 1, 1))
    set_column(store, late, ended_at=datetime(2024, 6, 1))
    newest_first, _ = store.list_runs(sort="ended_at", descending=True)
    oldest_first, _ = store.list_runs(sort="ended_at", descending=False)
    assert [r["run_id"] for r in newest_first] == [late, early, running]
    assert [r["run_id"] for r in oldest_first] == [early, late, running]


def test_pagination_is_disjoint_complete_and_stable_with_equal_timestamps(store):
    run_ids = [make_run(store, f"agent{i}") for i in range(7)]
    set_column(store, created_at=datetime(2024, 1, 1, 12))  # every run ties on the sort key
    pages = []
    for offset in (0, 3, 6):
        page, total = store.list_runs(limit=3, offset=offset)
        assert total == 7
        pages.append([r["run_id"] for r in page])
    assert [len(p) for p in pages] == [3, 3, 1]
    flat = [run_id for page in pages for run_id in page]
    assert len(set(flat)) == 7 and set(flat) == set(run_ids)
    assert flat == sorted(run_ids, reverse=True)  # ties broken by id, same direction
    again, _ = store.list_runs(limit=3, offset=3)
    assert [r["run_id"] for r in again] == pages[1]
    past_end, total = store.list_runs(limit=3, offset=9)
    assert past_end == [] and total == 7


def test_agent_names_distinct_sorted(store):
    for name in ("beta", "alpha", "beta", "gamma", "alpha"):
        make_run(store, name)
    assert store.agent_names() == ["alpha", "beta", "gamma"]


# ---- status and control ---------------------------------------------------------------------


@pytest.mark.parametrize("target", RUN_STATUSES)
@pytest.mark.parametrize("source", RUN_STATUSES)
def test_transition_matrix(store, source, target):
    run_id = run_in_status(store, source)
    if target in ALLOWED[source]:
        assert store.set_status(run_id, target)["status"] == target
        assert store.get_run(run_id)["status"] == target
    else:
        with pytest.raises(InvalidTransition) as info:
            store.set_status(run_id, target)
        message = str(info.value)
        assert run_id in message and repr(source) in message and repr(target) in message
        for allowed in ALLOWED[source]:
            assert allowed in message
        assert store.get_run(run_id)["status"] == source


def test_unknown_status_rejected(store):
    run_id = make_run(store)
    with pytest.raises(ValueError, match="bogus"):
        store.set_status(run_id, "bogus")
    with pytest.raises(RunNotFound, match="missing-id"):
        store.set_status("missing-id", "paused")


@pytest.mark.parametrize("terminal", ["completed", "stopped", "failed"])
def test_terminal_status_sets_ended_at_and_clears_control(store, terminal):
    run_id = make_run(store)
    store.request_control(run_id, "stop")
    if terminal in ALLOWED["paused"]:  # a non-terminal step on the way leaves both alone
        paused = store.set_status(run_id, "paused")
        assert paused["ended_at"] is None and paused["control"] == "stop"
    run = store.set_status(run_id, terminal)
    assert run["ended_at"] is not None and run["ended_at"].endswith("Z")
    assert run["ended_at"] >= run["started_at"]
    assert run["control"] is None and store.get_control(run_id) is None


def test_status_events_are_appended(store):
    run_id = make_run(store)
    store.set_status(run_id, "paused")
    store.set_status(run_id, "running")
    run = store.set_status(run_id, "failed", error="CUDA out of memory")
    assert run["error"] == "CUDA out of memory"
    payloads = [e["payload"] for e in store.events_after(0, run_id=run_id, kinds=["status"])]
    assert payloads == [
        {"status": "running"},
        {"status": "paused", "previous": "running"},
        {"status": "running", "previous": "paused"},
        {"status": "failed", "previous": "running", "error": "CUDA out of memory"},
    ]


def test_concurrent_status_changes_keep_a_consistent_history(store):
    runs = [make_run(store) for _ in range(4)]
    errors: list[BaseException] = []

    def changer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(40):
            run_id, target = rng.choice(runs), rng.choice(["paused", "running", "stopped"])
            try:
                store.set_status(str(run_id), str(target))
            except InvalidTransition:
                pass  # expected whenever another thread got there first
            except BaseException as error:  # surfaced by the assert below
                errors.append(error)

    run_threads(changer, range(4))
    assert errors == []
    for run_id in runs:
        history = [e["payload"] for e in store.events_after(0, run_id=run_id, kinds=["status"])]
        for before, after in itertools.pairwise(history):
            assert after["previous"] == before["status"]
            assert after["status"] in ALLOWED[before["status"]]
        assert history[-1]["status"] == store.get_run(run_id)["status"]


def test_control_request_get_clear(store):
    run_id = make_run(store)
    assert store.get_control(run_id) is None
    assert store.request_control(run_id, "pause")["control"] == "pause"
    assert store.get_control(run_id) == "pause"
    store.request_control(run_id, "stop")  # a later request replaces the earlier one
    assert store.get_control(run_id) == "stop"
    store.clear_control(run_id)
    assert store.get_control(run_id) is None
    with pytest.raises(ValueError, match="explode"):
        store.request_control(run_id, "explode")


def test_control_refused_on_terminal_run(store):
    run_id = run_in_status(store, "completed")
    with pytest.raises(InvalidTransition, match=run_id):
        store.request_control(run_id, "resume")
    assert store.get_control(run_id) is None


@pytest.mark.parametrize(
    "call",
    [lambda s: s.get_control("ghost"), lambda s: s.clear_control("ghost"),
     lambda s: s.heartbeat("ghost"), lambda s: s.request_control("ghost", "stop"),
     lambda s: s.update_run("ghost", summary={}), lambda s: s.delete_run("ghost"),
     lambda s: s.log_metrics("ghost", [("k", 0, 1.0, 0.0)]),
     lambda s: s.log_events("ghost", [("log", {}, 0.0)]), lambda s: s.metric_keys("ghost"),
     lambda s: s.metric_series("ghost", "k"), lambda s: s.latest_metrics("ghost")],
)
def test_missing_run_raises_run_not_found(store, call):
    with pytest.raises(RunNotFound, match="ghost"):
        call(store)


def test_heartbeat_moves_forward(store):
    run_id = make_run(store)
    set_column(store, run_id, heartbeat_at=datetime(2000, 1, 1))
    store.heartbeat(run_id)
    assert store.get_run(run_id)["heartbeat_at"] > "2000-01-01T00:00:00.000000Z"


def test_update_run_merges_summary(store):
    run_id = make_run(store, description="before", model_dir="m0")
    store.update_run(run_id, summary={"episodes": 1, "best": 2.0})
    run = store.update_run(run_id, summary={"best": 3.5, "final": {"reward": 1}})
    assert run["summary"] == {"episodes": 1, "best": 3.5, "final": {"reward": 1}}
    assert (run["description"], run["model_dir"]) == ("before", "m0")
    run = store.update_run(run_id, model_dir="m1", description="after")
    assert run["summary"] == {"episodes": 1, "best": 3.5, "final": {"reward": 1}}
    assert store.get_run(run_id)["model_dir"] == "m1"
    assert store.get_run(run_id)["description"] == "after"


def test_delete_run_removes_tags_metrics_and_events(store):
    doomed = make_run(store, tags=["t"])
    kept = make_run(store, tags=["t"])
    for run_id in (doomed, kept):
        store.log_metrics(run_id, [("loss", step, 1.0, 0.0) for step in range(5)])
        store.log_events(run_id, [("log", {"i": i}, 0.0) for i in range(3)])
    store.set_status(doomed, "completed")  # a live run is refused (test_run_curation)
    store.delete_run(doomed)
    with pytest.raises(RunNotFound):
        store.get_run(doomed)
    assert store.events_after(0, run_id=doomed) == []
    for model in (MetricSeries, RunTag):
        assert count_rows(store, model, doomed) == 0
    with store.engine.connect() as conn:  # no point or rollup outlives its series
        for table in ("metric_points", "metric_rollups"):
            orphans = conn.exec_driver_sql(
                f"SELECT count(*) FROM {table} WHERE series_id NOT IN "
                "(SELECT id FROM metric_series)").scalar()
            assert orphans == 0, table
    assert len(store.metric_series(kept, "loss")) == 5
    assert len(store.events_after(0, run_id=kept)) == 4  # 3 logs + the creation status event
    assert store.list_runs(tag="t")[1] == 1
    with pytest.raises(RunNotFound):
        store.delete_run(doomed)


# ---- metrics ------------------------------------------------------------------------------


def test_metric_series_ordered_by_step_and_step_range(store):
    run_id = make_run(store)
    steps = list(range(20))
    np.random.default_rng(3).shuffle(steps)
    assert store.log_metrics(run_id, [("loss", s, s * 0.5, 1000.0 + s) for s in steps]) == 20
    store.log_metrics(run_id, [("reward", 1, 99.0, 0.0)])
    series = store.metric_series(run_id, "loss")
    assert [p["step"] for p in series] == list(range(20))
    assert series[7] == {"step": 7, "value": 3.5, "wall_time": 1007.0}
    window = store.metric_series(run_id, "loss", start_step=5, end_step=9)
    assert [p["step"] for p in window] == [5, 6, 7, 8, 9]
    assert [p["step"] for p in store.metric_series(run_id, "loss", start_step=18)] == [18, 19]
    assert store.metric_series(run_id, "absent") == []
    assert store.metric_keys(run_id) == ["loss", "reward"]


def test_nan_metric_round_trips_as_none(store):
    run_id = make_run(store)
    store.log_metrics(run_id, [("loss", 0, 1.0, 0.0), ("loss", 1, math.nan, 0.0)])
    assert [p["value"] for p in store.metric_series(run_id, "loss")] == [1.0, None]
    rows = [("loss", s, math.nan if s % 7 == 0 else float(s), 0.0) for s in range(2, 100)]
    store.log_metrics(run_id, rows)
    assert len(store.metric_series(run_id, "loss", max_points=10)) <= 10


def test_downsampling_keeps_spikes_endpoints_and_bucket_extremes(store):
    n, max_points = 10_000, 200
    rng = np.random.default_rng(42)
    values = rng.normal(0.0, 1.0, n)
    spikes = rng.choice(np.arange(1, n - 1), size=8, replace=False)
    values[spikes[:4]] = 1e6 + np.arange(4)
    values[spikes[4:]] = -1e6 - np.arange(4)
    run_id = make_run(store)
    store.log_metrics(run_id, [("pnl", s, float(v), float(s)) for s, v in enumerate(values)])
    series = store.metric_series(run_id, "pnl", max_points=max_points)
    steps = [p["step"] for p in series]
    assert len(series) <= max_points
    assert steps[0] == 0 and steps[-1] == n - 1
    assert all(b > a for a, b in itertools.pairwise(steps))
    assert set(spikes.tolist()) <= set(steps)
    kept = {p["step"]: p["value"] for p in series}
    assert all(kept[s] == values[s] for s in steps)  # values are the stored ones, not averages
    # As fine as asked: the rollups are read a few levels finer than max_points needs
    # and cut by minmax_indices, which keeps two points per bucket of its own.
    assert len(series) >= max_points - 2
    # Each of those buckets keeps its extremes among what the rollups offered, so no
    # stretch of a quarter of the series is drawn without its own min and max.
    for quarter in np.array_split(np.arange(n), 4):
        inside = [kept[s] for s in steps if quarter[0] <= s <= quarter[-1]]
        assert len(inside) >= max_points // 8


@pytest.mark.parametrize("max_points", [4, 5, 7, 50])
def test_downsampling_respects_max_points(store, max_points):
    run_id = make_run(store)
    store.log_metrics(run_id, [("m", s, float((s * 37) % 101), 0.0) for s in range(500)])
    series = store.metric_series(run_id, "m", max_points=max_points)
    assert len(series) <= max_points
    assert series[0]["step"] == 0 and series[-1]["step"] == 499


def test_short_series_is_returned_unchanged(store):
    run_id = make_run(store)
    store.log_metrics(run_id, [("m", s, float(s % 3), float(s)) for s in range(50)])
    assert store.metric_series(run_id, "m", max_points=50) == store.metric_series(run_id, "m")
    assert len(store.metric_series(run_id, "m", max_points=1000)) == 50


@pytest.mark.parametrize("max_points", [4, 5])
def test_fewest_points_still_keep_the_spike_and_the_dip(store, max_points):
    run_id = make_run(store)
    values = [0.0] * 100
    values[30], values[70] = 50.0, -50.0
    store.log_metrics(run_id, [("m", s, v, 0.0) for s, v in enumerate(values)])
    steps = [p["step"] for p in store.metric_series(run_id, "m", max_points=max_points)]
    assert steps == [0, 30, 70, 99]


@pytest.mark.parametrize(
    "bad",
    [{"max_points": 3}, {"max_points": 2}, {"max_points": 1}, {"max_points": 0},
     {"max_points": 4.5}, {"max_points": "10"}, {"max_points": True},
     {"start_step": 1.5}, {"end_step": "9"}, {"start_step": 2**63}],
)
def test_metric_series_rejects_bad_arguments(store, bad):
    run_id = make_run(store)
    store.log_metrics(run_id, [("m", s, float(s), 0.0) for s in range(50)])
    with pytest.raises(ValueError, match=next(iter(bad))):
        store.metric_series(run_id, "m", **bad)


def test_latest_metrics(store):
    run_id = make_run(store)
    other = make_run(store)
    steps = list(range(10))
    np.random.default_rng(1).shuffle(steps)
    store.log_metrics(run_id, [("loss", s, 10.0 - s, 100.0 + s) for s in steps])
    store.log_metrics(run_id, [("reward", s, float(s * s), 200.0 + s) for s in range(5)])
    store.log_metrics(other, [("loss", 50, -1.0, 0.0)])  # another run's higher step
    latest = store.latest_metrics(run_id)
    assert latest == {"loss": {"step": 9, "value": 1.0, "wall_time": 109.0},
                      "reward": {"step": 4, "value": 16.0, "wall_time": 204.0}}
    store.log_metrics(run_id, [("reward", 4, 17.0, 300.0)])  # the same step logged again
    assert store.latest_metrics(run_id)["reward"]["value"] == 17.0
    assert store.latest_metrics(make_run(store)) == {}


# ---- events -------------------------------------------------------------------------------


def test_events_after_returns_exactly_the_missed_events(store):
    run_id = make_run(store)
    seqs = store.log_events(run_id, [("trade", {"i": i}, float(i)) for i in range(10)])
    assert len(seqs) == 10 and seqs == sorted(seqs)
    missed = store.events_after(seqs[3])
    assert [e["seq"] for e in missed] == seqs[4:]
    assert [e["payload"] for e in missed] == [{"i": i} for i in range(4, 10)]
    assert all(e["run_id"] == run_id and e["kind"] == "trade" for e in missed)
    assert [e["wall_time"] for e in missed] == [float(i) for i in range(4, 10)]
    assert store.events_after(seqs[3], limit=2) == missed[:2]
    assert store.events_after(seqs[-1]) == []
    assert store.last_seq() == seqs[-1]


def test_events_after_filters(store):
    first, second = make_run(store), make_run(store)
    store.log_events(first, [("trade", {"n": 1}, 0.0), ("alert", {"n": 2}, 0.0)])
    store.log_events(second, [("trade", {"n": 3}, 0.0), ("decision", {"n": 4}, 0.0)])
    by_run = store.events_after(0, run_id=second)
    assert [e["payload"] for e in by_run] == [{"status": "running"}, {"n": 3}, {"n": 4}]
    trades = store.events_after(0, kinds=["trade"])
    assert [e["payload"]["n"] for e in trades] == [1, 3]
    both = store.events_after(0, run_id=first, kinds=("trade", "alert"))
    assert [e["payload"]["n"] for e in both] == [1, 2]
    with pytest.raises(ValueError, match="bogus"):
        store.events_after(0, kinds=["bogus"])


@pytest.mark.parametrize(
    ("seq", "limit", "named"),
    [(0, 0, "limit"), (0, 100_001, "limit"), (0, 2.5, "limit"), (0, "5", "limit"),
     (0, None, "limit"), (-1, 10, "seq"), (1.5, 10, "seq"), ("3", 10, "seq"),
     (None, 10, "seq"), (2**63, 10, "seq"), (True, 10, "seq")],
)
def test_events_after_rejects_bad_arguments(store, seq, limit, named):
    make_run(store)
    with pytest.raises(ValueError, match=named):
        store.events_after(seq, limit=limit)


def test_events_after_accepts_the_largest_limit(store):
    make_run(store)
    assert len(store.events_after(np.int64(0), limit=100_000)) == 1


def test_seq_strictly_increasing_across_runs(store):
    runs = [make_run(store) for _ in range(3)]
    for i in range(12):
        store.log_events(runs[i % 3], [(EVENT_KINDS[i % len(EVENT_KINDS)], {"i": i}, 0.0)])
    seqs = [e["seq"] for e in store.events_after(0)]
    assert len(seqs) == 15  # 3 creation events + 12 logged
    assert all(b > a for a, b in itertools.pairwise(seqs))


def test_seq_never_reused_after_deleting_the_newest_events(store):
    doomed = make_run(store)
    store.set_status(doomed, "completed")  # only a finished run can be deleted
    highest = store.log_events(doomed, [("log", {}, 0.0)] * 3)[-1]
    store.delete_run(doomed)  # removes the rows holding the highest seq numbers
    fresh = make_run(store)
    assert store.log_events(fresh, [("log", {}, 0.0)])[0] > highest
    assert all(e["seq"] > highest for e in store.events_after(0, run_id=fresh))


def test_unknown_event_kind_rejected_and_nothing_written(store):
    run_id = make_run(store)
    before = store.last_seq()
    with pytest.raises(ValueError, match="gossip"):
        store.log_events(run_id, [("log", {}, 0.0), ("gossip", {}, 0.0)])
    assert store.last_seq() == before


def test_last_seq_is_zero_when_empty(store):
    assert store.last_seq() == 0
    assert store.events_after(0) == []


def test_log_nothing_is_a_no_op(store):
    run_id = make_run(store)
    assert store.log_metrics(run_id, []) == 0
    assert store.log_events(run_id, []) == []
    store.write_batch()
    assert store.metric_keys(run_id) == []


# ---- write_batch --------------------------------------------------------------------------


def test_write_batch_writes_metrics_events_and_heartbeats(store):
    first, second = make_run(store), make_run(store)
    set_column(store, heartbeat_at=datetime(2000, 1, 1))
    store.write_batch(
        metrics=[(first, "loss", 1, 0.5, 10.0), (second, "loss", 1, 0.7, 11.0)],
        events=[(first, "episode", {"reward": 3}, 12.0)],
        heartbeats=[first],
    )
    assert store.metric_series(first, "loss") == [{"step": 1, "value": 0.5, "wall_time": 10.0}]
    assert store.metric_series(second, "loss")[0]["value"] == 0.7
    episodes = store.events_after(0, kinds=["episode"])
    assert [(e["run_id"], e["payload"]) for e in episodes] == [(first, {"reward": 3})]
    assert store.get_run(first)["heartbeat_at"] > "2000-01-01T00:00:00.000000Z"
    assert store.get_run(second)["heartbeat_at"] == "2000-01-01T00:00:00.000000Z"


@pytest.mark.parametrize("failure", ["unknown-kind", "missing-run"])
def test_failing_write_batch_writes_nothing(store, failure):
    run_id = make_run(store)
    set_column(store, run_id, heartbeat_at=datetime(2000, 1, 1))
    metrics = [(run_id, "loss", 1, 0.5, 0.0)]
    events = [(run_id, "log", {"ok": True}, 0.0)]
    if failure == "unknown-kind":
        events.append((run_id, "gossip", {}, 0.0))
        error = ValueError
    else:
        metrics.append(("ghost-run", "loss", 2, 1.0, 0.0))
        error = RunNotFound
    before = store.last_seq()
    with pytest.raises(error):
        store.write_batch(metrics=metrics, events=events, heartbeats=[run_id])
    assert store.metric_series(run_id, "loss") == []
    assert store.last_seq() == before
    assert store.get_run(run_id)["heartbeat_at"] == "2000-01-01T00:00:00.000000Z"


def test_concurrent_write_batches_lose_nothing(store):
    batches, per_batch = 200, 5
    runs = [make_run(store, f"writer{i}") for i in range(2)]
    errors: list[BaseException] = []

    def writer(run_id: str) -> None:
        try:
            for b in range(batches):
                first = b * per_batch
                metrics = [(run_id, "m", first + i, float(i), 0.0) for i in range(per_batch)]
                store.write_batch(metrics=metrics, events=[(run_id, "log", {"b": b}, 0.0)],
                                  heartbeats=[run_id])
        except BaseException as error:  # surfaced by the assert below
            errors.append(error)

    run_threads(writer, runs)
    assert errors == []
    for run_id in runs:
        steps = [p["step"] for p in store.metric_series(run_id, "m")]
        assert steps == list(range(batches * per_batch))
        logs = store.events_after(0, run_id=run_id, kinds=["log"], limit=10_000)
        assert [e["payload"]["b"] for e in logs] == list(range(batches))
    seqs = [e["seq"] for e in store.events_after(0, limit=10_000)]
    assert len(seqs) == 2 * batches + 2 and len(set(seqs)) == len(seqs)



def test_a_launcher_may_choose_the_run_id(store) -> None:
    import uuid

    chosen = str(uuid.uuid4())
    assert store.create_run(name="web", model_type="ppo", run_id=chosen) == chosen
    assert store.get_run(chosen)["name"] == "web"
    with pytest.raises(RunStoreError, match="run_id must be a UUID"):
        store.create_run(name="web", model_type="ppo", run_id="../etc")
    with pytest.raises(RunStoreError):
        store.create_run(name="again", model_type="ppo", run_id=chosen)  # taken


# ---- liveness: lost runs, claims, adoption ------------------------------------------------

LONG_AGO = datetime(2000, 1, 1)
LONG_AGO_TEXT = "2000-01-01T00:00:00.000000Z"


def make_stale(store: RunStore, run_id: str) -> None:
    set_column(store, run_id, heartbeat_at=LONG_AGO)


def status_events(store: RunStore, run_id: str) -> list[dict]:
    return [e["payload"] for e in store.events_after(0, run_id=run_id, kinds=["status"])]


@pytest.mark.parametrize("status", ["running", "paused"])
def test_a_live_run_without_a_fresh_heartbeat_reads_as_lost(store, status):
    run_id = run_in_status(store, status)
    make_stale(store, run_id)
    run = store.get_run(run_id)
    assert run["status"] == "failed"
    assert run["error"].startswith(f"lost: no heartbeat since {LONG_AGO_TEXT}")
    assert run["ended_at"] == LONG_AGO_TEXT and run["control"] is None
    assert status_events(store, run_id)[-1] == {"status": "failed", "previous": status,
                                                "error": run["error"]}
    store.get_run(run_id)  # read again: marked once
    assert len(status_events(store, run_id)) == (2 if status == "running" else 3)


def test_fresh_and_finished_runs_are_left_alone(store):
    fresh, done = make_run(store), run_in_status(store, "completed")
    make_stale(store, done)
    assert store.get_run(fresh)["status"] == "running"
    assert store.get_run(done)["status"] == "completed"
    assert store.sweep_lost() == []


def test_run_lists_mark_lost_runs_before_filtering(store):
    live, lost = make_run(store, "live"), make_run(store, "lost")
    make_stale(store, lost)
    running, total = store.list_runs(status="running")
    assert ids_of(running) == {live} and total == 1
    (failed,), _ = store.list_runs(status="failed")
    assert failed["run_id"] == lost and failed["error"].startswith("lost: ")


def test_sweep_marks_every_stale_run_once(store):
    runs = [make_run(store, f"r{i}") for i in range(3)]
    for run_id in runs[:2]:
        make_stale(store, run_id)
    assert sorted(store.sweep_lost()) == sorted(runs[:2])
    assert store.sweep_lost() == []
    assert store.get_run(runs[2])["status"] == "running"


def test_the_threshold_is_the_stores_setting(database_url, store, monkeypatch):
    run_id = make_run(store)
    set_column(store, run_id, heartbeat_at=datetime.utcnow() - timedelta(seconds=120))
    patient = RunStore(database_url, lost_after=3600)
    assert patient.get_run(run_id)["status"] == "running"
    patient.close()
    monkeypatch.setenv("RUN_LOST_AFTER_SECONDS", "60")
    strict = RunStore(database_url)
    assert strict.lost_after == 60.0 and strict.get_run(run_id)["status"] == "failed"
    strict.close()


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "inf"])
def test_a_bad_threshold_setting_is_refused_naming_it(database_url, monkeypatch, value):
    monkeypatch.setenv("RUN_LOST_AFTER_SECONDS", value)
    with pytest.raises(ValueError, match="RUN_LOST_AFTER_SECONDS must be a number"):
        lost_after_seconds()
    monkeypatch.setenv("RUN_HEARTBEAT_SECONDS", value)
    with pytest.raises(ValueError, match="RUN_HEARTBEAT_SECONDS must be a number"):
        heartbeat_seconds()
    with pytest.raises(ValueError, match="lost_after"):
        RunStore(database_url, lost_after=0)


def test_concurrent_readers_of_several_servers_mark_a_lost_run_once(database_url, store):
    run_id = make_run(store)
    make_stale(store, run_id)
    servers = [RunStore(database_url) for _ in range(2)]  # two processes' engines
    seen: list[str] = []
    run_threads(lambda i: seen.append(servers[i % 2].get_run(run_id)["status"]), range(6))
    for server in servers:
        server.close()
    assert seen == ["failed"] * 6
    assert [e["status"] for e in status_events(store, run_id)] == ["running", "failed"]


def test_stop_of_a_stale_run_marks_it_at_once(store):
    run_id = make_run(store)
    make_stale(store, run_id)
    run = store.request_control(run_id, "stop")
    assert run["status"] == "failed" and run["error"].startswith("lost: ")
    assert store.request_control(run_id, "stop")["status"] == "failed"  # asking again: same
    with pytest.raises(InvalidTransition, match="terminal"):
        store.request_control(run_id, "pause")


def test_stop_of_a_failed_run_that_was_not_lost_is_still_refused(store):
    run_id = make_run(store)
    store.set_status(run_id, "failed", error="CUDA out of memory")
    with pytest.raises(InvalidTransition):
        store.request_control(run_id, "stop")


def test_a_trainer_reads_stop_once_its_run_has_ended(store):
    run_id = make_run(store)
    assert store.trainer_control(run_id) is None
    store.request_control(run_id, "pause")
    assert store.trainer_control(run_id) == "pause"
    make_stale(store, run_id)
    store.sweep_lost()
    assert store.trainer_control(run_id) == "stop" and store.get_control(run_id) is None
    with pytest.raises(RunNotFound):
        store.trainer_control("ghost")


def test_a_claim_refuses_a_model_that_is_training(store):
    first = store.claim_run(name="m", model_type="ppo")
    with pytest.raises(RunBusy, match="a ppo model named 'm' is already training") as busy:
        store.claim_run(name="m", model_type="ppo")
    assert busy.value.reason == "duplicate" and busy.value.run["run_id"] == first
    store.set_status(first, "paused")  # paused still holds the model
    with pytest.raises(RunBusy):
        store.claim_run(name="m", model_type="ppo")
    assert store.claim_run(name="m", model_type="xgboost")  # another type, another model
    store.set_status(first, "stopped")
    assert store.claim_run(name="m", model_type="ppo") != first
    assert store.list_runs(name="m", model_type="ppo")[1] == 2


def test_a_claim_passes_a_model_whose_trainer_is_lost(store):
    dead = store.claim_run(name="m", model_type="ppo")
    make_stale(store, dead)
    again = store.claim_run(name="m", model_type="ppo")
    assert store.get_run(dead)["status"] == "failed" and again != dead


def test_a_claim_refuses_beyond_the_limit_of_live_runs(store):
    runs = [store.claim_run(name=f"m{i}", model_type="ppo", max_active=2) for i in range(2)]
    with pytest.raises(RunBusy, match=r"2 trainings are already running \(at most 2") as busy:
        store.claim_run(name="m2", model_type="ppo", max_active=2)
    assert busy.value.reason == "limit" and busy.value.limit == 2
    make_stale(store, runs[0])  # a lost run frees its place
    assert store.claim_run(name="m2", model_type="ppo", max_active=2)
    with pytest.raises(ValueError, match="max_active"):
        store.claim_run(name="m3", model_type="ppo", max_active=0)


def test_concurrent_claims_from_several_servers_admit_exactly_one(database_url, store):
    servers = [RunStore(database_url) for _ in range(2)]
    won: list[str] = []
    refused: list[str] = []

    def claim(i: int) -> None:
        try:
            won.append(servers[i % 2].claim_run(name="same", model_type="ppo"))
        except RunBusy as exc:
            refused.append(exc.reason)

    run_threads(claim, range(8))
    assert len(won) == 1 and refused == ["duplicate"] * 7
    won.clear()
    refused.clear()
    run_threads(lambda i: _claim_limited(servers[i % 2], i, won, refused), range(8))
    for server in servers:
        server.close()
    assert len(won) == 2 and refused == ["limit"] * 6  # 1 from before + 2 = the limit 3


def _claim_limited(store: RunStore, i: int, won: list[str], refused: list[str]) -> None:
    try:
        won.append(store.claim_run(name=f"n{i}", model_type="ppo", max_active=3))
    except RunBusy as exc:
        refused.append(exc.reason)


def test_the_launched_trainer_adopts_its_claimed_run(store):
    run_id = store.claim_run(name="web", model_type="ppo", tags=["x"], config={"a": 1},
                             run_id="5b1c3c2e-31f3-4d3c-9d6a-0d0f8a1f1e11")
    make_stale(store, run_id)
    set_column(store, run_id, heartbeat_at=datetime.utcnow())  # the trainer is starting
    run = store.adopt_run(run_id, name="web", model_type="ppo", algorithm="PPO",
                          config={"a": 2, "b": [1]}, tags=["smoke"], data_file="d.csv")
    assert (run["algorithm"], run["config"], run["tags"], run["data_file"]) == (
        "PPO", {"a": 2, "b": [1]}, ["smoke"], "d.csv")
    assert run["status"] == "running" and run["started_at"] >= run["created_at"]
    assert status_events(store, run_id) == [{"status": "running"}]  # one run, one start


@pytest.mark.parametrize("problem", ["other name", "other type", "finished", "lost", "missing"])
def test_adoption_is_refused_unless_it_is_the_same_live_run(store, problem):
    run_id = store.claim_run(name="web", model_type="ppo")
    name, model_type = "web", "ppo"
    if problem == "other name":
        name = "else"
    elif problem == "other type":
        model_type = "xgboost"
    elif problem == "finished":
        store.set_status(run_id, "completed")
    elif problem == "lost":
        make_stale(store, run_id)
    else:
        run_id = "5b1c3c2e-31f3-4d3c-9d6a-0d0f8a1f1e11"
    error = RunNotFound if problem == "missing" else RunStoreError
    with pytest.raises(error, match=run_id):
        store.adopt_run(run_id, name=name, model_type=model_type)


def test_run_of_model_dir_is_the_newest_run_of_that_exact_folder(store, tmp_path):
    folder = tmp_path / "Models" / "XGB_a_b"
    folder.mkdir(parents=True)
    assert store.run_of_model_dir(folder) is None
    make_run(store, model_dir=str(tmp_path / "elsewhere" / "XGB_a_b"))  # same name, other folder
    make_run(store, model_dir=str(tmp_path / "Models" / "XGBxaxb"))  # '_' is not a wildcard
    older = make_run(store, name="older", model_dir=str(folder))
    newer = make_run(store, name="newer", model_dir=str(tmp_path / "Models" / ".." / "Models"
                                                        / "XGB_a_b"))
    assert store.run_of_model_dir(folder)["run_id"] == newer
    store.set_status(newer, "completed")
    store.delete_run(newer)
    assert store.run_of_model_dir(str(folder))["run_id"] == older
