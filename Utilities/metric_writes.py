"""Writing metric points with their running statistics and rollups, in one transaction.

Called by :class:`Utilities.run_store.RunStore` on a bare DB-API cursor (SQLite or
PostgreSQL) inside the transaction of a batch: the points are inserted, each series' row
in ``metric_series`` is updated and the batch's rollups are merged into
``metric_rollups`` (:mod:`Utilities.metric_rollups` does the arithmetic). Every merge is
one statement that reads the row it changes (``x = x + delta``, CASE for min/max/last),
so concurrent writers of one series never lose an update and need no locks of ours.

Statements run in a fixed order (series by id, rollups by level, series, bucket), so two
writers lock the same rows in the same order and cannot deadlock on PostgreSQL. On SQLite
(one writer at a time) each table gets as few statements as possible, many rows each:
every call into SQLite releases the GIL, and a training thread holding it makes the
writer wait to get it back (issue 13: the logger's cost per 200 ms flush).
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from Utilities.metric_rollups import (
    ROLLUP_FIELDS,
    SERIES_FIELDS,
    SMALL_BATCH,
    small_summaries,
    summaries,
)

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
        # One pass into five lists, not zip(*rows): that makes an iterator per row, and
        # in a big batch those allocations set off full collections of the cyclic GC
        # (~10 ms per 15k rows with a big backlog alive).
        runs: list[str] = []
        keys: list[str] = []
        steps: list = []
        values: list = []
        walls: list = []
        run, key, step, value, wall = (runs.append, keys.append, steps.append, values.append,
                                       walls.append)
        try:
            for row_run, row_key, row_step, row_value, row_wall in rows:
                run(row_run), key(row_key), step(row_step), value(row_value), wall(row_wall)
        except ValueError as exc:
            raise ValueError("a metric row is (run_id, key, step, value, wall_time)") from exc
        columns = {}
        for name, data, dtype in (("step", steps, np.int64), ("value", values, float),
                                  ("wall_time", walls, float)):
            try:
                columns[name] = np.array(data, dtype=dtype)
            except (TypeError, ValueError, OverflowError) as exc:
                raise type(exc)(f"metric {name}: {exc}") from exc
        return cls(runs, [k if k.__class__ is str else str(k) for k in keys],
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


def _series_sets(new: str, old: str) -> str:
    """SET clauses merging a batch's figures of a series (``new``) into its row."""
    return (_merge_sets(new, old, {"min": ("step",), "max": ("step",)})
            + f", first_step = CASE WHEN {old}first_step IS NULL OR {new}first_step < "
              f"{old}first_step THEN {new}first_step ELSE {old}first_step END"
            + "".join(f", last_{c} = CASE WHEN {old}last_step IS NULL OR {new}last_step >= "
                      f"{old}last_step THEN {new}last_{c} ELSE {old}last_{c} END"
                      for c in ("value", "wall_time", "step")))


_POINT_COLUMNS = ("series_id", "step", "value", "wall_time")
_SQL = {
    "new_series": "INSERT INTO metric_series (run_id, key, points, finite, total) "
                  "VALUES (:run_id, :key, 0, 0, 0) ON CONFLICT (run_id, key) DO NOTHING",
    "series_of_run": "SELECT id, key FROM metric_series WHERE run_id = :run_id",
    "points": f"INSERT INTO metric_points ({', '.join(_POINT_COLUMNS)}) VALUES ",
    # One series per statement, in id order (PostgreSQL locks the rows in that order).
    "series": "UPDATE metric_series SET " + _series_sets(":", "") + " WHERE id = :id",
    "rollups": f"INSERT INTO metric_rollups ({', '.join(ROLLUP_FIELDS)}) VALUES ",
    "rollups_merge": (" ON CONFLICT (series_id, level, bucket) DO UPDATE SET "
                      + _merge_sets("excluded.", "metric_rollups.",
                                    {"min": ("step", "wall_time"),
                                     "max": ("step", "wall_time")})),
}
# SQLite: every series of a batch in one statement (its write lock orders writers, so
# the order rows are updated in does not matter there).
# (Not a WITH: sqlite3 counts the rows of statements that start with UPDATE only.)
_SQLITE_SERIES = ("UPDATE metric_series SET " + _series_sets("d.", "metric_series.")
                  + " FROM (SELECT " + ", ".join(f"? AS {c}" for c in SERIES_FIELDS)
                  + "{more}) AS d WHERE metric_series.id = d.id")
# Most rows of one multi-row SQLite statement (a multiple of nothing in particular: 32
# rows or more gained little more, and a rollup row has 12 parameters).
SQLITE_ROWS_PER_STATEMENT = 64


def _values(width: int, count: int, mark: str = "?") -> str:
    """``(?, ?), (?, ?)`` for ``count`` rows of ``width`` values."""
    row = "(" + ", ".join([mark] * width) + ")"
    return ", ".join([row] * count)


@functools.cache
def _sqlite_statement(head: str, width: int, count: int, tail: str = "") -> str:
    return head + _values(width, count) + tail


@functools.cache
def _sqlite_series_statement(count: int) -> str:
    more = count - 1
    return _SQLITE_SERIES.format(
        more=" UNION ALL VALUES " + _values(len(SERIES_FIELDS), more) if more else "")


def sqlite_insert_rows(cursor: Any, head: str, rows: list[tuple], tail: str = "") -> None:
    """Rows (tuples of equal width) through multi-row SQLite statements ``head`` VALUES
    (…), (…) ``tail``: one statement per 64 rows instead of one per row, which takes
    about 40 % less CPU for a big batch, and makes a small batch one call into SQLite
    (a training thread holding the GIL makes each call the writer thread makes cost
    a wait for it)."""
    if not rows:
        return
    width, per = len(rows[0]), SQLITE_ROWS_PER_STATEMENT
    full = len(rows) - len(rows) % per
    if full:
        cursor.executemany(_sqlite_statement(head, width, per, tail),
                           [[value for row in rows[start:start + per] for value in row]
                            for start in range(0, full, per)])
    if full < len(rows):
        cursor.execute(_sqlite_statement(head, width, len(rows) - full, tail),
                       [value for row in rows[full:] for value in row])


def _pyformat(sql: str) -> str:
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)


@functools.cache
def _statements(paramstyle: str) -> dict[str, str]:
    """The statements in the driver's paramstyle (sqlite3 takes ":name" whatever its
    declared one; psycopg2 does not)."""
    native = paramstyle in ("named", "qmark")
    return {name: text if native else _pyformat(text) for name, text in _SQL.items()}


class SeriesGone(LookupError):
    """A batch names a series that was deleted (with its run) after its id was cached."""


class MetricWriter:
    """The metric half of a batch, on one DB-API cursor in an open transaction.

    ``series_ids`` caches (run_id, key) -> series id across batches (a store's
    ``_series_ids``); the caller drops entries when it deletes a run or a batch fails.
    ``executemany``: the driver's way of running an INSERT for many rows (default: the
    cursor's own; see :func:`postgres_executemany`); ``None`` on SQLite, which gets
    multi-row statements (:func:`sqlite_insert_rows`)."""

    def __init__(self, cursor: Any, paramstyle: str, series_ids: dict[tuple[str, str], int],
                 executemany: Callable[[Any, str, list], None] | None = None) -> None:
        self.cursor, self.series_ids = cursor, series_ids
        self._executemany = executemany
        self._sql = _statements(paramstyle)
        self._mark = "?" if paramstyle == "qmark" else "%s"

    def write(self, batch: MetricBatch) -> None:
        """Insert the points and merge them into their series' statistics and rollups."""
        if not len(batch):
            return
        ids = self._resolve(batch)
        series = [ids[pair] for pair in zip(batch.runs, batch.keys, strict=True)]
        step, wall = batch.step.tolist(), batch.wall.tolist()
        if len(series) <= SMALL_BATCH:  # plain Python: numpy's cost per call is not worth it
            value = batch.value.tolist()
            stats, rollup_rows = small_summaries(series, step, value, wall)
        else:
            stats, rollup_rows = summaries(np.array(series, dtype=np.int64), batch.step,
                                           batch.value, batch.wall)
        # PostgreSQL takes a big batch by COPY (a round trip or two more, so not a
        # small one: the logger's every 200 ms).
        copy = self._executemany is not None and len(series) > SMALL_BATCH
        if copy:
            postgres_copy_points(self.cursor, series, batch)
        else:
            self._insert(self._sql["points"], _point_rows(series, step, batch.value, wall))
        self._merge_series(stats)
        if copy:
            postgres_merge_rollups(self.cursor, rollup_rows)
        else:
            self._insert(self._sql["rollups"], rollup_rows, self._sql["rollups_merge"])

    def _insert(self, head: str, rows: list[tuple], tail: str = "") -> None:
        if self._executemany is None:
            sqlite_insert_rows(self.cursor, head, rows, tail)
        elif rows:
            self._executemany(self.cursor, head + "(" + ", ".join(
                [self._mark] * len(rows[0])) + ")" + tail, rows)

    def _resolve(self, batch: MetricBatch) -> dict[tuple[str, str], int]:
        """Series ids of the batch's pairs, creating the series rows that do not exist."""
        known = self.series_ids
        missing = sorted({pair for pair in zip(batch.runs, batch.keys, strict=True)
                          if pair not in known})
        if missing:
            # A write first, so SQLite's transaction takes the write lock before it reads.
            self._executemany_dicts(self._sql["new_series"],
                                    [{"run_id": run, "key": key} for run, key in missing])
            for run_id in sorted({run for run, _ in missing}):
                self.cursor.execute(self._sql["series_of_run"], {"run_id": run_id})
                known.update(((run_id, key), int(sid)) for sid, key in self.cursor.fetchall())
        return known

    def _executemany_dicts(self, sql: str, rows: list[dict]) -> None:
        if self._executemany is None:
            self.cursor.executemany(sql, rows)
        else:
            self._executemany(self.cursor, sql, rows)

    def _merge_series(self, stats: list[tuple]) -> None:
        """Each series' row must be found, or the run was deleted since its id was cached,
        and the batch must not land."""
        if self._executemany is None:  # SQLite: up to 64 series in one statement
            per = SQLITE_ROWS_PER_STATEMENT
            for part in (stats[start:start + per] for start in range(0, len(stats), per)):
                self.cursor.execute(_sqlite_series_statement(len(part)),
                                    [value for row in part for value in row])
                if self.cursor.rowcount != len(part):
                    raise SeriesGone(f"a metric series of {[row[0] for row in part]} no "
                                     "longer exists")
            return
        sql = self._sql["series"]
        for row in stats:  # a batch touches a few series
            self.cursor.execute(sql, dict(zip(SERIES_FIELDS, row, strict=True)))
            if self.cursor.rowcount != 1:
                raise SeriesGone(f"metric series {row[0]} no longer exists")


def _point_rows(series: list[int], step: list[int], value: np.ndarray,
                wall: list[float]) -> list[tuple]:
    """Point rows as the INSERT takes them; NULL stands for NaN."""
    if len(value) <= SMALL_BATCH:
        stored = [v if v == v else None for v in value.tolist()]
    else:
        values = value.astype(object)
        values[np.isnan(value)] = None
        stored = values.tolist()
    return list(zip(series, step, stored, wall, strict=True))


# PostgreSQL's binary COPY: a header, then per row its field count and each field as
# (length, big-endian bytes) — length -1 and no bytes for NULL — then a -1 trailer.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no extension
_COPY_TRAILER = b"\xff\xff"
_COPY_POINTS = ("COPY metric_points (series_id, step, value, wall_time) "
                "FROM STDIN (FORMAT binary)")
_POINT_RECORD = np.dtype([("fields", ">i2"), ("series_len", ">i4"), ("series_id", ">i8"),
                          ("step_len", ">i4"), ("step", ">i8"), ("value_len", ">i4"),
                          ("value", ">f8"), ("wall_len", ">i4"), ("wall_time", ">f8")])


def copy_points_payload(series: list[int], batch: MetricBatch) -> bytes:
    """The batch's points as one binary COPY stream, built by numpy in a few passes.

    issue 17: psycopg2's multi-row INSERT spent ~14 µs a point (the statement built
    row by row in Python, then parsed by the server), most of a batch's write; binary
    COPY sends the same rows, in the same order (ids are drawn in it), as raw bytes."""
    record = np.empty(len(series), _POINT_RECORD)
    record["fields"] = 4
    for name in ("series_len", "step_len", "value_len", "wall_len"):
        record[name] = 8
    record["series_id"], record["step"] = series, batch.step
    record["value"], record["wall_time"] = batch.value, batch.wall
    missing = np.isnan(batch.value)  # NULL stands for NaN, as on every engine
    if not missing.any():
        return _COPY_HEADER + record.tobytes() + _COPY_TRAILER
    record["value_len"][missing] = -1
    keep = np.ones((len(series), _POINT_RECORD.itemsize), dtype=bool)
    start = _POINT_RECORD.fields["value"][1]
    keep[missing, start:start + 8] = False  # a NULL field has no bytes
    rows = record.view(np.uint8).reshape(len(series), -1)[keep]
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


def postgres_copy_points(cursor: Any, series: list[int], batch: MetricBatch) -> None:
    """Insert the batch's points with psycopg2's ``copy_expert`` (binary COPY)."""
    cursor.copy_expert(_COPY_POINTS, io.BytesIO(copy_points_payload(series, batch)))


# The rollups of a big batch are staged in a temporary table (one per connection) by
# COPY and merged from there by one INSERT … SELECT in the INSERTs' row order (level,
# series, bucket): 29 ms a 500-episode batch by multi-row INSERTs, 10 ms this way. The
# table is emptied after each merge (a transaction may write several batches: a
# migration's replay) and at commit. IF NOT EXISTS on every batch: a rolled-back batch
# may have taken the table with it (its "already exists" notice is kept by psycopg2
# among the connection's last 50).
_STAGE_ROLLUPS = ("CREATE TEMPORARY TABLE IF NOT EXISTS rollup_stage "
                  "(LIKE metric_rollups) ON COMMIT DELETE ROWS")
_COPY_ROLLUPS = f"COPY rollup_stage ({', '.join(ROLLUP_FIELDS)}) FROM STDIN"
_MERGE_ROLLUPS = (f"INSERT INTO metric_rollups ({', '.join(ROLLUP_FIELDS)}) "
                  f"SELECT {', '.join(ROLLUP_FIELDS)} FROM rollup_stage "
                  "ORDER BY level, series_id, bucket" + _SQL["rollups_merge"])


def _copy_text(value: Any) -> str:
    """One field of COPY's text format: numbers only (a float's repr round-trips, and
    the server reads inf and nan too), NULL as \\N."""
    if value is None:
        return "\\N"
    return float.__repr__(value) if isinstance(value, float) else str(int(value))


def postgres_merge_rollups(cursor: Any, rows: list[tuple]) -> None:
    """Merge rollup rows (:data:`ROLLUP_FIELDS`) through the staging table."""
    if not rows:
        return
    cursor.execute(_STAGE_ROLLUPS)
    text = "".join("\t".join(map(_copy_text, row)) + "\n" for row in rows)
    cursor.copy_expert(_COPY_ROLLUPS, io.StringIO(text))
    cursor.execute(_MERGE_ROLLUPS)
    cursor.execute("DELETE FROM rollup_stage")


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
