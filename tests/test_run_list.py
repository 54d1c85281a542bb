"""The run list reads a page in the same few statements whatever its size or its runs'
lengths, and what it reads equals a full read of every run's series — on SQLite and
PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.helpers.apps import drop_all, make_app
from tests.helpers.runs import log_ppo_run, log_supervised_run
from Utilities.run_store import Run, RunStore
from web.store import get_store

EPISODE_KEYS = ("episode/reward", "episode/win", "episode/pnl")


@pytest.fixture()
def list_app(engine_url: str, tmp_path: Path) -> Iterator[Flask]:
    (tmp_path / "Models").mkdir()
    app = make_app(engine_url, tmp_path / "Models", tmp_path)
    yield app
    with app.app_context():
        drop_all(get_store())


def statements_of(store: RunStore, client, path: str) -> int:
    """How many SQL statements one GET of ``path`` sends to the store."""
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_rest) -> None:
        seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        response = client.get(path)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
    assert response.status_code == 200, response.get_data(as_text=True)
    return len(seen)


def test_statements_per_page_do_not_grow_with_its_size(list_app: Flask) -> None:
    with list_app.app_context():
        store = get_store()
        for index in range(50):
            run_id = store.create_run(name=f"agent-{index % 3}",
                                      model_type="ppo" if index % 2 else "xgboost")
            if index % 2:
                log_ppo_run(store, run_id, episodes=60 + index, updates=2)
            elif index % 5:
                log_supervised_run(store, run_id, 3)
            store.set_status(run_id, "completed")
        client = list_app.test_client()
        for path in ("/runs?per_page={}", "/api/training-runs?limit={}",
                     "/api/training-runs?limit={}&episodes=0"):
            small, large = (statements_of(store, client, path.format(size)) for size in (10, 50))
            assert small == large, path
            # Before issue 13 a 50-run page took 335 statements. Since then the page
            # reads three more, each once: the experiment and tag filter options (issue
            # 15) and the menu's unread-alerts count (issue 16).
            assert large <= 11, (path, large)


def random_episodes(store: RunStore, rng: random.Random, run_id: str) -> None:
    """Episodes 1..n of a few keys, some steps written twice (a resumed run) or missing."""
    count = rng.choice([1, 5, 40, 130])
    rows = []
    for episode in range(1, count + 1):
        for key in EPISODE_KEYS:
            if key != "episode/reward" and rng.random() < 0.1:
                continue  # a key without this episode
            rows.append((run_id, key, episode, rng.choice([rng.uniform(-5, 5), float("nan")]),
                         1.7e9 + episode))
    resumed_from = rng.randint(1, count)
    rows += [(run_id, "episode/reward", step, rng.uniform(-5, 5), 1.8e9 + step)
             for step in range(resumed_from, count + 1)]
    rows.append((run_id, "train/loss", 1, 0.5, 1.7e9))
    store.write_batch(metrics=rows)


@pytest.mark.parametrize("episodes, win_episodes", [(1, None), (10, 19), (50, 50), (500, 520)])
def test_episode_windows_equal_a_full_read(any_store: RunStore, episodes: int,
                                           win_episodes: int | None) -> None:
    rng = random.Random(episodes)
    run_ids = [any_store.create_run(name=f"r{i}", model_type="ppo") for i in range(8)]
    for run_id in run_ids[:-2]:
        random_episodes(any_store, rng, run_id)
    log_supervised_run(any_store, run_ids[-2], 3)  # no episodes at all; the last is empty

    with any_store.reading() as reads:
        windows = reads.episode_windows(reads.series_statistics(run_ids), episodes,
                                        win_episodes=win_episodes)

    for run_id in run_ids:
        expected: dict[str, list[dict]] = {}
        latest = any_store.latest_metrics(run_id)
        if "episode/reward" in latest:
            last = latest["episode/reward"]["step"]
            for key in (k for k in latest if k.startswith("episode/")):
                back = win_episodes if key == "episode/win" and win_episodes else episodes
                start = max(1, last - back + 1)
                found = any_store.metric_series(run_id, key, start_step=start)
                if found:
                    expected[key] = found
        assert windows[run_id] == expected, run_id


def test_api_list_metrics_equal_a_full_read(list_app: Flask) -> None:
    with list_app.app_context():
        store = get_store()
        rng = random.Random(7)
        run_ids = [store.create_run(name=f"r{i}", model_type="ppo") for i in range(5)]
        for run_id in run_ids:
            random_episodes(store, rng, run_id)
        body = list_app.test_client().get("/api/training-runs?episodes=20").get_json()
        for row in body:
            last = store.latest_metrics(row["run_id"])["episode/reward"]["step"]
            rewards = store.metric_series(row["run_id"], "episode/reward",
                                          start_step=max(1, last - 19))
            assert row["metrics"]["episode_count"] == last
            shown = [record["episode"] for record in row["metrics"]["episodes"]]
            assert shown == sorted({point["step"] for point in rewards})


def test_a_read_scope_marks_stale_runs_lost_first(any_store: RunStore) -> None:
    run_id = any_store.create_run(name="stale", model_type="ppo")  # created running
    long_ago = datetime(2000, 1, 1)  # naive UTC, as the store keeps times
    with any_store.engine.begin() as connection:
        connection.execute(sa.update(Run).values(created_at=long_ago, heartbeat_at=long_ago))
    with any_store.reading() as reads:
        running = reads.list_runs(status="running")
        failed, total = reads.list_runs(status="failed")
    assert running == ([], 0)
    assert ([run["run_id"] for run in failed], total) == ([run_id], 1)
    assert failed[0]["error"].startswith("lost: no heartbeat since 2000-01-01")
