"""The batch form of ``POST /predict`` (issue 13): many windows or stream bars in one
request, answered as one request each would be; limits; every refused item named by
its index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flask import Flask
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

from Api_Loader import create_api_app
from NetworkConfigs import load_model
from NetworkConfigs.base import ModelLoader
from tests.helpers.apps import error_of
from Utilities.data_utils import (
    DataError,
    FeatureSpec,
    feature_values,
    scale_stack,
    scale_values,
)
from web.predict import MAX_BATCH


@pytest.fixture(scope="module")
def apps(tiny_models: dict[str, Path]) -> dict[str, Flask]:
    """One API app per model type."""
    return {name: create_api_app(folder, {"TESTING": True})
            for name, folder in tiny_models.items()}


@pytest.fixture(scope="module")
def loaders(tiny_models: dict[str, Path]) -> dict[str, ModelLoader]:
    return {name: load_model(folder) for name, folder in tiny_models.items()}


def windows(bars: pd.DataFrame, loader: ModelLoader, n: int, start: int = 420) -> list[list]:
    """``n`` consecutive windows, as records."""
    cols = list(loader.spec.features)
    size = loader.window_size
    return [bars[cols].iloc[start + i:start + i + size].to_dict("records") for i in range(n)]


def assert_same_answer(got: dict, single: dict) -> None:
    """Batched network calls may round the last float32 bit differently from one-row
    calls (matrix products are blocked differently): equal actions, equal values to
    float32 rounding."""
    assert got.keys() == single.keys()
    assert got["action_name"] == single["action_name"]
    assert got["prediction"] == single["prediction"]
    for key in ("confidence", "value_estimate", "predicted_return"):
        if key in single:
            assert got[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6)
    for name, p in (single.get("probabilities") or {}).items():
        assert got["probabilities"][name] == pytest.approx(p, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("kind", ["ppo", "xgboost", "transformer"])
def test_a_batch_of_windows_answers_as_single_requests_do(apps, loaders, sample_bars,
                                                          kind) -> None:
    client = apps[kind].test_client()
    items = windows(sample_bars, loaders[kind], 40)
    reply = client.post("/predict", json={"batch": [{"window": w} for w in items]})
    assert reply.status_code == 200
    predictions = reply.get_json()["predictions"]
    assert len(predictions) == len(items)
    singles = [client.post("/predict", json={"window": w}).get_json() for w in items]
    for got, single in zip(predictions, singles, strict=True):
        assert_same_answer(got, single)
    if kind == "xgboost":  # trees add the same leaves in any batch: exact
        assert predictions == singles


def test_account_states_ride_with_their_windows(apps, loaders, sample_bars) -> None:
    client = apps["ppo"].test_client()
    items = windows(sample_bars, loaders["ppo"], 3)
    close = items[1][-1]["Close"]
    state = {"position": 1, "units": 10.0, "cash": 9000.0, "entry_price": close}
    body = [{"window": items[0]}, {"window": items[1], "account_state": state},
            {"window": items[2]}]
    got = client.post("/predict", json={"batch": body}).get_json()["predictions"]
    single = client.post("/predict", json={"window": items[1], "account_state": state})
    assert_same_answer(got[1], single.get_json())
    flat = client.post("/predict", json={"window": items[1]}).get_json()
    assert got[1]["probabilities"] != flat["probabilities"]


def test_stream_bars_in_a_batch_keep_the_same_state(apps, loaders, sample_bars) -> None:
    """A stream fed by batches ends exactly where the one fed bar by bar ends: same
    answers, same account (the next state)."""
    client = apps["ppo"].test_client()
    cols = list(loaders["ppo"].spec.features)
    bars = sample_bars[cols].iloc[500:530].to_dict("records")
    one_by_one = [client.post("/predict", json={"features": bar, "stream_id": "single"})
                  .get_json() for bar in bars]
    batched = []
    for start in range(0, len(bars), 7):
        body = {"batch": [{"features": bar, "stream_id": "batched"}
                          for bar in bars[start:start + 7]]}
        batched += client.post("/predict", json=body).get_json()["predictions"]
    for got, single in zip(batched, one_by_one, strict=True):
        assert {**got, "stream_id": "single"} == single  # one network row at a time: exact
    assert client.get("/streams/batched").get_json()["account"] == \
        client.get("/streams/single").get_json()["account"]


def test_windows_and_streams_mix(apps, loaders, sample_bars) -> None:
    client = apps["xgboost"].test_client()
    items = windows(sample_bars, loaders["xgboost"], 2)
    cols = list(loaders["xgboost"].spec.features)
    bar = sample_bars[cols].iloc[600].to_dict()
    body = {"batch": [{"features": bar, "stream_id": "mix"}, {"window": items[0]},
                      {"window": items[1]}]}
    got = client.post("/predict", json=body).get_json()["predictions"]
    assert got[0]["stream_id"] == "mix" and got[0]["status"] == "warming_up"
    assert got[1:] == [client.post("/predict", json={"window": w}).get_json() for w in items]


def test_a_sampled_batch_draws_in_item_order(loaders, sample_bars) -> None:
    loader = loaders["ppo"]
    items = [(w, None) for w in windows(sample_bars, loader, 30)]
    batch = loader.predict_many(items, sample=True, rng=np.random.default_rng(5))
    rng = np.random.default_rng(5)
    one_by_one = [loader.predict_with(w, sample=True, rng=rng) for w, _ in items]
    assert [p.prediction for p in batch] == [p.prediction for p in one_by_one]
    assert len({p.prediction for p in batch}) > 1


def test_a_seeded_batch_is_reproducible(apps, loaders, sample_bars) -> None:
    client = apps["ppo"].test_client()
    body = {"batch": [{"window": w} for w in windows(sample_bars, loaders["ppo"], 20)],
            "sample": True, "seed": 11}
    first = client.post("/predict", json=body).get_json()
    assert first == client.post("/predict", json=body).get_json()


# ------------------------------------------------------------------------- refusals


def test_refused_items_are_named_by_index_and_the_rest_answered(apps, loaders,
                                                                sample_bars) -> None:
    client = apps["ppo"].test_client()
    items = windows(sample_bars, loaders["ppo"], 5)
    items[1] = [dict(row) for row in items[1]]
    items[1][3]["High"] = 1.0  # below Low
    body = {"batch": [{"window": items[0]}, {"window": items[1]}, {"window": items[2]},
                      {"window": items[3][:4]}, "not an object",
                      {"window": items[4], "stream_id": "x"},
                      {"features": {}, "stream_id": "bad id!"}]}
    error = error_of(client.post("/predict", json=body), 422)
    assert error["error"].startswith("5 of 7 batch items refused; the first, batch[1]: ")
    assert error["field"] == "batch[1].window[3].High"
    by_index = {e["index"]: e for e in error["errors"]}
    assert sorted(by_index) == [1, 3, 4, 5, 6]
    assert by_index[1]["field"] == "batch[1].window[3].High" and by_index[1]["column"] == "High"
    assert by_index[1]["rows"] == ["4"] and by_index[1]["status"] == 422
    assert by_index[3]["field"] == "batch[3].window" and "are needed" in by_index[3]["error"]
    assert by_index[4]["field"] == "batch[4]" and "must be an object" in by_index[4]["error"]
    assert by_index[5] | {"error": ""} == {"index": 5, "error": "", "status": 400,
                                           "field": "batch[5].stream_id"}
    assert by_index[6]["field"] == "batch[6].stream_id"
    answers = error["predictions"]
    assert [a is None for a in answers] == [False, True, False, True, True, True, True]
    single = client.post("/predict", json={"window": items[2]}).get_json()
    assert_same_answer(answers[2], single)


@pytest.mark.parametrize(("body", "status", "field", "message"), [
    ({"batch": []}, 422, "batch", "batch must be a non-empty list"),
    ({"batch": {"window": []}}, 422, "batch", "batch must be a non-empty list"),
    ({"batch": [{}] * (MAX_BATCH + 1)}, 413, "batch",
     f"a batch holds at most {MAX_BATCH} items; got {MAX_BATCH + 1}"),
    ({"batch": [{"window": [[1]]}], "window": [[1]]}, 400, "window",
     '"window" goes inside each item of "batch"'),
    ({"batch": [{"window": [[1]]}], "seed": 3}, 422, "seed", "seed only applies"),
    ({"batch": [{"window": [[1]], "sample": True}]}, 422, "batch[0].sample",
     "unknown field(s) ['sample']"),
])
def test_a_bad_batch_is_refused_whole(apps, body, status, field, message) -> None:
    error = error_of(apps["ppo"].test_client().post("/predict", json=body), status)
    assert error["field"] == field and message in error["error"]


def test_a_type_that_cannot_sample_refuses_a_sampled_batch(apps, loaders, sample_bars) -> None:
    body = {"batch": [{"window": w} for w in windows(sample_bars, loaders["xgboost"], 2)],
            "sample": True}
    error = error_of(apps["xgboost"].test_client().post("/predict", json=body), 422)
    assert error["field"] == "sample" and "cannot sample" in error["error"]


def test_the_limit_is_in_the_openapi_document(apps) -> None:
    doc = apps["ppo"].test_client().get("/openapi.json").get_json()
    batch = doc["components"]["schemas"]["PredictRequest"]["properties"]["batch"]
    assert batch["maxItems"] == MAX_BATCH and batch["minItems"] == 1
    item = doc["components"]["schemas"]["PredictItem"]["properties"]
    assert set(item) == {"window", "features", "stream_id", "account_state"}
    responses = doc["paths"]["/predict"]["post"]["responses"]
    assert {"$ref": "#/components/schemas/BatchReply"} in \
        responses["200"]["content"]["application/json"]["schema"]["oneOf"]


# ------------------------------------------------- a batch's windows as one stack


def assert_inputs_equal(got: list, expected: list, name: str) -> None:
    """Item by item: the same array bit for bit, or a DataError with the same message."""
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        if isinstance(b, DataError):
            assert isinstance(a, DataError) and str(a) == str(b), f"{name} item {i}"
        else:
            assert a.dtype == b.dtype, f"{name} item {i}"
            np.testing.assert_array_equal(a, b, err_msg=f"{name} item {i}")


def one_by_one(loader: ModelLoader, items: list) -> list:
    out = []
    for window, state in items:
        try:
            out.append(loader.model_inputs(window, state))
        except DataError as exc:
            out.append(exc)
    return out


def flat_and_held(items: list[list[dict]]) -> list[tuple[list[dict], dict | None]]:
    """Every other window with an open long position marked at its last Close."""
    return [(w, {"position": 1, "units": 10.0, "cash": 9000.0,
                 "entry_price": w[-1]["Close"] * 0.98} if i % 2 else None)
            for i, w in enumerate(items)]


def test_a_batch_of_plain_windows_is_scaled_as_one_stack_bit_for_bit(loaders, sample_bars,
                                                                     monkeypatch) -> None:
    for name, loader in loaders.items():
        extra = windows(sample_bars, loader, 1)[0][:5]  # longer windows: older rows too
        for items in (windows(sample_bars, loader, 37, start=300),
                      [extra + w for w in windows(sample_bars, loader, 9, start=900)]):
            items = flat_and_held(items)
            expected = one_by_one(loader, items)
            if type(loader).input_from is not ModelLoader.input_from:  # the stack is taken
                def refuse(*_args: object) -> None:
                    raise AssertionError("read one by one")
                monkeypatch.setattr(loader, "model_inputs", refuse)
            assert_inputs_equal(loader.model_inputs_many(items), expected, name)
            monkeypatch.undo()


def test_a_batch_that_cannot_be_one_stack_is_read_one_by_one(loaders, sample_bars) -> None:
    loader = loaders["ppo"]
    good = windows(sample_bars, loader, 6, start=700)
    nan_cell = [dict(row) for row in good[1]]
    nan_cell[3]["Volume"] = float("nan")
    above_high = [dict(row) for row in good[2]]
    above_high[-1]["Close"] = above_high[-1]["High"] * 2
    cases = {"a NaN": [good[0], nan_cell, good[3]],
             "a price above High": [good[0], above_high, good[4]],
             "windows of two lengths": [good[0], good[5][1:], good[3]],
             "too few rows": [good[0][:5], good[1][:5]],
             "rows of numbers and records": [good[0], [list(r.values()) for r in good[1]]],
             "a bad account": [good[0], good[1]]}
    for case, items in cases.items():
        states = [None, {"position": 7}] if case == "a bad account" else [None] * len(items)
        pairs = list(zip(items, states, strict=False))
        expected = one_by_one(loader, pairs)
        assert_inputs_equal(loader.model_inputs_many(pairs), expected, case)
        if case in ("a NaN", "a price above High", "a bad account"):
            assert isinstance(expected[1], DataError) and not isinstance(expected[0], DataError)


@pytest.mark.parametrize("transform", ["raw", "diff", "returns"])
def test_scale_stack_is_scale_values_of_each_window(sample_bars, transform) -> None:
    bars = sample_bars.iloc[:400]
    spec = FeatureSpec(tuple(bars.columns), transform, ("Open", "High", "Low", "Close"))
    train = feature_values(bars.to_numpy(dtype=np.float64), spec)
    lookback = 12
    stack = np.stack([bars.iloc[i:i + 20].to_numpy(dtype=np.float64) for i in range(0, 300, 7)])
    for scaler in (StandardScaler().fit(train), RobustScaler().fit(train),
                   MinMaxScaler(feature_range=(-1, 1)).fit(train),
                   MinMaxScaler(clip=True).fit(train)):
        got = scale_stack(stack, spec, scaler, lookback)
        expected = np.stack([scale_values(w, spec, scaler, lookback) for w in stack])
        assert got.dtype == expected.dtype == np.float32
        np.testing.assert_array_equal(got, expected, err_msg=repr(scaler))
    if spec.warmup:  # too few rows for the warm-up: each window alone names it
        assert scale_stack(stack[:, :lookback], spec, StandardScaler().fit(train),
                           lookback) is None
    assert scale_stack(stack, spec, MaxAbsScaler().fit(train), lookback) is None
