"""The serving hot path (issue 13): a well-formed window goes through numpy arrays and
the scaler's fitted arrays, anything else through the frame path that names problems.
Both must give the very same numbers, and the same as the training pipeline's own
DataFrame path (``transform_features`` + scikit-learn's ``transform``), for every model
type and every window form the API accepts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

from NetworkConfigs import load_model
from NetworkConfigs.base import ModelLoader
from Utilities.data_utils import (
    DataError,
    FeatureSpec,
    apply_scaler,
    feature_values,
    transform_features,
    window_frame,
    window_values,
)

# Window ends spread over sample.csv, away from the tiny models' 400 training bars too.
ENDS = (60, 137, 250, 399, 555, 801, 1200, 1999)


@pytest.fixture(scope="module")
def loaders(tiny_models: dict[str, Path]) -> dict[str, ModelLoader]:
    return {name: load_model(folder) for name, folder in tiny_models.items()}


def frame_of(bars: pd.DataFrame, loader: ModelLoader, end: int, extra: int = 0) -> pd.DataFrame:
    """The loader's window (``extra`` older bars too) ending at bar ``end``."""
    rows = loader.window_size + extra
    return bars[list(loader.spec.features)].iloc[end - rows + 1:end + 1]


def training_path_input(loader: ModelLoader, frame: pd.DataFrame) -> np.ndarray:
    """The model input as the code before the fast path computed it: the DataFrame
    feature transform and scikit-learn's own ``transform`` with its checks."""
    features = transform_features(frame.reset_index(drop=True), loader.spec).to_numpy()
    return loader.scaler.transform(features[-loader.lookback:]).astype(np.float32)


def window_forms(frame: pd.DataFrame) -> dict[str, object]:
    """Every form a window may take: the first four take the fast path, the rest the
    general one (other column order, numpy cells, a time key), same values."""
    records = frame.to_dict("records")
    return {
        "records": records,
        "rows": frame.to_numpy().tolist(),
        "array": frame.to_numpy(),
        "frame": frame.reset_index(drop=True),
        "reordered_frame": frame[frame.columns[::-1]].reset_index(drop=True),
        "reordered_records": [dict(reversed(list(row.items()))) for row in records],
        "numpy_cells": [{k: np.float64(v) for k, v in row.items()} for row in records],
        "with_time": [{**row, "Date": str(t.date())} for row, t in zip(
            records, pd.date_range("2020-01-01", periods=len(records)), strict=True)],
    }


# ---------------------------------------------------------------- the feature rule


@pytest.mark.parametrize("transform", ["raw", "diff", "returns"])
def test_the_one_feature_rule_is_the_frame_paths_rule(sample_bars, transform) -> None:
    bars = sample_bars.iloc[:300]
    spec = FeatureSpec(tuple(bars.columns), transform, ("Open", "High", "Low", "Close"))
    values = bars.to_numpy(dtype=np.float64)
    before = values.copy()
    out = feature_values(values, spec)
    np.testing.assert_array_equal(values, before)  # the caller's rows are not changed
    np.testing.assert_array_equal(out, transform_features(bars, spec).to_numpy())
    # ... and the rule itself, written independently with pandas:
    prices = bars[list(spec.price_columns)]
    moved = {"raw": prices, "diff": prices.diff(),
             "returns": np.log(prices / prices.shift())}[transform]
    expected = bars.copy()
    expected[list(spec.price_columns)] = moved
    np.testing.assert_allclose(out, expected.iloc[spec.warmup:].to_numpy(), rtol=1e-12)


def scalers(train: np.ndarray) -> list[object]:
    return [StandardScaler().fit(train), StandardScaler(with_mean=False).fit(train),
            StandardScaler(with_std=False).fit(train), RobustScaler().fit(train),
            RobustScaler(with_centering=False).fit(train),
            RobustScaler(quantile_range=(10, 90)).fit(train), MinMaxScaler().fit(train),
            MinMaxScaler(feature_range=(-1, 1)).fit(train),
            MinMaxScaler(clip=True).fit(train), MaxAbsScaler().fit(train)]


def test_apply_scaler_is_sklearns_transform_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    train = rng.normal(3.0, 2.0, (500, 6)) * rng.uniform(0.01, 1e4, 6)
    for scaler in scalers(train):
        for values in (rng.normal(3.0, 5.0, (30, 6)) * 1e3, train[:10], rng.normal(size=(1, 6))):
            np.testing.assert_array_equal(apply_scaler(scaler, values),
                                          scaler.transform(values), err_msg=repr(scaler))


def test_an_unusual_input_goes_through_sklearn(recwarn) -> None:
    scaler = StandardScaler().fit(np.arange(20.0).reshape(10, 2))
    with pytest.raises(ValueError, match="features"):  # sklearn's own shape check
        apply_scaler(scaler, np.ones((3, 5)))
    as_float32 = np.ones((3, 2), dtype=np.float32)
    np.testing.assert_array_equal(apply_scaler(scaler, as_float32), scaler.transform(as_float32))


# ---------------------------------------------------------------- windows and models


def test_every_model_type_is_covered(loaders) -> None:
    from NetworkConfigs import model_type_names

    assert set(loaders) == set(model_type_names()) >= {"ppo", "xgboost", "transformer"}


@pytest.mark.parametrize("end", ENDS)
def test_model_input_equals_the_training_paths_bit_for_bit(loaders, sample_bars, end) -> None:
    for name, loader in loaders.items():
        frame = frame_of(sample_bars, loader, end)
        expected = training_path_input(loader, frame)
        for form, window in window_forms(frame).items():
            np.testing.assert_array_equal(loader.model_input(window), expected,
                                          err_msg=f"{name}: {form}")


@pytest.mark.parametrize("end", ENDS)
def test_every_window_form_gives_the_same_prediction(loaders, sample_bars, end) -> None:
    """Fast-path forms and general-path forms: equal envelopes, float for float."""
    for name, loader in loaders.items():
        frame = frame_of(sample_bars, loader, end)
        answers = {form: loader.predict_with(window).to_dict()
                   for form, window in window_forms(frame).items()}
        assert all(answer == answers["records"] for answer in answers.values()), name


def test_a_longer_window_is_its_last_bars(loaders, sample_bars) -> None:
    for loader in loaders.values():
        long = frame_of(sample_bars, loader, 900, extra=25)
        exact = frame_of(sample_bars, loader, 900)
        assert loader.predict_with(long.to_dict("records")) == \
            loader.predict_with(exact.to_dict("records"))


def test_integers_are_the_same_numbers_as_floats(loaders) -> None:
    for loader in loaders.values():
        base = {f: 100 + i for i, f in enumerate(loader.spec.features)}
        base |= {"Open": 100, "High": 102, "Low": 98, "Close": 101}
        ints = [{f: base[f] + (i % 3) for f in loader.spec.features}
                for i in range(loader.window_size)]
        floats = [{f: float(v) for f, v in row.items()} for row in ints]
        assert loader.predict_with(ints) == loader.predict_with(floats)


def test_account_state_is_read_the_same_on_both_paths(loaders, sample_bars) -> None:
    loader = loaders["ppo"]
    frame = frame_of(sample_bars, loader, 700)
    close = float(frame["Close"].iloc[-1])
    state = {"position": 1, "units": 12.0, "cash": 8000.0, "entry_price": close * 0.97}
    forms = window_forms(frame)
    answers = [loader.predict_with(forms[form], state) for form in ("records", "with_time",
                                                                     "reordered_frame")]
    assert answers[0] == answers[1] == answers[2] != loader.predict_with(forms["records"])


def refusal(loader: ModelLoader, window: object) -> tuple[str, str | None, str | None]:
    with pytest.raises(DataError) as caught:
        loader.predict_with(window)
    return str(caught.value), caught.value.source, caught.value.column


@pytest.mark.parametrize(("change", "message"), [
    (lambda rows: rows[3].update(Close=math.nan), "missing or infinite values at row 4"),
    (lambda rows: rows[5].update(High=math.inf), "infinite values at row 6"),
    (lambda rows: rows[2].update(Close=-5.0), "prices must be positive"),
    (lambda rows: rows[4].update(High=1.0), "below 'Low'"),
    (lambda rows: rows[1].pop("Low"), "missing or infinite values at row 2"),
    (lambda rows: [row.pop("Low") for row in rows], "missing feature(s) ['Low']"),
    (lambda rows: rows[1].update(Extra=1.0), "unexpected feature(s) ['Extra']"),
    (lambda rows: rows[0].update(Close=True), "non-numeric values at row 1 (True)"),
    (lambda rows: rows[0].update(Close="101.5"), "non-numeric values at row 1"),
    (lambda rows: rows[6].update(Close=10 ** 400), "Close"),
    (lambda rows: rows.pop(), "are needed (lookback"),
])
def test_a_bad_window_is_refused_alike_on_every_path(loaders, sample_bars, change,
                                                      message) -> None:
    """A bad cell sends the window the general way, which names it: the same refusal
    whatever form the window came in, for every model type."""
    for loader in loaders.values():
        rows = frame_of(sample_bars, loader, 500).to_dict("records")
        change(rows)
        found = refusal(loader, rows)
        assert message in found[0]
        reordered = [dict(reversed(list(row.items()))) for row in rows]
        assert refusal(loader, reordered) == found


def test_rows_of_the_wrong_width_are_refused(loaders, sample_bars) -> None:
    for loader in loaders.values():
        rows = frame_of(sample_bars, loader, 500).to_numpy().tolist()
        rows[2] = rows[2][:-1]
        assert "2-D array" in refusal(loader, rows)[0]


def test_a_transform_that_breaks_is_named_by_row(loaders, sample_bars) -> None:
    """A price column that is not an OHLC price (no price check) and reaches 0 makes
    the returns transform infinite: the row is named as the frame path names it."""
    loader = loaders["ppo"]
    spec = loader.spec
    extra = [c for c in spec.price_columns if c not in ("Open", "High", "Low", "Close")]
    if not extra:
        pytest.skip("the tiny model has no non-OHLC price column")
    for older in (0, 5):  # older bars do not reach the model; rows count from the first
        rows = frame_of(sample_bars, loader, 500, extra=older).to_dict("records")
        rows[-3][extra[0]] = 0.0
        message = refusal(loader, rows)[0]
        assert f"transform gives non-finite values at rows {len(rows) - 2}, {len(rows) - 1}" \
            in message


def test_plain_windows_never_build_a_frame(loaders, sample_bars, monkeypatch) -> None:
    """The equalities above compare two paths, not one path with itself."""
    from Utilities import data_utils

    def general_path(*args, **kwargs):
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(data_utils, "_checked_window", general_path)
    for loader in loaders.values():
        forms = window_forms(frame_of(sample_bars, loader, 650))
        for form in ("records", "rows", "array", "frame"):
            loader.predict_with(forms[form])
        with pytest.raises(AssertionError, match="general path"):
            loader.predict_with(forms["with_time"])


def test_window_values_and_frame_agree(sample_bars) -> None:
    frame = sample_bars[["Open", "High", "Low", "Close"]].iloc[:12]
    columns = list(frame.columns)
    for window in window_forms(frame).values():
        values = window_values(window, columns)
        assert values.dtype == np.float64 and values.shape == frame.shape
        np.testing.assert_array_equal(values, frame.to_numpy())
        pd.testing.assert_frame_equal(window_frame(window, columns),
                                      frame.reset_index(drop=True))


def test_the_envelope_is_every_field_that_is_set() -> None:
    """``Prediction.to_dict`` is written out for speed: it must stay ``asdict`` minus
    the None fields, whatever fields the envelope gains."""
    from dataclasses import asdict

    from NetworkConfigs.base import Prediction

    for prediction in (Prediction(1, "Buy", 0.5, {"Hold": 0.2, "Buy": 0.5, "Sell": 0.3}, 0.7),
                       Prediction(2, "Sell", 0.6, predicted_return=-0.01),
                       Prediction(0, "Hold", 0.9)):
        expected = {k: v for k, v in asdict(prediction).items() if v is not None}
        assert prediction.to_dict() == expected
        assert list(prediction.to_dict()) == list(expected)
