"""The data contract: CSV bars → validated frame → features → chronological split → scaler.

Every model type trains and serves through these functions, so a feature rule exists
exactly once (the peer platform re-implemented its delta transform in six places and
its training and serving drifted apart).

Reading and validating files lives in :mod:`Utilities.data_loading` (re-exported here,
so ``from Utilities.data_utils import load_bars, DataError`` keeps working); this module
turns validated bars into model inputs, for training and for serving alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from Utilities.data_loading import (
    FILE_LINES,
    OHLC,
    TIME_INDEX,
    VOLUME,
    WINDOW_ROWS,
    DataError,
    Source,
    cells_to_floats,
    check_finite,
    check_prices,
    load_bars,
    non_numeric_error,
    prices_pass,
    require_rows,
    window_times,
)

__all__ = [
    "FILE_LINES", "MIN_SAMPLES", "OHLC", "PRICE_LEVEL_TOLERANCE",
    "PRICE_MAX_RELATIVE_MOVE", "SCALERS", "TIME_INDEX", "TRANSFORMS", "VOLUME",
    "WINDOW_ROWS", "DataError", "FeatureSpec", "PreparedData", "Source", "Split",
    "apply_scaler", "build_feature_spec", "check_data_params", "check_lookback",
    "chronological_split", "detect_price_columns", "feature_values", "fit_scaler",
    "load_bars", "min_rows_for", "prepare_data", "read_window", "require_rows",
    "scale_values", "scale_window", "select_features", "transform_features",
    "window_cells", "window_frame", "window_values",
]

TRANSFORMS = ("raw", "diff", "returns")
SCALERS = {"standard": StandardScaler, "robust": RobustScaler, "minmax": MinMaxScaler}
# A split part must hold at least this many samples beyond the lookback window.
MIN_SAMPLES = 10
# An extra column is price-level when it is positive, its median distance from Close is
# below PRICE_LEVEL_TOLERANCE, and its bar-to-bar log changes are at most
# PRICE_MAX_RELATIVE_MOVE times as spread as Close's. Averages and bands move less than
# Close (ratio 0.05-0.5); an oscillator that happens to sit near the price, such as RSI
# (30-70) on a $50 stock, moves several times more (3-200x). The correlation of the
# changes does not separate them: RSI's follow Close's (~0.9), a 26-bar EMA's barely (~0.4).
PRICE_LEVEL_TOLERANCE = 0.2
PRICE_MAX_RELATIVE_MOVE = 2.0


def check_lookback(lookback: int) -> None:
    """Refuse a lookback that would silently select the wrong rows (``iloc[-0:]`` is all)."""
    if isinstance(lookback, bool) or not isinstance(lookback, int | np.integer) or lookback < 1:
        raise DataError(f"lookback must be an integer >= 1; got {lookback!r}",
                        field="lookback_window")


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
            raise DataError(f"unknown feature transform {self.transform!r}; valid: {TRANSFORMS}",
                            field="transform")
        if not self.features:
            raise DataError("no features selected", field="features")
        _check_names("features", self.features)
        _check_names("price_columns", self.price_columns)
        stray = [c for c in self.price_columns if c not in self.features]
        if stray:
            raise DataError(f"price columns {stray} are not among the features")

    @cached_property
    def price_index(self) -> list[int]:
        """Positions of ``price_columns`` among ``features`` (the transform's columns)."""
        return [self.features.index(c) for c in self.price_columns]

    @property
    def warmup(self) -> int:
        """Leading bars consumed by the transform (its first output row needs one prior bar)."""
        return 0 if self.transform == "raw" or not self.price_columns else 1

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "transform": self.transform,
                "price_columns": list(self.price_columns)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        if not isinstance(data, dict) or "features" not in data:
            raise DataError(f"a feature spec must be a mapping with 'features'; got {data!r}")
        return cls(_name_tuple(data, "features"), data.get("transform", "returns"),
                   _name_tuple(data, "price_columns"))


def _name_tuple(data: dict[str, Any], key: str) -> tuple[str, ...]:
    """A list from a config as a tuple; tuple("Close") would be five one-letter columns."""
    value = data.get(key, ())
    if not isinstance(value, list | tuple):
        raise DataError(f"feature spec {key!r} must be a list of column names; got {value!r}")
    return tuple(value)


def _check_names(label: str, names: tuple[str, ...]) -> None:
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{label} must be a list of column names (strings); got {names!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{label} lists {repeated} more than once")


def select_features(bars: pd.DataFrame, features: Iterable[str] | None = None,
                    *, source: str | None = None) -> list[str]:
    """The explicit list (validated against the file), or every numeric column."""
    if features is None:
        return [c for c in bars.columns if pd.api.types.is_numeric_dtype(bars[c])]
    wanted = list(features)
    missing = [c for c in wanted if c not in bars.columns]
    if missing:
        raise DataError(f"feature column(s) {missing} not in the data; available: "
                        f"{list(bars.columns)}", source=source, column=missing[0],
                        field="features")
    return wanted


def detect_price_columns(bars: pd.DataFrame, features: Iterable[str]) -> list[str]:
    """OHLC plus extras that live on the price scale (moving averages, bands, …)."""
    close = bars["Close"].to_numpy(dtype=np.float64)
    return [col for col in features if col in OHLC or (
        col != VOLUME and _is_price_level(bars[col].to_numpy(dtype=np.float64), close))]


def _is_price_level(values: np.ndarray, close: np.ndarray) -> bool:
    """Near Close in level and no jumpier than Close (see PRICE_MAX_RELATIVE_MOVE)."""
    if len(values) < 2 or not (values > 0).all() or not (close > 0).all():
        return False  # without two bars there are no changes to compare
    if np.median(np.abs(values / close - 1.0)) >= PRICE_LEVEL_TOLERANCE:
        return False
    moves, close_moves = np.diff(np.log(values)), np.diff(np.log(close))
    return bool(moves.std() <= PRICE_MAX_RELATIVE_MOVE * close_moves.std())


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


def feature_values(values: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """THE feature rule: float rows whose columns are ``spec.features`` in order, to
    model features; the first ``spec.warmup`` rows are consumed. Non-finite results are
    left in place for the caller to name (:func:`transform_features` does).

    Training, backtests (through :func:`transform_features`) and every prediction
    (:func:`scale_values`, :func:`scale_stack`) run this one function; ``values`` is not
    changed. Rows are the second-to-last axis: a stack of windows (windows x rows x
    columns) gets, element for element, the same operations as each window alone.
    """
    if not spec.warmup:
        return values
    cols = spec.price_index
    level = values[..., cols]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        moved = (np.diff(level, axis=-2) if spec.transform == "diff"
                 else np.log(level[..., 1:, :] / level[..., :-1, :]))
    out = values[..., spec.warmup:, :].copy()
    out[..., cols] = moved
    return out


def transform_features(bars: pd.DataFrame, spec: FeatureSpec,
                       *, source: str | None = None) -> pd.DataFrame:
    """Apply the spec to bars (:func:`feature_values`); the first ``spec.warmup`` rows
    are consumed, and a non-finite result is a DataError naming its rows."""
    select_features(bars, spec.features, source=source)
    values = np.column_stack([bars[c].to_numpy(dtype=np.float64) for c in spec.features])
    values = feature_values(values, spec)
    frame = pd.DataFrame(values, index=bars.index[spec.warmup:], columns=list(spec.features))
    if not np.isfinite(values).all():
        numbering = ("bar", 0) if isinstance(frame.index, pd.DatetimeIndex) else WINDOW_ROWS
        check_finite(frame, source, numbering,
                     problem=f"the {spec.transform} transform gives non-finite values")
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
            raise DataError(f"{label} must be in [0, 1); got {frac}", field=label)
    if val_fraction + test_fraction >= 1.0:
        raise DataError(f"val_fraction + test_fraction must be below 1, leaving a training "
                        f"part; got {val_fraction} + {test_fraction}", field="val_fraction")
    n_test = round(n_rows * test_fraction)
    n_val = round(n_rows * val_fraction)
    n_train = n_rows - n_val - n_test
    # Enough rows in all (prepare_data checks that first): a part too small is the
    # fractions' doing, so the error is about the fraction to change.
    if n_train < lookback + MIN_SAMPLES:
        raise DataError(f"a {val_fraction:.0%}/{test_fraction:.0%} validation/test split of "
                        f"{n_rows} rows leaves {n_train} for training; at least "
                        f"{lookback + MIN_SAMPLES} are needed (lookback {lookback} + "
                        f"{MIN_SAMPLES}): lower val_fraction or test_fraction",
                        field="val_fraction" if val_fraction >= test_fraction
                        else "test_fraction")
    for key, part, n, frac in (("val_fraction", "validation", n_val, val_fraction),
                               ("test_fraction", "test", n_test, test_fraction)):
        if frac > 0 and n < MIN_SAMPLES:
            raise DataError(f"{key} {frac} of {n_rows} rows leaves {n} for the {part} part; "
                            f"at least {MIN_SAMPLES} are needed: raise it, or set it to 0 "
                            f"for no {part} part", field=key)
    return Split((0, n_train), (n_train, n_train + n_val), (n_train + n_val, n_rows))


def fit_scaler(train_features: pd.DataFrame | np.ndarray, kind: str = "standard") -> Any:
    """A scaler fitted on the training part only."""
    if kind not in SCALERS:
        raise DataError(f"unknown scaler {kind!r}; valid: {sorted(SCALERS)}", field="scaler")
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
    check_lookback(lookback)
    require_rows(len(bars), min_rows_for(lookback, spec), source=source,
                 why=f"lookback {lookback} + {spec.warmup} warm-up + {MIN_SAMPLES} per part")
    features = transform_features(bars, spec, source=source)
    split = chronological_split(len(features), lookback=lookback, val_fraction=val_fraction,
                                test_fraction=test_fraction, source=source)
    train_start, train_stop = split.train
    fitted = fit_scaler(features.iloc[train_start:train_stop], scaler)
    scaled = fitted.transform(features.to_numpy()).astype(np.float32)
    return PreparedData(bars.loc[features.index], features, scaled, spec, fitted, split, lookback)


def windows_ending_at(scaled: np.ndarray, lookback: int, first: int, stop: int) -> np.ndarray:
    """The model-input windows of rows ``first .. stop-1`` (each window's last row is
    its own row), as a read-only (n, lookback, n_features) view: training samples and
    backtests cut their windows with this one rule."""
    if first < lookback - 1:
        raise DataError(f"row {first} has no full {lookback}-row window before it")
    every = np.lib.stride_tricks.sliding_window_view(scaled, (lookback, scaled.shape[1]))
    return every[first - lookback + 1:stop - lookback + 1, 0]


def check_data_params(data_params: dict[str, Any]) -> None:
    """The types of a ``data_params`` section, checked without the data (a form checks
    them before any file is read); each DataError's ``field`` is the key."""
    for key in ("val_fraction", "test_fraction"):
        value = data_params[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DataError(f"data_params.{key} must be a number in [0, 1); got {value!r}",
                            field=key)
    for key in ("transform", "scaler"):
        if not isinstance(data_params[key], str):
            raise DataError(f"data_params.{key} must be a name; got {data_params[key]!r}",
                            field=key)
    features = data_params["features"]
    if features is not None and (not isinstance(features, list)
                                 or not all(isinstance(f, str) for f in features)):
        raise DataError(f"data_params.features must be a list of column names or null; "
                        f"got {features!r}", field="features")


def prepare_from_params(bars: pd.DataFrame, data_params: dict[str, Any], *, lookback: int,
                        source: str | None = None) -> PreparedData:
    """:func:`prepare_data` as a model config's ``data_params`` section asks for it
    (features, transform, val/test fractions, scaler): the same for every model type."""
    check_data_params(data_params)
    spec = build_feature_spec(bars, data_params["features"], data_params["transform"],
                              source=source)
    return prepare_data(bars, spec, lookback=lookback, scaler=data_params["scaler"],
                        val_fraction=data_params["val_fraction"],
                        test_fraction=data_params["test_fraction"], source=source)


# --------------------------------------------------------------------------- serving


def window_frame(window: Any, columns: Sequence[str], *, source: str = "window") -> pd.DataFrame:
    """A request's window (DataFrame, list of dicts, or 2-D array in ``columns`` order)
    as a float frame with exactly ``columns``; DataError names anything wrong."""
    return pd.DataFrame(window_values(window, columns, source=source), columns=list(columns))


def window_values(window: Any, columns: Sequence[str], *, source: str = "window") -> np.ndarray:
    """:func:`window_frame` as a float array (rows x ``columns``): what serving uses."""
    return read_window(window, columns, source=source)[0]


def read_window(window: Any, columns: Sequence[str], *,
                source: str = "window") -> tuple[np.ndarray, pd.Series | None]:
    """:func:`window_values` and the bars' times, if they came with any: rows copied from
    a CSV keep its time column (Date, Datetime, timestamp, Date + Time), which is no
    feature but is read and checked to increase. Prices are held to the data contract
    (positive, in range, Low <= Open/Close <= High).

    A plainly well-formed window (see :func:`_plain_values`) whose cells are finite and
    whose prices pass is taken as an array, with no frame built; anything else goes the
    general way, which names every problem. Both give the same floats.
    """
    values = _plain_values(window, columns)
    if values is not None and np.isfinite(values).all() and _prices_pass(values, columns):
        return values, None
    frame, times = _checked_window(window, columns, source)
    check_prices(frame, source, WINDOW_ROWS)
    return frame.to_numpy(dtype=np.float64), times


def stacked_values(windows: Sequence[Any], columns: Sequence[str]) -> np.ndarray | None:
    """:func:`window_values` of many windows at once, as one (windows x rows x columns)
    array, when every window is a list of plainly well-formed rows (see
    :func:`_plain_values`), all of one length, every cell finite and every price passing;
    else None (read each window alone: that names its problem). Every check is row by
    row, so all rows pass together exactly when each window would pass alone."""
    if not windows or any(type(window) is not list for window in windows) \
            or len(set(map(len, windows))) != 1:
        return None
    values = _plain_values(list(chain.from_iterable(windows)), columns)
    if values is None or not np.isfinite(values).all() or not _prices_pass(values, columns):
        return None
    return values.reshape(len(windows), -1, len(columns))


def _prices_pass(values: np.ndarray, columns: Sequence[str]) -> bool:
    present = [c for c in OHLC if c in columns]
    if not present:
        return True
    return prices_pass(values[:, [columns.index(c) for c in present]], present)


def _checked_window(window: Any, columns: Sequence[str],
                    source: str) -> tuple[pd.DataFrame, pd.Series | None]:
    """The general path of :func:`read_window`: every problem named."""
    frame = _window_table(window, columns, source)
    time_cols, times = window_times(frame[[c for c in frame.columns if c not in columns]],
                                    source)
    missing = [c for c in columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in columns and c not in time_cols]
    if missing or extra:
        parts = [f"missing feature(s) {missing}" if missing else "",
                 f"unexpected feature(s) {extra}" if extra else ""]
        raise DataError("; ".join(p for p in parts if p), source=source,
                        column=(missing or extra)[0])
    frame = _window_floats(frame.loc[:, list(columns)].reset_index(drop=True), source)
    check_finite(frame, source, WINDOW_ROWS)
    return frame, times


# Cell types taken as they are on the fast path (bool is not among them: type(True) is bool).
_PLAIN_NUMBERS = frozenset((float, int))


def _plain_values(window: Any, columns: Sequence[str]) -> np.ndarray | None:
    """The window as a float array when it is plainly well-formed, else None.

    Serving speed: building and checking a frame column by column costs ~0.5 ms, more
    than the policy itself. Only inputs that the general path would accept unchanged
    (exactly ``columns``, in order for frames and arrays; plain int/float cells) are
    taken here; anything else, and any non-finite value, goes through the general path,
    which names the problem.
    """
    if isinstance(window, pd.DataFrame):
        if list(window.columns) != list(columns):
            return None
        values = window.to_numpy()  # object unless every column is a plain number type
        return values.astype(np.float64) if values.dtype.kind in "iuf" else None
    if isinstance(window, np.ndarray):
        plain = window.dtype.kind in "iuf" and window.ndim == 2 and window.shape[1] == len(columns)
        return window.astype(np.float64) if plain else None
    if not isinstance(window, list | tuple) or not window:
        return None
    if set(map(type, window)) == {dict}:
        if set(map(len, window)) != {len(columns)}:
            return None
        take = itemgetter(*columns)
        try:  # every column there, and no other key (the counts are equal)
            window = [take(row) for row in window]
        except KeyError:
            return None
        if len(columns) == 1:  # itemgetter of one key gives the cell, not a tuple
            window = [(cell,) for cell in window]
    elif not all(isinstance(row, list | tuple) and len(row) == len(columns) for row in window):
        return None
    if not set(map(type, chain.from_iterable(window))) <= _PLAIN_NUMBERS:
        return None
    try:
        return np.array(window, dtype=np.float64)
    except OverflowError:  # an int beyond the float range; the general path reports it
        return None


def _window_table(window: Any, columns: Sequence[str], source: str) -> pd.DataFrame:
    """The window as a DataFrame, cells not yet checked."""
    if isinstance(window, pd.DataFrame):
        repeated = window.columns[window.columns.duplicated()].unique().tolist()
        if repeated:
            raise DataError(f"duplicate column(s) {repeated}", source=source,
                            column=str(repeated[0]))
        return window
    if isinstance(window, list | tuple) and window and all(isinstance(r, dict) for r in window):
        return pd.DataFrame.from_records(list(window))
    numeric = isinstance(window, np.ndarray) and window.dtype.kind in "iuf"
    array = window if numeric else np.asarray(window, dtype=object)  # keeps bools and dates
    if array.ndim != 2 or array.shape[1] != len(columns):
        raise DataError(f"must be a list of rows of numbers: a 2-D array with {len(columns)} "
                        f"columns {list(columns)}; got shape {array.shape}", source=source)
    return pd.DataFrame(array, columns=list(columns))


def _window_floats(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Every cell a float; a bool, a date or text is refused rather than coerced."""
    out = {}
    for col in frame.columns:
        series = frame[col]
        if series.dtype.kind in "iuf":
            out[col] = series.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        values, bad = window_cells(series.tolist())
        if bad.any():
            raise non_numeric_error(series, bad, source, WINDOW_ROWS)
        out[col] = values
    return pd.DataFrame(out, index=frame.index)


def window_cells(cells: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cells_to_floats` for JSON cells: text is not a number either (a file's
    cells are text; a request's numbers are JSON numbers, and "93.5" is a typo)."""
    values, bad = cells_to_floats(cells)
    return values, bad | np.array([isinstance(c, str) for c in cells], dtype=bool)


def scale_window(window: Any, spec: FeatureSpec, scaler: Any, lookback: int) -> np.ndarray:
    """The model input for one prediction: the last ``lookback`` transformed, scaled rows."""
    return scale_values(window_values(window, spec.features), spec, scaler, lookback)


def scale_values(values: np.ndarray, spec: FeatureSpec, scaler: Any,
                 lookback: int) -> np.ndarray:
    """:func:`scale_window` of rows that :func:`window_values` returned (a loader that
    also reads the window's prices validates it once, not twice): the last
    ``lookback + warmup`` rows through :func:`feature_values` and :func:`apply_scaler`,
    as float32."""
    check_lookback(lookback)
    needed = lookback + spec.warmup
    require_rows(len(values), needed, source="window",
                 why=f"lookback {lookback} + {spec.warmup} warm-up bar(s)")
    tail = values[len(values) - needed:]  # older rows do not reach the model
    features = feature_values(tail, spec)
    if not np.isfinite(features).all():  # named by the frame path, rows numbered as sent
        rows = pd.RangeIndex(len(values) - needed, len(values))
        transform_features(pd.DataFrame(tail, index=rows, columns=list(spec.features)), spec,
                           source="window")
    with np.errstate(over="ignore"):  # checked just below, with a message
        scaled = apply_scaler(scaler, features[-lookback:]).astype(np.float32)
    if not np.isfinite(scaled).all():  # e.g. 1e308 overflows float32 after scaling
        column = spec.features[int(np.argwhere(~np.isfinite(scaled))[0][1])]
        raise DataError("a value is too large for the model (it overflows after scaling)",
                        source="window", column=column)
    return scaled


def scale_stack(values: np.ndarray, spec: FeatureSpec, scaler: Any,
                lookback: int) -> np.ndarray | None:
    """:func:`scale_values` of every window of a :func:`stacked_values` stack at once:
    (windows x lookback x columns) float32, equal bit for bit to each window's own
    (the feature rule and the scikit-learn scalers work element by element along rows).
    None where any window would be refused (too few rows, a non-finite feature or
    scaled value) or the scaler is not one of :data:`SCALERS`: scale each alone, which
    names the problem."""
    check_lookback(lookback)
    needed = lookback + spec.warmup
    if values.ndim != 3 or values.shape[1] < needed \
            or type(scaler) not in SCALERS.values():
        return None
    features = feature_values(values[:, values.shape[1] - needed:], spec)[:, -lookback:]
    if not np.isfinite(features).all():
        return None
    with np.errstate(over="ignore"):
        scaled = apply_scaler(scaler, features.reshape(-1, features.shape[-1])) \
            .astype(np.float32)
    if not np.isfinite(scaled).all():
        return None
    return scaled.reshape(features.shape)


def apply_scaler(scaler: Any, values: np.ndarray) -> np.ndarray:
    """``scaler.transform(values)`` for finite float64 ``values``, computed from the
    fitted arrays when the scaler is one of :data:`SCALERS` in a form recognised here
    (the same float64 operations, in the same order, as scikit-learn's ``transform``,
    without its per-call input checks: ~0.2 ms per prediction); any other scaler, or
    any other shape, goes through ``scaler.transform``."""
    kind = type(scaler)
    n = getattr(scaler, "n_features_in_", None)
    if values.ndim != 2 or values.dtype != np.float64 or values.shape[1] != n \
            or getattr(scaler, "copy", None) is not True:
        return scaler.transform(values)
    if kind is StandardScaler and _fitted(scaler, "mean_", "scale_", n):
        out = values - scaler.mean_ if scaler.with_mean else values.copy()
        if scaler.with_std:
            out /= scaler.scale_
        return out
    if kind is RobustScaler and _fitted(scaler, "center_", "scale_", n):
        out = values - scaler.center_ if scaler.with_centering else values.copy()
        if scaler.with_scaling:
            out /= scaler.scale_
        return out
    if kind is MinMaxScaler and _fitted(scaler, "min_", "scale_", n) and not scaler.clip:
        out = values * scaler.scale_
        out += scaler.min_
        return out
    return scaler.transform(values)


def _fitted(scaler: Any, first: str, second: str, n: int) -> bool:
    """Both fitted arrays are float64 vectors of ``n`` entries (else: sklearn's way)."""
    return all(isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == (n,)
               for a in (getattr(scaler, first, None), getattr(scaler, second, None)))
