"""The alerts page's reads and writes on the run store's ``alerts`` table: a filtered
page newest first, the unread count, acknowledgement, delivery outcomes.

:meth:`Utilities.run_store.RunStore.record_alert` writes an alert (row and run event in
one transaction); everything after that lives here, on the store's engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select, update

from Utilities.run_store import MAX_PAGE_SIZE, RunStore
from Utilities.run_store_schema import ALERT_LEVELS, AlertRecord, iso_z, utcnow

_ALERTS = AlertRecord.__table__
_COLUMNS = ("alert_id", "run_id", "seq", "level", "rule", "title", "message", "data",
            "deliveries")


def as_dict(row: Any) -> dict[str, Any]:
    record = {name: getattr(row, name) for name in _COLUMNS}
    record["created_at"], record["acked_at"] = iso_z(row.created_at), iso_z(row.acked_at)
    record["acked"] = row.acked_at is not None
    record["delivery_failed"] = any(not d.get("ok") for d in row.deliveries or [])
    return record


def _filters(run_id: str | None, level: str | None, rule: str | None,
             acked: bool | None) -> list[Any]:
    where: list[Any] = []
    if level is not None:
        if level not in ALERT_LEVELS:
            raise ValueError(f"level must be one of {', '.join(ALERT_LEVELS)}; got {level!r}")
        where.append(_ALERTS.c.level == level)
    for column, value in ((_ALERTS.c.run_id, run_id), (_ALERTS.c.rule, rule)):
        if value is not None:
            where.append(column == value)
    if acked is not None:
        where.append(_ALERTS.c.acked_at.is_not(None) if acked else _ALERTS.c.acked_at.is_(None))
    return where


def list_alerts(store: RunStore, *, run_id: str | None = None, level: str | None = None,
                rule: str | None = None, acked: bool | None = None, limit: int = 50,
                offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """A page of alerts, newest first, and how many match."""
    if not 1 <= limit <= MAX_PAGE_SIZE or offset < 0:
        raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE} and offset ≥ 0")
    where = _filters(run_id, level, rule, acked)
    with store.engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(_ALERTS).where(*where)) or 0
        rows = conn.execute(select(_ALERTS).where(*where)
                            .order_by(_ALERTS.c.created_at.desc(), _ALERTS.c.id.desc())
                            .limit(limit).offset(offset)).all()
    return [as_dict(row) for row in rows], int(total)


def unread_count(store: RunStore) -> int:
    """Alerts nobody acknowledged (an index range: cheap on every page)."""
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(_ALERTS)
                               .where(_ALERTS.c.acked_at.is_(None))) or 0)


def rules_seen(store: RunStore) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.scalars(select(_ALERTS.c.rule).distinct().order_by(_ALERTS.c.rule)))


def acknowledge(store: RunStore, alert_ids: Iterable[str] | None = None) -> int:
    """Mark the given alerts (all unread ones when None) read; how many changed."""
    stmt = update(_ALERTS).where(_ALERTS.c.acked_at.is_(None)).values(acked_at=utcnow())
    if alert_ids is not None:
        ids = [str(alert_id) for alert_id in alert_ids]
        if not ids:
            return 0
        stmt = stmt.where(_ALERTS.c.alert_id.in_(ids))
    with store.engine.begin() as conn:
        return int(conn.execute(stmt).rowcount or 0)


def record_delivery(store: RunStore, alert_id: str, outcome: dict[str, Any]) -> None:
    """Append one channel's outcome to the alert's deliveries (row-locked on PG, so two
    channels' outcomes never overwrite each other)."""
    with store.engine.begin() as conn:
        query = select(_ALERTS.c.deliveries).where(_ALERTS.c.alert_id == alert_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        current = conn.scalar(query)
        if current is None:
            return  # not recorded (no store at the time) or deleted with its run
        conn.execute(update(_ALERTS).where(_ALERTS.c.alert_id == alert_id)
                     .values(deliveries=[*current, outcome]))


def exists(store: RunStore, alert_id: str) -> bool:
    with store.engine.connect() as conn:
        return conn.scalar(select(sa.literal(1)).where(_ALERTS.c.alert_id == alert_id)) is not None
