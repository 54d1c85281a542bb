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


def overlay_points(session: Session, stats: dict, max_points: int) -> list[dict]:
    """At most ``max_points`` points of a whole series for an overlay of many series
    (the compare view draws 80 at once), in one rollup read: the series whole when it has
    at most ``max_points`` points, else each bucket's min and max point at the finest
    level whose buckets over the series' steps number at most ``max_points // 2``, plus
    its first and last point. Between ``max_points / 8`` and ``max_points`` points (the
    levels are 8x apart), where :func:`chart_points` reads ``ROLLUP_READ`` times more
    buckets to come closer to ``max_points``: at 20 series a chart, the rows read, not
    the resolution, set the time."""
    if not stats["points"]:
        return []
    if stats["points"] <= max_points:
        return raw_points(session, stats["id"])
    low, high = stats["first_step"], stats["last_step"]
    level = level_for(high - low + 1, max(1, max_points // 2))  # steps: an upper bound
    found = _extremes(session, stats["id"], level, low, high) + _ends(session, stats["id"],
                                                                      low, high)
    found = sorted({(p["step"], p["wall_time"]): p for p in found}.values(),
                   key=lambda p: (p["step"], p["wall_time"]))
    if len(found) <= max_points:
        return found
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


def points_after(session: Session, run_id: str, keys: list[str] | None, after_id: int,
                 limit: int, up_to: int | None = None) -> tuple[dict[str, list[dict]], int]:
    """A run's points (of ``keys``, default all) written after point id ``after_id`` (up
    to id ``up_to``, if given), per key in write order (at most ``limit``), and the id to
    ask after next time.

    One statement, points joined to their series: read apart (the run's series, then
    their points) a reader could miss a series created after its first read together
    with points whose ids it then passed for ever (SQLite's driver gives each SELECT
    its own snapshot)."""
    p, s = _POINTS.c, _SERIES.c
    # "+ 0": an index on series_id would read every point of the series; the primary
    # key's range reads only the new ones, each joined to its series by that key.
    where = [p.id > after_id, s.run_id == run_id]
    if keys is not None:
        where.append(s.key.in_(keys))
    if up_to is not None:
        where.append(p.id <= up_to)
    rows = session.execute(
        select(s.key, p.step, p.value, p.wall_time, p.id)
        .select_from(_POINTS.join(_SERIES, s.id == p.series_id + 0))
        .where(*where).order_by(p.id).limit(limit)
    ).all()
    # point()'s dicts, built inline: a run's live tail makes one for every point a
    # session ingests (60k a second), and a call per point was half its time.
    found: dict[str, list[dict]] = {}
    for key, step, value, wall, _ in rows:
        points = found.get(key)
        if points is None:
            points = found[key] = []
        points.append({"step": int(step),
                       "value": None if value is None or value != value else float(value),
                       "wall_time": float(wall)})
    return found, int(rows[-1][4]) if rows else after_id


def bucket_sums(session: Session, stats: dict, max_buckets: int, level: int | None = None,
                start: int | None = None) -> tuple[int, list[dict]]:
    """(level, buckets) of a series: each bucket's ``bucket`` number, ``first``/``last``
    step it covers (clipped to the series' steps), ``points``, ``finite`` and ``total``,
    in step order. What a trailing mean over a long series is computed from.

    Without ``level``: the whole series at the finest level with at most ``max_buckets``
    buckets (at most ``max_buckets + 1`` rows read per level tried). With ``level``: that
    level's buckets from the one holding step ``start`` on, at most ``max_buckets + 1`` of
    them (one more than asked tells a caller there were too many)."""
    if not stats["points"]:
        return level or 1, []
    r = _ROLLUPS.c
    chosen = level or level_for(stats["points"], max_buckets)
    while True:
        query = select(r.bucket, r.points, r.finite, r.total).where(
            r.series_id == stats["id"], r.level == chosen)
        if start is not None:
            query = query.where(r.bucket >= start >> (ROLLUP_SHIFT * chosen))
        rows = session.execute(query.order_by(r.bucket).limit(max_buckets + 1)).all()
        if level is not None or len(rows) <= max_buckets or chosen == ROLLUP_LEVELS:
            break
        chosen += 1
    shift = ROLLUP_SHIFT * chosen
    low, high = stats["first_step"], stats["last_step"]
    return chosen, [{"bucket": int(row.bucket), "first": max(low, int(row.bucket) << shift),
                     "last": min(high, ((int(row.bucket) + 1) << shift) - 1),
                     "points": int(row.points), "finite": int(row.finite),
                     "total": float(row.total or 0.0)} for row in rows]


def points_before(session: Session, series_id: int, end: int, count: int) -> list[dict]:
    """The last ``count`` points of a series with a step at most ``end``, oldest first
    (an index-bounded read: the window a trailing mean of new points needs)."""
    p = _POINTS.c
    rows = session.execute(
        select(p.step, p.value, p.wall_time).where(p.series_id == series_id, p.step <= end)
        .order_by(p.step.desc(), p.id.desc()).limit(count)).all()
    return [point(*row) for row in reversed(rows)]


def last_point_ids(session: Session, series_ids: Iterable[int]) -> int:
    """The highest id among the last point (by step) of each series, 0 if none: a point
    cursor for :func:`points_after` read in one statement of index lookups.

    A series' points are written by one writer, one transaction after another, so every
    point of theirs committed later has a higher id; a series whose last step was
    written before an earlier step's rewrite gives a lower id, which only re-sends points
    a reader already has."""
    wanted = sorted(set(series_ids))
    if not wanted:
        return 0
    p = _POINTS.c
    parts = [select(p.id).where(p.series_id == sid).order_by(p.step.desc(), p.id.desc())
             .limit(1).subquery() for sid in wanted]
    query = sa.union_all(*(select(part) for part in parts))
    return max((int(row.id) for row in session.execute(query)), default=0)


def steps_reached(session: Session, stats: dict, times: list[float]) -> list[int | None]:
    """For each wall time, the step of the last point written at or before it (None when
    none was), by a search over steps: one statement of index lookups per round for all
    times together. Each round probes where the wall times say the answer lies
    (interpolation: a training logs at a steady pace, so two to four rounds usually do),
    and halves the range instead after a round that did not halve it, so the rounds stay
    within twice log2(steps) whatever the pace.

    Assumes wall times do not decrease with the step (a training's log), as the bisection
    over the whole series' wall times it replaces did."""
    found: list[int | None] = [None] * len(times)
    if not stats["points"] or not times:
        return found
    first_wall = _walls_at_or_after(session, stats["id"], [stats["first_step"]])[0]
    # Invariant: the first point at or after low[i] was written by times[i]; the first
    # at or after high[i] was not (or there is none). So when they meet, a point sits at
    # low[i] and it is the last one written by then. Walls ride along to interpolate.
    reached = [i for i, t in enumerate(times) if first_wall is not None and first_wall <= t]
    low = {i: (stats["first_step"], first_wall) for i in reached}
    high = {i: (stats["last_step"] + 1, stats["last_wall_time"]) for i in reached}
    before: dict[int, int | None] = {i: None for i in reached}  # width a round ago
    while searching := [i for i in reached if high[i][0] - low[i][0] > 1]:
        middles = [_probe(low[i], high[i], times[i], before[i]) for i in searching]
        walls = _walls_at_or_after(session, stats["id"], middles)
        for i, middle, wall in zip(searching, middles, walls, strict=True):
            before[i] = high[i][0] - low[i][0]
            if wall is not None and wall <= times[i]:
                low[i] = (middle, wall)
            else:
                high[i] = (middle, high[i][1] if wall is None else wall)
    for i in reached:
        found[i] = low[i][0]
    return found


def _probe(low: tuple[int, float], high: tuple[int, float], time: float,
           before: int | None) -> int:
    """The step to probe next, strictly between low and high: interpolated from their
    wall times, or the middle after a round that did not halve the range."""
    (low_step, low_wall), (high_step, high_wall) = low, high
    middle = (low_step + high_step) // 2
    if before is not None and high_step - low_step > before // 2:
        return middle
    if high_wall is None or not high_wall > low_wall:
        return middle
    guess = low_step + int((time - low_wall) / (high_wall - low_wall) * (high_step - low_step))
    return min(high_step - 1, max(low_step + 1, guess))


# Probes per statement: well under SQLite's 2,000 result columns and 32,766 variables.
_PROBES = 400


def _walls_at_or_after(session: Session, series_id: int,
                       steps: list[int]) -> list[float | None]:
    """The wall time of the first point at or after each step (None past the end): one
    row of scalar subqueries (each an index lookup) per statement. Written as text: the
    same statement built from SQLAlchemy constructs cost ~0.5 ms of Python per probe."""
    table = _POINTS.name
    found: list[float | None] = []
    for offset in range(0, len(steps), _PROBES):
        chunk = steps[offset:offset + _PROBES]
        columns = ", ".join(
            f"(SELECT wall_time FROM {table} WHERE series_id = :series AND step >= :s{i} "
            "ORDER BY step, id LIMIT 1)" for i in range(len(chunk)))
        values = {f"s{i}": int(step) for i, step in enumerate(chunk)}
        row = session.execute(sa.text(f"SELECT {columns}"),
                              {"series": series_id, **values}).one()
        found += [None if wall is None else float(wall) for wall in row]
    return found
