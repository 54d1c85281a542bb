"""The data contract: loading, every bad-input case, features, split, scaler, windows."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from Utilities.data_utils import (
    DataError,
    FeatureSpec,
    build_feature_spec,
    chronological_split,
    load_bars,
    prepare_data,
    scale_window,
    transform_features,
    window_frame,
)

GOOD = """Date,Open,High,Low,Close,Volume
2024-01-01,10,11,9,10.5,100
2024-01-02,10.5,11.5,10,11,120
2024-01-03,11,12,10.5,11.5,90
2024-01-04,11.5,12,11,11.2,80
"""


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def replace_line(text: str, line: int, new: str) -> str:
    lines = text.splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------- good files


def test_sample_csv_loads(sample_bars: pd.DataFrame) -> None:
    assert list(sample_bars.columns[:5]) == ["Open", "High", "Low", "Close", "Volume"]
    assert {"EMA_12", "RSI_14", "ATR_14"} <= set(sample_bars.columns)
    assert sample_bars.index.name == "Datetime"
    assert sample_bars.index.is_monotonic_increasing and sample_bars.index.is_unique
    assert all(dtype == np.float64 for dtype in sample_bars.dtypes)
    assert len(sample_bars) > 3000


def test_nq_file_with_separate_date_and_time_loads(nq_path: Path) -> None:
    bars = load_bars(nq_path)
    assert len(bars) == 500
    assert bars.index[0] == pd.Timestamp("2025-08-17 21:21:00")
    assert (bars.index[1:] - bars.index[:-1]).min() == pd.Timedelta(minutes=1)
    assert "EMA_9_EMA" in bars.columns and "Date" not in bars.columns


def test_columns_case_insensitive_epoch_timestamps_and_text_column(tmp_path: Path) -> None:
    text = ("timestamp,open,HIGH,low,close,ticker,signal\n"
            "1704067200,10,11,9,10.5,ABC,1\n1704153600,10.5,11.5,10,11,ABC,0\n")
    bars = load_bars(write(tmp_path, text))
    assert list(bars.columns) == ["Open", "High", "Low", "Close", "signal"]
    assert bars.index[1] == pd.Timestamp("2024-01-02")


def test_volume_is_optional_and_extras_keep_file_order(tmp_path: Path) -> None:
    text = "Datetime,zeta,Close,Open,alpha,High,Low\n2024-01-01 09:30,1,10,10,2,11,9\n"
    assert list(load_bars(write(tmp_path, text)).columns) == [
        "Open", "High", "Low", "Close", "zeta", "alpha"]


def test_leading_indicator_warmup_rows_are_trimmed(tmp_path: Path) -> None:
    text = GOOD.replace("Volume\n", "Volume,EMA\n").replace("100\n", "100,\n")
    text = text.replace(",120\n", ",120,10.9\n").replace(",90\n", ",90,11.2\n")
    text = text.replace(",80\n", ",80,11.2\n")
    bars = load_bars(write(tmp_path, text))
    assert len(bars) == 3 and bars.index[0] == pd.Timestamp("2024-01-02")


def test_uploaded_bytes_load_like_a_file() -> None:
    bars = load_bars(io.BytesIO(GOOD.encode()), name="upload.csv")
    assert len(bars) == 4


def test_gzip_csv_loads(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv.gz"
    pd.read_csv(io.StringIO(GOOD)).to_csv(path, index=False)
    assert len(load_bars(path)) == 4


def drop_column(text: str, column: str) -> str:
    return pd.read_csv(io.StringIO(text)).drop(columns=[column]).to_csv(index=False)


# -------------------------------------------------------------------- bad input

BAD_CASES = {
    "missing Close": (drop_column(GOOD, "Close"),
                      ["missing required column", "'Close'"]),
    "non-numeric cell": (replace_line(GOOD, 3, "2024-01-02,10.5,11.5,10,abc,120"),
                         ["column 'Close'", "non-numeric", "line 3", "'abc'"]),
    "empty cell": (replace_line(GOOD, 4, "2024-01-03,11,12,10.5,,90"),
                   ["column 'Close'", "missing or infinite", "line 4"]),
    "infinite value": (replace_line(GOOD, 5, "2024-01-04,11.5,inf,11,11.2,80"),
                       ["column 'High'", "missing or infinite", "line 5"]),
    "unsorted": (replace_line(GOOD, 4, "2023-12-30,11,12,10.5,11.5,90"),
                 ["timestamps go backwards", "line 4", "sort the file"]),
    "duplicate": (replace_line(GOOD, 3, "2024-01-01,10.5,11.5,10,11,120"),
                  ["duplicate timestamps", "line 3"]),
    "bad timestamp": (replace_line(GOOD, 2, "yesterday,10,11,9,10.5,100"),
                      ["column 'Date'", "unreadable timestamps", "line 2", "'yesterday'"]),
    "no time column": (GOOD.replace("Date,", "When,"), ["no time column", "When"]),
    "header only": ("Date,Open,High,Low,Close\n", ["no data rows"]),
    "semicolons": (GOOD.replace(",", ";"), ["semicolon", "delimiter"]),
    "tabs": (GOOD.replace(",", "\t"), ["tab", "delimiter"]),
    "non-positive price": (replace_line(GOOD, 2, "2024-01-01,10,11,0,10.5,100"),
                           ["column 'Low'", "positive", "line 2"]),
    "high below low": (replace_line(GOOD, 2, "2024-01-01,10,9,11,10.5,100"),
                       ["'High'", "below 'Low'", "line 2"]),
    "ragged row": (replace_line(GOOD, 3, "2024-01-02,10.5,11.5,10,11,120,7,8"),
                   ["not a readable CSV", "line 3"]),
    "clashing names": (GOOD.replace("Volume", "close"), ["duplicate column names", "close"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_raises_data_error_naming_the_problem(tmp_path: Path, case: str) -> None:
    text, expected = BAD_CASES[case]
    with pytest.raises(DataError) as info:
        load_bars(write(tmp_path, text, "prices.csv"))
    message = str(info.value)
    assert message.startswith("prices.csv: ")
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_error_carries_structured_fields(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_bars(write(tmp_path, replace_line(GOOD, 3, "2024-01-02,1,2,1,x,5")))
    assert info.value.column == "Close" and info.value.rows == [3]
    assert info.value.to_dict()["rows"] == ["3"]


def test_many_bad_rows_are_summarised(tmp_path: Path) -> None:
    rows = "".join(f"2024-01-{d:02d},1,2,1,,5\n" for d in range(1, 21))
    with pytest.raises(DataError, match=r"lines 2, 3, 4, 5, 6 and 15 more"):
        load_bars(write(tmp_path, "Date,Open,High,Low,Close,Volume\n" + rows))


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"bars\.csv: file is empty"):
        load_bars(write(tmp_path, ""))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_bars(tmp_path / "nope.csv")


def test_binary_file_is_not_csv(tmp_path: Path) -> None:
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(DataError, match=r"image\.csv: is not a CSV text file"):
        load_bars(path)


def test_too_few_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"has 4 rows; at least 50 are needed"):
        load_bars(write(tmp_path, GOOD), min_rows=50)


def test_prepare_data_names_the_lookback_when_rows_are_short(bars: pd.DataFrame) -> None:
    spec = build_feature_spec(bars)
    with pytest.raises(DataError, match="lookback 390"):
        prepare_data(bars, spec, lookback=390, source="sample.csv")


# --------------------------------------------------------------------- features


def test_price_columns_detected_on_the_nq_file(nq_path: Path) -> None:
    bars = load_bars(nq_path)
    spec = build_feature_spec(bars)
    assert "EMA_9_EMA" in spec.price_columns and "Volume" not in spec.price_columns
    heartbeat = [c for c in bars.columns if c.endswith("HeartbeatLong")]
    assert heartbeat and heartbeat[0] not in spec.price_columns


def test_explicit_feature_list_and_unknown_feature(bars: pd.DataFrame) -> None:
    spec = build_feature_spec(bars, ["Close", "RSI_14"])
    assert spec.features == ("Close", "RSI_14") and spec.price_columns == ("Close",)
    with pytest.raises(DataError, match=r"feature column\(s\) \['Nope'\] not in the data"):
        build_feature_spec(bars, ["Close", "Nope"])


@pytest.mark.parametrize("transform", ["raw", "diff", "returns"])
def test_transforms_follow_their_definition(bars: pd.DataFrame, transform: str) -> None:
    spec = FeatureSpec(("Close", "RSI_14"), transform, ("Close",))
    out = transform_features(bars, spec)
    close, rsi = bars["Close"].to_numpy(), bars["RSI_14"].to_numpy()
    expected = {"raw": close, "diff": np.diff(close), "returns": np.log(close[1:] / close[:-1])}
    np.testing.assert_allclose(out["Close"].to_numpy(), expected[transform])
    np.testing.assert_allclose(out["RSI_14"].to_numpy(), rsi[spec.warmup:])  # not a price


def test_unknown_transform() -> None:
    with pytest.raises(DataError, match="unknown feature transform 'logit'"):
        FeatureSpec(("Close",), "logit")


def test_features_at_t_do_not_depend_on_later_bars(bars: pd.DataFrame) -> None:
    spec = build_feature_spec(bars)
    before = transform_features(bars, spec)
    changed = bars.copy()
    changed.iloc[200:, :] *= 1.7
    after = transform_features(changed, spec)
    pd.testing.assert_frame_equal(before.iloc[:199], after.iloc[:199])


def test_spec_round_trips_through_dict(bars: pd.DataFrame) -> None:
    spec = build_feature_spec(bars, transform="diff")
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


# ------------------------------------------------------------- split and scaler


def test_split_is_chronological_and_complete() -> None:
    split = chronological_split(1000, lookback=30, val_fraction=0.2, test_fraction=0.1)
    assert split.train == (0, 700) and split.validation == (700, 900)
    assert split.test == (900, 1000)


def test_split_refuses_a_too_small_part() -> None:
    with pytest.raises(DataError, match="validation part"):
        chronological_split(100, lookback=5, val_fraction=0.05, test_fraction=0.1)


def test_scaler_is_fit_on_the_training_part_only(bars: pd.DataFrame) -> None:
    spec = build_feature_spec(bars)
    data = prepare_data(bars, spec, lookback=20)
    start, stop = data.split.train
    np.testing.assert_allclose(data.scaled[start:stop].mean(axis=0), 0.0, atol=1e-5)
    shocked = bars.copy()
    shocked.iloc[-60:, :] *= 3.0  # change only validation/test bars
    other = prepare_data(shocked, spec, lookback=20)
    np.testing.assert_array_equal(other.scaler.mean_, data.scaler.mean_)


def test_part_includes_lookback_history(bars: pd.DataFrame) -> None:
    data = prepare_data(bars, build_feature_spec(bars), lookback=20)
    part_bars, part_x = data.part("validation")
    start, stop = data.split.validation
    assert len(part_bars) == len(part_x) == stop - start + 19
    assert part_bars.index[-1] == data.features.index[stop - 1]


# ----------------------------------------------------------------------- serving


def test_serving_window_equals_training_rows(bars: pd.DataFrame) -> None:
    """Train/serve parity: a window at serving time gives the very rows training saw."""
    lookback = 20
    spec = build_feature_spec(bars)
    data = prepare_data(bars, spec, lookback=lookback)
    t = 300  # row in the transformed frame; its window is rows t-19..t
    raw = bars.iloc[t - lookback + 1: t + 2][list(spec.features)]  # +1 warm-up bar
    served = scale_window(raw.to_dict("records"), spec, data.scaler, lookback)
    np.testing.assert_allclose(served, data.scaled[t - lookback + 1: t + 1], rtol=1e-6)


@pytest.mark.parametrize(("window", "message"), [
    ([{"Close": 1.0}], r"missing feature\(s\) \['RSI_14'\]"),
    ([{"Close": 1.0, "RSI_14": 2.0, "Spam": 3.0}], r"unexpected feature\(s\) \['Spam'\]"),
    ([{"Close": 1.0, "RSI_14": float("nan")}],
     "column 'RSI_14': missing or infinite values at row 1"),
    ([{"Close": "x", "RSI_14": 2.0}], "column 'Close': non-numeric values at row 1"),
    ([[1.0, 2.0, 3.0]], "2-D array with 2 columns"),
    ("not a window", "must be a list of rows of numbers"),
])
def test_bad_windows_are_named(window: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        window_frame(window, ("Close", "RSI_14"))


def test_short_window_names_the_requirement(bars: pd.DataFrame) -> None:
    spec = FeatureSpec(("Close",), "returns", ("Close",))
    data = prepare_data(bars, spec, lookback=20)
    with pytest.raises(DataError, match=r"has 10 rows; at least 21 are needed"):
        scale_window(bars[["Close"]].iloc[:10], spec, data.scaler, 20)
