"""The one min/max downsampler (the run store's series and the web's moving averages)."""

from __future__ import annotations

import numpy as np
import pytest

from Utilities.downsample import MIN_POINTS, minmax_indices


def test_short_series_is_kept_whole() -> None:
    assert minmax_indices([3.0, 1.0, 2.0], 4) == [0, 1, 2]
    assert minmax_indices([], 10) == []


def test_each_bucket_keeps_its_extremes_and_both_ends() -> None:
    values = np.sin(np.arange(1000) / 7.0)
    values[400], values[600] = 99.0, -99.0
    kept = minmax_indices(values, 50)
    assert len(kept) <= 50 and kept[0] == 0 and kept[-1] == 999
    assert {400, 600} <= set(kept) and kept == sorted(set(kept))
    for bucket in np.array_split(np.arange(1000), 50 // 2 - 1):
        assert int(bucket[np.argmax(values[bucket])]) in kept
        assert int(bucket[np.argmin(values[bucket])]) in kept


def test_missing_values_never_win() -> None:
    values = [None] * 10 + [1.0] + [None] * 10 + [-1.0] + [None] * 10
    assert minmax_indices(values, MIN_POINTS) == [0, 10, 21, 31]


def test_too_few_points_are_refused() -> None:
    with pytest.raises(ValueError, match="max_points"):
        minmax_indices([1.0] * 10, MIN_POINTS - 1)
