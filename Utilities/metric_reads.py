"""Reading metric series in time independent of their length: statistics rows, the
rollup pyramid for charts, index-bounded tails and incremental reads after a point id.

Functions take an open SQLAlchemy Session of :class:`Utilities.run_store.RunStore`, which
checks arguments and runs first; nothing here reads a whole series unless asked to.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from Utilities.downsample import minmax_indices
from Utilities.metric_rollups import ROLLUP_LEVELS, ROLLUP_SHIFT, level_for
from Utilities.run_store_schema import MetricPoint, MetricRollup, MetricSeries, finite_or_none

_SERIES, _POINTS, _ROLLUPS = (m.__table__ for m in (MetricSeries, MetricPoint, MetricRollup))
# Buckets read per point asked for: enough that minmax_indices, not the level, sets the
# resolution; few enough that a 1,000-point chart reads at most 4,000 rollup rows.
ROLLUP_READ = 4
_STAT_COLUMNS = ("points", "finite", "total", "min_value", "min_step", "max_value",
                 "max_step", "first_step", "last_step", "last_value", "last_wall_time")


def point(step: float, value: float | None, wall_time: float) -> dict[str, Any]:
    """One series point; NaN values come back as None."""
    return {"step": int(step), "value": finite_or_none(value), "wall_time": float(wall_time)}


def stats_of(row: Any) -> dict[str, Any]:
    """A metric_series row's statistics as a plain dict (``id`` is the series id)."""
    stats = {name: getattr(row, name) for name in _STAT_COLUMNS}
    stats["id"] = int(row.id)
    stats["mean"] = stats["total"] / stats["finite"] if stats["finite"] else None
    return stats


def series_of_runs(session: Session, run_ids: Iterable[str]) -> dict[str, dict[str, dict]]:
    """{run_id: {key: statistics}} of every series with points, in one query."""
    wanted = sorted(set(run_ids))
    result: dict[str, dict[str, dict]] = {run_id: {} for run_id in wanted}
    if not wanted:
        return result
    query = (select(_SERIES).where(_SERIES.c.run_id.in_(wanted), _SERIES.c.points > 0)
             .order_by(_SERIES.c.run_id, _SERIES.c.key))
    for row in session.execute(query):
        result[row.run_id][row.key] = stats_of(row)
    return result


def raw_points(session: Session, series_id: int, start: int | None = None,
               end: int | None = None, limit: int | None = None) -> list[dict]:
    """The stored points of a series in (step, write) order, optionally step-bounded."""
    p = _POINTS.c
    query = select(p.step, p.value, p.wall_time).where(p.series_id == series_id)
    if start is not None:
        query = query.where(p.step >= start)
    if end is not None:
        query = query.where(p.step <= end)
    rows = session.execute(query.order_by(p.step, p.id).limit(limit)).all()
    return [point(*row) for row in rows]


def chart_points(session: Session, stats: dict, max_points: int, start: int | None = None,
                 end: int | None = None) -> list[dict]:
    """At most ``max_points`` points of a series for a chart, read from the rollups.

    A range with at most ``max_points`` points comes back whole. Otherwise the finest
    rollup level with at most ``ROLLUP_READ * max_points`` buckets in the range gives each
    bucket's min and max point, the first and last point of the range are added, and
    :func:`Utilities.downsample.minmax_indices` cuts those to ``max_points`` (it keeps
    both ends). Reading a few times more buckets than needed keeps the resolution close
    to what was asked, where the next level up could be 8x coarser. A bucket that
    straddles a range end contributes only its extremes that fall inside the range."""
    low = stats["first_step"] if start is None else max(start, stats["first_step"])
    high = stats["last_step"] if end is None else min(end, stats["last_step"])
    if not stats["points"] or low > high:
        return []
    whole = low == stats["first_step"] and high == stats["last_step"]
    if whole and stats["points"] <= max_points:
        return raw_points(session, stats["id"])
    if not whole:
        head = raw_points(session, stats["id"], low, high, limit=max_points + 1)
        if len(head) <= max_points:
            return head
    buckets = ROLLUP_READ * max_points
    level = level_for(stats["points"], buckets) if whole else 1
    while level < ROLLUP_LEVELS and _bucket_count(session, stats["id"], level, low, high,
                                                  buckets) > buckets:
        level += 1
    found = _extremes(session, stats["id"], level, low, high)
    found += _ends(session, stats["id"], low, high)
    found = sorted({(p["step"], p["wall_time"]): p for p in found}.values(),
                   key=lambda p: (p["step"], p["wall_time"]))
    return [found[i] for i in minmax_indices([p["value"] for p in found], max_points)]


def _bucket_range(level: int, low: int, high: int) -> tuple[int, int]:
    shift = ROLLUP_SHIFT * level
    return low >> shift, high >> shift


def _bucket_count(session: Session, series_id: int, level: int, low: int, high: int,
                  limit: int) -> int:
    """Buckets of a level in the range, counting no further than limit + 1."""
    r = _ROLLUPS.c
    first, last = _bucket_range(level, low, high)
    inner = (select(r.bucket).where(r.series_id == series_id, r.level == level,
                                    r.bucket.between(first, last)).limit(limit + 1).subquery())
    return int(session.scalar(select(sa.func.count()).select_from(inner)) or 0)


def _extremes(session: Session, series_id: int, level: int, low: int, high: int) -> list[dict]:
    """Each bucket's min and max point within [low, high]."""
    r = _ROLLUPS.c
    first, last = _bucket_range(level, low, high)
    rows = session.execute(
        select(r.min_step, r.min_value, r.min_wall_time, r.max_step, r.max_value,
               r.max_wall_time)
        .where(r.series_id == series_id, r.level == level, r.bucket.between(first, last),
               r.min_value.is_not(None)).order_by(r.bucket))
    found = []
    for row in rows:
        for step, value, wall in (row[:3], row[3:]):
            if low <= step <= high:
                found.append(point(step, value, wall))
    return found


def _ends(session: Session, series_id: int, low: int, high: int) -> list[dict]:
    """The first and the last point of the range (index lookups)."""
    p = _POINTS.c
    base = select(p.step, p.value, p.wall_time).where(
        p.series_id == series_id, p.step.between(low, high))
    ends = []
    for order in ((p.step, p.id), (p.step.desc(), p.id.desc())):
        row = session.execute(base.order_by(*order).limit(1)).first()
        if row is not None:
            ends.append(point(*row))
    return ends


def tails(session: Session, series_ids: Iterable[int], count: int) -> dict[int, list[dict]]:
    """The last ``count`` points (by step) of each series, oldest first, in one statement."""
    wanted = sorted(set(series_ids))
    result: dict[int, list[dict]] = {sid: [] for sid in wanted}
    if not wanted:
        return result
    p = _POINTS.c
    parts = [select(p.series_id, p.id, p.step, p.value, p.wall_time)
             .where(p.series_id == sid).order_by(p.step.desc(), p.id.desc()).limit(count)
             .subquery() for sid in wanted]
    query = sa.union_all(*(select(part) for part in parts))
    for row in sorted(session.execute(query), key=lambda r: (r.series_id, r.step, r.id)):
        result[row.series_id].append(point(row.step, row.value, row.wall_time))
    return result


def points_after(session: Session, series: dict[int, str], after_id: int,
                 limit: int) -> tuple[dict[str, list[dict]], int]:
    """Points written after point id ``after_id`` to the given series ({id: key}), per
    key in write order (at most ``limit``), and the id to ask after next time."""
    if not series:
        return {}, after_id
    p = _POINTS.c
    rows = session.execute(
        select(p.id, p.series_id, p.step, p.value, p.wall_time)
        # "+ 0": an index on series_id would read every point of the series; the
        # primary key's range reads only the new ones.
        .where(p.id > after_id, (p.series_id + 0).in_(sorted(series)))
        .order_by(p.id).limit(limit)
    ).all()
    found: dict[str, list[dict]] = {}
    for row in rows:
        found.setdefault(series[row.series_id], []).append(
            point(row.step, row.value, row.wall_time))
    return found, int(rows[-1].id) if rows else after_id
