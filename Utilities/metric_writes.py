"""Writing metric points with their running statistics and rollups, in one transaction.

Called by :class:`Utilities.run_store.RunStore` on a bare DB-API cursor (SQLite or
PostgreSQL) inside the transaction of a batch: the points are inserted, each series' row
in ``metric_series`` is updated and the batch's rollups are merged into
``metric_rollups`` (:mod:`Utilities.metric_rollups` does the arithmetic). Every merge is
one statement that reads the row it changes (``x = x + delta``, CASE for min/max/last),
so concurrent writers of one series never lose an update and need no locks of ours.

Statements run in a fixed order (series by id, rollups by level, series, bucket), so two
writers lock the same rows in the same order and cannot deadlock on PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from Utilities.metric_rollups import finite_or_none, rollups, series_delta, where_finite

# A metric row as callers give it: (run_id, key, step, value, wall_time).
MetricRow = tuple[str, str, int, float | None, float]


@dataclass(frozen=True)
class MetricBatch:
    """Metric rows as validated columns (one element per point, in write order)."""

    runs: list[str]
    keys: list[str]
    step: np.ndarray   # int64
    value: np.ndarray  # float64; nan for a missing (NaN or None) value
    wall: np.ndarray   # float64

    @classmethod
    def of(cls, rows: Iterable[MetricRow] | MetricBatch) -> MetricBatch:
        """Columns of the rows; ValueError/TypeError/OverflowError naming a bad column."""
        if isinstance(rows, MetricBatch):  # columns already (MetricsLogger builds them)
            return rows
        rows = list(rows)
        if not rows:
            empty = np.zeros(0)
            return cls([], [], empty.astype(np.int64), empty, empty)
        try:
            runs, keys, steps, values, walls = zip(*rows, strict=True)
        except ValueError as exc:
            raise ValueError("a metric row is (run_id, key, step, value, wall_time)") from exc
        columns = {}
        for name, data, dtype in (("step", steps, np.int64), ("value", values, float),
                                  ("wall_time", walls, float)):
            try:
                columns[name] = np.array(data, dtype=dtype)
            except (TypeError, ValueError, OverflowError) as exc:
                raise type(exc)(f"metric {name}: {exc}") from exc
        return cls(list(runs), [k if k.__class__ is str else str(k) for k in keys],
                   columns["step"], columns["value"], columns["wall_time"])

    def __len__(self) -> int:
        return len(self.runs)


def _wins(new: str, old: str, kind: str) -> str:
    """SQL condition: the candidate extreme ``new`` replaces the stored ``old``.

    The lower (``min``) or higher (``max``) finite value wins; at equal values the lower
    step; a NULL candidate (no finite value in the batch) never wins."""
    better = "<" if kind == "min" else ">"
    return (f"{new}_value IS NOT NULL AND ({old}_value IS NULL OR {new}_value {better} "
            f"{old}_value OR ({new}_value = {old}_value AND {new}_step < {old}_step))")


def _merge_sets(new: str, old: str, columns: dict[str, tuple[str, ...]]) -> str:
    """SET clauses merging candidate ``new`` into stored ``old`` for the given columns."""
    sets = [f"{c} = {old}{c} + {new}{c}" for c in ("points", "finite", "total")]
    for kind, extras in columns.items():
        condition = _wins(f"{new}{kind}", f"{old}{kind}", kind)
        sets += [f"{kind}_{c} = CASE WHEN {condition} THEN {new}{kind}_{c} "
                 f"ELSE {old}{kind}_{c} END" for c in ("value", *extras)]
    return ", ".join(sets)


_ROLLUP_COLUMNS = ("series_id", "level", "bucket", "points", "finite", "total", "min_value",
                   "min_step", "min_wall_time", "max_value", "max_step", "max_wall_time")
_SQL = {
    "new_series": "INSERT INTO metric_series (run_id, key, points, finite, total) "
                  "VALUES (:run_id, :key, 0, 0, 0) ON CONFLICT (run_id, key) DO NOTHING",
    "series_of_run": "SELECT id, key FROM metric_series WHERE run_id = :run_id",
    "points": "INSERT INTO metric_points (series_id, step, value, wall_time) "
              "VALUES (:series_id, :step, :value, :wall_time)",
    "series": (
        "UPDATE metric_series SET "
        + _merge_sets(":", "", {"min": ("step",), "max": ("step",)})
        + ", first_step = CASE WHEN first_step IS NULL OR :first_step < first_step "
          "THEN :first_step ELSE first_step END"
        + "".join(f", last_{c} = CASE WHEN last_step IS NULL OR :last_step >= last_step "
                  f"THEN :last_{c} ELSE last_{c} END" for c in ("value", "wall_time", "step"))
        + " WHERE id = :id"),
    "rollups": (
        f"INSERT INTO metric_rollups ({', '.join(_ROLLUP_COLUMNS)}) "
        f"VALUES ({', '.join(':' + c for c in _ROLLUP_COLUMNS)}) "
        "ON CONFLICT (series_id, level, bucket) DO UPDATE SET "
        + _merge_sets("excluded.", "metric_rollups.",
                      {"min": ("step", "wall_time"), "max": ("step", "wall_time")})),
}


def _positional(sql: str, mark: str) -> str:
    """A ``:name`` statement in a positional paramstyle (``?`` or ``%s``), for tuples."""
    return re.sub(r"(?<![:\w]):(\w+)", mark, sql)


def _pyformat(sql: str) -> str:
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)


class SeriesGone(LookupError):
    """A batch names a series that was deleted (with its run) after its id was cached."""


class MetricWriter:
    """The metric half of a batch, on one DB-API cursor in an open transaction.

    ``series_ids`` caches (run_id, key) -> series id across batches (a store's
    ``_series_ids``); the caller drops entries when it deletes a run or a batch fails."""

    def __init__(self, cursor: Any, paramstyle: str, series_ids: dict[tuple[str, str], int],
                 executemany: Callable[[Any, str, list], None] | None = None) -> None:
        self.cursor, self.series_ids = cursor, series_ids
        self._executemany = executemany or (lambda cur, sql, rows: cur.executemany(sql, rows))
        # sqlite3 takes ":name" parameters whatever its declared paramstyle; psycopg2 does not.
        native = paramstyle in ("named", "qmark")
        self._sql = {name: sql if native else _pyformat(sql) for name, sql in _SQL.items()}
        self._points_sql = _positional(_SQL["points"], "?" if paramstyle == "qmark" else "%s")

    def write(self, batch: MetricBatch) -> None:
        """Insert the points and merge them into their series' statistics and rollups."""
        if not len(batch):
            return
        pairs = list(zip(batch.runs, batch.keys, strict=True))
        ids = self._resolve(set(pairs))
        series = np.array([ids[pair] for pair in pairs], dtype=np.int64)
        stored = batch.value.astype(object)
        stored[np.isnan(batch.value)] = None  # NULL stands for NaN on every engine
        self._executemany(self.cursor, self._points_sql, list(zip(
            series.tolist(), batch.step.tolist(), stored.tolist(), batch.wall.tolist(),
            strict=True)))
        self._merge_series(series, batch.step, batch.value, batch.wall)
        self._merge_rollups(series, batch.step, batch.value, batch.wall)

    def _resolve(self, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Series ids of the pairs, creating the series rows that do not exist yet."""
        missing = sorted(pair for pair in pairs if pair not in self.series_ids)
        if missing:
            # A write first, so SQLite's transaction takes the write lock before it reads.
            self._executemany(self.cursor, self._sql["new_series"],
                              [{"run_id": run, "key": key} for run, key in missing])
            for run_id in sorted({run for run, _ in missing}):
                self.cursor.execute(self._sql["series_of_run"], {"run_id": run_id})
                self.series_ids.update(((run_id, key), int(sid))
                                       for sid, key in self.cursor.fetchall())
        return self.series_ids

    def _merge_series(self, series: np.ndarray, step: np.ndarray, value: np.ndarray,
                      wall: np.ndarray) -> None:
        delta = series_delta(series, step, value, wall)
        g = delta.groups
        columns = {"id": g.series.tolist(), "points": g.points.tolist(),
                   "finite": g.finite.tolist(), "total": g.total.tolist(),
                   "min_value": finite_or_none(g.min_value),
                   "min_step": where_finite(g.min_step, g.min_value),
                   "max_value": finite_or_none(g.max_value),
                   "max_step": where_finite(g.max_step, g.max_value),
                   "first_step": delta.first_step.tolist(), "last_step": delta.last_step.tolist(),
                   "last_value": finite_or_none(delta.last_value),
                   "last_wall_time": delta.last_wall.tolist()}
        # One statement per series (a batch touches a few): each must find its row, or
        # the run was deleted since its id was cached, and the batch must not land.
        for record in _records(columns):
            self.cursor.execute(self._sql["series"], record)
            if self.cursor.rowcount != 1:
                raise SeriesGone(f"metric series {record['id']} no longer exists")

    def _merge_rollups(self, series: np.ndarray, step: np.ndarray, value: np.ndarray,
                       wall: np.ndarray) -> None:
        records: list[dict[str, Any]] = []
        for level, g in enumerate(rollups(series, step, value, wall), start=1):
            records += _records({
                "series_id": g.series.tolist(), "level": [level] * len(g),
                "bucket": g.bucket.tolist(), "points": g.points.tolist(),
                "finite": g.finite.tolist(), "total": g.total.tolist(),
                "min_value": finite_or_none(g.min_value),
                "min_step": where_finite(g.min_step, g.min_value),
                "min_wall_time": where_finite(g.min_wall, g.min_value),
                "max_value": finite_or_none(g.max_value),
                "max_step": where_finite(g.max_step, g.max_value),
                "max_wall_time": where_finite(g.max_wall, g.max_value)})
        self._executemany(self.cursor, self._sql["rollups"], records)


_VALUES = re.compile(r"^(INSERT .*? VALUES )(\(.*?\))( ON CONFLICT .*)?$", re.DOTALL)


def postgres_executemany(cursor: Any, sql: str, rows: list) -> None:
    """executemany for psycopg2, whose own runs one statement per row: an INSERT becomes
    multi-row INSERTs (execute_values, ON CONFLICT kept), anything else is sent in pages
    of statements (execute_batch)."""
    from psycopg2.extras import execute_batch, execute_values

    match = _VALUES.match(sql)
    if match is None:
        execute_batch(cursor, sql, rows, page_size=1000)
        return
    head, template, tail = match.groups()
    execute_values(cursor, f"{head}%s{tail or ''}", rows, template=template, page_size=5000)


def _records(columns: dict[str, list]) -> list[dict[str, Any]]:
    """Column lists as one dict per row."""
    names = list(columns)
    return [dict(zip(names, values, strict=True))
            for values in zip(*columns.values(), strict=True)]


def replay(writer: MetricWriter, rows: Iterable[MetricRow], chunk: int = 50_000) -> int:
    """Write rows in chunks (a migration or a rebuild); return how many."""
    written, pending = 0, []
    for row in rows:
        pending.append(row)
        if len(pending) == chunk:
            writer.write(MetricBatch.of(pending))
            written, pending = written + len(pending), []
    writer.write(MetricBatch.of(pending))
    return written + len(pending)
