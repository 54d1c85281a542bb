"""Run-store schema: the ORM tables, the values their columns hold, and how values are stored.

Kept apart from :mod:`Utilities.run_store` (which re-exports the public names here) so the
store's logic reads without the table definitions. The conventions make SQLite and
PostgreSQL store and return the same data:

* datetimes are naive UTC ``DateTime`` values: SQLite drops tz info, so every write is
  normalised to UTC and every read appends "Z";
* a NaN metric value is NULL: SQLite silently stores NaN as NULL;
* JSON columns hold ``to_plain`` data: PostgreSQL's JSON rejects NaN and inf, and
  neither engine serialises numpy values.
"""

from __future__ import annotations

import logging
import math
import random
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from Utilities.serialization import to_plain

logger = logging.getLogger(__name__)

# "starting": recorded by a launcher (the dashboard) before its training process
# starts; the process takes it over (RunStore.adopt_run) and it turns "running".
RUN_STATUSES = ("starting", "running", "paused", "completed", "stopped", "failed")
TERMINAL_STATUSES = frozenset({"completed", "stopped", "failed"})
# "delivery": an alert's outcome on one channel (Utilities/alert_system.py).
# "graph": an outside trainer's performance-graph update (the metrics server, issue 17).
EVENT_KINDS = ("episode", "trade", "decision", "checkpoint", "alert", "status", "log",
               "importance", "account", "delivery", "graph")
CONTROL_ACTIONS = ("pause", "resume", "stop")
ALERT_LEVELS = ("info", "warning", "critical")
# Before issue 13 every point was a row of this table (run_id, key, step, value,
# wall_time); RunStore migrates such a table into the series tables when it opens one.
LEGACY_METRICS_TABLE = "metrics"

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY; PG gets BIGSERIAL.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class Base(DeclarativeBase):
    """Declarative base whose metadata holds the run-store schema."""


class Run(Base):
    """One training run."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String, index=True)
    model_type: Mapped[str] = mapped_column(sa.String, index=True)
    algorithm: Mapped[str] = mapped_column(sa.String, default="")
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    description: Mapped[str] = mapped_column(sa.String, default="")
    # Issue 15's curation columns. server_default: RunStore adds them to a store created
    # before them (ALTER TABLE ... ADD COLUMN needs a default for a NOT NULL column).
    experiment: Mapped[str] = mapped_column(sa.String, default="", server_default="",
                                            index=True)
    notes: Mapped[str] = mapped_column(sa.String, default="", server_default="")
    # Archived runs are hidden from lists unless asked for; NULL: not archived.
    archived_at: Mapped[datetime | None] = mapped_column(sa.DateTime, index=True)
    data_file: Mapped[str] = mapped_column(sa.String, default="")
    model_dir: Mapped[str] = mapped_column(sa.String, default="")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, index=True)
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    control: Mapped[str | None] = mapped_column(sa.String(16))
    error: Mapped[str | None] = mapped_column(sa.String)
    summary: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    tags: Mapped[list[RunTag]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class RunTag(Base):
    """A tag on a run; a table of its own so tag filtering is a plain join."""

    __tablename__ = "run_tags"
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    tag: Mapped[str] = mapped_column(sa.String, primary_key=True, index=True)


class MetricSeries(Base):
    """One run's metric key and the running statistics of its points.

    The writer keeps these in the same transaction as the points
    (:mod:`Utilities.metric_writes`), so a run's figures (count, sum, best, last) are one
    row read, whatever the series' length. NULL ``min_*``/``max_*``: no finite value yet.
    """

    __tablename__ = "metric_series"
    __table_args__ = (sa.UniqueConstraint("run_id", "key", name="uq_metric_series_run_key"),)
    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String)
    points: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    finite: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    total: Mapped[float] = mapped_column(sa.Float, default=0.0)
    min_value: Mapped[float | None] = mapped_column(sa.Float)
    min_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    max_value: Mapped[float | None] = mapped_column(sa.Float)
    max_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    first_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_value: Mapped[float | None] = mapped_column(sa.Float)
    last_wall_time: Mapped[float | None] = mapped_column(sa.Float)


class MetricPoint(Base):
    """One (series, step, value, wall_time) sample; ``id`` orders writes."""

    __tablename__ = "metric_points"
    __table_args__ = (sa.Index("ix_metric_points_series_step", "series_id", "step"),)
    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    # No foreign key: its check was half of PostgreSQL's cost per point. The writer
    # proves the series exists by updating its row in the same transaction, and
    # RunStore.delete_run deletes a run's points and rollups itself.
    series_id: Mapped[int] = mapped_column(sa.BigInteger)
    step: Mapped[int] = mapped_column(sa.BigInteger)
    # NULL stands for NaN: SQLite silently stores NaN as NULL, so every engine does that.
    value: Mapped[float | None] = mapped_column(sa.Float)
    wall_time: Mapped[float] = mapped_column(sa.Float)


class MetricRollup(Base):
    """Min/max/sum of one series' points whose step falls in one bucket of one level.

    Level L's buckets are ``step >> (ROLLUP_SHIFT * L)`` (:mod:`Utilities.metric_rollups`):
    a pyramid, so a chart of any range reads a few hundred rows, never the points."""

    __tablename__ = "metric_rollups"
    __table_args__ = ({"sqlite_with_rowid": False},)
    series_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)  # as points'
    level: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    bucket: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    points: Mapped[int] = mapped_column(sa.BigInteger)
    finite: Mapped[int] = mapped_column(sa.BigInteger)
    total: Mapped[float] = mapped_column(sa.Float)
    min_value: Mapped[float | None] = mapped_column(sa.Float)
    min_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    min_wall_time: Mapped[float | None] = mapped_column(sa.Float)
    max_value: Mapped[float | None] = mapped_column(sa.Float)
    max_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    max_wall_time: Mapped[float | None] = mapped_column(sa.Float)


class Event(Base):
    """One event; ``seq`` is the global, monotonically increasing sequence number.

    Rows become visible in ``seq`` order on every engine, so "everything after seq N"
    never skips one: on PostgreSQL appenders take the store's append lock
    (run_store.py, ``_APPEND_LOCK_KEY``), because sequence values are drawn at the
    insert but visible only at the commit. The same holds for ``metric_points.id``.
    """

    __tablename__ = "events"
    # Without AUTOINCREMENT SQLite may reuse the seq of deleted rows and break "after N".
    __table_args__ = ({"sqlite_autoincrement": True},)
    seq: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"),
                                        index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    wall_time: Mapped[float] = mapped_column(sa.Float)


class AlertRecord(Base):
    """One alert (Utilities/alert_system.py), for the alerts page: newest first,
    filtered, acknowledged, with its delivery outcomes. A run's alert is also an
    ``alert`` event of the run (its history and live stream); ``seq`` names it."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    # No foreign key: a script's alert has no run. RunStore.delete_run deletes a run's.
    run_id: Mapped[str | None] = mapped_column(sa.String(36), index=True)
    seq: Mapped[int | None] = mapped_column(sa.BigInteger)
    level: Mapped[str] = mapped_column(sa.String(16), index=True)
    rule: Mapped[str] = mapped_column(sa.String(64), index=True)
    title: Mapped[str] = mapped_column(sa.String)
    message: Mapped[str] = mapped_column(sa.String, default="")
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, index=True)
    acked_at: Mapped[datetime | None] = mapped_column(sa.DateTime, index=True)
    deliveries: Mapped[list[Any]] = mapped_column(sa.JSON, default=list)


class IngestBatch(Base):
    """A batch id an outside trainer sent with a batch (web/sessions_api.py), written in
    the batch's own transaction: a retried batch finds its id and is written once."""

    __tablename__ = "ingest_batches"
    # No foreign key: RunStore.delete_run deletes a run's batch ids itself.
    run_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    batch_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, index=True)


class ApiToken(Base):
    """An API token (web/auth_store.py): only its sha256 is kept, never the token."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    token_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    # The one run (an outside trainer's session) the token may reach; NULL: every route.
    scope: Mapped[str | None] = mapped_column(sa.String(36), index=True)


class User(Base):
    """A dashboard login (web/auth_store.py): the password as a salted scrypt hash."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime)


metadata = Base.metadata
# A concurrent opener can win the CREATE race for each table at most once, and every
# lost race leaves one more table for the next (checkfirst) attempt to skip.
# SQLite can also refuse at once with "database is locked": two openers holding the
# schema read lock both try to write, and SQLite fails one rather than deadlock (its
# busy timeout does not apply then). That loser creates nothing, so allow more tries.
_CREATE_ATTEMPTS = 4 * (len(metadata.tables) + 1)
# PostgreSQL SQLSTATEs of a lost CREATE race: duplicate_table, duplicate_object, and
# unique_violation on the pg_type catalogue when both transactions create one table,
# and duplicate_column when both add a missing column (add_missing_columns).
_DUPLICATE_STATES = frozenset({"42P07", "42710", "23505", "42701"})


def _lost_creation_race(exc: DBAPIError) -> bool:
    """Whether create_all failed because a concurrent opener created an object first."""
    state = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
    message = str(exc.orig)
    return (state in _DUPLICATE_STATES or "already exists" in message
            or "database is locked" in message or "duplicate column" in message)


def create_schema(engine: sa.Engine) -> None:
    """create_all, tolerating processes that create the same tables at the same moment,
    then add the columns an older store's tables lack."""
    for attempt in range(1, _CREATE_ATTEMPTS + 1):
        try:
            metadata.create_all(engine)  # checkfirst: skips what a winner already created
            add_missing_columns(engine)
            return
        except DBAPIError as exc:
            if attempt == _CREATE_ATTEMPTS or not _lost_creation_race(exc):
                raise
            logger.debug("concurrent schema creation (attempt %d): %s", attempt, exc.orig)
            time.sleep(random.uniform(0, 0.01 * attempt))  # back off so openers interleave


def add_missing_columns(engine: sa.Engine) -> None:
    """ALTER TABLE ... ADD COLUMN for every model column an existing table lacks.

    Only additive changes are migrated this way (a new column with a default or NULL),
    which is all the schema has needed; a concurrent opener that adds the column first
    makes this one's ALTER fail with "duplicate column", which create_schema's retry
    treats as a lost race (the next attempt finds the column)."""
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column for column in table.columns if column.name not in present]
        if not missing:
            continue
        with engine.begin() as connection:
            for column in missing:
                spec = sa.schema.CreateColumn(column).compile(dialect=engine.dialect)
                connection.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {spec}")
                logger.info("added column %s.%s to an older store", table.name, column.name)
            for index in table.indexes:
                if any(column in missing for column in index.columns):
                    index.create(connection, checkfirst=True)


def utcnow() -> datetime:
    """Current time as naive UTC, the storage convention."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso_z(value: datetime | None) -> str | None:
    """Stored naive-UTC datetime as ISO-8601 with a trailing Z."""
    return None if value is None else value.isoformat(timespec="microseconds") + "Z"


def finite_or_none(value: float | None) -> float | None:
    """NaN (and None) as None, anything else as float."""
    return None if value is None or math.isnan(value) else float(value)


def json_value(label: str, value: object) -> dict[str, Any]:
    """A JSON column's value: None as {}, a dict through to_plain, anything else refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{label} must be a dict, got {type(value).__name__}")
    return to_plain(value)  # never raises: odd values become strings, NaN/inf None


def run_as_dict(run: Run) -> dict[str, Any]:
    """JSON-serialisable view of a run."""
    return {
        "run_id": run.id, "name": run.name, "model_type": run.model_type,
        "algorithm": run.algorithm, "status": run.status, "config": dict(run.config or {}),
        "tags": sorted(t.tag for t in run.tags), "description": run.description,
        "experiment": run.experiment or "", "notes": run.notes or "",
        "archived": run.archived_at is not None, "archived_at": iso_z(run.archived_at),
        "data_file": run.data_file, "model_dir": run.model_dir,
        "created_at": iso_z(run.created_at), "started_at": iso_z(run.started_at),
        "ended_at": iso_z(run.ended_at), "heartbeat_at": iso_z(run.heartbeat_at),
        "control": run.control, "error": run.error, "summary": dict(run.summary or {}),
    }
