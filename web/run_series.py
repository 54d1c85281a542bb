"""Chart series of a run: stored series and their moving averages, each cut to at most
``max_points`` by the one min/max downsampler (:mod:`Utilities.downsample`) the store
uses, so a spike survives however long the run."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from Utilities.downsample import minmax_indices
from web.run_stats import ROLLING_WINDOW, RunData, num, trailing_means

# 0/1 series are not drawn as points: wins become the rolling win rate.
NOT_CHARTED = ("episode/win", "episode/terminated", "train/global_step")


def _point(p: dict) -> dict:
    return {"step": p["step"], "value": num(p["value"]), "wall_time": p["wall_time"]}


def thinned(data: RunData, key: str, max_points: int) -> list[dict]:
    """The series as charts get it: downsampled by the store, or here when this request
    already read it whole (one query fewer)."""
    if key not in data.keys:
        return []
    if data.is_loaded(key):
        points = data.full(key)
        return [_point(points[i]) for i in minmax_indices([p["value"] for p in points],
                                                          max_points)]
    return [_point(p) for p in data.store.metric_series(data.run_id, key, max_points=max_points)]


def smoothed(points: list[dict], window: int, max_points: int) -> list[dict]:
    """The trailing moving average of a series, downsampled like the series itself."""
    if not points:
        return []
    means = trailing_means(points, window)
    return [{"step": points[i]["step"], "value": num(means[i])}
            for i in minmax_indices(means, max_points)]


def series(data: RunData, keys: Iterable[str], max_points: int, smooth: int | None,
           smooth_keys: Iterable[str] | None = None) -> dict[str, Any]:
    """{"series": {key: points}, "smoothed": {key: points}} for the charts."""
    keys = list(keys)
    smooth_keys = keys if smooth_keys is None else [k for k in smooth_keys if k in keys]
    averages = {}
    if smooth:
        averages = {k: smoothed(data.full(k), smooth, max_points) for k in smooth_keys}
    return {"series": {k: thinned(data, k, max_points) for k in keys}, "smoothed": averages}


def live_series(data: RunData, max_points: int, smooth: int) -> dict[str, Any]:
    """What the run page plots: every charted key (steps and values only: times are dead
    weight there), the reward's moving average and the rolling win rate."""
    charted = [k for k in data.keys if k not in NOT_CHARTED]
    body = series(data, charted, max_points, smooth, ["episode/reward"])
    body["series"] = {key: [{"step": p["step"], "value": p["value"]} for p in points]
                      for key, points in body["series"].items()}
    if "episode/win" in data.keys:
        body["smoothed"]["episode/win"] = smoothed(data.full("episode/win"), ROLLING_WINDOW,
                                                   max_points)
    return body
