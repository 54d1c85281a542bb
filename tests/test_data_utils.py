"""The data contract: loading, every bad-input case, features, split, scaler, windows."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from Utilities.data_loading import parse_time
from Utilities.data_utils import (
    DataError,
    FeatureSpec,
    build_feature_spec,
    chronological_split,
    detect_price_columns,
    load_bars,
    prepare_data,
    scale_window,
    transform_features,
    window_frame,
)
from Utilities.indicators import add_indicators
from Utilities.input_errors import InputError

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
    "repeated name": (GOOD.replace("Volume\n", "Volume,Open\n").replace("0\n", "0,1\n"),
                      ["duplicate column names", "['Open', 'Open'] at columns [2, 7]"]),
    "numeric year": (GOOD.replace("2024-01-0", "200"),
                     ["column 'Date'", "YYYYMMDD", "lines 2 (2001), 3 (2002)"]),
    "numeric Datetime": ("Datetime,Open,High,Low,Close\n1704067200,1,2,0.5,1\n",
                         ["column 'Datetime'", "YYYYMMDD", "'timestamp'"]),
    "extra field on every row": (GOOD.replace("0\n", "0,7\n"),
                                 ["more fields than the header's 6 names"]),
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


def test_duplicate_lowercase_headers_are_named(tmp_path: Path) -> None:
    text = "Date,Open,High,Low,Close,X,X\n2024-01-01,1,2,0.5,1,3,4\n"
    with pytest.raises(DataError, match=r"\['X', 'X'\] at columns \[6, 7\]"):
        load_bars(write(tmp_path, text))


@pytest.mark.parametrize("index_header", ["", "Unnamed: 0"])
def test_a_saved_pandas_index_is_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                         index_header: str) -> None:
    text = pd.read_csv(io.StringIO(GOOD)).to_csv()  # writes the 0, 1, 2, … index
    text = text.replace(",Date", f"{index_header},Date", 1) if index_header else text
    with caplog.at_level(logging.WARNING):
        bars = load_bars(write(tmp_path, text))
    assert list(bars.columns) == ["Open", "High", "Low", "Close", "Volume"]
    assert "dropped column(s) with no name" in caplog.text


def test_a_file_written_by_backtesting_py_loads(tmp_path: Path) -> None:
    from backtesting.test import GOOG  # its index of dates is saved as an unnamed column

    path = tmp_path / "goog.csv"
    GOOG.to_csv(path)
    assert path.read_text().startswith(",Open,High,Low,Close,Volume\n2004-08-19,")
    bars = load_bars(path)
    assert bars.index.name == "Datetime" and len(bars) == len(GOOG)
    np.testing.assert_array_equal(bars.index, GOOG.index)
    np.testing.assert_array_equal(bars[["Open", "Close"]], GOOG[["Open", "Close"]])


@pytest.mark.parametrize("passes", [1, 2])  # twice through pandas: "Unnamed: 0"
def test_a_pandas_datetime_index_is_the_time_column(tmp_path: Path, passes: int) -> None:
    frame = pd.read_csv(io.StringIO(GOOD), index_col="Date", parse_dates=True)
    frame.index = frame.index + pd.Timedelta(hours=9, minutes=30)
    frame.index.name = None
    frame.to_csv(tmp_path / "bars.csv")
    if passes == 2:
        pd.read_csv(tmp_path / "bars.csv").to_csv(tmp_path / "bars.csv", index=False)
    first_line = (tmp_path / "bars.csv").read_text().splitlines()[0]
    assert first_line.startswith("Unnamed: 0," if passes == 2 else ",Open")
    bars = load_bars(tmp_path / "bars.csv")
    assert list(bars.index) == list(frame.index) and list(bars.columns) == list(frame.columns)


def test_an_unnamed_index_is_not_used_when_the_file_names_its_time_column(
        tmp_path: Path) -> None:
    frame = pd.read_csv(io.StringIO(GOOD))
    frame.index = pd.date_range("1999-01-01", periods=len(frame), name=None)
    bars = load_bars(write(tmp_path, frame.to_csv()))
    assert str(bars.index[0]) == "2024-01-01 00:00:00"


@pytest.mark.parametrize(("index", "why"), [
    (None, "a row counter (0, 1, 2, ...)"),
    (["2024-01-01", "2024-01-02", "soon", "2024-01-04"], "one value is not a date"),
    (["2024-01-01", "2024-01-02", "", "2024-01-04"], "one value is missing"),
])
def test_an_unnamed_column_of_non_dates_is_no_time_column(tmp_path: Path, index, why) -> None:
    frame = pd.read_csv(io.StringIO(GOOD)).drop(columns="Date")
    if index is not None:
        frame.index = index
    with pytest.raises(DataError, match="no time column; expected one of Datetime"):
        load_bars(write(tmp_path, frame.to_csv()))


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    """Line N in a message is line N in an editor, blank lines included."""
    lines = GOOD.splitlines()
    bad = "2024-01-04,11.5,12,11,oops,80"
    text = "\n\n" + "\n".join([lines[0], lines[1], "", "", lines[2], lines[3], "", bad]) + "\n"
    with pytest.raises(DataError, match=r"line 10 \('oops'\)") as info:
        load_bars(write(tmp_path, text))
    assert text.splitlines()[info.value.rows[0] - 1] == bad
    assert len(load_bars(write(tmp_path, text.replace("oops", "11.2")))) == 4


def test_gzip_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv.gz"
    path.write_bytes(gzip.compress(("\n" + replace_line(GOOD, 4, "x,1,2,1,1,1")).encode()))
    with pytest.raises(DataError, match=r"unreadable timestamps at line 5 \('x'\)"):
        load_bars(path)


def test_numeric_yyyymmdd_dates_are_dates_not_unix_seconds(tmp_path: Path) -> None:
    text = "Date,Open,High,Low,Close\n20200102,1,2,0.5,1\n\n20200103,1,2,0.5,1\n"
    bars = load_bars(write(tmp_path, text))
    assert list(bars.index) == [pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-03")]
    text = "Date,Time,Open,High,Low,Close\n20200102,09:30:00,1,2,0.5,1\n"
    assert load_bars(write(tmp_path, text)).index[0] == pd.Timestamp("2020-01-02 09:30")


def test_a_column_named_timestamp_in_any_case_is_unix_time(tmp_path: Path) -> None:
    text = "TimeStamp,Open,High,Low,Close\n1704067200000,1,2,0.5,1\n"
    assert load_bars(write(tmp_path, text)).index[0] == pd.Timestamp("2024-01-01")


def test_non_padded_am_pm_times(tmp_path: Path) -> None:
    text = ("Datetime,Open,High,Low,Close\n1/2/2024 9:05:00 AM,1,2,0.5,1\n"
            "1/2/2024 12:05:00 PM,1,2,0.5,1\n1/2/2024 1:05:00 PM,1,2,0.5,1\n")
    assert list(load_bars(write(tmp_path, text)).index.hour) == [9, 12, 13]


def test_huge_integer_cell_is_reported_not_a_crash(tmp_path: Path) -> None:
    text = replace_line(GOOD, 3, "2024-01-02,10.5,11.5,10,11," + "9" * 400)
    with pytest.raises(DataError, match="column 'Volume': missing or infinite values at line 3"):
        load_bars(write(tmp_path, text))


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


def test_price_columns_on_the_nq_file_include_every_average(nq_path: Path) -> None:
    bars = load_bars(nq_path)
    prices = set(detect_price_columns(bars, bars.columns))
    jma = [c for c in bars.columns if c.endswith("_JMA")]
    flags = [c for c in bars.columns if "Heartbeat" in c]
    assert jma and {"EMA_9_EMA", "EMA_21_EMA", *jma} <= prices
    assert len(flags) == 2 and not prices & {"Volume", *flags}


@pytest.mark.parametrize("seed", [0, 4, 6])
def test_an_oscillator_near_the_price_is_not_a_price(seed: int) -> None:
    """RSI (30-70) on a $50 random walk sits within 20% of Close, yet is no price level."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 1000)))
    bars = pd.DataFrame({"Open": close, "High": close * 1.01, "Low": close * 0.99,
                         "Close": close, "Volume": rng.integers(100, 1000, 1000) * 1.0})
    bars = add_indicators(bars).dropna()
    assert np.median(np.abs(bars["RSI_14"] / bars["Close"] - 1.0)) < 0.2  # the trap
    prices = detect_price_columns(bars, bars.columns)
    assert prices == ["Open", "High", "Low", "Close", "EMA_12", "EMA_26"]


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


@pytest.mark.parametrize(("make", "message"), [
    (lambda: FeatureSpec(("Close", "Close")), r"features lists \['Close'\] more than once"),
    (lambda: FeatureSpec(("Close",), "returns", ("Close", "Close")), "price_columns lists"),
    (lambda: FeatureSpec.from_dict({"features": "Close"}), "'features' must be a list"),
    (lambda: FeatureSpec.from_dict({"features": ["Close"], "price_columns": "Close"}),
     "'price_columns' must be a list"),
    (lambda: FeatureSpec.from_dict({"feature": ["Close"]}), "mapping with 'features'"),
    (lambda: FeatureSpec(("Close", 3)), "column names"),  # type: ignore[arg-type]
])
def test_malformed_specs_are_refused(make, message: str) -> None:
    with pytest.raises(DataError, match=message):
        make()


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
    (pd.DataFrame([[1.0, 2.0, 3.0]], columns=["Close", "RSI_14", "Close"]),
     r"duplicate column\(s\) \['Close'\]"),
    ([{"Close": 10**400, "RSI_14": 2.0}], "column 'Close': missing or infinite values at row 1"),
    ([[1.0, 2.0], [10**400, 2.0]], "column 'Close': missing or infinite values at row 2"),
    ([{"Close": 1.0, "RSI_14": True}], r"column 'RSI_14': non-numeric values at row 1 \(True\)"),
    ([[1.0, 2.0], [1.0, False]], "column 'RSI_14': non-numeric values at row 2"),
    ([{"Close": dt.datetime(2024, 1, 2), "RSI_14": 2.0}], "column 'Close': non-numeric"),
    (pd.DataFrame({"Close": [1.0], "RSI_14": [True]}), "column 'RSI_14': non-numeric"),
    (pd.DataFrame({"Close": pd.to_datetime(["2024-01-02"]), "RSI_14": [1.0]}),
     "column 'Close': non-numeric"),
])
def test_bad_windows_are_named(window: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        window_frame(window, ("Close", "RSI_14"))


@pytest.mark.parametrize("lookback", [0, -3])
def test_scale_window_refuses_a_lookback_below_one(bars: pd.DataFrame, lookback: int) -> None:
    spec = FeatureSpec(("Close",), "returns", ("Close",))
    data = prepare_data(bars, spec, lookback=20)
    with pytest.raises(DataError, match=f"lookback must be an integer >= 1; got {lookback}"):
        scale_window(bars[["Close"]].iloc[:30], spec, data.scaler, lookback)


def test_a_non_finite_transform_names_the_window_row() -> None:
    # A price-level extra: a negative Close is refused before any transform.
    spec = FeatureSpec(("EMA",), "returns", ("EMA",))
    with pytest.raises(DataError, match=r"returns transform gives non-finite values at rows 2, 3$"):
        transform_features(window_frame([[1.0], [-1.0], [2.0]], ("EMA",)), spec)


def test_a_non_finite_transform_names_the_bar_time(bars: pd.DataFrame) -> None:
    bars.iloc[5, bars.columns.get_loc("Close")] = 0.0
    spec = FeatureSpec(("Close",), "returns", ("Close",))
    with pytest.raises(DataError, match=f"values at bars {bars.index[5]}, {bars.index[6]}$"):
        transform_features(bars, spec)


def test_short_window_names_the_requirement(bars: pd.DataFrame) -> None:
    spec = FeatureSpec(("Close",), "returns", ("Close",))
    data = prepare_data(bars, spec, lookback=20)
    with pytest.raises(DataError, match=r"has 10 rows; at least 21 are needed"):
        scale_window(bars[["Close"]].iloc[:10], spec, data.scaler, 20)


# ------------------------------------------------------------ dates a person types


@pytest.mark.parametrize(("value", "start", "end"), [
    ("2024-01-31", "2024-01-31 00:00:00", "2024-01-31 23:59:59"),  # a date: its whole day
    (" 2024-01-31 10:05 ", "2024-01-31 10:05:00", "2024-01-31 10:05:00"),
    ("01/31/2024", "2024-01-31 00:00:00", "2024-01-31 23:59:59"),  # a file's format too
    ("2024-01-31T10:05:00+02:00", "2024-01-31 08:05:00", "2024-01-31 08:05:00"),  # to UTC
    (pd.Timestamp("2024-01-31 09:00", tz="US/Eastern"), "2024-01-31 14:00:00",
     "2024-01-31 14:00:00"),
    (dt.date(2024, 1, 31), "2024-01-31 00:00:00", "2024-01-31 00:00:00"),
])
def test_parse_time_reads_bounds_as_naive_utc(value, start: str, end: str) -> None:
    assert str(parse_time(value, "start")) == start
    assert str(parse_time(value, "end", whole_day=True)) == end


@pytest.mark.parametrize("value", [None, "", "   "])
def test_parse_time_blank_is_no_bound(value) -> None:
    assert parse_time(value, "start") is None


@pytest.mark.parametrize(("value", "message"), [
    ("yesterday-ish", "end 'yesterday-ish' is not a date (use YYYY-MM-DD or YYYY-MM-DD HH:MM)"),
    ("2024-13-45", "end '2024-13-45' is not a date"),
    (20240131, "end must be a date string (YYYY-MM-DD or YYYY-MM-DD HH:MM); got 20240131"),
])
def test_parse_time_names_the_field(value, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_time(value, "end")
    assert str(caught.value).startswith(message) and caught.value.field == "end"


def test_one_date_rule_for_the_backtest_request_and_report() -> None:
    """The web form and the backtest (CLI, jobs) read a bound the same way."""
    from Utilities.backtest_report import BacktestInputError, choose_period
    from web.backtest_request import validate

    index = pd.date_range("2024-01-01", periods=10, freq="D")
    period = choose_period(index, 0, config={}, csv_path=Path("none.csv"),
                           start="01/03/2024", end="2024-01-05")
    assert (period.first, period.last) == (2, 4)
    with pytest.raises(BacktestInputError) as caught:
        choose_period(index, 0, config={}, csv_path=Path("none.csv"), end="soon")
    web = validate({"end": "soon"}, models=[])[1]["end"]
    assert str(caught.value) == web and caught.value.field == "end"


@pytest.mark.parametrize(("fractions", "field", "message"), [
    ({"val_fraction": 0.9, "test_fraction": 0.5}, "val_fraction",
     r"val_fraction \+ test_fraction must leave rows to train on"),
    ({"val_fraction": 1.5}, "val_fraction", r"val_fraction must be in \[0, 1\)"),
    ({"test_fraction": -0.1}, "test_fraction", r"test_fraction must be in \[0, 1\)"),
    ({"val_fraction": 0.8, "test_fraction": 0.1}, "val_fraction", "training part"),
    ({"val_fraction": 0.05}, "val_fraction", "validation part"),
])
def test_a_bad_split_names_its_fraction_not_the_file(fractions: dict, field: str,
                                                     message: str) -> None:
    """Not "sample.csv: has -163 rows" beside the data field: the fraction to change."""
    with pytest.raises(DataError, match=message) as caught:
        chronological_split(100, lookback=5, source="sample.csv", **fractions)
    assert caught.value.field == field
