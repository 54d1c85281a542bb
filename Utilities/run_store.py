"""Run store: training runs, metric series and events in SQLite (default) or PostgreSQL.

Tables and the storage conventions both engines share (naive-UTC datetimes, NaN as NULL,
plain JSON) live in :mod:`Utilities.run_store_schema`; its names are re-exported here.

Liveness: a trainer heartbeats its run every ``RUN_HEARTBEAT_SECONDS`` (5 s). A running
or paused run whose last heartbeat is older than ``RUN_LOST_AFTER_SECONDS`` (30 s) has
lost its trainer (killed, crashed, its machine gone): the store marks it ``failed`` with
the error "lost: no heartbeat since …" when it reads it, sweeps or claims. The mark is
written back (not computed per read), so status filters, counts, controls and every
server process agree; it is one conditional UPDATE that re-checks staleness, so
concurrent readers mark a run once and a heartbeat that lands first wins. Clocks of
trainers and readers must agree to well within the threshold.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.orm import Session

from Utilities import metric_reads, run_list_reads, run_notices
from Utilities.downsample import MIN_POINTS
from Utilities.metric_writes import (
    MetricBatch,
    MetricWriter,
    SeriesGone,
    postgres_executemany,
    replay,
    sqlite_insert_rows,
)
from Utilities.run_store_schema import (
    ALERT_LEVELS,
    CONTROL_ACTIONS,
    EVENT_KINDS,
    LEGACY_METRICS_TABLE,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    AlertRecord,
    Base,
    Event,
    IngestBatch,
    MetricPoint,
    MetricRollup,
    MetricSeries,
    Run,
    RunTag,
    create_schema,
    iso_z,
    json_value,
    metadata,
    run_as_dict,
    utcnow,
)

# The schema names are re-exported: callers import everything from this module.
__all__ = [
    "ACTIVE_STATUSES", "CONTROL_ACTIONS", "DEFAULT_HEARTBEAT_SECONDS",
    "DEFAULT_LOST_AFTER_SECONDS", "EVENT_KINDS", "LOST_PREFIX", "MAX_EVENTS_PAGE",
    "MAX_PAGE_SIZE", "MIN_POINTS", "RUN_STATUSES", "SORT_FIELDS", "TERMINAL_STATUSES",
    "TRANSITIONS", "Base", "EncodedPayload", "Event", "InvalidTransition", "MetricPoint",
    "MetricRollup", "MetricSeries", "Run", "RunBusy",
    "RunNotFound", "RunReads", "RunStore", "RunStoreError", "RunTag", "StoreUnavailable",
    "default_database_url", "heartbeat_seconds", "lost_after_seconds", "metadata",
]

logger = logging.getLogger(__name__)

SORT_FIELDS = ("created_at", "started_at", "ended_at", "name", "status", "model_type",
               "experiment")
MAX_PAGE_SIZE = 1000
MAX_EVENTS_PAGE = 100_000
TRANSITIONS: dict[str, frozenset[str]] = {
    "starting": frozenset({"running", "stopped", "failed"}),
    "running": frozenset({"paused", "completed", "stopped", "failed"}),
    "paused": frozenset({"running", "stopped", "failed"}),
    **{status: frozenset() for status in TERMINAL_STATUSES},
}
_SOURCES = {new: sorted(old for old in TRANSITIONS if new in TRANSITIONS[old])
            for new in RUN_STATUSES}
ACTIVE_STATUSES = tuple(s for s in RUN_STATUSES if s not in TERMINAL_STATUSES)
DEFAULT_HEARTBEAT_SECONDS = 5.0
# Six missed heartbeats: long enough for a store hiccup or a slow start-up, short
# enough that a killed run reads as lost within half a minute.
DEFAULT_LOST_AFTER_SECONDS = 30.0
LOST_PREFIX = "lost: "  # how the error of a run marked lost begins
# Claims of every process take this PostgreSQL advisory lock (any fixed 64-bit key).
_CLAIM_LOCK_KEY = 0x6A1A7_C1A1
# Every transaction that appends events or metric points takes this one just before
# its first such insert: PostgreSQL hands out sequence values at the insert, not at the
# commit, so two concurrent writers could otherwise commit seq 8 after a reader saw
# seq 9 and moved its cursor past 8 for ever. Serialised appends commit in seq order
# (a commit is visible before its locks are released), so "after N" never skips a row.
# Deadlock-free because a holder never waits for a lock another appender may hold
# first: appenders update their runs rows (status, heartbeat) *before* taking it.
# SQLite needs nothing: its one write lock already serialises writers.
_APPEND_LOCK_KEY = _CLAIM_LOCK_KEY + 1
_APPEND_LOCK_SQL = f"SELECT pg_advisory_xact_lock({_APPEND_LOCK_KEY})"
_REPO_ROOT = Path(__file__).resolve().parent.parent
_INT64 = (-(2**63), 2**63 - 1)  # BigInteger's range; larger Python ints overflow the driver
# SQLAlchemy 2.1 would load psycopg (3) for a driver-less URL and no longer knows
# "postgres://"; requirements.txt pins psycopg2.
_DEFAULT_PG_DRIVER = "postgresql+psycopg2"
P = ParamSpec("P")
R = TypeVar("R")


class RunStoreError(Exception):
    """Base class of run-store errors."""


class StoreUnavailable(RunStoreError):
    """The database cannot be reached or opened."""


class RunNotFound(RunStoreError, KeyError):
    """No run has the given id."""

    def __str__(self) -> str:
        return BaseException.__str__(self)  # KeyError would wrap the message in quotes


class InvalidTransition(RunStoreError, ValueError):
    """The requested status change or control action is not allowed."""


class RunBusy(RunStoreError):
    """A claim refused: the same model is training (``reason`` "duplicate", ``run`` the
    live run) or ``limit`` live runs already exist (``reason`` "limit"); or an archive or
    delete refused because the run is live (``reason`` "active")."""

    def __init__(self, message: str, reason: str, *, run: dict | None = None,
                 limit: int | None = None) -> None:
        super().__init__(message)
        self.reason, self.run, self.limit = reason, run, limit


_RUNS, _TAGS, _EVENTS, _ALERTS, _BATCHES = (m.__table__ for m in (Run, RunTag, Event,
                                                                    AlertRecord, IngestBatch))
_SERIES, _POINTS, _ROLLUPS = (m.__table__ for m in (MetricSeries, MetricPoint, MetricRollup))


def default_database_url() -> str:
    """DATABASE_URL env var if set, else sqlite:///<repo>/instance/runs.db."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{_REPO_ROOT / 'instance' / 'runs.db'}"


def _seconds_setting(name: str, default: float) -> float:
    """A positive number of seconds from environment variable ``name``, else default."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return _positive_seconds(name, float(raw))
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds > 0; got {raw!r}") from None


def _positive_seconds(label: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{label} must be a number of seconds > 0; got {value!r}")
    return float(value)


def heartbeat_seconds() -> float:
    """How often a trainer heartbeats its run: RUN_HEARTBEAT_SECONDS, default 5."""
    return _seconds_setting("RUN_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS)


def lost_after_seconds() -> float:
    """Heartbeat age after which a live run counts as lost: RUN_LOST_AFTER_SECONDS,
    default 30 (keep it several times the heartbeat interval)."""
    return _seconds_setting("RUN_LOST_AFTER_SECONDS", DEFAULT_LOST_AFTER_SECONDS)


def _engine_url(url: str) -> sa.URL:
    """Parsed url, with psycopg2 as the driver of a driver-less PostgreSQL URL."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername=_DEFAULT_PG_DRIVER)
    return parsed


def _masked(url: str) -> str:
    """url with its password as ***, also when SQLAlchemy cannot parse it."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", str(url))


def _check(label: str, values: Iterable[object], allowed: Iterable[str]) -> None:
    """Raise ValueError unless every value is one of allowed."""
    for value in values:
        if value not in allowed:
            raise ValueError(f"unknown {label} {value!r}; expected one of: {', '.join(allowed)}")


def _int_arg(label: str, value: object, low: int = _INT64[0], high: int = _INT64[1]) -> int:
    """value as an int in low..high, else ValueError naming label (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{label} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{label} must be >= {low}, got {value}")
    if value > high:
        raise ValueError(f"{label} must be <= {high}, got {value}")
    return int(value)


def _str_arg(label: str, value: object, *, required: bool = False) -> str:
    """value if it is a string (non-empty when required), else ValueError naming label.

    No control character can be meant in stored text (PostgreSQL refuses NUL outright):
    they are refused, except tab and line breaks in free text; a required value is a
    name (agent, model type), which has none at all."""
    if not isinstance(value, str) or (required and not value):
        kind = "a non-empty string" if required else "a string"
        raise ValueError(f"{label} must be {kind}, got {value!r}")
    allowed = "" if required else "\t\n\r"
    bad = next((c for c in value if (c < " " or "\x7f" <= c <= "\x9f") and c not in allowed),
               None)
    if bad is not None:
        raise ValueError(f"{label} must not contain the control character {bad!r}, got "
                         f"{value!r}")
    return value


def _uuid_arg(run_id: object) -> str:
    if run_id is None:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(str(run_id)))
    except ValueError:
        raise RunStoreError(f"run_id must be a UUID; got {run_id!r}") from None


def _tag_list(tags: object) -> list[str]:
    """Sorted distinct tags; None means none."""
    if tags is None:
        return []
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
        raise ValueError(f"tags must be a list or tuple of strings, got {tags!r}")
    return sorted({_str_arg("a tag", tag, required=True) for tag in tags})


def _new_run_row(*, name: str, model_type: str, algorithm: str = "",
                 config: dict | None = None, tags: list[str] | tuple[str, ...] | None = (),
                 description: str = "", data_file: str = "", model_dir: str = "",
                 experiment: str = "", run_id: str | None = None,
                 status: str = "running") -> Run:
    """A validated, unsaved Run, running or starting (every timestamp now)."""
    _check("status", [status], ("starting", "running"))
    fields = {label: _str_arg(label, value, required=label in ("name", "model_type"))
              for label, value in (("name", name), ("model_type", model_type),
                                   ("algorithm", algorithm), ("description", description),
                                   ("data_file", data_file), ("model_dir", model_dir),
                                   ("experiment", experiment))}
    tag_rows = [RunTag(tag=tag) for tag in _tag_list(tags)]
    now = utcnow()
    return Run(id=_uuid_arg(run_id), status=status, config=json_value("config", config),
               created_at=now, started_at=now, heartbeat_at=now, summary={}, tags=tag_rows,
               **fields)


def _was_lost(run: Run) -> bool:
    """Whether the run was ended by the store because its trainer went silent."""
    return run.status == "failed" and (run.error or "").startswith(LOST_PREFIX)


_BATCH_SQL = {
    "events": "INSERT INTO events (run_id, kind, payload, wall_time) VALUES ({0}, {0}, {0}, {0})",
    "events_head": "INSERT INTO events (run_id, kind, payload, wall_time) VALUES ",
    "beat": "UPDATE runs SET heartbeat_at = {0} WHERE id = {0}",
    "batch": "INSERT INTO ingest_batches (run_id, batch_id, created_at) VALUES ({0}, {0}, {0}) "
             "ON CONFLICT DO NOTHING",
}


def _same(value: Any) -> Any:
    return value


def _event_row(run_id: str, kind: str, payload: dict | None, wall_time: float) -> dict:
    """Validated insert parameters for one event."""
    _check("event kind", [kind], EVENT_KINDS)
    return {"run_id": run_id, "kind": kind, "payload": json_value("event payload", payload),
            "wall_time": float(wall_time)}


_KNOWN_KINDS = frozenset(EVENT_KINDS)


class EncodedPayload:
    """An event payload that its writer already encoded: the JSON text of a plain object
    (what :func:`json_text` makes of a dict of str, int, finite float, bool and None).
    ``write_batch`` stores it as it is: MetricsLogger encodes its episode records this
    way, skipping a dict copy and a check per event (a tight loop's events were the
    largest part of the writer's CPU, issue 13)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _event_tuple(row: tuple[str, str, dict | None, float],
                 encode: Callable[[Any], Any]) -> tuple[str, str, Any, float]:
    """One event of a batch as its insert values (payload as the column's JSON text): the
    checks of :func:`_event_row` without its dict, since a batch's events were half of
    a big write's CPU (issue 13)."""
    run_id, kind, payload, wall_time = row
    if kind not in _KNOWN_KINDS:
        _check("event kind", [kind], EVENT_KINDS)
    if payload.__class__ is EncodedPayload:
        return run_id, kind, payload.text, float(wall_time)
    return run_id, kind, encode(json_value("event payload", payload)), float(wall_time)


def json_text(value: Any) -> str:
    """A JSON column's text: orjson (~8x faster than json on event payloads), and json for
    what orjson refuses (integers beyond 64 bits). Values come through to_plain, so there
    is no NaN or non-string key to write differently."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection SQLite settings (PRAGMAs other than journal_mode do not persist)."""
    cursor = dbapi_connection.cursor()
    # busy_timeout first, so switching to WAL waits for a concurrent opener instead of failing.
    for pragma in ("busy_timeout=5000", "journal_mode=WAL", "synchronous=NORMAL",
                   "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _prepare_sqlite(engine: sa.Engine) -> None:
    """Create the database file's folder and install the per-connection PRAGMAs."""
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    sa.event.listen(engine, "connect", _sqlite_on_connect)


@contextmanager
def _unavailable_as_store_error(url: str) -> Iterator[None]:
    """Turn driver connection failures into StoreUnavailable so callers see one error type."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        logger.warning("run store %s unavailable: %s", url, exc.orig)
        raise StoreUnavailable(f"run store {url} is unavailable: {exc.orig}") from exc
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        raise StoreUnavailable(f"run store {url} lost its connection") from exc


def _guarded(
    method: Callable[Concatenate[RunStore, P], R],
) -> Callable[Concatenate[RunStore, P], R]:
    """A store method whose driver connection failures are StoreUnavailable."""

    @functools.wraps(method)
    def wrapper(self: RunStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with _unavailable_as_store_error(self.url):
            return method(self, *args, **kwargs)

    return wrapper


def _filtered_runs(model_type: str | None, name: str | None,
                   status: str | Iterable[str] | None, tag: str | None,
                   experiment: str | None = None, archived: bool | None = False) -> sa.Select:
    """select(Run) narrowed by the exact-match filters that are not None; archived runs
    only with ``archived=True``, both kinds with ``archived=None``."""
    query = select(Run)
    if archived is not None:
        query = query.where(Run.archived_at.is_not(None) if archived
                            else Run.archived_at.is_(None))
    for column, value in ((Run.model_type, model_type), (Run.name, name),
                          (Run.experiment, experiment)):
        if value is not None:
            query = query.where(column == value)
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        _check("status", statuses, RUN_STATUSES)
        query = query.where(Run.status.in_(statuses))
    if tag is not None:
        query = query.join(RunTag).where(RunTag.tag == tag)
    return query


def _runs_page(
    session: Session, *, model_type: str | None = None, name: str | None = None,
    status: str | Iterable[str] | None = None, tag: str | None = None,
    experiment: str | None = None, archived: bool | None = False,
    sort: str = "created_at", descending: bool = True, limit: int = 50, offset: int = 0,
) -> tuple[list[dict], int]:
    """One page of runs matching every given filter, and the total number of matches."""
    _check("sort field", [sort], SORT_FIELDS)
    limit = _int_arg("limit", limit, 1, MAX_PAGE_SIZE)
    offset = _int_arg("offset", offset, 0)
    if archived not in (True, False, None):
        raise ValueError(f"archived must be True, False or None; got {archived!r}")
    query = _filtered_runs(model_type, name, status, tag, experiment, archived)
    column, direction = getattr(Run, sort), sa.desc if descending else sa.asc
    # NULLs last on every engine (SQLite and PG disagree by default); id makes ties stable.
    order = (sa.case((column.is_(None), 1), else_=0), direction(column), direction(Run.id))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    runs = session.scalars(query.order_by(*order).limit(limit).offset(offset)).all()
    return [run_as_dict(run) for run in runs], int(total)


def _agent_names(session: Session) -> list[str]:
    return list(session.scalars(select(Run.name).distinct().order_by(Run.name)))


def _experiment_names(session: Session) -> list[str]:
    """Distinct non-empty experiment names, sorted (archived runs' too)."""
    query = select(Run.experiment).where(Run.experiment != "").distinct()
    return list(session.scalars(query.order_by(Run.experiment)))


def _tag_names(session: Session) -> list[str]:
    return list(session.scalars(select(RunTag.tag).distinct().order_by(RunTag.tag)))


class RunReads:
    """The reads of one request (a page of runs and what its rows show), all in one
    Session and one read-only snapshot: the count, the page and the metrics agree.
    Opened by :meth:`RunStore.reading`; valid only inside its ``with`` block."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def list_runs(
        self, *, model_type: str | None = None, name: str | None = None,
        status: str | Iterable[str] | None = None, tag: str | None = None,
        experiment: str | None = None, archived: bool | None = False,
        sort: str = "created_at", descending: bool = True, limit: int = 50, offset: int = 0,
    ) -> tuple[list[dict], int]:
        """As :meth:`RunStore.list_runs` (stale runs were marked lost when the scope
        opened)."""
        return _runs_page(self._session, model_type=model_type, name=name, status=status,
                          tag=tag, experiment=experiment, archived=archived, sort=sort,
                          descending=descending, limit=limit, offset=offset)

    def agent_names(self) -> list[str]:
        """Distinct run names, sorted."""
        return _agent_names(self._session)

    def experiment_names(self) -> list[str]:
        """Distinct non-empty experiment names, sorted."""
        return _experiment_names(self._session)

    def tag_names(self) -> list[str]:
        """Distinct tags, sorted."""
        return _tag_names(self._session)

    def series_statistics(self, run_ids: Iterable[str]) -> dict[str, dict[str, dict]]:
        """As :meth:`RunStore.series_statistics`: one query for every run."""
        return metric_reads.series_of_runs(self._session, [_uuid_arg(r) for r in run_ids])

    def runs(self, run_ids: Iterable[str]) -> list[dict]:
        """The runs with these ids (archived ones too), in the order given; unknown ids
        are left out. One statement (and one for their tags), whatever the count."""
        wanted = list(dict.fromkeys(_uuid_arg(r) for r in run_ids))
        found = {run.id: run_as_dict(run)
                 for run in self._session.scalars(select(Run).where(Run.id.in_(wanted)))}
        return [found[r] for r in wanted if r in found]

    def model_runs(self) -> list[dict]:
        """Every run that saved a model (a non-empty model_dir), newest first."""
        query = select(Run).where(Run.model_dir != "").order_by(Run.created_at.desc(),
                                                                Run.id.desc())
        return [run_as_dict(run) for run in self._session.scalars(query)]

    def overlay_points(self, stats: dict, max_points: int) -> list[dict]:
        """A whole series for a chart of many series
        (:func:`Utilities.metric_reads.overlay_points`) given its :meth:`series_statistics`
        row: no statistics read per series."""
        max_points = _int_arg("max_points", max_points, MIN_POINTS)
        return metric_reads.overlay_points(self._session, stats, max_points)

    def episode_windows(self, stats: dict[str, dict[str, dict]], episodes: int, *,
                        win_episodes: int | None = None, keys: Iterable[str] | None = None,
                        ) -> dict[str, dict[str, list[dict]]]:
        """The last ``episodes`` episodes per ``episode/*`` key of the runs whose
        :meth:`series_statistics` are ``stats``, in one statement
        (:func:`Utilities.run_list_reads.episode_windows`)."""
        episodes = _int_arg("episodes", episodes, 0)
        if win_episodes is not None:
            win_episodes = _int_arg("win_episodes", win_episodes, 0)
        return run_list_reads.episode_windows(self._session, stats, episodes,
                                              win_episodes=win_episodes, keys=keys)


class RunStore:
    """Thread-safe access to runs, metrics and events; one short Session per call."""

    def __init__(self, url: str | None = None, *, lost_after: float | None = None) -> None:
        """Open the store at url (default_database_url() if None), creating its tables.

        ``lost_after``: seconds without a heartbeat after which a live run is marked
        lost (default: lost_after_seconds())."""
        self.lost_after: float = (lost_after_seconds() if lost_after is None
                                  else _positive_seconds("lost_after", lost_after))
        url = url or default_database_url()
        self._batch_lock = threading.Lock()
        self._batch_connection: Any = None  # the DB-API connection batches reuse
        self._series_ids: dict[tuple[str, str], int] = {}  # (run_id, key) -> series id
        self.url: str = _masked(url)  # as the caller wrote it, for messages and logs
        self.engine: sa.Engine = self._create_engine(url)
        try:
            if self.engine.dialect.name == "sqlite":
                _prepare_sqlite(self.engine)
            create_schema(self.engine)
            self._migrate_legacy_metrics()
        except (DBAPIError, OSError) as exc:
            self.engine.dispose()
            reason = getattr(exc, "orig", None) or exc  # the driver's words, without the SQL
            raise StoreUnavailable(f"cannot open run store at {self.url}: {reason}") from exc
        logger.debug("run store opened at %s", self.url)

    def _migrate_legacy_metrics(self) -> None:
        """Move the points of a pre-issue-13 ``metrics`` table into the series tables,
        with their statistics and rollups, then drop it: once, in one transaction that
        holds the write lock (SQLite) or an advisory lock (PostgreSQL), so a concurrent
        opener waits and then finds nothing left to move."""
        if not sa.inspect(self.engine).has_table(LEGACY_METRICS_TABLE):
            return
        sqlite = self.engine.dialect.name == "sqlite"
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            if sqlite:
                cursor.execute("PRAGMA busy_timeout = 600000")  # a big move takes a while
                cursor.execute("BEGIN IMMEDIATE")
            else:
                cursor.execute(_APPEND_LOCK_SQL)
            moved = self._move_legacy_points(raw, cursor)
            raw.commit()
            if moved:
                logger.info("run store %s: moved %d metric points to the series tables",
                            self.url, moved)
        except BaseException:
            raw.rollback()
            self._series_ids.clear()
            raise
        finally:
            if sqlite:
                raw.cursor().execute("PRAGMA busy_timeout = 5000")
            raw.close()

    def _move_legacy_points(self, raw: Any, cursor: Any) -> int:
        """Replay the legacy table's points through the writer, oldest first; 0 when
        another opener moved them first."""
        exists = ("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
                  if self.engine.dialect.name == "sqlite" else
                  "SELECT count(*) FROM pg_tables WHERE tablename = %s")
        cursor.execute(exists, (LEGACY_METRICS_TABLE,))
        if not cursor.fetchone()[0]:
            return 0
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        page = (f"SELECT id, run_id, key, step, value, wall_time FROM {LEGACY_METRICS_TABLE} "
                f"WHERE id > {mark} AND run_id IN (SELECT id FROM runs) ORDER BY id LIMIT 50000")

        def rows() -> Iterator[tuple]:
            last = 0
            while True:
                reader = raw.cursor()
                reader.execute(page, (last,))
                chunk = reader.fetchall()
                reader.close()
                if not chunk:
                    return
                last = chunk[-1][0]
                for row in chunk:
                    yield row[1:]

        moved = replay(self._metric_writer(cursor), rows())
        cursor.execute(f"DROP TABLE {LEGACY_METRICS_TABLE}")
        return moved

    def _create_engine(self, url: str) -> sa.Engine:
        """The engine for url; an unparseable URL or a missing driver is StoreUnavailable."""
        try:
            parsed = _engine_url(url)
            # SQLite needs no liveness check: a file cannot drop the connection.
            return sa.create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite",
                                    json_serializer=json_text)
        except (ArgumentError, ImportError, ValueError) as exc:
            raise StoreUnavailable(f"cannot open run store at {self.url}: {exc}") from exc

    def close(self) -> None:
        """Release all pooled connections."""
        with self._batch_lock:
            if self._batch_connection is not None:
                self._batch_connection.close()
                self._batch_connection = None
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One Session and one transaction: committed on success, rolled back on error."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @staticmethod
    def _require(session: Session, run_id: str, *, lock: bool = False) -> Run:
        """Load a run (row-locked on engines that support it) or raise RunNotFound."""
        if (run := session.get(Run, run_id, with_for_update=lock)) is None:
            raise RunNotFound(f"run {run_id!r} not found")
        return run

    @staticmethod
    def _require_ids(session: Session, run_ids: Iterable[str]) -> None:
        """Raise RunNotFound naming every id in run_ids that has no run."""
        wanted = set(run_ids)
        found = set(session.scalars(select(Run.id).where(Run.id.in_(wanted)))) if wanted else set()
        if missing := sorted(wanted - found):
            raise RunNotFound(f"run(s) not found: {', '.join(missing)}")

    def _update_one(self, run_id: str, **values: Any) -> None:
        """Set columns of one run or raise RunNotFound."""
        with self._tx() as s:
            if not s.execute(update(_RUNS).where(_RUNS.c.id == run_id).values(**values)).rowcount:
                raise RunNotFound(f"run {run_id!r} not found")

    # ---- runs ---------------------------------------------------------------------------

    @_guarded
    def create_run(
        self, *, name: str, model_type: str, algorithm: str = "", config: dict | None = None,
        tags: list[str] | tuple[str, ...] | None = (), description: str = "", data_file: str = "",
        model_dir: str = "", experiment: str = "", run_id: str | None = None,
    ) -> str:
        """Create a running run plus its first status event; return the run id.

        ``run_id`` (a UUID) lets a launcher know the id before the trainer starts (the
        web form opens the run's page at once); by default a new one is drawn."""
        row = _new_run_row(name=name, model_type=model_type, algorithm=algorithm,
                           config=config, tags=tags, description=description,
                           data_file=data_file, model_dir=model_dir, experiment=experiment,
                           run_id=run_id)
        with self._tx() as s:
            self._insert_run(s, row)
        logger.info("created run %s (%s, %s)", row.id, name, model_type)
        return row.id

    @_guarded
    def claim_run(self, *, name: str, model_type: str, max_active: int | None = None,
                  **fields: Any) -> str:
        """create_run, unless the model (model_type + name) is training already or
        ``max_active`` runs are live; then RunBusy. A launcher claims with
        ``status="starting"`` before it starts the process that will :meth:`adopt_run` it.
        Live: starting, running or paused with a fresh
        heartbeat (stale ones are marked lost first). Atomic across threads and
        processes: claims are serialised by a lock (SQLite's write lock, a PostgreSQL
        advisory lock), so two launchers cannot both pass the check."""
        if max_active is not None:
            max_active = _int_arg("max_active", max_active, 1)
        row = _new_run_row(name=name, model_type=model_type, **fields)
        with self._tx() as s:
            self._lock_claims(s)
            self._mark_lost(s)
            live = s.scalars(select(Run).where(Run.status.in_(ACTIVE_STATUSES))).all()
            for run in live:
                if (run.model_type, run.name) == (model_type, name):
                    raise RunBusy(f"a {model_type} model named {name!r} is already training "
                                  f"(run {run.id}, last heartbeat {iso_z(run.heartbeat_at)})",
                                  "duplicate", run=run_as_dict(run))
            if max_active is not None and len(live) >= max_active:
                raise RunBusy(f"{len(live)} trainings are already running (at most "
                              f"{max_active} at once)", "limit", limit=max_active)
            self._insert_run(s, row)
        logger.info("claimed run %s (%s, %s)", row.id, name, model_type)
        return row.id

    @_guarded
    def adopt_run(self, run_id: str, *, name: str, model_type: str, algorithm: str = "",
                  config: dict | None = None, tags: list[str] | tuple[str, ...] | None = (),
                  description: str = "", data_file: str = "", experiment: str = "") -> dict:
        """The launched trainer takes over the run its launcher claimed for it: its
        fields are rewritten as the trainer's own create_run would have written them
        (so launched and shell runs are recorded alike) and it is heartbeat now.
        Refused (RunStoreError) unless the run is starting or running under the same
        model; a starting run turns running."""
        update = _new_run_row(name=name, model_type=model_type, algorithm=algorithm,
                              config=config, tags=tags, description=description,
                              data_file=data_file, experiment=experiment, run_id=run_id)
        with self._tx() as s:
            run = self._require(s, update.id, lock=True)
            self._mark_lost(s, [run.id])
            s.refresh(run)
            adoptable = run.status in ("starting", "running")
            if not adoptable or (run.model_type, run.name) != (model_type, name):
                reason = (f"it is {run.status}" + (f" ({run.error})" if run.error else "")
                          if not adoptable else
                          f"it is a run of the {run.model_type} model {run.name!r}")
                raise RunStoreError(f"run {run.id} cannot be taken over: {reason}")
            for column in ("algorithm", "config", "description", "data_file", "experiment"):
                setattr(run, column, getattr(update, column))
            tags = sorted(tag.tag for tag in update.tags)
            if sorted(tag.tag for tag in run.tags) != tags:
                run.tags = [RunTag(tag=tag) for tag in tags]
            run.started_at = run.heartbeat_at = utcnow()
            if run.status == "starting":
                run.status = "running"
                self._append_events(s, [_event_row(run.id, "status", {
                    "status": "running", "previous": "starting"}, time.time())])
            s.flush()
            logger.info("adopted run %s (%s, %s)", run.id, name, model_type)
            return run_as_dict(run)

    def _insert_run(self, session: Session, run: Run) -> None:
        """Add a new run and its first status event."""
        session.add(run)
        try:
            session.flush()  # the event's foreign key needs the run row first
        except IntegrityError:  # only a chosen run id can collide
            raise RunStoreError(f"a run with id {run.id!r} already exists") from None
        self._append_events(session, [_event_row(run.id, "status", {"status": run.status},
                                                 time.time())])

    def _append_events(self, session: Session, rows: list[dict]) -> list[int]:
        """Insert event rows under the append lock (see ``_APPEND_LOCK_KEY``); their seqs.
        Call it after the transaction's updates of runs rows, never before."""
        if self.engine.dialect.name == "postgresql":
            session.execute(sa.text(_APPEND_LOCK_SQL))  # autoflushes pending updates first
            for payload in run_notices.payloads(row["run_id"] for row in rows):
                session.execute(sa.text("SELECT pg_notify(:channel, :runs)"),
                                {"channel": run_notices.CHANNEL, "runs": payload})
        stmt = insert(_EVENTS).returning(_EVENTS.c.seq, sort_by_parameter_order=True)
        return [int(seq) for seq in session.execute(stmt, rows).scalars()]

    def _lock_claims(self, session: Session) -> None:
        """Serialise claims until the transaction ends, on every engine."""
        if self.engine.dialect.name == "postgresql":
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": _CLAIM_LOCK_KEY})
        else:
            # A write, even of no row, takes SQLite's one write lock now rather than at
            # the INSERT, so no other claim can read between this one's check and write.
            session.execute(update(_RUNS).where(sa.false()).values(status=_RUNS.c.status))

    # ---- liveness -----------------------------------------------------------------------

    def _stale_before(self) -> datetime:
        return utcnow() - timedelta(seconds=self.lost_after)

    def _mark_lost(self, session: Session, run_ids: Iterable[str] | None = None) -> list[str]:
        """Mark live runs without a fresh heartbeat failed ("lost: …"); their ids.

        A cheap indexed SELECT finds candidates (usually none, so a read stays a read);
        each is then marked by an UPDATE that re-checks status and staleness, so a
        concurrent heartbeat wins and concurrent markers write the event once."""
        cutoff = self._stale_before()
        last_sign = func.coalesce(Run.heartbeat_at, Run.created_at)
        query = select(Run.id, Run.status, last_sign).where(
            Run.status.in_(ACTIVE_STATUSES), last_sign < cutoff)
        if run_ids is not None:
            query = query.where(Run.id.in_(list(run_ids)))
        marked = []
        for run_id, status, seen in session.execute(query).all():
            error = (f"{LOST_PREFIX}no heartbeat since {iso_z(seen)} (the training process "
                     "is gone: killed, crashed or its machine stopped)")
            last = func.coalesce(_RUNS.c.heartbeat_at, _RUNS.c.created_at)
            stmt = update(_RUNS).where(_RUNS.c.id == run_id, _RUNS.c.status == status,
                                       last < cutoff)
            if session.execute(stmt.values(status="failed", error=error, ended_at=seen,
                                           control=None)).rowcount:
                self._append_events(session, [_event_row(
                    run_id, "status", {"status": "failed", "previous": status,
                                       "error": error}, time.time())])
                logger.warning("run %s marked lost: %s", run_id, error)
                marked.append(run_id)
        return marked

    @_guarded
    def sweep_lost(self) -> list[str]:
        """Mark every live run whose heartbeat is stale as failed (lost); their ids."""
        with self._tx() as s:
            return self._mark_lost(s)

    @_guarded
    def get_run(self, run_id: str) -> dict:
        """One run as a dict (a live run with a stale heartbeat is marked lost first);
        RunNotFound if missing."""
        with self._tx() as s:
            run = self._require(s, run_id)
            if run.status in ACTIVE_STATUSES and self._is_stale(run):
                self._mark_lost(s, [run.id])
                s.refresh(run)  # marked here or, a moment ago, by another reader
            return run_as_dict(run)

    def _is_stale(self, run: Run) -> bool:
        return (run.heartbeat_at or run.created_at) < self._stale_before()

    @_guarded
    def list_runs(
        self, *, model_type: str | None = None, name: str | None = None,
        status: str | Iterable[str] | None = None, tag: str | None = None,
        experiment: str | None = None, archived: bool | None = False,
        sort: str = "created_at", descending: bool = True, limit: int = 50, offset: int = 0,
    ) -> tuple[list[dict], int]:
        """One page of runs matching every given filter, and the total number of matches
        (live runs with a stale heartbeat are marked lost first). Archived runs are left
        out unless ``archived`` is True (only them) or None (every run)."""
        with self._tx() as s:
            self._mark_lost(s)  # before filtering: a lost run must not count as running
            return _runs_page(s, model_type=model_type, name=name, status=status, tag=tag,
                              experiment=experiment, archived=archived, sort=sort,
                              descending=descending, limit=limit, offset=offset)

    @_guarded
    def agent_names(self) -> list[str]:
        """Distinct run names, sorted."""
        with self._tx() as s:
            return _agent_names(s)

    @_guarded
    def experiment_names(self) -> list[str]:
        """Distinct non-empty experiment names, sorted."""
        with self._tx() as s:
            return _experiment_names(s)

    @_guarded
    def tag_names(self) -> list[str]:
        """Distinct tags, sorted."""
        with self._tx() as s:
            return _tag_names(s)

    @contextmanager
    def reading(self) -> Iterator[RunReads]:
        """A scope for one request's reads (a list page: its runs, their count, their
        statistics and latest episodes), all in one Session and one read-only snapshot.

        Live runs with a stale heartbeat are marked lost first, in a short transaction
        of their own (usually one indexed SELECT), so a lost run does not count as
        running and the snapshot never has to turn into a write: a SQLite read
        transaction that writes after another connection committed fails at once. The
        snapshot is a deferred ``BEGIN`` on SQLite (its driver starts transactions only
        for writes) and REPEATABLE READ, READ ONLY on PostgreSQL (whose default gives
        each statement its own). Driver connection failures are StoreUnavailable."""
        with _unavailable_as_store_error(self.url):
            with self._tx() as s:
                self._mark_lost(s)
            with Session(self.engine) as session, session.begin():
                if self.engine.dialect.name == "sqlite":
                    session.connection().exec_driver_sql("BEGIN")
                elif self.engine.dialect.name == "postgresql":
                    session.connection(execution_options={
                        "isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
                yield RunReads(session)

    @_guarded
    def run_of_model_dir(self, folder: str | Path) -> dict | None:
        """The newest run whose model_dir is ``folder`` (compared as resolved paths, so
        ``Models/../Models/X`` and a symlinked root match), or None."""
        target = Path(folder).resolve()
        # The SQL narrows by folder name (wildcards escaped); the path test decides.
        query = (select(Run).where(Run.model_dir.endswith(target.name, autoescape=True))
                 .order_by(Run.created_at.desc(), Run.id.desc()))
        with self._tx() as s:
            for run in s.scalars(query):
                try:
                    if run.model_dir and Path(run.model_dir).resolve() == target:
                        return run_as_dict(run)
                except (OSError, ValueError):  # a stored path this machine cannot resolve
                    continue
        return None

    @_guarded
    def set_status(self, run_id: str, status: str, *, error: str | None = None) -> dict:
        """Move a run to status along an allowed transition; return the updated run."""
        _check("status", [status], RUN_STATUSES)
        values: dict[str, Any] = {"status": status}
        if error is not None:
            values["error"] = error
        if status in TERMINAL_STATUSES:
            values.update(ended_at=utcnow(), control=None)
        with self._tx() as s:
            previous = self._swap_status(s, run_id, status, values)
            if previous is None:
                self._refuse_transition(self._require(s, run_id), status)
            payload = {"status": status, "previous": previous}
            if error is not None:
                payload["error"] = error
            self._append_events(s, [_event_row(run_id, "status", payload, time.time())])
            logger.info("run %s: %s -> %s", run_id, previous, status)
            return run_as_dict(self._require(s, run_id))

    @staticmethod
    def _swap_status(session: Session, run_id: str, status: str, values: dict) -> str | None:
        """Apply values if the run is in a legal source status for status; return that source."""
        # Check and write in one conditional UPDATE per legal source, so a concurrent
        # writer cannot slip in between (SQLite takes no lock on a plain SELECT).
        for old in _SOURCES[status]:
            stmt = update(_RUNS).where(_RUNS.c.id == run_id, _RUNS.c.status == old)
            if session.execute(stmt.values(**values)).rowcount:
                return old
        return None

    @staticmethod
    def _refuse_transition(run: Run, status: str) -> NoReturn:
        """Raise InvalidTransition naming the run, both statuses and the allowed targets."""
        targets = ", ".join(sorted(TRANSITIONS[run.status])) or "none (terminal)"
        raise InvalidTransition(f"run {run.id!r}: cannot go from {run.status!r} to {status!r}; "
                                f"allowed from {run.status!r}: {targets}")

    @_guarded
    def request_control(self, run_id: str, action: str) -> dict:
        """Ask the trainer to pause, resume or stop; refused for terminal runs.

        A run whose trainer is gone cannot obey: it is marked lost here, and ``stop`` of
        a lost run is answered with the run (it is no longer running) instead of refused."""
        _check("control action", [action], CONTROL_ACTIONS)
        with self._tx() as s:
            self._mark_lost(s, [run_id])
            # One conditional UPDATE, so the run cannot turn terminal between check and write.
            changed = s.execute(update(_RUNS).values(control=action).where(
                _RUNS.c.id == run_id, _RUNS.c.status.not_in(TERMINAL_STATUSES))).rowcount
            run = self._require(s, run_id)
            if not changed:
                if action == "stop" and _was_lost(run):
                    return run_as_dict(run)
                raise InvalidTransition(f"run {run_id!r} is {run.status!r}: control {action!r} "
                                        "refused, terminal runs accept no control")
            return run_as_dict(run)

    @_guarded
    def get_control(self, run_id: str) -> str | None:
        """The pending control action of a run, or None."""
        return self._control_row(run_id).control

    @_guarded
    def trainer_control(self, run_id: str) -> str | None:
        """What the run's trainer should do between iterations: the pending control
        action, or "stop" once the run is terminal (ended for it: marked lost while its
        trainer was unreachable, say), so a trainer never trains on unrecorded."""
        row = self._control_row(run_id)
        return "stop" if row.status in TERMINAL_STATUSES else row.control

    def _control_row(self, run_id: str) -> sa.Row:
        with self._tx() as s:
            row = s.execute(select(Run.control, Run.status).where(Run.id == run_id)
                            ).one_or_none()
        if row is None:
            raise RunNotFound(f"run {run_id!r} not found")
        return row

    @_guarded
    def clear_control(self, run_id: str) -> None:
        """Forget the pending control action (the trainer has acted on it)."""
        self._update_one(run_id, control=None)

    @_guarded
    def heartbeat(self, run_id: str) -> None:
        """Record that the run's trainer is alive now."""
        self._update_one(run_id, heartbeat_at=utcnow())

    @_guarded
    def update_run(self, run_id: str, *, summary: dict | None = None,
                   model_dir: str | None = None, description: str | None = None,
                   experiment: str | None = None, notes: str | None = None,
                   tags: list[str] | tuple[str, ...] | None = None) -> dict:
        """Merge summary into the run's (shallow), set the other given fields (``tags``
        replaces the run's tags); return the run. None leaves a field as it is."""
        if summary is not None:
            summary = json_value("summary", summary)
        texts = {label: _str_arg(label, value) for label, value in (
            ("model_dir", model_dir), ("description", description),
            ("experiment", experiment), ("notes", notes)) if value is not None}
        new_tags = None if tags is None else _tag_list(tags)
        with self._tx() as s:
            # Row lock on PG keeps concurrent summary merges from losing keys.
            run = self._require(s, run_id, lock=True)
            if summary is not None:
                run.summary = {**(run.summary or {}), **summary}  # new object: ORM sees change
            for label, value in texts.items():
                setattr(run, label, value)
            if new_tags is not None and sorted(t.tag for t in run.tags) != new_tags:
                run.tags = [RunTag(tag=tag) for tag in new_tags]
            s.flush()
            return run_as_dict(run)

    @_guarded
    def archive_run(self, run_id: str) -> dict:
        """Hide a finished run from lists (restorable); RunBusy for a live run. Archiving
        an archived run keeps its first archive time."""
        with self._tx() as s:
            run = self._finished_run(s, run_id, "archived")
            if run.archived_at is None:
                run.archived_at = utcnow()
            s.flush()
            return run_as_dict(run)

    @_guarded
    def restore_run(self, run_id: str) -> dict:
        """Show an archived run in lists again (a no-op for one that is not archived)."""
        with self._tx() as s:
            run = self._require(s, run_id, lock=True)
            run.archived_at = None
            s.flush()
            return run_as_dict(run)

    def _finished_run(self, session: Session, run_id: str, verb: str) -> Run:
        """The run, locked, unless it is live (a stale one is marked lost first)."""
        run = self._require(session, run_id, lock=True)
        self._mark_lost(session, [run.id])
        session.refresh(run)
        if run.status in ACTIVE_STATUSES:
            raise RunBusy(f"run {run.id} is {run.status}: stop it before it can be {verb}",
                          "active", run=run_as_dict(run))
        return run

    @_guarded
    def delete_run(self, run_id: str) -> None:
        """Delete a finished run with its tags, metrics and events (RunBusy for a live
        one: its trainer would go on writing into a run that no longer exists). Saved
        models are never touched here."""
        with self._tx() as s:
            self._finished_run(s, run_id, "deleted")
            # Explicit deletes rather than ON DELETE CASCADE: correct even with FKs off.
            series = select(_SERIES.c.id).where(_SERIES.c.run_id == run_id)
            for table in (_POINTS, _ROLLUPS):
                s.execute(delete(table).where(table.c.series_id.in_(series)))
            for table in (_SERIES, _EVENTS, _TAGS, _ALERTS, _BATCHES):
                s.execute(delete(table).where(table.c.run_id == run_id))
            s.execute(delete(_RUNS).where(_RUNS.c.id == run_id))
        for pair in [pair for pair in self._series_ids if pair[0] == run_id]:
            self._series_ids.pop(pair, None)
        logger.info("deleted run %s", run_id)

    @_guarded
    def record_alert(self, alert: dict[str, Any]) -> int | None:
        """Record an alert (:meth:`Utilities.alert_channels.Alert.as_dict`): its row for
        the alerts page and, when it has a run, the run's ``alert`` event, in one
        transaction; the event's seq (None without a run)."""
        _check("alert level", [alert.get("level")], ALERT_LEVELS)
        payload = json_value("alert", alert)
        run_id = payload.get("run_id")
        with self._tx() as s:
            seq = None
            if run_id is not None:
                self._require_ids(s, [run_id])
                (seq,) = self._append_events(s, [_event_row(run_id, "alert", payload,
                                                            float(payload["created"]))])
            s.execute(insert(_ALERTS).values(
                alert_id=_str_arg("alert id", payload.get("id"), required=True),
                run_id=run_id, seq=seq, level=payload["level"],
                rule=_str_arg("rule", payload.get("rule") or "custom"),
                title=_str_arg("title", payload.get("title") or ""),
                message=_str_arg("message", payload.get("message") or ""),
                data=payload.get("data") or {}, deliveries=[],
                created_at=datetime.fromtimestamp(float(payload["created"]), UTC)
                .replace(tzinfo=None)))
        return seq

    # ---- metrics and events -------------------------------------------------------------

    @_guarded
    def log_metrics(self, run_id: str, rows: Iterable[tuple[str, int, float, float]]) -> int:
        """Append (key, step, value, wall_time) samples to a run; return how many."""
        params = [(run_id, *row) for row in rows]
        if params:
            self.write_batch(metrics=params)
        else:
            with self._tx() as s:
                self._require_ids(s, [run_id])
        return len(params)

    @_guarded
    def log_events(self, run_id: str, rows: Iterable[tuple[str, dict, float]]) -> list[int]:
        """Append (kind, payload, wall_time) events to a run; return their seq numbers."""
        params = [_event_row(run_id, *row) for row in rows]
        with self._tx() as s:
            self._require_ids(s, [run_id])
            return self._append_events(s, params) if params else []

    @_guarded
    def write_batch(
        self, metrics: Iterable[tuple[str, str, int, float, float]] | MetricBatch = (),
        events: Iterable[tuple[str, str, dict, float]] = (), heartbeats: Iterable[str] = (),
        *, batch: tuple[str, str] | None = None,
    ) -> bool:
        """Write metric rows, event rows and heartbeats in one transaction (all or nothing);
        the metrics' series statistics and rollups are updated in the same transaction.

        ``batch`` (run id, a client's batch id of at most 64 characters) is recorded in
        that transaction too: when it is recorded already, nothing is written and the
        answer is False (a retried batch is written once, by any process); else True."""
        metric_params = MetricBatch.of(metrics)  # validated before any write
        # Event rows as plain values at once (payload as the column's JSON text): a list of
        # dicts holding dicts stays tracked by the cyclic GC through the whole write, is
        # promoted to its old generation and triggers full collections (issue 13).
        # json_text is what the payload column's own bind processor calls for a dict.
        event_params = [_event_tuple(row, json_text) for row in events]
        beats = sorted(set(heartbeats))
        if batch is not None:
            batch = (_str_arg("batch run id", batch[0], required=True),
                     _str_arg("batch id", batch[1], required=True))
            if len(batch[1]) > 64:
                raise ValueError(f"batch id has {len(batch[1])} characters; at most 64")
        elif not len(metric_params) and not event_params and not beats:
            return True
        try:
            written = self._write_rows(metric_params, event_params, beats, batch)
        except IntegrityError:
            self._series_ids.clear()  # a cached series may belong to a deleted run
            # Foreign keys caught a row for a missing run (checked here, off the hot
            # path, so a normal batch costs no extra query); name the missing ids.
            run_ids = set(metric_params.runs) | {p[0] for p in event_params}
            with self._tx() as s:
                self._require_ids(s, run_ids | set(beats))
            raise
        logger.debug("batch: %d metrics, %d events, %d heartbeats%s",
                     len(metric_params), len(event_params), len(beats),
                     "" if written else " (a batch id already written: skipped)")
        return written

    def _write_rows(self, metric_params: MetricBatch, event_params: list[tuple],
                    beats: list[str], batch: tuple[str, str] | None = None) -> bool:
        """One batch's transaction on a bare DB-API connection, on every engine.

        The logger writes every 200 ms, often a handful of rows, and a tight training
        loop hundreds of thousands a second; SQLAlchemy's per-statement set-up and the
        pool's checkout were most of a small batch's cost, so batches go through one
        connection kept for them. Values are converted by the columns' own SQLAlchemy
        type processors, so rows are stored exactly as Core would store them, and driver
        errors are raised as SQLAlchemy's."""
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        with self._batch_lock:
            raw = self._batch_connection or self.engine.raw_connection()
            cursor = raw.cursor()
            try:
                self._write_beats(cursor, beats)  # runs rows before the append lock
                if batch is not None and not self._claim_batch(cursor, batch):
                    raw.rollback()  # the heartbeats too: the first write of it did them
                    self._release_batch_connection(raw, keep=True)
                    return False
                if len(metric_params) or event_params:
                    self._take_append_lock(cursor)
                    if self.engine.dialect.name == "postgresql":  # said at the commit
                        run_notices.notify(cursor, {*metric_params.runs,
                                                    *(row[0] for row in event_params)})
                self._metric_writer(cursor).write(metric_params)
                self._write_events(cursor, event_params)
                raw.commit()
            except SeriesGone as exc:
                raw.rollback()
                self._series_ids.clear()
                self._release_batch_connection(raw, keep=True)
                raise IntegrityError(str(exc), None, exc) from exc
            except dbapi_error as exc:
                raw.rollback()
                self._series_ids.clear()  # rolled back: ids created in it are gone
                self._release_batch_connection(raw, keep=False)  # a fresh one next time
                raise DBAPIError.instance(None, None, exc, dbapi_error,
                                          dialect=self.engine.dialect) from exc
            except BaseException:
                raw.rollback()
                self._series_ids.clear()
                self._release_batch_connection(raw, keep=True)
                raise
            finally:
                cursor.close()
            self._release_batch_connection(raw, keep=True)
            return True

    def _claim_batch(self, cursor: Any, batch: tuple[str, str]) -> bool:
        """Record a batch id in the batch's transaction; False when it is recorded already
        (on PostgreSQL a concurrent writer of the same id waits for the first's commit)."""
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        stamp = self._batch_processors["time"](utcnow())
        cursor.execute(_BATCH_SQL["batch"].format(mark), (*batch, stamp))
        return cursor.rowcount == 1

    def _metric_writer(self, cursor: Any) -> MetricWriter:
        dialect = self.engine.dialect
        executemany = postgres_executemany if dialect.name == "postgresql" else None
        return MetricWriter(cursor, dialect.paramstyle, self._series_ids, executemany)

    def _take_append_lock(self, cursor: Any) -> None:
        if self.engine.dialect.name == "postgresql":
            cursor.execute(_APPEND_LOCK_SQL)

    def _write_events(self, cursor: Any, event_params: list[tuple]) -> None:
        if not event_params:
            return
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        sql = _BATCH_SQL["events"].format(mark)
        if self.engine.dialect.name == "postgresql":  # psycopg2's: a statement per row
            postgres_executemany(cursor, sql, event_params)
        else:  # multi-row statements (sqlite_insert_rows says why)
            sqlite_insert_rows(cursor, _BATCH_SQL["events_head"], event_params)

    def _write_beats(self, cursor: Any, beats: list[str]) -> None:
        if not beats:
            return
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        stamp = self._batch_processors["time"](utcnow())
        for run_id in beats:  # one statement each: multi-row rowcount is driver-specific
            cursor.execute(_BATCH_SQL["beat"].format(mark), (stamp, run_id))
            if not cursor.rowcount:
                raise IntegrityError("heartbeat for a missing run", None, Exception())

    def _release_batch_connection(self, raw: Any, *, keep: bool) -> None:
        """Keep a file or server database's batch connection for the next batch, else
        return it. (An in-memory database is one per connection: its pool hands out
        per thread.)"""
        if keep and isinstance(self.engine.pool, sa.pool.QueuePool):
            self._batch_connection = raw
            return
        self._batch_connection = None
        raw.close()  # back to the pool

    @functools.cached_property
    def _batch_processors(self) -> dict[str, Callable[[Any], Any]]:
        dialect = self.engine.dialect
        return {name: column.type.dialect_impl(dialect).bind_processor(dialect) or _same
                for name, column in (("payload", _EVENTS.c.payload),
                                     ("time", _RUNS.c.heartbeat_at))}

    def _series(self, session: Session, run_id: str) -> dict[str, dict]:
        """{key: statistics} of a run's series; RunNotFound if there is no such run."""
        self._require_ids(session, [run_id])
        return metric_reads.series_of_runs(session, [run_id])[run_id]

    @_guarded
    def metric_keys(self, run_id: str) -> list[str]:
        """Distinct metric keys of a run, sorted."""
        with self._tx() as s:
            return sorted(self._series(s, run_id))

    @_guarded
    def metric_series(self, run_id: str, key: str, *, max_points: int | None = None,
                      start_step: int | None = None, end_step: int | None = None) -> list[dict]:
        """Samples of one key ordered by step, optionally step-bounded and downsampled.

        With max_points (>= MIN_POINTS), a range of more points comes back as the min and
        max point of each rollup bucket plus both ends
        (:func:`Utilities.metric_reads.chart_points`): spikes survive, at most max_points
        points come back, and the read costs the same for a thousand points or a billion.
        """
        if max_points is not None:
            max_points = _int_arg("max_points", max_points, MIN_POINTS)
        start = None if start_step is None else _int_arg("start_step", start_step)
        end = None if end_step is None else _int_arg("end_step", end_step)
        with self._tx() as s:
            stats = self._series(s, run_id).get(key)
            if stats is None:
                return []
            if max_points is None:
                return metric_reads.raw_points(s, stats["id"], start, end)
            return metric_reads.chart_points(s, stats, max_points, start, end)

    @_guarded
    def latest_metrics(self, run_id: str) -> dict[str, dict]:
        """For each metric key of a run, its sample with the highest step (a step logged
        twice reports its latest write)."""
        with self._tx() as s:
            return {key: metric_reads.point(st["last_step"], st["last_value"],
                                            st["last_wall_time"])
                    for key, st in self._series(s, run_id).items()}

    @_guarded
    def series_statistics(self, run_ids: Iterable[str]) -> dict[str, dict[str, dict]]:
        """{run_id: {key: statistics}} for many runs in one query, kept by the writer:
        points, finite, total, mean, min/max value and step, first/last step, last
        value and wall time, and the series ``id``. Unknown ids map to {}."""
        ids = [_uuid_arg(run_id) for run_id in run_ids]
        with self._tx() as s:
            return metric_reads.series_of_runs(s, ids)

    @_guarded
    def recent_points(self, series_ids: Iterable[int], count: int) -> dict[int, list[dict]]:
        """The last ``count`` points (by step) of each series id, oldest first, in one
        statement of index-bounded reads (ids from :meth:`series_statistics`)."""
        count = _int_arg("count", count, 1, MAX_EVENTS_PAGE)
        ids = [_int_arg("series id", sid) for sid in series_ids]
        with self._tx() as s:
            return metric_reads.tails(s, ids, count)

    @_guarded
    def metric_points_after(self, run_id: str, after_id: int = 0, *,
                            keys: Iterable[str] | None = None, limit: int = MAX_EVENTS_PAGE,
                            up_to: int | None = None) -> tuple[dict[str, list[dict]], int]:
        """A run's points written after point id ``after_id`` (and, given ``up_to``, with
        an id no higher), per key in write order (at most ``limit`` in all), and the id
        to pass next time: a page's incremental update reads only what is new."""
        after_id = _int_arg("after_id", after_id, 0)
        limit = _int_arg("limit", limit, 1, MAX_EVENTS_PAGE)
        if up_to is not None:
            up_to = _int_arg("up_to", up_to, 0)
        with self._tx() as s:
            return metric_reads.points_after(s, run_id, None if keys is None else list(keys),
                                             after_id, limit, up_to)

    @_guarded
    def last_point_id(self) -> int:
        """Highest metric point id in the store, 0 when there are none."""
        with self._tx() as s:
            return int(s.scalar(select(func.max(_POINTS.c.id))) or 0)

    # ---- bounded reads for a run's page (add-only; the write path is above) -------------

    @_guarded
    def series_buckets(self, run_id: str, key: str, max_buckets: int, *,
                       level: int | None = None, start_step: int | None = None,
                       ) -> dict[str, Any]:
        """A series as rollup buckets (:func:`Utilities.metric_reads.bucket_sums`): the
        whole of it at the finest level with at most ``max_buckets`` of them, or, given
        ``level``, that level's buckets from the one holding ``start_step`` on (at most
        ``max_buckets + 1``): ``{"level", "points", "buckets": [{bucket, first, last,
        points, finite, total}]}`` (no buckets for a key the run does not have)."""
        max_buckets = _int_arg("max_buckets", max_buckets, 1, MAX_EVENTS_PAGE)
        if level is not None:
            level = _int_arg("level", level, 1, metric_reads.ROLLUP_LEVELS)
        start = None if start_step is None else _int_arg("start_step", start_step)
        with self._tx() as s:
            stats = self._series(s, run_id).get(key)
            if stats is None:
                return {"level": level or 1, "points": 0, "buckets": []}
            level, buckets = metric_reads.bucket_sums(s, stats, max_buckets, level, start)
            return {"level": level, "points": stats["points"], "buckets": buckets}

    @_guarded
    def points_before(self, run_id: str, key: str, end_step: int, count: int) -> list[dict]:
        """The last ``count`` points of a key with a step at most ``end_step``, oldest
        first (index-bounded)."""
        end_step = _int_arg("end_step", end_step)
        count = _int_arg("count", count, 1, MAX_EVENTS_PAGE)
        with self._tx() as s:
            stats = self._series(s, run_id).get(key)
            return [] if stats is None else metric_reads.points_before(
                s, stats["id"], end_step, count)

    @_guarded
    def point_cursor(self, run_id: str) -> int:
        """A point id to pass to :meth:`metric_points_after` for everything the run's
        series get after this call (:func:`Utilities.metric_reads.last_point_ids`). Read
        it before the figures it goes with: what lands in between is sent twice, never
        lost."""
        with self._tx() as s:
            series = self._series(s, run_id)
            return metric_reads.last_point_ids(s, [st["id"] for st in series.values()])

    @_guarded
    def steps_at_times(self, run_id: str, key: str, times: Iterable[float]) -> list[int | None]:
        """For each wall time, the step of the key's last point written by then (None
        before its first), in O(log steps) index lookups
        (:func:`Utilities.metric_reads.steps_reached`)."""
        wanted = [float(t) for t in times]
        with self._tx() as s:
            stats = self._series(s, run_id).get(key)
            if stats is None:
                return [None] * len(wanted)
            return metric_reads.steps_reached(s, stats, wanted)

    @_guarded
    def latest_events(self, run_id: str, kinds: Iterable[str], limit: int) -> list[dict]:
        """A run's last ``limit`` events of the given kinds, newest first (read newest
        first with a limit, however many the run has), each with its ``seq``."""
        kinds = list(kinds)
        _check("event kind", kinds, EVENT_KINDS)
        limit = _int_arg("limit", limit, 1, MAX_EVENTS_PAGE)
        e = _EVENTS.c
        with self._tx() as s:
            self._require_ids(s, [run_id])
            rows = s.execute(select(_EVENTS).where(e.run_id == run_id, e.kind.in_(kinds))
                             .order_by(e.seq.desc()).limit(limit)).all()
        return [{"seq": int(r.seq), "run_id": r.run_id, "kind": r.kind, "payload": r.payload,
                 "wall_time": float(r.wall_time)} for r in rows]

    @_guarded
    def event_count(self, run_id: str, kinds: Iterable[str]) -> tuple[int, int]:
        """(how many events of the given kinds the run has, the highest seq among them
        or 0): a count for a page and the seq to read its new events after."""
        kinds = list(kinds)
        _check("event kind", kinds, EVENT_KINDS)
        e = _EVENTS.c
        with self._tx() as s:
            count, last = s.execute(select(func.count(), func.max(e.seq)).where(
                e.run_id == run_id, e.kind.in_(kinds))).one()
        return int(count or 0), int(last or 0)

    @_guarded
    def events_after(self, seq: int = 0, *, run_id: str | None = None,
                     kinds: Iterable[str] | None = None, limit: int = 1000,
                     up_to: int | None = None) -> list[dict]:
        """Events with a seq greater than the given one (and, given ``up_to``, no
        greater than it), in seq order (at most limit)."""
        seq = _int_arg("seq", seq, 0)
        limit = _int_arg("limit", limit, 1, MAX_EVENTS_PAGE)
        e = _EVENTS.c
        query = select(_EVENTS).where(e.seq > seq)
        if up_to is not None:
            query = query.where(e.seq <= _int_arg("up_to", up_to, 0))
        if run_id is not None:
            query = query.where(e.run_id == run_id)
        if kinds is not None:
            kinds = list(kinds)
            _check("event kind", kinds, EVENT_KINDS)
            query = query.where(e.kind.in_(kinds))
        with self._tx() as s:
            rows = s.execute(query.order_by(e.seq).limit(limit)).all()
        return [{"seq": int(r.seq), "run_id": r.run_id, "kind": r.kind, "payload": r.payload,
                 "wall_time": float(r.wall_time)} for r in rows]

    @_guarded
    def last_seq(self) -> int:
        """Highest event seq in the store, 0 when there are none."""
        with self._tx() as s:
            return int(s.scalar(select(func.max(_EVENTS.c.seq))) or 0)
