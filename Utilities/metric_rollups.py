"""Running statistics and min/max rollups of metric points: the arithmetic, no database.

The run store keeps, beside every metric point, two kinds of summaries that make reads
independent of a series' length (:mod:`Utilities.metric_writes` stores them in the same
transaction as the points):

* per series: count, finite count, sum, min and max (with their steps), first and last
  step, and the last point (highest step; a step written twice reports its latest write);
* per series, level and bucket, a pyramid of rollups: level ``L`` groups the points whose
  ``step >> (ROLLUP_SHIFT * L)`` is equal and keeps their count, finite count, sum, and
  the min and max points. A chart of a range reads the finest level with few enough
  buckets: a few hundred rows, whatever the number of points.

Only finite values count: a NULL (NaN) or an infinity is counted in ``points`` and nowhere
else. Ties: the lowest step wins a min or a max (and, at equal steps, the earliest write),
which is what ``min``/``max`` over the points in (step, write) order give.

Base 8 (``ROLLUP_SHIFT`` 3) costs about one rollup row per seven points written and picks
a level within a factor of 8 of the wanted resolution; ten levels reach buckets of 2^30
steps, past which a chart cuts the top level with :func:`Utilities.downsample.minmax_indices`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

ROLLUP_SHIFT = 3
ROLLUP_LEVELS = 10
# Up to this many points a batch is summarised in plain Python: numpy's fixed cost per
# call (~40 calls for a pyramid, a sort and their conversions, ~290 µs) was most of a
# small batch's write, and the logger's 200 ms trickle is a few dozen points (issue 13).
# Measured: the logger's shape (4 series, consecutive steps) 27 against 287 µs at 12
# points, 226 against 479 µs at 256; points far apart (a group each on several levels)
# break even near 256.
SMALL_BATCH = 256

# What :func:`summaries` returns, field by field (the writer's statements use these
# orders). ``None`` where a value is not finite: a min/max of a group without a finite
# value, or a last point whose value is NaN or infinite.
SERIES_FIELDS = ("id", "points", "finite", "total", "min_value", "min_step", "max_value",
                 "max_step", "first_step", "last_step", "last_value", "last_wall_time")
ROLLUP_FIELDS = ("series_id", "level", "bucket", "points", "finite", "total", "min_value",
                 "min_step", "min_wall_time", "max_value", "max_step", "max_wall_time")


@dataclass(frozen=True)
class Groups:
    """Aggregates of groups of points, one array element per group.

    ``min_value`` is +inf and ``max_value`` -inf where a group has no finite value."""

    series: np.ndarray
    bucket: np.ndarray
    points: np.ndarray
    finite: np.ndarray
    total: np.ndarray
    min_value: np.ndarray
    min_step: np.ndarray
    min_wall: np.ndarray
    max_value: np.ndarray
    max_step: np.ndarray
    max_wall: np.ndarray

    def __len__(self) -> int:
        return len(self.series)


@dataclass(frozen=True)
class SeriesDelta:
    """What one batch adds to each series it touches (one element per series)."""

    groups: Groups          # bucket is unused: the whole batch of the series is one group
    first_step: np.ndarray
    last_step: np.ndarray
    last_value: np.ndarray  # nan where the last point's value is NULL
    last_wall: np.ndarray


def _points(series: np.ndarray, step: np.ndarray, value: np.ndarray,
            wall: np.ndarray) -> Groups:
    """Every point as a group of its own (the level below level 1)."""
    finite = np.isfinite(value)
    return Groups(series=series, bucket=step, points=np.ones(len(step), np.int64),
                  finite=finite.astype(np.int64), total=np.where(finite, value, 0.0),
                  min_value=np.where(finite, value, np.inf), min_step=step, min_wall=wall,
                  max_value=np.where(finite, value, -np.inf), max_step=step, max_wall=wall)


def _merge(groups: Groups, bucket: np.ndarray) -> Groups:
    """Merge the groups that share (series, bucket) into one each."""
    # The arrays arrive in write order; lexsort is stable, so equal (value, step) keep it.
    by_min = np.lexsort((groups.min_step, groups.min_value, bucket, groups.series))
    series, keys = groups.series[by_min], bucket[by_min]
    starts = np.flatnonzero(np.r_[True, (series[1:] != series[:-1]) | (keys[1:] != keys[:-1])])
    by_max = np.lexsort((groups.max_step, -groups.max_value, bucket, groups.series))
    lo, hi = by_min[starts], by_max[starts]
    return Groups(series=series[starts], bucket=keys[starts],
                  points=np.add.reduceat(groups.points[by_min], starts),
                  finite=np.add.reduceat(groups.finite[by_min], starts),
                  total=np.add.reduceat(groups.total[by_min], starts),
                  min_value=groups.min_value[lo], min_step=groups.min_step[lo],
                  min_wall=groups.min_wall[lo], max_value=groups.max_value[hi],
                  max_step=groups.max_step[hi], max_wall=groups.max_wall[hi])


def rollups(series: np.ndarray, step: np.ndarray, value: np.ndarray,
            wall: np.ndarray) -> list[Groups]:
    """A batch's contribution to every level of the pyramid: element ``L - 1`` is level L.

    Arrays are one element per point in write order; ``value`` holds nan for NULL."""
    level = _points(series, step, value, wall)
    pyramid = []
    for _ in range(ROLLUP_LEVELS):
        if pyramid and (level.series[1:] != level.series[:-1]).all():
            # One group per series (sorted by series): every higher level holds the same
            # groups, only their buckets shift. A small batch (the logger's 200 ms
            # trickle) stops sorting here, after level 1.
            level = replace(level, bucket=level.bucket >> ROLLUP_SHIFT)
        else:
            level = _merge(level, level.bucket >> ROLLUP_SHIFT)
        pyramid.append(level)
    return pyramid


def series_delta(series: np.ndarray, step: np.ndarray, value: np.ndarray,
                 wall: np.ndarray) -> SeriesDelta:
    """A batch's contribution to the running statistics of each series in it."""
    whole = _merge(_points(series, step, value, wall), np.zeros(len(step), np.int64))
    # Last point of each series: highest step, then latest write (lexsort is stable).
    by_last = np.lexsort((step, series))
    ends = np.flatnonzero(np.r_[series[by_last][1:] != series[by_last][:-1], True])
    last, first = by_last[ends], by_last[np.r_[0, ends[:-1] + 1]]
    return SeriesDelta(groups=whole, first_step=step[first], last_step=step[last],
                       last_value=value[last], last_wall=wall[last])


def summaries(series: np.ndarray, step: np.ndarray, value: np.ndarray,
              wall: np.ndarray) -> tuple[list[tuple], list[tuple]]:
    """A batch's contribution to its series' statistics and to the rollup pyramid, as
    rows of :data:`SERIES_FIELDS` (one per series, by id) and :data:`ROLLUP_FIELDS` (by
    level, series, bucket). Arrays as for :func:`rollups`; a batch of up to
    :data:`SMALL_BATCH` points goes to :func:`small_summaries`."""
    if len(step) <= SMALL_BATCH:
        return small_summaries(series.tolist(), step.tolist(), value.tolist(), wall.tolist())
    delta = series_delta(series, step, value, wall)
    g = delta.groups
    stats = list(zip(g.series.tolist(), g.points.tolist(), g.finite.tolist(), g.total.tolist(),
                     finite_or_none(g.min_value), where_finite(g.min_step, g.min_value),
                     finite_or_none(g.max_value), where_finite(g.max_step, g.max_value),
                     delta.first_step.tolist(), delta.last_step.tolist(),
                     finite_or_none(delta.last_value), delta.last_wall.tolist(), strict=True))
    rows: list[tuple] = []
    for level, g in enumerate(rollups(series, step, value, wall), start=1):
        rows += zip(g.series.tolist(), [level] * len(g), g.bucket.tolist(), g.points.tolist(),
                    g.finite.tolist(), g.total.tolist(), finite_or_none(g.min_value),
                    where_finite(g.min_step, g.min_value), where_finite(g.min_wall, g.min_value),
                    finite_or_none(g.max_value), where_finite(g.max_step, g.max_value),
                    where_finite(g.max_wall, g.max_value), strict=True)
    return stats, rows


# A group in the plain-Python path: [bucket, points, finite, total, low, high], where low
# is (value, step, write index, wall) of its min point and high (-value, step, write
# index, wall, value) of its max point, so that min() of either picks the winner by the
# rules above (lowest value / highest value, then lowest step, then earliest write);
# None without a finite value.
_Group = list


def small_summaries(series: list[int], step: list[int], value: list[float],
                    wall: list[float]) -> tuple[list[tuple], list[tuple]]:
    """:func:`summaries` of a small batch in plain Python (lists, nan for a NULL value):
    the same rows and figures, except that a total may differ in its last bits (it is
    summed in another order). The series' figures are its top level's groups merged."""
    members: dict[int, list[int]] = {}
    for index, sid in enumerate(series):
        if sid in members:
            members[sid].append(index)
        else:
            members[sid] = [index]
    stats, levels = [], [[] for _ in range(ROLLUP_LEVELS)]
    for sid in sorted(members):
        points = members[sid]
        _, count, finite, total, low, high = _small_pyramid(sid, points, step, value, wall,
                                                            levels)
        last = points[0]
        for i in points:  # highest step, then latest write
            if step[i] >= step[last]:
                last = i
        last_value = value[last] if value[last] - value[last] == 0.0 else None
        stats.append((sid, count, finite, total,
                      *((low[0], low[1]) if low else (None, None)),
                      *((high[4], high[1]) if high else (None, None)),
                      min([step[i] for i in points]), step[last], last_value, wall[last]))
    return stats, [row for rows in levels for row in rows]


def _small_pyramid(sid: int, points: list[int], step: list[int], value: list[float],
                   wall: list[float], levels: list[list[tuple]]) -> _Group:
    """Append one series' rollup rows to ``levels`` (one list per level, by bucket) and
    return the series' groups merged into one."""
    groups: dict[int, _Group] = {}
    for i in points:
        v, s = value[i], step[i]
        bucket = s >> ROLLUP_SHIFT
        group = groups.get(bucket)
        if v - v != 0.0:  # nan or +/-inf: counted, nothing else
            if group is None:
                groups[bucket] = [bucket, 1, 0, 0.0, None, None]
            else:
                group[1] += 1
        elif group is None:
            groups[bucket] = [bucket, 1, 1, v, (v, s, i, wall[i]), (-v, s, i, wall[i], v)]
        else:
            group[1] += 1
            group[2] += 1
            group[3] += v
            # The tuple comparisons of _merged, without making a tuple for every point.
            low, high = group[4], group[5]
            if low is None or v < low[0] or (v == low[0] and s < low[1]):
                group[4] = (v, s, i, wall[i])
            if high is None or v > high[4] or (v == high[4] and s < high[1]):
                group[5] = (-v, s, i, wall[i], v)
    level = [groups[bucket] for bucket in sorted(groups)]
    number = 1
    while True:
        levels[number - 1] += [(sid, number, *_group_row(group)) for group in level]
        if number == ROLLUP_LEVELS:
            return _merged(level)
        if len(level) == 1:
            break
        merged: dict[int, list[_Group]] = {}
        for group in level:
            bucket = group[0] >> ROLLUP_SHIFT
            if bucket in merged:
                merged[bucket].append(group)
            else:
                merged[bucket] = [group]
        level = [_merged(parts, bucket) for bucket, parts in merged.items()]
        number += 1
    # One group from here up: every higher level holds it, its bucket shifted.
    row = levels[number - 1][-1]
    bucket = row[2]
    for above in range(number + 1, ROLLUP_LEVELS + 1):
        bucket >>= ROLLUP_SHIFT
        levels[above - 1].append((sid, above, bucket, *row[3:]))
    return level[0]


def _merged(groups: list[_Group], bucket: int | None = None) -> _Group:
    """One group of several (its bucket ``bucket``)."""
    if len(groups) == 1:
        return [groups[0][0] if bucket is None else bucket, *groups[0][1:]]
    lows = [g[4] for g in groups if g[4] is not None]
    highs = [g[5] for g in groups if g[5] is not None]
    return [bucket, sum(g[1] for g in groups), sum(g[2] for g in groups),
            sum(g[3] for g in groups), min(lows) if lows else None,
            min(highs) if highs else None]


def _group_row(group: _Group) -> tuple:
    """(bucket, points, finite, total, min value/step/wall, max value/step/wall)."""
    bucket, count, finite, total, low, high = group
    if low is None:
        return bucket, count, finite, total, None, None, None, None, None, None
    return bucket, count, finite, total, low[0], low[1], low[3], high[4], high[1], high[3]


def finite_or_none(values: np.ndarray) -> list[float | None]:
    """Array values as floats, with nan and the +/-inf of an empty min/max as None."""
    return where_finite(values, values)


def where_finite(items: np.ndarray, values: np.ndarray) -> list[Any]:
    """The items (values, steps or times of min or max points) as Python numbers, None
    where the value is not finite (a group without a finite value)."""
    kept = items.astype(object)
    kept[~np.isfinite(values)] = None
    return kept.tolist()


def level_for(points: int, max_buckets: int) -> int:
    """The finest level at which ``points`` points can fit ``max_buckets`` buckets
    (a lower bound: each bucket of level L holds at most 8^L distinct steps)."""
    level = 1
    while level < ROLLUP_LEVELS and points > max_buckets << (ROLLUP_SHIFT * level):
        level += 1
    return level
