"""Reading and validating a CSV of bars: the first half of the data contract.

Import these names from :mod:`Utilities.data_utils`, which re-exports them; this module
exists only to keep each file a readable size.

A valid file has a time column (``Datetime``, ``timestamp`` or ``Date``, or ``Date`` +
``Time``), ``Open/High/Low/Close`` in any letter case, an optional ``Volume`` and any
number of extra numeric columns. Anything else raises :class:`DataError` naming the
file, the column and the lines (line 1 is the first line of the file, blank lines
included, so line N is what an editor shows).
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import io
import logging
import lzma
import math
import re
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from Utilities.input_errors import InputError

log = logging.getLogger(__name__)

OHLC = ("Open", "High", "Low", "Close")
VOLUME = "Volume"
TIME_INDEX = "Datetime"
MAX_LISTED = 5
# Prices outside this range are refused (files, serving windows, stream bars). 1e-8 is
# the finest tick venues quote (a satoshi); below it a price is a unit error, and a
# denormal such as 1e-310 turns an account's units into infinity. The largest real quotes
# (BRK.A, bitcoin in the weakest currencies) stay below 1e10: beyond 1e12 is an error.
MIN_PRICE, MAX_PRICE = 1e-8, 1e12

_HEAD_BYTES = 4096
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}
# What pandas' DataFrame.to_csv() writes above its index: nothing, or "Unnamed: 0" when
# such a file went through pandas twice.
_INDEX_HEADER = re.compile(r"(Unnamed: \d+)?")
# Common exports, tried before pandas' generic inference: that inference parses
# non-zero-padded times ("1/2/2024 9:05:00 AM") one element at a time, ~50x slower.
_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%z", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y",
    "%Y%m%d %H:%M:%S", "%Y%m%d",
)
_FORMAT_PROBE_ROWS = 200
DATE_FORMS = "YYYY-MM-DD or YYYY-MM-DD HH:MM"  # what messages ask a person to type
# Cells that float() or pandas would silently turn into 1.0 or nanoseconds.
_NOT_NUMBERS = (bool, np.bool_, dt.date, dt.time, dt.timedelta, np.datetime64, np.timedelta64)

Source = str | Path | IO[str] | IO[bytes]


class DataError(InputError):
    """Bad input data; the message names the file, the column and the offending rows."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        column: str | None = None,
        rows: Sequence[Any] | None = None,
        field: str | None = None,
    ) -> None:
        self.source, self.column = source, column
        self.rows = list(rows) if rows is not None else []
        super().__init__(f"{source}: {message}" if source else message, field)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for API error bodies."""
        rows = [str(r) for r in self.rows[:MAX_LISTED]]
        return {"error": str(self), "source": self.source, "column": self.column, "rows": rows}


# How rows are numbered in messages: (word, offset added to the frame's index). A file's
# frame is indexed by physical line number; a window's by position from 0.
FILE_LINES = ("line", 0)
WINDOW_ROWS = ("row", 1)


def describe_rows(rows: Sequence[Any], values: Sequence[Any] | None = None,
                  word: str = "line") -> str:
    """'lines 5, 9 ('abc') and 3 more' — short enough for one message."""
    shown = []
    for i, row in enumerate(rows[:MAX_LISTED]):
        shown.append(f"{row} ({values[i]!r})" if values is not None else str(row))
    more = f" and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
    word = word if len(rows) == 1 else word + "s"
    return f"{word} {', '.join(shown)}{more}"


def row_labels(mask: pd.Series | np.ndarray, index: pd.Index, offset: int = 0) -> list[Any]:
    """Names of the rows where mask is true: numbers (see FILE_LINES) or bar times."""
    picked = index[np.asarray(mask, dtype=bool)]
    if isinstance(index, pd.DatetimeIndex):
        return [str(t) for t in picked]
    return [int(i) + offset for i in picked]


def non_numeric_error(series: pd.Series, bad: np.ndarray, source: str | None,
                      numbering: tuple[str, int] = FILE_LINES) -> DataError:
    word, offset = numbering
    rows = row_labels(bad, series.index, offset)
    return DataError(f"column {series.name!r}: non-numeric values at "
                     f"{describe_rows(rows, series[bad].tolist(), word)}",
                     source=source, column=str(series.name), rows=rows)


def check_finite(frame: pd.DataFrame, source: str | None,
                 numbering: tuple[str, int] = FILE_LINES,
                 problem: str = "missing or infinite values") -> None:
    """The one NaN/inf check, for files, windows and transformed features alike."""
    word, offset = numbering
    for col in frame.columns:
        bad = ~np.isfinite(frame[col].to_numpy(dtype=np.float64))
        if bad.any():
            rows = row_labels(bad, frame.index, offset)
            raise DataError(f"column {col!r}: {problem} at {describe_rows(rows, word=word)}",
                            source=source, column=str(col), rows=rows)


def _cell_float(cell: Any) -> float | None:
    """A cell as a float: NaN when empty, None when it is not a number."""
    if cell is None or cell is pd.NA:
        return math.nan
    if isinstance(cell, _NOT_NUMBERS):
        return None
    try:
        return float(cell)
    except OverflowError:  # an int beyond the float range: infinite, reported as such
        return math.inf if cell > 0 else -math.inf
    except (TypeError, ValueError):
        return None


def cells_to_floats(cells: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Float values and a mask of the cells that are not numbers (bools and dates are not)."""
    parsed = [_cell_float(cell) for cell in cells]
    bad = np.array([p is None for p in parsed], dtype=bool)
    return np.array([math.nan if p is None else p for p in parsed], dtype=np.float64), bad


# --------------------------------------------------------------------------- reading


def _source_name(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, str | Path):
        return Path(source).name
    return getattr(source, "name", None) or "<upload>"


def _read_head(source: Source, name: str) -> tuple[str, Any]:
    """First few KB as text (for sniffing) and the object to hand to pandas."""
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise DataError("file not found" if not path.exists() else "not a file", source=name)
        if path.stat().st_size == 0:
            raise DataError("file is empty", source=name)
        return _decode_head(_path_head(path, name), name), path
    raw = source.read()
    if isinstance(raw, bytes):
        _decode_head(raw[:_HEAD_BYTES], name)
        raw = raw.decode("utf-8-sig", errors="replace")
    if not raw.strip():
        raise DataError("file is empty", source=name)
    return raw[:_HEAD_BYTES], io.StringIO(raw)


def _path_head(path: Path, name: str) -> bytes:
    """The first bytes of the file's text; compressed files are decompressed for this."""
    suffix = path.suffix.lower()
    if suffix == ".zst":
        return b""  # no standard-library zstd reader; pandas reads it, unsniffed
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as archive, archive.open(archive.namelist()[0]) as fh:
                return fh.read(_HEAD_BYTES)
        with _OPENERS.get(suffix, open)(path, "rb") as fh:
            return fh.read(_HEAD_BYTES)
    except (OSError, EOFError, IndexError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        raise DataError(f"is not a readable {suffix} file ({exc})", source=name) from None


def _decode_head(head: bytes, name: str) -> str:
    if b"\x00" in head:
        raise DataError("is not a CSV text file (it contains binary data)", source=name)
    return head.decode("utf-8-sig", errors="replace")


def _check_delimiter(header: str, name: str) -> None:
    if "," in header:
        return
    for delim, word in _OTHER_DELIMITERS.items():
        if delim in header:
            raise DataError(
                f"uses {word} ({delim!r}) as the delimiter; expected comma-separated values "
                f"(header: {header[:80]!r})",
                source=name,
            )


def _leading_blank_lines(head: str) -> int:
    """Blank lines above the header: pandas cannot skip them itself with blank rows kept."""
    lines = head.split("\n")
    return next((i for i, line in enumerate(lines) if line.strip()), len(lines))


def _pandas_read(handle: Any, name: str, **options: Any) -> pd.DataFrame:
    try:
        return pd.read_csv(handle, skipinitialspace=True, **options)
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", source=name) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"is not a readable CSV file: {str(exc).strip()}",
                        source=name) from None
    finally:
        if isinstance(handle, io.StringIO):
            handle.seek(0)  # the header is read first, then the whole file


def _header_names(handle: Any, leading: int, name: str) -> list[str]:
    """The header as written: pandas would rename a repeated ``Open`` to ``Open.1``."""
    first = _pandas_read(handle, name, header=None, nrows=1, dtype=str,
                         keep_default_na=False, skiprows=leading)
    names = [str(v).strip() for v in first.iloc[0]]
    _check_delimiter(",".join(names), name)
    _check_duplicate_names(names, name)
    return names


def _check_duplicate_names(names: list[str], name: str) -> None:
    positions: dict[str, list[int]] = {}
    for number, col in enumerate(names, start=1):
        if not _INDEX_HEADER.fullmatch(col):
            positions.setdefault(col.lower(), []).append(number)
    clashes = [cols for cols in positions.values() if len(cols) > 1]
    if clashes:
        described = "; ".join(f"{[names[n - 1] for n in cols]} at columns {cols}"
                              for cols in clashes)
        raise DataError(f"duplicate column names (ignoring case): {described}",
                        source=name, column=names[clashes[0][0] - 1])


def _read_frame(source: Source, name: str) -> pd.DataFrame:
    """The file as text cells, indexed by physical line number, blank lines dropped."""
    head, handle = _read_head(source, name)
    leading = _leading_blank_lines(head)
    names = _header_names(handle, leading, name)
    # Blank lines are kept while reading (pandas would drop them and shift every later
    # number), so the index is the physical line. A quoted cell spanning several lines
    # still shifts the numbers after it; such files are rare enough to stay approximate.
    frame = _pandas_read(handle, name, skiprows=leading, skip_blank_lines=False)
    if not isinstance(frame.index, pd.RangeIndex) or len(frame.columns) != len(names):
        raise DataError(f"data rows have more fields than the header's {len(names)} names; "
                        "is a column name missing?", source=name)
    frame.columns = names
    frame.index = pd.RangeIndex(leading + 2, leading + 2 + len(frame))
    frame = _drop_index_columns(frame.loc[frame.notna().any(axis=1)], name)
    if frame.empty:
        raise DataError("has a header but no data rows", source=name)
    return frame


def _drop_index_columns(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """A pandas index saved by ``to_csv()`` is a row counter, never a feature; one of
    dates is the time column (see :func:`_index_of_dates`)."""
    frame = _index_of_dates(frame, name)
    index_cols = [c for c in frame.columns if _INDEX_HEADER.fullmatch(c)]
    if index_cols:
        log.warning("%s: dropped column(s) with no name %s (such as a pandas index saved "
                    "by to_csv); they are not features", name, index_cols)
    return frame.drop(columns=index_cols)


def _index_of_dates(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """An unnamed first column becomes the time column (``Datetime``) when the file
    names none and every value in it is a date written as text: a DatetimeIndex saved
    by ``to_csv()``, as backtesting.py's and most pandas users' files are. Numbers
    there are a row counter, dropped like any unnamed column."""
    first = frame.columns[0] if len(frame.columns) else "-"
    named = {c.lower() for c in frame.columns} & {"datetime", "timestamp", "date"}
    if named or not _INDEX_HEADER.fullmatch(first):
        return frame
    values = frame.iloc[:, 0]
    if (_is_number_column(values) or values.isna().any()
            or _parse_text_times(values).isna().any()):
        return frame
    log.info("%s: the unnamed first column holds dates; it is the time column", name)
    return frame.set_axis([TIME_INDEX, *frame.columns[1:]], axis=1)


# ----------------------------------------------------------------------- validation


def _canonical_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename OHLC/Volume to canonical case (duplicates were refused with the header)."""
    canonical = {c.lower(): c for c in (*OHLC, VOLUME)}
    return frame.rename(columns={c: canonical.get(c.lower(), c) for c in frame.columns})


def _time_columns(frame: pd.DataFrame, name: str) -> list[str]:
    by_lower = {c.lower(): c for c in frame.columns}
    for key in ("datetime", "timestamp"):
        if key in by_lower:
            return [by_lower[key]]
    if "date" in by_lower:
        return [by_lower["date"], by_lower["time"]] if "time" in by_lower else [by_lower["date"]]
    raise DataError(
        "no time column; expected one of Datetime, Date, timestamp (or Date + Time); "
        f"found columns: {list(frame.columns)}",
        source=name,
    )


def _is_number_column(series: pd.Series) -> bool:
    return series.dtype.kind in "iuf"


def _parse_times(frame: pd.DataFrame, cols: list[str], name: str,
                 numbering: tuple[str, int] = FILE_LINES) -> pd.Series:
    first = frame[cols[0]]
    if _is_number_column(first) and cols[0].lower() == "timestamp":
        raw, times = first, _parse_epoch(first)  # only a column named timestamp is Unix time
    else:
        raw = _yyyymmdd_text(first, name) if _is_number_column(first) else first
        if len(cols) == 2:
            raw = raw.astype(str).str.strip() + " " + frame[cols[1]].astype(str).str.strip()
        times = _parse_text_times(raw)
    bad = times.isna()
    if bad.any():
        label, rows = " + ".join(cols), row_labels(bad, frame.index, numbering[1])
        raise DataError(f"column {label!r}: unreadable timestamps at "
                        f"{describe_rows(rows, raw[bad].astype(str).tolist(), numbering[0])}",
                        source=name, column=label, rows=rows)
    return times.dt.tz_localize(None)  # naive UTC everywhere downstream


def _yyyymmdd_text(values: pd.Series, name: str) -> pd.Series:
    """A numeric Date column as text: 20200102 is a date, not 20 million seconds."""
    numbers = values.to_numpy(dtype=np.float64)
    ok = np.isnan(numbers) | ((numbers % 1 == 0) & (numbers >= 1e7) & (numbers < 1e8))
    if not ok.all():
        rows = row_labels(~ok, values.index)
        raise DataError(
            f"column {values.name!r}: numeric dates must be YYYYMMDD (8 digits, e.g. 20240131); "
            f"found {describe_rows(rows, values[~ok].tolist())}. Write dates as text "
            "(2024-01-31), or name a column of Unix times 'timestamp'",
            source=name, column=str(values.name), rows=rows)
    return values.astype("Int64").astype("string")


def parse_time(value: Any, field: str, *, whole_day: bool = False) -> pd.Timestamp | None:
    """A date or date-time a person gave (a backtest's start or end, a split bound in a
    model config) as the naive UTC timestamp bars are indexed by, read with the formats a
    file's time column is read with; blank or None is no bound. ``whole_day``: a date
    without a time means the last second of that day (an end bound over intraday bars).
    InputError(field=field) when it is not a date."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.date | np.datetime64):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp
    elif isinstance(value, str):
        stamp = _parse_text_times(pd.Series([value.strip()])).iloc[0]
        stamp = stamp if pd.isna(stamp) else stamp.tz_localize(None)
    else:
        raise InputError(f"{field} must be a date string ({DATE_FORMS}); got {value!r}", field)
    if pd.isna(stamp):
        raise InputError(f"{field} {value[:40]!r} is not a date (use {DATE_FORMS})", field)
    if whole_day and isinstance(value, str) and ":" not in value and stamp == stamp.normalize():
        stamp += pd.Timedelta(days=1) - pd.Timedelta(seconds=1)  # bar times may be in s
    return stamp


def _parse_text_times(raw: pd.Series) -> pd.Series:
    """The first common format that reads every value, else pandas' generic inference."""
    present = raw.notna()
    probe = raw[present].iloc[:_FORMAT_PROBE_ROWS]
    for fmt in _TIME_FORMATS:
        if pd.to_datetime(probe, format=fmt, errors="coerce", utc=True).notna().all():
            times = pd.to_datetime(raw, format=fmt, errors="coerce", utc=True)
            if times[present].notna().all():
                return times
    with warnings.catch_warnings():  # "could not infer format" falls back per element; fine
        warnings.simplefilter("ignore", UserWarning)
        return pd.to_datetime(raw, errors="coerce", utc=True)


def _parse_epoch(values: pd.Series) -> pd.Series:
    """Unix time in s/ms/µs/ns, chosen by magnitude."""
    biggest = float(np.nanmax(np.abs(values.to_numpy(dtype=float)))) if len(values) else 0.0
    unit = "ns" if biggest > 1e17 else "us" if biggest > 1e14 else "ms" if biggest > 1e11 else "s"
    return pd.to_datetime(values, unit=unit, errors="coerce", utc=True)


def _text_to_floats(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parsed values and the mask of filled cells that are not numbers."""
    try:
        values = pd.to_numeric(series, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    except OverflowError:  # a 400-digit integer: parse cell by cell, it becomes inf
        return cells_to_floats(series.tolist())
    return values, series.notna().to_numpy() & np.isnan(values)


def _to_numeric(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Every column numeric; wholly-text extra columns (e.g. a ticker) are dropped."""
    out = {}
    for col in frame.columns:
        series = frame[col]
        if series.dtype.kind in "biuf":  # a True/False column in a file is a 0/1 flag
            out[col] = series.to_numpy(dtype=np.float64)
            continue
        values, bad = _text_to_floats(series)
        required = col in (*OHLC, VOLUME)
        if bad.any() and (required or bad.sum() < series.notna().sum()):
            raise non_numeric_error(series, bad, name)
        if bad.any():
            log.warning("%s: ignoring text column %r (not a numeric feature)", name, col)
            continue
        out[col] = values
    return pd.DataFrame(out, index=frame.index)


def _trim_indicator_warmup(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Drop leading rows where only extra (indicator) columns are still empty.

    Moving averages and the like are blank for their first bars; that is not an error.
    Gaps anywhere else are, and are reported by :func:`check_finite`.
    """
    extras = [c for c in frame.columns if c not in (*OHLC, VOLUME)]
    if not extras:
        return frame
    filled = frame[extras].notna().all(axis=1).to_numpy()
    start = int(filled.argmax()) if filled.any() else 0
    if start and not frame[extras].iloc[start:].isna().any().any():
        log.warning("%s: dropped %d leading rows where indicator columns are empty", name, start)
        return frame.iloc[start:]
    return frame


def check_prices(frame: pd.DataFrame, source: str | None,
                 numbering: tuple[str, int] = FILE_LINES) -> None:
    """The OHLC columns ``frame`` has (a file has all four, a model's window may have
    fewer): positive, within MIN_PRICE..MAX_PRICE, High >= Low, Open and Close inside
    Low..High. One rule for files, serving windows and stream bars."""
    word, offset = numbering
    present = [c for c in OHLC if c in frame.columns]
    if not present:
        return
    # One array for the frame, not a Series per column: this runs on every prediction.
    values = frame.to_numpy(dtype=np.float64)[:, [frame.columns.get_loc(c) for c in present]]
    if prices_pass(values, present):
        return
    prices = dict(zip(present, values.T, strict=True))

    def refuse(col: str, bad: np.ndarray, problem: str) -> None:
        if bad.any():
            rows = row_labels(bad, frame.index, offset)
            raise DataError(f"column {col!r}: {problem} at {describe_rows(rows, word=word)}",
                            source=source, column=col, rows=rows)

    for col, values in prices.items():
        refuse(col, values <= 0, "prices must be positive")
        refuse(col, (values < MIN_PRICE) | (values > MAX_PRICE),
               f"prices must be between {MIN_PRICE:g} and {MAX_PRICE:g}")
    high, low = prices.get("High"), prices.get("Low")
    if high is not None and low is not None:
        refuse("High", high < low, "below 'Low'")
    for col in ("Open", "Close"):
        if col in prices and high is not None:
            refuse(col, prices[col] > high, "above 'High'")
        if col in prices and low is not None:
            refuse(col, prices[col] < low, "below 'Low'")


def prices_pass(values: np.ndarray, present: Sequence[str]) -> bool:
    """Whether price columns ``values`` (one per name in ``present``, each of OHLC) keep
    every rule of :func:`check_prices` at once: the usual case, checked without a frame
    (serving checks its windows' arrays with it; :func:`check_prices` names a failure)."""
    prices = dict(zip(present, values.T, strict=True))
    low = np.maximum(prices.get("Low", MIN_PRICE), MIN_PRICE).reshape(-1, 1)
    high = np.minimum(prices.get("High", MAX_PRICE), MAX_PRICE).reshape(-1, 1)
    return bool(((values >= low) & (values <= high)).all())


def time_order_problem(values: np.ndarray) -> tuple[np.ndarray, str, str] | None:
    """The one ordering rule for bars (files, windows, ``run_backtest``): times strictly
    increase. The first rule broken as (mask of the offending bars, problem, what to do
    about a repeat; callers say how to sort), else None."""
    for mask, problem, advice in (
        (values[1:] == values[:-1], "duplicate timestamps", "remove the repeated bars"),
        (values[1:] < values[:-1], "timestamps go backwards", ""),
    ):
        if mask.any():
            return np.r_[False, mask], problem, advice
    return None


def _check_time_order(times: pd.Series, label: str, name: str,
                      numbering: tuple[str, int] = FILE_LINES) -> None:
    found = time_order_problem(times.to_numpy())
    if found:
        mask, problem, advice = found
        rows = row_labels(mask, times.index, numbering[1])
        raise DataError(f"column {label!r}: {problem} at "
                        f"{describe_rows(rows, word=numbering[0])}; "
                        f"{advice or 'sort the file by time'}",
                        source=name, column=label, rows=rows)


def load_bars(source: Source, *, name: str | None = None, min_rows: int = 1) -> pd.DataFrame:
    """Read and validate a CSV of bars.

    Returns float64 columns ``Open, High, Low, Close[, Volume], <extras>`` indexed by a
    naive-UTC ``DatetimeIndex`` named ``Datetime``, in file order. Raises DataError.
    """
    name = _source_name(source, name)
    frame = _canonical_columns(_read_frame(source, name))
    time_cols = _time_columns(frame, name)
    missing = [c for c in OHLC if c not in frame.columns]
    if missing:
        raise DataError(f"missing required column(s) {missing}; found: {list(frame.columns)}",
                        source=name, column=missing[0])
    times = _parse_times(frame, time_cols, name)
    values = _to_numeric(frame.drop(columns=time_cols), name)
    values = _trim_indicator_warmup(values, name)
    times = times.loc[values.index]
    check_finite(values, name)
    check_prices(values, name)
    _check_time_order(times, " + ".join(time_cols), name)
    require_rows(len(values), min_rows, source=name)
    ordered = [c for c in (*OHLC, VOLUME) if c in values.columns]
    values = values[ordered + [c for c in values.columns if c not in ordered]]
    values.index = pd.DatetimeIndex(times.to_numpy(), name=TIME_INDEX)
    return values


def window_times(frame: pd.DataFrame, name: str) -> tuple[list[str], pd.Series | None]:
    """The time column(s) of bars sent to a model (rows copied from a CSV keep theirs),
    read as a file's are and checked to increase: (their names, the times), or ([], None)
    when there is none. They are not features; DataError names the row (from 1)."""
    if not {c.lower() for c in frame.columns} & {"datetime", "timestamp", "date"}:
        return [], None
    cols = _time_columns(frame, name)
    rows = frame[cols].set_axis(pd.RangeIndex(1, len(frame) + 1))  # messages say "row N"
    label = " + ".join(cols)
    times = _parse_times(rows, cols, name, ("row", 0)).rename(label)
    _check_time_order(times, label, name, ("row", 0))
    return cols, times


def require_rows(n_rows: int, needed: int, *, source: str | None = None, why: str = "") -> None:
    """Raise DataError when fewer than ``needed`` rows are available."""
    if n_rows < needed:
        reason = f" ({why})" if why else ""
        raise DataError(f"has {n_rows} rows; at least {needed} are needed{reason}", source=source)
