"""Min/max downsampling of a series for charts: the one algorithm the run store (stored
series) and the web (series computed per request, like moving averages) share.

A chart of a million points costs the same as one of a thousand when both send at most
``max_points``. Averaging buckets would hide what people look for in training curves
(a reward spike, a loss blow-up), so each bucket keeps its lowest and its highest point,
and the first and last points are always kept: the x-range of the chart does not shrink.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Fewest points a downsampled series may ask for: both ends plus one bucket's min and max.
MIN_POINTS = 4


def minmax_indices(values: Sequence[float | None] | np.ndarray, max_points: int) -> list[int]:
    """Indices of ``values`` to keep, ascending, at most ``max_points`` of them.

    Short series come back whole. Longer ones are cut by ``np.array_split`` into
    ``max_points // 2 - 1`` near-equal-count buckets; each keeps its min- and max-value
    index, and both ends are kept (two slots go to them, so the count stays within
    ``max_points``). NaN/None never wins a min or a max. ``max_points`` >= MIN_POINTS.
    """
    if max_points < MIN_POINTS:
        raise ValueError(f"max_points must be at least {MIN_POINTS}; got {max_points}")
    length = len(values)
    if length <= max_points:
        return list(range(length))
    data = np.array([np.nan if v is None else v for v in values], dtype=float) \
        if not isinstance(values, np.ndarray) else values.astype(float, copy=False)
    low = np.where(np.isnan(data), np.inf, data)
    high = np.where(np.isnan(data), -np.inf, data)
    keep = {0, length - 1}
    for bucket in np.array_split(np.arange(length), max_points // 2 - 1):
        keep.update((int(bucket[np.argmin(low[bucket])]), int(bucket[np.argmax(high[bucket])])))
    return sorted(keep)
