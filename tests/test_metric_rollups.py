"""The store's running statistics and rollup pyramid equal a full recomputation from the
points written: random series (duplicate, out-of-order and negative steps, NaN, None,
infinities, tied values), on SQLite and PostgreSQL, after a reopen, a delete, concurrent
writer processes and the migration of a pre-rollup store."""

from __future__ import annotations

import math
import multiprocessing
import random
from collections import defaultdict

import pytest
from sqlalchemy import text

from tests.helpers.apps import drop_all
from tests.helpers.engines import write_rows
from Utilities.metric_rollups import ROLLUP_LEVELS, ROLLUP_SHIFT
from Utilities.run_store import RunNotFound, RunStore

KEYS = ("episode/reward", "episode/win", "train/loss")


def random_rows(rng: random.Random, run_ids: list[str], count: int) -> list[tuple]:
    """(run_id, key, step, value, wall_time) rows in write order."""
    step = {pair: rng.randint(-50, 50) for pair in ((r, k) for r in run_ids for k in KEYS)}
    rows = []
    for index in range(count):
        pair = rng.choice(sorted(step))
        roll = rng.random()
        if roll < 0.05:
            at = step[pair] - rng.randint(0, 300)        # out of order (or a duplicate)
        else:
            step[pair] += rng.choice((1, 1, 1, 2, 7, 4096))
            at = step[pair]
        value = round(rng.gauss(0, 3), 1)                   # rounding makes ties
        special = rng.random()
        if special < 0.03:
            value = math.nan
        elif special < 0.05:
            value = rng.choice((math.inf, -math.inf))
        rows.append((*pair, at, value, 1000.0 + index))
    return rows


def _summary(points: list[tuple[int, int, float, float]]) -> dict:
    """points: (write order, step, value, wall). The figures the store keeps."""
    finite = [(step, value) for _, step, value, _ in points if math.isfinite(value)]
    low = min(finite, key=lambda sv: (sv[1], sv[0]), default=(None, None))
    high = min(finite, key=lambda sv: (-sv[1], sv[0]), default=(None, None))
    return {"points": len(points), "finite": len(finite),
            "total": sum(value for _, value in finite),
            "min_value": low[1], "min_step": low[0], "max_value": high[1], "max_step": high[0]}


def recomputed(rows: list[tuple]) -> tuple[dict, dict]:
    """({(run, key): statistics}, {(run, key, level, bucket): rollup}) from the rows."""
    series: dict[tuple, list] = defaultdict(list)
    for order, (run_id, key, step, value, wall) in enumerate(rows):
        series[run_id, key].append((order, step, value, wall))
    stats, rollups = {}, {}
    for pair, points in series.items():
        last = max(points, key=lambda p: (p[1], p[0]))
        stats[pair] = {**_summary(points), "first_step": min(p[1] for p in points),
                       "last_step": last[1],
                       "last_value": last[2] if math.isfinite(last[2]) else None}
        for level in range(1, ROLLUP_LEVELS + 1):
            buckets = defaultdict(list)
            for point in points:
                buckets[point[1] >> (ROLLUP_SHIFT * level)].append(point)
            for bucket, inside in buckets.items():
                rollups[(*pair, level, bucket)] = _summary(inside)
    return stats, rollups


def stored(store: RunStore, run_ids: list[str]) -> tuple[dict, dict]:
    """The same two dicts as the store holds them."""
    stats = {(run_id, key): figures for run_id, by_key in store.series_statistics(run_ids).items()
             for key, figures in by_key.items()}
    rollups = {}
    with store.engine.connect() as conn:
        for row in conn.execute(text(
                "SELECT s.run_id, s.key, r.level, r.bucket, r.points, r.finite, r.total, "
                "r.min_value, r.min_step, r.max_value, r.max_step FROM metric_rollups r "
                "JOIN metric_series s ON s.id = r.series_id")):
            if row.run_id in run_ids:
                rollups[row.run_id, row.key, row.level, row.bucket] = {
                    name: getattr(row, name) for name in (
                        "points", "finite", "total", "min_value", "min_step", "max_value",
                        "max_step")}
    return stats, rollups


def assert_equal(store: RunStore, run_ids: list[str], rows: list[tuple]) -> None:
    want_stats, want_rollups = recomputed(rows)
    got_stats, got_rollups = stored(store, run_ids)
    assert set(got_stats) == set(want_stats)
    for pair, want in want_stats.items():
        got = got_stats[pair]
        assert got["total"] == pytest.approx(want.pop("total"), rel=1e-9, abs=1e-6), pair
        assert {name: got[name] for name in want} == want, pair
    assert set(got_rollups) == set(want_rollups)
    for where, want in want_rollups.items():
        got = got_rollups[where]
        assert got.pop("total") == pytest.approx(want.pop("total"), rel=1e-9, abs=1e-6), where
        assert got == want, where


def write_in_random_batches(store: RunStore, rng: random.Random, rows: list[tuple]) -> None:
    start = 0
    while start < len(rows):
        size = rng.choice((1, 3, 50, 700))
        store.write_batch(metrics=rows[start:start + size])
        start += size


def test_statistics_and_rollups_equal_a_full_recomputation(any_store):
    rng = random.Random(13)
    run_ids = [any_store.create_run(name=f"r{i}", model_type="ppo") for i in range(2)]
    rows = random_rows(rng, run_ids, 4000)
    write_in_random_batches(any_store, rng, rows)
    assert_equal(any_store, run_ids, rows)
    latest = any_store.latest_metrics(run_ids[0])
    want, _ = recomputed(rows)
    assert {k: p["step"] for k, p in latest.items()} == {
        k: s["last_step"] for (r, k), s in want.items() if r == run_ids[0]}


def test_rollups_survive_a_reopen_and_a_resumed_writer(any_store, engine_url):
    rng = random.Random(7)
    run_id = any_store.create_run(name="resumed", model_type="ppo")
    rows = random_rows(rng, [run_id], 3000)
    write_in_random_batches(any_store, rng, rows[:1500])
    any_store.close()
    reopened = RunStore(engine_url)  # a resumed trainer: a new process, an empty cache
    try:
        write_in_random_batches(reopened, rng, rows[1500:])
        assert_equal(reopened, [run_id], rows)
    finally:
        reopened.close()


def test_delete_removes_a_runs_summaries_and_leaves_the_others_equal(any_store):
    rng = random.Random(3)
    doomed, kept = (any_store.create_run(name=n, model_type="ppo") for n in ("doomed", "kept"))
    rows = random_rows(rng, [doomed, kept], 2000)
    write_in_random_batches(any_store, rng, rows)
    any_store.set_status(doomed, "completed")
    any_store.delete_run(doomed)
    assert_equal(any_store, [kept], [row for row in rows if row[0] == kept])
    with any_store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM metric_rollups WHERE series_id NOT IN "
                                 "(SELECT id FROM metric_series)")).scalar() == 0
    with pytest.raises(RunNotFound):  # the writer's cached series ids died with the run
        any_store.write_batch(metrics=[(doomed, KEYS[0], 1, 1.0, 1.0)])
    more = random_rows(rng, [kept], 300)
    any_store.write_batch(metrics=more)
    assert_equal(any_store, [kept], [row for row in rows if row[0] == kept] + more)


def test_concurrent_writer_processes_keep_exact_summaries(any_store, engine_url):
    run_ids = [any_store.create_run(name=f"c{i}", model_type="ppo") for i in range(2)]
    writers = []
    for index in range(4):
        # Distinct steps per writer (step = 4n + index): "last" needs no write order.
        rows = [(run, key, 4 * step + index, value, wall) for run, key, step, value, wall
                in random_rows(random.Random(index), run_ids, 1500) if step >= 0]
        writers.append(rows)
    context = multiprocessing.get_context("spawn")
    # Two writers in small batches, two in big ones (COPY on PostgreSQL).
    processes = [context.Process(target=write_rows, args=(engine_url, rows, size))
                 for rows, size in zip(writers, (5, 60, 400, 300), strict=True)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
        assert process.exitcode == 0
    assert_equal(any_store, run_ids, [row for rows in writers for row in rows])


def test_a_pre_rollup_store_is_migrated_when_opened(engine_url):
    rng = random.Random(5)
    store = RunStore(engine_url)
    run_id = store.create_run(name="old", model_type="ppo")
    rows = random_rows(rng, [run_id], 1500)
    store.close()
    big_id = "INTEGER PRIMARY KEY" if engine_url.startswith("sqlite") else "BIGSERIAL PRIMARY KEY"
    with store.engine.begin() as conn:  # the table every store had before issue 13
        conn.execute(text(f"CREATE TABLE metrics (id {big_id}, run_id VARCHAR(36), key VARCHAR,"
                          " step BIGINT, value FLOAT, wall_time FLOAT)"))
        conn.execute(text("INSERT INTO metrics (run_id, key, step, value, wall_time) VALUES "
                          "(:run_id, :key, :step, :value, :wall)"),
                     [{"run_id": r, "key": k, "step": s, "wall": w,
                       "value": None if math.isnan(v) else v} for r, k, s, v, w in rows])
    reopened = RunStore(engine_url)
    try:
        assert_equal(reopened, [run_id], rows)
        with reopened.engine.connect() as conn:
            assert not reopened.engine.dialect.has_table(conn, "metrics")
        steps = [p["step"] for p in reopened.metric_series(run_id, KEYS[0])]
        assert steps == sorted(r[2] for r in rows if r[1] == KEYS[0])
    finally:
        drop_all(reopened)


def test_tails_and_incremental_reads_match_the_full_series(any_store):
    rng = random.Random(9)
    run_id = any_store.create_run(name="tails", model_type="ppo")
    rows = random_rows(rng, [run_id], 2000)
    any_store.write_batch(metrics=rows[:1200])
    mark = any_store.last_point_id()
    any_store.write_batch(metrics=rows[1200:])
    stats = any_store.series_statistics([run_id])[run_id]
    tails = any_store.recent_points([s["id"] for s in stats.values()], 25)
    for key, figures in stats.items():
        assert tails[figures["id"]] == any_store.metric_series(run_id, key)[-25:]
    new, cursor = any_store.metric_points_after(run_id, mark)
    assert cursor == any_store.last_point_id()
    for key in KEYS:
        expected = [(r[2], r[4]) for r in rows[1200:] if r[1] == key]
        assert [(p["step"], p["wall_time"]) for p in new.get(key, [])] == expected
    again, same = any_store.metric_points_after(run_id, cursor)
    assert again == {} and same == cursor


def test_big_and_small_batches_store_the_same_points(any_store, monkeypatch):
    """A batch above SMALL_BATCH points goes to PostgreSQL by COPY (binary points, staged
    rollups), a small one by INSERTs: the same rows written both ways read back alike,
    in write order, every value as written (NaN as NULL, infinities kept)."""
    from Utilities import metric_writes
    from Utilities.metric_rollups import SMALL_BATCH

    copied = []
    real_copy = metric_writes.postgres_copy_points
    monkeypatch.setattr(metric_writes, "postgres_copy_points",
                        lambda cursor, series, batch: (copied.append(len(series)),
                                                       real_copy(cursor, series, batch)))
    rng = random.Random(21)
    runs = [any_store.create_run(name=f"copy-{i}", model_type="ppo") for i in range(2)]
    rows = random_rows(rng, [runs[0]], 3 * SMALL_BATCH)
    rows[6] = (*rows[6][:3], 1e308, rows[6][4])
    any_store.write_batch(metrics=rows)  # one big batch
    mirrored = [(runs[1], *row[1:]) for row in rows]
    for start in range(0, len(mirrored), 40):  # the same rows, small batches
        any_store.write_batch(metrics=mirrored[start:start + 40])
    read = [any_store.metric_points_after(run, 0, limit=len(rows))[0] for run in runs]
    assert read[0] == read[1]
    for key in KEYS:
        want = [(r[2], None if math.isnan(r[3]) else r[3], r[4]) for r in rows if r[1] == key]
        got = [(p["step"], p["value"], p["wall_time"]) for p in read[0].get(key, [])]
        assert got == want
    assert_equal(any_store, [runs[0]], rows)
    postgres = any_store.engine.dialect.name == "postgresql"
    assert copied == ([len(rows)] if postgres else [])  # only the big batch, only there
    with any_store.engine.connect() as conn:
        nulls = conn.execute(text(
            "SELECT s.run_id, count(*) FROM metric_points p JOIN metric_series s "
            "ON s.id = p.series_id WHERE p.value IS NULL GROUP BY s.run_id")).all()
    assert dict(nulls) == {run: sum(math.isnan(r[3]) for r in rows) for run in runs} != {}


def test_several_big_batches_in_one_transaction_merge_their_rollups_once(any_store):
    """A migration replays old points through one writer in one transaction, chunk by
    chunk: each chunk's staged rollups are merged once (the staging table is emptied
    after each merge, not only at commit)."""
    from Utilities.metric_rollups import SMALL_BATCH
    from Utilities.metric_writes import replay

    rng = random.Random(33)
    run_id = any_store.create_run(name="replayed", model_type="ppo")
    rows = random_rows(rng, [run_id], 4 * SMALL_BATCH)
    raw = any_store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        assert replay(any_store._metric_writer(cursor), rows, chunk=SMALL_BATCH + 1) == len(rows)
        raw.commit()
    finally:
        raw.close()
    assert_equal(any_store, [run_id], rows)


def test_small_batches_summarised_in_python_give_the_numpy_figures(monkeypatch):
    """The writer summarises a batch of up to SMALL_BATCH points in plain Python (numpy's
    fixed cost per call was most of a small batch's write): same rows, same order, same
    figures (totals to rounding), on batches with NaN, infinities, ties, signed zeros,
    duplicate and out-of-order steps and steps past the top level's buckets."""
    import numpy as np

    from Utilities import metric_rollups

    rng = random.Random(5)
    for _ in range(200):
        size = rng.randint(1, metric_rollups.SMALL_BATCH)
        base = rng.choice((0, -40, 2**31))
        columns = (
            np.array([rng.choice((3, 7, 11)) for _ in range(size)], np.int64),
            np.array([base + rng.choice((rng.randint(-20, 200), 4096 * rng.randint(0, 3)))
                      for _ in range(size)], np.int64),
            np.array([rng.choice((math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0,
                                  round(rng.gauss(0, 2), 1))) for _ in range(size)]),
            np.arange(size) + 1000.0)
        small = metric_rollups.summaries(*columns)
        monkeypatch.setattr(metric_rollups, "SMALL_BATCH", 0)
        arrays = metric_rollups.summaries(*columns)
        monkeypatch.undo()
        for small_rows, array_rows in zip(small, arrays, strict=True):
            assert len(small_rows) == len(array_rows)
            for got, want in zip(small_rows, array_rows, strict=True):
                assert [type(v) for v in got] == [type(v) for v in want], (got, want)
                assert [v if v is None else pytest.approx(v, rel=1e-12, abs=1e-9)
                        for v in want] == list(got)
