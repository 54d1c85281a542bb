"""The data contract: CSV bars → validated frame → features → chronological split → scaler.

Every model type trains and serves through these functions, so a feature rule exists
exactly once (the peer platform re-implemented its delta transform in six places and
its training and serving drifted apart).

A valid file has a time column (``Datetime``, ``timestamp`` or ``Date``, or ``Date`` +
``Time``), ``Open/High/Low/Close`` in any letter case, an optional ``Volume`` and any
number of extra numeric columns. Anything else raises :class:`DataError` naming the
file, the column and the lines (line 1 is the header, so line N is what an editor shows).
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

log = logging.getLogger(__name__)

OHLC = ("Open", "High", "Low", "Close")
VOLUME = "Volume"
TIME_INDEX = "Datetime"
TRANSFORMS = ("raw", "diff", "returns")
SCALERS = {"standard": StandardScaler, "robust": RobustScaler, "minmax": MinMaxScaler}
# A split part must hold at least this many samples beyond the lookback window.
MIN_SAMPLES = 10
# An extra column counts as price-level when its median distance from Close is below this.
PRICE_LEVEL_TOLERANCE = 0.2

_COMPRESSED = {".gz", ".bz2", ".zip", ".xz", ".zst"}
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}
_MAX_LISTED = 5

Source = str | Path | IO[str] | IO[bytes]


class DataError(ValueError):
    """Bad input data; the message names the file, the column and the offending rows."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        column: str | None = None,
        rows: Sequence[Any] | None = None,
    ) -> None:
        self.source, self.column = source, column
        self.rows = list(rows) if rows is not None else []
        super().__init__(f"{source}: {message}" if source else message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for API error bodies."""
        rows = [str(r) for r in self.rows[:_MAX_LISTED]]
        return {"error": str(self), "source": self.source, "column": self.column, "rows": rows}


# How rows are numbered in messages: file lines (header is line 1) or 1-based window rows.
FILE_LINES = ("line", 2)
WINDOW_ROWS = ("row", 1)


def _describe_lines(lines: Sequence[int], values: Sequence[Any] | None = None,
                    word: str = "line") -> str:
    """'lines 5, 9 ('abc') and 3 more' — short enough for one message."""
    shown = []
    for i, line in enumerate(lines[:_MAX_LISTED]):
        shown.append(f"{line} ({values[i]!r})" if values is not None else str(line))
    more = f" and {len(lines) - _MAX_LISTED} more" if len(lines) > _MAX_LISTED else ""
    word = word if len(lines) == 1 else word + "s"
    return f"{word} {', '.join(shown)}{more}"


def _lines(mask: pd.Series | np.ndarray, index: pd.Index, offset: int = 2) -> list[int]:
    """Numbers of the rows where mask is true, for messages (see FILE_LINES)."""
    return [int(i) + offset for i in index[np.asarray(mask)]]


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
        if path.suffix.lower() in _COMPRESSED:
            return "", path  # pandas decompresses by extension; sniff after reading
        with path.open("rb") as fh:
            head = fh.read(4096)
        return _decode_head(head, name), path
    raw = source.read()
    if isinstance(raw, bytes):
        _decode_head(raw[:4096], name)
        raw = raw.decode("utf-8-sig", errors="replace")
    if not raw.strip():
        raise DataError("file is empty", source=name)
    return raw[:4096], io.StringIO(raw)


def _decode_head(head: bytes, name: str) -> str:
    if b"\x00" in head:
        raise DataError("is not a CSV text file (it contains binary data)", source=name)
    return head.decode("utf-8-sig", errors="replace")


def _check_delimiter(head: str, name: str) -> None:
    header = head.splitlines()[0] if head.strip() else ""
    if "," in header:
        return
    for delim, word in _OTHER_DELIMITERS.items():
        if delim in header:
            raise DataError(
                f"uses {word} ({delim!r}) as the delimiter; expected comma-separated values "
                f"(header: {header[:80]!r})",
                source=name,
            )


def _read_frame(source: Source, name: str) -> pd.DataFrame:
    head, handle = _read_head(source, name)
    _check_delimiter(head, name)
    try:
        frame = pd.read_csv(handle, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", source=name) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"is not a readable CSV file: {str(exc).strip()}",
                        source=name) from None
    if not head:
        _check_delimiter(",".join(map(str, frame.columns)), name)
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataError("has a header but no data rows", source=name)
    return frame


# ----------------------------------------------------------------------- validation


def _canonical_columns(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rename OHLC/Volume to canonical case; refuse names that collide when case is ignored."""
    lowered = [c.lower() for c in frame.columns]
    clashes = sorted({c for c in lowered if lowered.count(c) > 1})
    if clashes:
        raise DataError(f"duplicate column names (ignoring case): {clashes}", source=name)
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


def _parse_times(frame: pd.DataFrame, cols: list[str], name: str) -> pd.Series:
    raw = frame[cols[0]]
    if len(cols) == 2:
        raw = raw.astype(str).str.strip() + " " + frame[cols[1]].astype(str).str.strip()
    if pd.api.types.is_numeric_dtype(raw):
        times = _parse_epoch(raw)
    else:
        with warnings.catch_warnings():  # "could not infer format" falls back per element; fine
            warnings.simplefilter("ignore", UserWarning)
            times = pd.to_datetime(raw, errors="coerce", utc=True)
    bad = times.isna()
    if bad.any():
        label = " + ".join(cols)
        values = raw[bad].astype(str).tolist()
        raise DataError(
            f"column {label!r}: unreadable timestamps at "
            f"{_describe_lines(_lines(bad, frame.index), values)}",
            source=name, column=label, rows=_lines(bad, frame.index),
        )
    return times.dt.tz_localize(None)  # naive UTC everywhere downstream


def _parse_epoch(values: pd.Series) -> pd.Series:
    """Unix time in s/ms/µs/ns, chosen by magnitude."""
    biggest = float(np.nanmax(np.abs(values.to_numpy(dtype=float)))) if len(values) else 0.0
    unit = "ns" if biggest > 1e17 else "us" if biggest > 1e14 else "ms" if biggest > 1e11 else "s"
    return pd.to_datetime(values, unit=unit, errors="coerce", utc=True)


def _to_numeric(frame: pd.DataFrame, name: str,
                numbering: tuple[str, int] = FILE_LINES) -> pd.DataFrame:
    """Every column numeric; wholly-text extra columns (e.g. a ticker) are dropped."""
    out = {}
    for col in frame.columns:
        series = frame[col]
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            out[col] = series.astype("float64")
            continue
        converted = pd.to_numeric(series, errors="coerce")
        bad = series.notna() & converted.isna()
        required = col in (*OHLC, VOLUME)
        if bad.any() and (required or bad.sum() < series.notna().sum()):
            word, offset = numbering
            rows = _lines(bad, frame.index, offset)
            raise DataError(
                f"column {col!r}: non-numeric values at "
                f"{_describe_lines(rows, series[bad].tolist(), word)}",
                source=name, column=col, rows=rows,
            )
        if bad.any():
            log.warning("%s: ignoring text column %r (not a numeric feature)", name, col)
            continue
        out[col] = converted.astype("float64")
    return pd.DataFrame(out, index=frame.index)


def _trim_indicator_warmup(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Drop leading rows where only extra (indicator) columns are still empty.

    Moving averages and the like are blank for their first bars; that is not an error.
    Gaps anywhere else are, and are reported by :func:`_check_finite`.
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


def _check_finite(frame: pd.DataFrame, name: str,
                  numbering: tuple[str, int] = FILE_LINES) -> None:
    word, offset = numbering
    for col in frame.columns:
        bad = ~np.isfinite(frame[col].to_numpy())
        if bad.any():
            rows = _lines(bad, frame.index, offset)
            raise DataError(
                f"column {col!r}: missing or infinite values at "
                f"{_describe_lines(rows, word=word)}",
                source=name, column=col, rows=rows,
            )


def _check_prices(frame: pd.DataFrame, name: str) -> None:
    for col in OHLC:
        bad = frame[col].to_numpy() <= 0
        if bad.any():
            rows = _lines(bad, frame.index)
            raise DataError(f"column {col!r}: prices must be positive; see {_describe_lines(rows)}",
                            source=name, column=col, rows=rows)
    bad = (frame["High"] < frame["Low"]).to_numpy()
    if bad.any():
        rows = _lines(bad, frame.index)
        raise DataError(f"column 'High': below 'Low' at {_describe_lines(rows)}",
                        source=name, column="High", rows=rows)


def _check_time_order(times: pd.Series, label: str, name: str) -> None:
    deltas = times.diff().to_numpy()[1:]
    for mask, problem, advice in (
        (deltas == np.timedelta64(0), "duplicate timestamps", "remove the repeated bars"),
        (deltas < np.timedelta64(0), "timestamps go backwards", "sort the file by time"),
    ):
        if mask.any():
            rows = _lines(np.r_[False, mask], times.index)
            raise DataError(f"column {label!r}: {problem} at {_describe_lines(rows)}; {advice}",
                            source=name, column=label, rows=rows)


def load_bars(source: Source, *, name: str | None = None, min_rows: int = 1) -> pd.DataFrame:
    """Read and validate a CSV of bars.

    Returns float64 columns ``Open, High, Low, Close[, Volume], <extras>`` indexed by a
    naive-UTC ``DatetimeIndex`` named ``Datetime``, in file order. Raises DataError.
    """
    name = _source_name(source, name)
    frame = _canonical_columns(_read_frame(source, name), name)
    time_cols = _time_columns(frame, name)
    missing = [c for c in OHLC if c not in frame.columns]
    if missing:
        raise DataError(f"missing required column(s) {missing}; found: {list(frame.columns)}",
                        source=name, column=missing[0])
    times = _parse_times(frame, time_cols, name)
    values = _to_numeric(frame.drop(columns=time_cols), name)
    values = _trim_indicator_warmup(values, name)
    times = times.loc[values.index]
    _check_finite(values, name)
    _check_prices(values, name)
    _check_time_order(times, " + ".join(time_cols), name)
    require_rows(len(values), min_rows, source=name)
    ordered = [c for c in (*OHLC, VOLUME) if c in values.columns]
    values = values[ordered + [c for c in values.columns if c not in ordered]]
    values.index = pd.DatetimeIndex(times.to_numpy(), name=TIME_INDEX)
    return values


def require_rows(n_rows: int, needed: int, *, source: str | None = None, why: str = "") -> None:
    """Raise DataError when fewer than ``needed`` rows are available."""
    if n_rows < needed:
        reason = f" ({why})" if why else ""
        raise DataError(f"has {n_rows} rows; at least {needed} are needed{reason}", source=source)


def min_rows_for(lookback: int, spec: FeatureSpec | None = None) -> int:
    """Rows a file needs to train with this lookback: warm-up + lookback + MIN_SAMPLES per part."""
    warmup = spec.warmup if spec else 1
    return warmup + lookback + 3 * MIN_SAMPLES


# ------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureSpec:
    """How bars become model inputs. Saved in every model's config; serving replays it.

    ``transform`` applies to ``price_columns`` only (price-level series are not
    stationary); other features pass through unchanged:

    - ``raw``: no change.
    - ``diff``: ``x[t] - x[t-1]``.
    - ``returns``: log return ``log(x[t] / x[t-1])``.
    """

    features: tuple[str, ...]
    transform: str = "returns"
    price_columns: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise DataError(f"unknown feature transform {self.transform!r}; valid: {TRANSFORMS}")
        if not self.features:
            raise DataError("no features selected")
        stray = [c for c in self.price_columns if c not in self.features]
        if stray:
            raise DataError(f"price columns {stray} are not among the features")

    @property
    def warmup(self) -> int:
        """Leading bars consumed by the transform (its first output row needs one prior bar)."""
        return 0 if self.transform == "raw" or not self.price_columns else 1

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "transform": self.transform,
                "price_columns": list(self.price_columns)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(tuple(data["features"]), data.get("transform", "returns"),
                   tuple(data.get("price_columns", ())))


def select_features(bars: pd.DataFrame, features: Iterable[str] | None = None,
                    *, source: str | None = None) -> list[str]:
    """The explicit list (validated against the file), or every numeric column."""
    if features is None:
        return [c for c in bars.columns if pd.api.types.is_numeric_dtype(bars[c])]
    wanted = list(features)
    missing = [c for c in wanted if c not in bars.columns]
    if missing:
        raise DataError(f"feature column(s) {missing} not in the data; available: "
                        f"{list(bars.columns)}", source=source, column=missing[0])
    return wanted


def detect_price_columns(bars: pd.DataFrame, features: Iterable[str]) -> list[str]:
    """OHLC plus extras that live on the price scale (moving averages, bands, …)."""
    close = bars["Close"].to_numpy()
    found = []
    for col in features:
        values = bars[col].to_numpy()
        if col in OHLC or (
            col != VOLUME and (values > 0).all()
            and np.median(np.abs(values / close - 1.0)) < PRICE_LEVEL_TOLERANCE
        ):
            found.append(col)
    return found


def build_feature_spec(
    bars: pd.DataFrame,
    features: Iterable[str] | None = None,
    transform: str = "returns",
    price_columns: Iterable[str] | None = None,
    *,
    source: str | None = None,
) -> FeatureSpec:
    """Resolve a feature spec once, at training time; the result is stored with the model."""
    chosen = select_features(bars, features, source=source)
    prices = detect_price_columns(bars, chosen) if price_columns is None else list(price_columns)
    return FeatureSpec(tuple(chosen), transform, tuple(prices))


def transform_features(bars: pd.DataFrame, spec: FeatureSpec,
                       *, source: str | None = None) -> pd.DataFrame:
    """Apply the spec to bars; the first ``spec.warmup`` rows are consumed.

    The single implementation of the feature rule, used by every trainer and loader.
    """
    select_features(bars, spec.features, source=source)
    frame = bars.loc[:, list(spec.features)].astype("float64")
    prices = list(spec.price_columns)
    if spec.warmup:
        level = frame[prices]
        if spec.transform == "diff":
            frame[prices] = level.diff()
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                frame[prices] = np.log(level / level.shift(1))
        frame = frame.iloc[spec.warmup:]
    for col in frame.columns:
        bad = ~np.isfinite(frame[col].to_numpy())
        if bad.any():
            when = [str(t) for t in frame.index[bad]]
            raise DataError(f"column {col!r}: the {spec.transform} transform gives non-finite "
                            f"values at {', '.join(when[:_MAX_LISTED])}",
                            source=source, column=col, rows=when)
    return frame


# ------------------------------------------------------------------ split and scale


@dataclass(frozen=True)
class Split:
    """Chronological train / validation / test parts as row ranges [start, stop)."""

    train: tuple[int, int]
    validation: tuple[int, int]
    test: tuple[int, int]

    def parts(self) -> dict[str, tuple[int, int]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def dates(self, index: pd.Index) -> dict[str, dict[str, str]]:
        """First and last timestamp of each part, for the model config."""
        return {name: {"start": str(index[a]), "end": str(index[b - 1])}
                for name, (a, b) in self.parts().items() if b > a}


def chronological_split(n_rows: int, *, lookback: int = 1, val_fraction: float = 0.15,
                        test_fraction: float = 0.15, source: str | None = None) -> Split:
    """Split rows in time order; later parts never precede earlier ones (no look-ahead).

    Validation and test windows may look back into the previous part: that is past
    data, available at prediction time.
    """
    for label, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise DataError(f"{label} must be in [0, 1); got {frac}")
    n_test = round(n_rows * test_fraction)
    n_val = round(n_rows * val_fraction)
    n_train = n_rows - n_val - n_test
    require_rows(n_train, lookback + MIN_SAMPLES, source=source,
                 why=f"training part of {n_rows} rows after a {val_fraction:.0%}/"
                     f"{test_fraction:.0%} validation/test split, lookback {lookback}")
    for label, n, frac in (("validation", n_val, val_fraction), ("test", n_test, test_fraction)):
        if frac > 0:
            require_rows(n, MIN_SAMPLES, source=source, why=f"{label} part")
    return Split((0, n_train), (n_train, n_train + n_val), (n_train + n_val, n_rows))


def fit_scaler(train_features: pd.DataFrame | np.ndarray, kind: str = "standard") -> Any:
    """A scaler fitted on the training part only."""
    if kind not in SCALERS:
        raise DataError(f"unknown scaler {kind!r}; valid: {sorted(SCALERS)}")
    return SCALERS[kind]().fit(np.asarray(train_features, dtype=np.float64))


@dataclass
class PreparedData:
    """Aligned raw bars (for accounting) and scaled features (for the model)."""

    bars: pd.DataFrame
    features: pd.DataFrame
    scaled: np.ndarray
    spec: FeatureSpec
    scaler: Any
    split: Split
    lookback: int

    def part(self, name: str) -> tuple[pd.DataFrame, np.ndarray]:
        """Raw bars and scaled features of one part, with ``lookback - 1`` rows of history
        before it (except for train) so its first bar can be predicted."""
        start, stop = self.split.parts()[name]
        first = max(0, start - self.lookback + 1)
        return self.bars.iloc[first:stop], self.scaled[first:stop]

    def split_dates(self) -> dict[str, dict[str, str]]:
        return self.split.dates(self.features.index)


def prepare_data(bars: pd.DataFrame, spec: FeatureSpec, *, lookback: int,
                 val_fraction: float = 0.15, test_fraction: float = 0.15,
                 scaler: str = "standard", source: str | None = None) -> PreparedData:
    """Transform, split chronologically and scale (scaler fit on the train part only)."""
    if lookback < 1:
        raise DataError(f"lookback must be at least 1; got {lookback}")
    require_rows(len(bars), min_rows_for(lookback, spec), source=source,
                 why=f"lookback {lookback} + {spec.warmup} warm-up + {MIN_SAMPLES} per part")
    features = transform_features(bars, spec, source=source)
    split = chronological_split(len(features), lookback=lookback, val_fraction=val_fraction,
                                test_fraction=test_fraction, source=source)
    train_start, train_stop = split.train
    fitted = fit_scaler(features.iloc[train_start:train_stop], scaler)
    scaled = fitted.transform(features.to_numpy()).astype(np.float32)
    return PreparedData(bars.loc[features.index], features, scaled, spec, fitted, split, lookback)


# --------------------------------------------------------------------------- serving


def window_frame(window: Any, columns: Sequence[str], *, source: str = "window") -> pd.DataFrame:
    """A request's window (DataFrame, list of dicts, or 2-D array in ``columns`` order)
    as a float frame with exactly ``columns``; DataError names anything wrong."""
    if isinstance(window, pd.DataFrame):
        frame = window
    elif isinstance(window, list | tuple) and window and all(isinstance(r, dict) for r in window):
        frame = pd.DataFrame.from_records(list(window))
    else:
        try:
            array = np.asarray(window, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError("must be a list of rows of numbers", source=source) from None
        if array.ndim != 2 or array.shape[1] != len(columns):
            raise DataError(f"must be a 2-D array with {len(columns)} columns {list(columns)}; "
                            f"got shape {array.shape}", source=source)
        frame = pd.DataFrame(array, columns=list(columns))
    missing = [c for c in columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in columns]
    if missing or extra:
        parts = [f"missing feature(s) {missing}" if missing else "",
                 f"unexpected feature(s) {extra}" if extra else ""]
        raise DataError("; ".join(p for p in parts if p), source=source,
                        column=(missing or extra)[0])
    frame = _to_numeric(frame.loc[:, list(columns)].reset_index(drop=True), source, WINDOW_ROWS)
    _check_finite(frame, source, WINDOW_ROWS)
    return frame


def scale_window(window: Any, spec: FeatureSpec, scaler: Any, lookback: int) -> np.ndarray:
    """The model input for one prediction: the last ``lookback`` transformed, scaled rows."""
    frame = window_frame(window, spec.features)
    require_rows(len(frame), lookback + spec.warmup, source="window",
                 why=f"lookback {lookback} + {spec.warmup} warm-up bar(s)")
    features = transform_features(frame, spec, source="window").iloc[-lookback:]
    return scaler.transform(features.to_numpy()).astype(np.float32)
