"""Chart series of a run and their moving averages, read in time independent of the
run's length: charts from the store's rollups (``metric_series(..., max_points=N)``),
averages by the rule below, and the run page's incremental update from a cursor.

Smoothing (a trailing moving average over ``window`` samples), decided per series:

* A series of at most ``EXACT_SMOOTH_POINTS`` (20,000) points is read whole (one index
  range, a few milliseconds) and gets the exact trailing mean of its last ``window``
  points at every point, cut to ``max_points`` by the min/max downsampler.
* A longer series is averaged over its rollup buckets: the finest level with at most
  ``max_points`` buckets (a bucket of level L spans 8^L steps), and at each bucket the mean
  of the finite values in it and the ``k - 1`` buckets before it, ``k = ceil(window /
  8^L)`` (at least one), drawn at the bucket's last step. So the window is ``window``
  steps or one bucket, whichever is wider: on a chart of 1,000 points a 1,000,000-episode
  run has ~1,000 episodes per point, and a 20-episode mean cannot be drawn there anyway.
  The read is at most ``max_points`` rollup rows, whatever the series' length. Where the
  steps are one per sample (episodes), whole buckets make this exactly the mean of the
  same points as a point-level window of ``k * 8^L``.

The incremental update appends: new points after a point id, new events after a seq,
and each average's tail recomputed from the first new step on (``{"from", "points"}``:
a client drops its points at or after ``from`` and appends these).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from Utilities.downsample import minmax_indices
from Utilities.metric_rollups import ROLLUP_SHIFT
from web.json_io import ApiError
from web.run_stats import ROLLING_WINDOW, RunData, num, trailing_means

# 0/1 series are not drawn as points: wins become the rolling win rate.
NOT_CHARTED = ("episode/win", "episode/terminated", "train/global_step")
# Longest series whose moving average is computed from its points (read whole).
EXACT_SMOOTH_POINTS = 20_000
# New points one incremental update sends at most; further behind, a snapshot is sent.
DELTA_POINTS = 10_000
# The averages the run page draws (key -> its window: None for the page's choice).
LIVE_AVERAGES = {"episode/reward": None, "episode/win": ROLLING_WINDOW}


def _chart_point(p: dict) -> dict:
    return {"step": p["step"], "value": num(p["value"])}


def thinned(data: RunData, key: str, max_points: int) -> list[dict]:
    """The series as charts get it: at most ``max_points`` points, from the rollups."""
    if key not in data.stats:
        return []
    return [{**_chart_point(p), "wall_time": p["wall_time"]}
            for p in data.store.metric_series(data.run_id, key, max_points=max_points)]


def over_buckets(points: int) -> bool:
    """Whether a series of this many points is averaged over its rollup buckets."""
    return points > EXACT_SMOOTH_POINTS


def bucket_means(buckets: list[dict], window: int, level: int,
                 first_bucket: int | None = None) -> list[dict]:
    """The trailing mean over ``k = ceil(window / 8^level)`` buckets at each bucket (from
    ``first_bucket`` on), drawn at its last step; None where they hold no finite value.
    Buckets are in bucket order; an absent (empty) bucket counts toward the k."""
    k = max(1, math.ceil(window / (1 << (ROLLUP_SHIFT * level))))
    numbers = [b["bucket"] for b in buckets]
    totals = list(accumulate((b["total"] for b in buckets), initial=0.0))
    finites = list(accumulate((b["finite"] for b in buckets), initial=0))
    found = []
    for i, bucket in enumerate(buckets):
        if first_bucket is not None and bucket["bucket"] < first_bucket:
            continue
        low = bisect_right(numbers, bucket["bucket"] - k, 0, i)  # first bucket inside
        finite = finites[i + 1] - finites[low]
        found.append({"step": bucket["last"],
                      "value": (totals[i + 1] - totals[low]) / finite if finite else None})
    return found


def smoothed(data: RunData, key: str, window: int, max_points: int) -> tuple[list[dict], int]:
    """(the trailing moving average of a series, at most ``max_points`` points; the rollup
    level it was computed at, 0 for exact), by the rule in this module's docstring."""
    stats = data.stats.get(key)
    if stats is None:
        return [], 0
    if not over_buckets(stats["points"]):
        points = data.store.metric_series(data.run_id, key)
        means = trailing_means(points, window)
        return [{"step": points[i]["step"], "value": num(means[i])}
                for i in minmax_indices(means, max_points)], 0
    found = data.store.series_buckets(data.run_id, key, max_points)
    return bucket_means(found["buckets"], window, found["level"]), found["level"]


def smoothed_tail(data: RunData, key: str, window: int, level: int,
                  new_points: list[dict]) -> dict[str, Any] | None:
    """The average from the first new point's step on, ``{"from": step, "points"}``,
    computed as :func:`smoothed` did at ``level`` (0: exact: the ``window - 1`` points
    before the new ones are read for their means). ``new_points`` is not empty. None when
    the tail spans more buckets than one update sends (the caller sends a snapshot)."""
    first = min(p["step"] for p in new_points)
    if level == 0:
        before = (data.store.points_before(data.run_id, key, first - 1, window - 1)
                  if window > 1 else [])
        joined = before + sorted(new_points, key=lambda p: p["step"])
        means = trailing_means(joined, window)
        return {"from": first, "points": [{"step": p["step"], "value": num(means[i])}
                                          for i, p in enumerate(joined) if i >= len(before)]}
    shift = ROLLUP_SHIFT * level
    k = max(1, math.ceil(window / (1 << shift)))
    first_bucket = first >> shift
    found = data.store.series_buckets(data.run_id, key, DELTA_POINTS, level=level,
                                      start_step=(first_bucket - k + 1) << shift)
    if len(found["buckets"]) > DELTA_POINTS:
        return None
    return {"from": first_bucket << shift,
            "points": bucket_means(found["buckets"], window, level, first_bucket)}


def series(data: RunData, keys: Iterable[str], max_points: int, smooth: int | None,
           smooth_keys: Iterable[str] | None = None) -> dict[str, Any]:
    """{"series": {key: points}, "smoothed": {key: points}} for the charts."""
    keys = list(keys)
    smooth_keys = keys if smooth_keys is None else [k for k in smooth_keys if k in keys]
    averages = {}
    if smooth:
        averages = {k: smoothed(data, k, smooth, max_points)[0] for k in smooth_keys}
    return {"series": {k: thinned(data, k, max_points) for k in keys}, "smoothed": averages}


# ------------------------------------------------------------------ the run page's feed


_CURSOR = re.compile(r"\d{1,18}(\.\d{1,18}){" + str(1 + len(LIVE_AVERAGES)) + "}")


@dataclass(frozen=True)
class LiveCursor:
    """Where a run page's feed stands: the last point id and event seq it sent, and the
    rollup level of each of its averages (0: exact), so that a tail is computed as the
    line it extends. Written ``points.events.level.level`` (digits and dots)."""

    points: int
    events: int
    levels: tuple[int, ...]

    def text(self) -> str:
        return ".".join(str(n) for n in (self.points, self.events, *self.levels))

    @classmethod
    def parse(cls, text: str) -> LiveCursor:
        """The cursor a feed reply gave; ApiError 400 naming ``after`` otherwise."""
        if not _CURSOR.fullmatch(text):
            raise ApiError(400, "after must be the cursor of an earlier live.json reply "
                                f"(digits and dots), not {text[:40]!r}", "after")
        numbers = [int(n) for n in text.split(".")]
        if any(level > 10 for level in numbers[2:]):
            raise ApiError(400, "after holds an unknown smoothing level", "after")
        return cls(numbers[0], numbers[1], tuple(numbers[2:]))


def live_snapshot(data: RunData, max_points: int,
                  smooth: int) -> tuple[dict[str, Any], tuple[int, ...]]:
    """What the run page plots (steps and values only: times are dead weight there): every
    charted key, the reward's moving average and the rolling win rate, and the rollup
    level of each average for the cursor."""
    charted = [k for k in data.keys if k not in NOT_CHARTED]
    body = {"series": {k: [_chart_point(p) for p in thinned(data, k, max_points)]
                       for k in charted}, "smoothed": {}}
    levels = []
    for key, window in LIVE_AVERAGES.items():
        points, level = smoothed(data, key, window or smooth, max_points)
        levels.append(level)
        if key in data.stats:
            body["smoothed"][key] = points
    return body, tuple(levels)


def live_delta(data: RunData, cursor: LiveCursor, smooth: int,
               ) -> tuple[dict[str, Any], int] | None:
    """The points written after the cursor (charted keys) and each average's new tail,
    and the next point id; None when the page is too far behind for one update."""
    new, next_id = data.store.metric_points_after(data.run_id, cursor.points,
                                                  limit=DELTA_POINTS + 1)
    if sum(len(points) for points in new.values()) > DELTA_POINTS:
        return None
    body: dict[str, Any] = {
        "series": {k: [_chart_point(p) for p in points] for k, points in new.items()
                   if k not in NOT_CHARTED},
        "smoothed": {}}
    for (key, window), level in zip(LIVE_AVERAGES.items(), cursor.levels, strict=True):
        if key not in new:
            continue
        tail = smoothed_tail(data, key, window or smooth, level, new[key])
        if tail is None:
            return None
        body["smoothed"][key] = tail
    return body, max(next_id, cursor.points)


def live_feed(data: RunData, after: LiveCursor | None, max_points: int,
              smooth: int) -> dict[str, Any]:
    """The run page's feed beside its run state and statistics.

    Without ``after`` (or when it is too far behind: more than DELTA_POINTS new points)
    a snapshot, ``"mode": "snapshot"``: every charted series and average, the latest
    checkpoints and events. With it, ``"mode": "delta"``: only what came after it (new
    points per key, each average's tail as ``{"from", "points"}``, new checkpoints and
    events). Both carry the ``cursor`` to ask after next and the checkpoint count."""
    if after is not None and (delta := live_delta(data, after, smooth)) is not None:
        body, point_id = delta
        events, checkpoints, seq = data.events_after(after.events)
        levels, mode = after.levels, "delta"
    else:
        point_id = data.store.point_cursor(data.run_id)  # before the figures it goes with
        events, checkpoints = data.events(), data.checkpoints()
        seq = data.event_cursor()
        body, levels = live_snapshot(data, max_points, smooth)
        mode = "snapshot"
    return {"mode": mode, "cursor": LiveCursor(point_id, seq, levels).text(),
            "checkpoints": checkpoints, "checkpoint_count": data.checkpoint_count(),
            "events": events, **body}
