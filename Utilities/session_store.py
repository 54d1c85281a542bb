"""The metrics server's reads and clean-up over the run store (issue 17): a session's
history, the sessions' counts, and retention (expired sessions and old batch ids).

A session is a run of model type :data:`~Utilities.session_ingest.EXTERNAL`; everything
here reads the store's own tables through its engine, so it works on SQLite and
PostgreSQL alike and adds no store state of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa

from Utilities.run_store import TERMINAL_STATUSES, RunNotFound, RunStore
from Utilities.run_store_schema import ApiToken, Event, IngestBatch, Run, utcnow
from Utilities.session_ingest import EXTERNAL

log = logging.getLogger(__name__)

_EVENTS, _RUNS = Event.__table__, Run.__table__
_BATCHES, _TOKENS = IngestBatch.__table__, ApiToken.__table__
# The store's event kinds as the session's message types (web/live_tail.py's names).
HISTORY_TYPES = {"training_metrics": "episode", "bot_decision": "decision",
                 "graph_update": "graph", "training_status": "status"}
_TYPE_OF_KIND = {kind: name for name, kind in HISTORY_TYPES.items()}
MAX_HISTORY_PAGE = 1000


def history(store: RunStore, run_id: str, types: Iterable[str], *, after: int = 0,
            limit: int = 100, offset: int = 0, episode_from: int | None = None,
            episode_to: int | None = None, since: float | None = None,
            until: float | None = None) -> tuple[list[dict], bool]:
    """A page of the session's items of ``types`` (HISTORY_TYPES' names) in seq order:
    after seq ``after``, skipping ``offset``, at most ``limit``; with an episode range
    only items that carry an episode in it, with a time range (epoch seconds, ends
    included) only items of that wall time. Returns (items, whether more follow)."""
    e = _EVENTS.c
    kinds = [HISTORY_TYPES[name] for name in types]
    query = sa.select(e.seq, e.kind, e.payload, e.wall_time).where(
        e.run_id == run_id, e.kind.in_(kinds), e.seq > after)
    if episode_from is not None or episode_to is not None:
        # as_float: an integer cast is 32 bits on PostgreSQL; episodes are exact below 2**53
        episode = e.payload["episode"].as_float()
        query = query.where(episode.is_not(None))
        if episode_from is not None:
            query = query.where(episode >= episode_from)
        if episode_to is not None:
            query = query.where(episode <= episode_to)
    if since is not None:
        query = query.where(e.wall_time >= since)
    if until is not None:
        query = query.where(e.wall_time <= until)
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(e.seq).limit(limit + 1).offset(offset)).all()
    items = [{"seq": int(r.seq), "type": _TYPE_OF_KIND[r.kind], "wall_time": float(r.wall_time),
              "data": r.payload} for r in rows[:limit]]
    return items, len(rows) > limit


def session_counts(store: RunStore) -> dict[str, int]:
    """How many sessions there are in each status."""
    r = _RUNS.c
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(r.status, sa.func.count()).where(
            r.model_type == EXTERNAL).group_by(r.status)).all()
    return {status: int(count) for status, count in rows}


def expired_sessions(store: RunStore, ended_before: datetime) -> list[str]:
    """Ids of sessions that ended before ``ended_before`` (naive UTC)."""
    r = _RUNS.c
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(r.id).where(
            r.model_type == EXTERNAL, r.status.in_(sorted(TERMINAL_STATUSES)),
            r.ended_at < ended_before)).scalars())


def revoke_scoped_tokens(store: RunStore, run_ids: Iterable[str]) -> int:
    """Delete the API tokens scoped to these sessions; how many."""
    ids = list(run_ids)
    if not ids:
        return 0
    with store.engine.begin() as conn:
        return conn.execute(sa.delete(_TOKENS).where(_TOKENS.c.scope.in_(ids))).rowcount


def clean_expired(store: RunStore, *, retention_seconds: float | None,
                  batch_id_seconds: float, now: datetime | None = None) -> dict[str, int]:
    """Delete sessions that ended more than ``retention_seconds`` ago (None: keep them)
    with their data and scoped tokens, and batch ids older than ``batch_id_seconds``
    (a retry comes long before). Returns what was deleted."""
    now = now or utcnow()
    deleted = 0
    if retention_seconds is not None:
        expired = expired_sessions(store, now - timedelta(seconds=retention_seconds))
        for run_id in expired:
            try:
                store.delete_run(run_id)
                deleted += 1
            except RunNotFound:  # another server process got there first
                continue
        revoke_scoped_tokens(store, expired)
        if expired:
            log.info("retention: deleted %d expired session(s)", deleted)
    with store.engine.begin() as conn:
        batches = conn.execute(sa.delete(_BATCHES).where(
            _BATCHES.c.created_at < now - timedelta(seconds=batch_id_seconds))).rowcount
    return {"sessions": deleted, "batch_ids": int(batches or 0)}
