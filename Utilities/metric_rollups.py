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
