"""Bar-by-bar streams: isolation, warm-up, accounting by apply_actions, LRU, threads."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from NetworkConfigs import load_model
from NetworkConfigs.base import ACTION_NAMES
from NetworkConfigs.streams import READY, WARMING_UP, StreamNotFound, StreamRegistry
from tests.fake_model_type import FrequencyLoader, FrequencyTrainer
from tests.test_ppo_loader import train_tiny
from Utilities.accounting import Accounts, EnvParams, apply_actions
from Utilities.data_utils import DataError

# Non-default accounting, so a test can tell the model's env_params from the defaults.
ENV = {"env_params": {"commission": 0.002, "slippage": 5.0, "position_fraction": 0.5}}


@pytest.fixture(scope="module")
def ppo(sample_bars: pd.DataFrame, tmp_path_factory):
    return load_model(train_tiny(sample_bars.iloc[:400], tmp_path_factory.mktemp("M"),
                                 config=ENV)[1])


@pytest.fixture(scope="module")
def ppo_without_close(sample_bars: pd.DataFrame, tmp_path_factory):
    """Close is the accounting price but not a feature of this model."""
    config = {"data_params": {"features": ["Open", "High", "Low", "RSI_14"]}}
    return load_model(train_tiny(sample_bars.iloc[:400], tmp_path_factory.mktemp("M"),
                                 config=config)[1])


@pytest.fixture(scope="module")
def frequency(sample_bars: pd.DataFrame, tmp_path_factory) -> FrequencyLoader:
    path = FrequencyTrainer({"lookback": 5}).fit(sample_bars.iloc[:400], model_name="f",
                                                 models_dir=tmp_path_factory.mktemp("M"))
    return FrequencyLoader.load(path)


def bars_of(loader, sample_bars: pd.DataFrame, start: int, n: int) -> list[dict]:
    return sample_bars[list(loader.spec.features)].iloc[start:start + n].to_dict("records")


def feed(registry: StreamRegistry, stream_id: str, bars: list[dict], **options) -> list[dict]:
    return [registry.push(stream_id, bar, **options) for bar in bars]


# -------------------------------------------------------------------------- warm-up


def test_warming_up_until_the_window_is_full(ppo, sample_bars) -> None:
    registry = StreamRegistry(ppo)
    size = ppo.window_size
    replies = feed(registry, "s", bars_of(ppo, sample_bars, 0, size + 1))
    for n, reply in enumerate(replies[:size - 1], start=1):
        assert reply["status"] == WARMING_UP and "action_name" not in reply
        assert reply["message"] == f"warming up: {n} of {size} bars"
        assert reply["account"]["position"] == 0
        assert reply["account"]["equity"] == ppo.env_params.initial_balance
    assert [r["status"] for r in replies[size - 1:]] == [READY, READY]
    assert replies[-1]["action_name"] in ACTION_NAMES and replies[-1]["bars_seen"] == size + 1
    assert registry.get("s")["status"] == READY


def test_a_full_window_answers_as_predict_does(ppo, sample_bars) -> None:
    registry = StreamRegistry(ppo)
    bars = bars_of(ppo, sample_bars, 10, ppo.window_size)
    reply = feed(registry, "s", bars)[-1]
    expected = ppo.predict(bars).to_dict()
    assert {k: reply[k] for k in expected} == expected


# ------------------------------------------------------------------------ isolation


def test_interleaved_streams_answer_as_if_alone(ppo, sample_bars) -> None:
    a, b = bars_of(ppo, sample_bars, 0, 40), bars_of(ppo, sample_bars, 150, 40)
    alone_a, alone_b = feed(StreamRegistry(ppo), "a", a), feed(StreamRegistry(ppo), "b", b)
    shared = StreamRegistry(ppo)
    together = [(shared.push("a", x), shared.push("b", y)) for x, y in zip(a, b, strict=True)]
    assert [t[0] for t in together] == alone_a
    assert [t[1] for t in together] == alone_b
    assert alone_a[-1]["probabilities"] != alone_b[-1]["probabilities"]  # not trivially equal


# ------------------------------------------------------------------------ accounting


def replay(replies: list[dict], closes: list[float], params: EnvParams) -> list[dict]:
    """The accounts after each bar, from apply_actions called directly."""
    accounts, out = Accounts.open(1, params.initial_balance), []
    for reply, close in zip(replies, closes, strict=True):
        if reply["status"] == READY:
            action = np.array([ACTION_NAMES.index(reply["action_name"])])
            apply_actions(accounts, action, close, params)
        out.append({"position": int(accounts.position[0]), "units": float(accounts.units[0]),
                    "cash": float(accounts.cash[0]), "trades": int(accounts.trades[0]),
                    "equity": float(accounts.equity(close)[0])})
    return out


def test_the_stream_account_is_apply_actions_with_the_models_env_params(ppo, sample_bars):
    bars = bars_of(ppo, sample_bars, 0, 120)
    rng = np.random.default_rng(3)  # drawn actions: every kind of fill happens
    replies = feed(StreamRegistry(ppo), "s", bars, sample=True, rng=rng)
    expected = replay(replies, [b["Close"] for b in bars], ppo.env_params)
    seen = [{k: r["account"][k] for k in expected[0]} for r in replies]
    assert seen == expected
    assert {r.get("action_name") for r in replies} >= set(ACTION_NAMES)
    assert expected[-1]["trades"] > 3
    assert replay(replies, [b["Close"] for b in bars], EnvParams()) != expected


def test_each_prediction_sees_the_streams_account(ppo, sample_bars) -> None:
    bars = bars_of(ppo, sample_bars, 0, 60)
    replies = feed(StreamRegistry(ppo), "s", bars, sample=True, rng=np.random.default_rng(1))
    before = replay(replies, [b["Close"] for b in bars], ppo.env_params)
    size = ppo.window_size
    for i in range(size, len(bars)):  # the account before bar i's action
        account = replies[i - 1]["account"]
        state = {k: account[k] for k in ("cash", "units", "position", "entry_price",
                                         "entry_cost")}
        served = ppo.predict(bars[i + 1 - size: i + 1], state)
        assert served.probabilities == replies[i]["probabilities"], i
    assert any(b["position"] != 0 for b in before)


def test_a_model_without_env_params_trades_with_the_defaults(frequency, sample_bars) -> None:
    bars = bars_of(frequency, sample_bars, 0, 40)
    replies = feed(StreamRegistry(frequency), "s", bars)
    expected = replay(replies, [b["Close"] for b in bars], EnvParams())
    assert [{k: r["account"][k] for k in expected[0]} for r in replies] == expected
    assert expected[-1]["trades"] > 0


def test_a_type_that_cannot_sample_says_so(frequency, sample_bars) -> None:
    registry = StreamRegistry(frequency)
    bars = bars_of(frequency, sample_bars, 0, frequency.window_size)
    feed(registry, "s", bars[:-1])
    with pytest.raises(DataError, match="cannot sample"):
        registry.push("s", bars[-1], sample=True)
    assert registry.get("s")["bars_seen"] == frequency.window_size - 1


# ----------------------------------------------------------------------------- bars


@pytest.mark.parametrize(("change", "message"), [
    (lambda b: b.pop("RSI_14"), r"missing feature\(s\) \['RSI_14'\]"),
    (lambda b: b.update(Spam=1.0), r"unexpected feature\(s\) \['Spam'\]"),
    (lambda b: b.update(RSI_14="high"), "column 'RSI_14': non-numeric values"),
    (lambda b: b.update(RSI_14=True), "column 'RSI_14': non-numeric values"),
    (lambda b: b.update(Close=float("inf")), "column 'Close': missing or infinite"),
    (lambda b: b.update(Close=0.0), "column 'Close': prices must be positive at row 1"),
    (lambda b: b.update(Close=1e-310), "column 'Close': prices must be between 1e-08 and 1e"),
    (lambda b: b.update(Open=2e12), "column 'Open': prices must be between 1e-08 and 1e"),
    (lambda b: b.update(High=b["Low"] - 1), "column 'High': below 'Low'"),
    (lambda b: b.update(Close=b["High"] + 1), "column 'Close': above 'High'"),
    (lambda b: b.update(Open=b["Low"] - 1), "column 'Open': below 'Low'"),
    (lambda b: b.update(Close=str(b["Close"])), "column 'Close': non-numeric values"),
    (lambda b: b.update(Date="yesterday"), "column 'Date': unreadable timestamps"),
])
def test_a_bad_bar_is_named(ppo, sample_bars, change, message: str) -> None:
    bar = bars_of(ppo, sample_bars, 0, 1)[0]
    change(bar)
    registry = StreamRegistry(ppo)
    with pytest.raises(DataError, match=message):
        registry.push("s", bar)
    assert "s" not in registry  # a refused first bar creates nothing


def test_close_rides_along_when_it_is_not_a_feature(ppo_without_close, sample_bars) -> None:
    loader = ppo_without_close
    rows = sample_bars.iloc[:loader.window_size]
    bars = rows[[*loader.spec.features, "Close"]].to_dict("records")
    registry = StreamRegistry(loader)
    reply = feed(registry, "s", bars)[-1]
    assert reply["status"] == READY and reply["account"]["price"] == bars[-1]["Close"]
    with pytest.raises(DataError, match="every bar needs 'Close'"):
        registry.push("s", {k: v for k, v in bars[0].items() if k != "Close"})
    for bad, message in (("x", "Close must be a finite number"), (-2.0, "must be positive"),
                         ("93.5", "Close must be a finite number"),
                         (1e-310, "prices must be between"),
                         (bars[0]["High"] + 1, "column 'Close': above 'High'")):
        with pytest.raises(DataError, match=message):
            registry.push("s", {**bars[0], "Close": bad})


@pytest.mark.parametrize("position", ["warm-up", "full"])
def test_a_bar_the_transform_refuses_leaves_the_stream_unchanged(ppo, sample_bars,
                                                                  position: str) -> None:
    bars = bars_of(ppo, sample_bars, 0, 40)
    at = 5 if position == "warm-up" else 30
    poisoned = StreamRegistry(ppo)
    feed(poisoned, "s", bars[:at])
    before = poisoned.get("s")
    with pytest.raises(DataError, match="column 'EMA_12': the returns transform"):
        poisoned.push("s", {**bars[at], "EMA_12": 0.0})
    assert poisoned.get("s") == before
    assert feed(poisoned, "s", bars[at:]) == feed(StreamRegistry(ppo), "s", bars)[at:]


@pytest.mark.parametrize("position", ["warm-up", "full"])
@pytest.mark.parametrize("price", [1e-310, 5e-324, 1e300])
def test_an_extreme_price_never_poisons_a_stream(ppo, sample_bars, position: str,
                                                 price: float) -> None:
    """A denormal price used to make the account's units infinite: NaN cash, and every
    later bar refused. Now the bar is refused and the stream goes on as if never sent."""
    bars = bars_of(ppo, sample_bars, 0, 40)
    at = 5 if position == "warm-up" else 30
    stream = StreamRegistry(ppo)
    feed(stream, "s", bars[:at])
    before = stream.get("s")
    with pytest.raises(DataError, match="prices must be between 1e-08 and 1e"):
        stream.push("s", dict.fromkeys(bars[at], price))
    assert stream.get("s") == before
    replies = feed(stream, "s", bars[at:])
    assert replies == feed(StreamRegistry(ppo), "s", bars)[at:]
    assert all(np.isfinite(r["account"]["cash"]) for r in replies)


def test_an_account_the_fill_cannot_hold_is_refused_unchanged(ppo, sample_bars,
                                                               monkeypatch) -> None:
    """The accounting runs on a copy: a fill that leaves a non-finite account (it cannot
    happen within the data contract's prices; forced here) changes nothing."""
    import NetworkConfigs.streams as streams

    bars = bars_of(ppo, sample_bars, 0, ppo.window_size + 2)
    stream = StreamRegistry(ppo)
    feed(stream, "s", bars[:-2])
    before = stream.get("s")

    def overflowing(accounts, *args, **kwargs) -> None:
        accounts.cash[:] = np.inf

    monkeypatch.setattr(streams, "apply_actions", overflowing)
    with pytest.raises(DataError, match="leaves an account that is not a finite number"):
        stream.push("s", bars[-2])
    assert stream.get("s") == before
    monkeypatch.undo()
    assert feed(stream, "s", bars[-2:]) == feed(StreamRegistry(ppo), "s", bars)[-2:]


def test_bars_with_their_csv_time_must_come_in_order(ppo, sample_bars) -> None:
    """Rows copied from a CSV keep its Date column: accepted, and a bar that is not later
    than the previous one is refused (naming the column), the stream unchanged."""
    rows = sample_bars[list(ppo.spec.features)].iloc[:ppo.window_size + 3]
    bars = [{"Date": str(t.date()), **bar}
            for t, bar in zip(rows.index, rows.to_dict("records"), strict=True)]
    stream = StreamRegistry(ppo)
    replies = feed(stream, "s", bars[:-2])
    assert replies[-1]["status"] == READY
    before = stream.get("s")
    for earlier in (bars[-3]["Date"], bars[0]["Date"]):
        with pytest.raises(DataError, match=r"its time .* the previous bar's") as caught:
            stream.push("s", {**bars[-2], "Date": earlier})
        assert caught.value.column == "Date"
        assert stream.get("s") == before
    assert feed(stream, "s", bars[-2:])[-1]["bars_seen"] == len(bars)
    plain = [{k: v for k, v in bar.items() if k != "Date"} for bar in bars]
    assert feed(StreamRegistry(ppo), "s", plain)[-1]["account"] == stream.get("s")["account"]


@pytest.mark.parametrize("stream_id", ["", "a b", "x" * 129, 7, None, "é"])
def test_bad_stream_ids_are_refused(ppo, sample_bars, stream_id) -> None:
    with pytest.raises(DataError, match="stream_id: must be 1-128 letters"):
        StreamRegistry(ppo).push(stream_id, bars_of(ppo, sample_bars, 0, 1)[0])


# ------------------------------------------------------------------ table of streams


def test_least_recently_used_stream_is_evicted(frequency, sample_bars) -> None:
    bar = bars_of(frequency, sample_bars, 0, 1)[0]
    registry = StreamRegistry(frequency, max_streams=2)
    registry.push("a", bar)
    registry.push("b", bar)
    registry.get("a")  # a read is a use: b is now the least recently used
    registry.push("c", bar)
    assert "a" in registry and "c" in registry and "b" not in registry and len(registry) == 2
    with pytest.raises(StreamNotFound, match=r"no stream 'b'.*at most 2 streams"):
        registry.get("b")


def test_reset_and_delete(frequency, sample_bars) -> None:
    bars = bars_of(frequency, sample_bars, 0, 10)
    registry = StreamRegistry(frequency)
    feed(registry, "s", bars)
    fresh = registry.reset("s")
    assert fresh["bars_seen"] == 0 and fresh["status"] == WARMING_UP
    assert feed(registry, "s", bars) == feed(StreamRegistry(frequency), "s", bars)
    registry.delete("s")
    for call in (registry.get, registry.reset, registry.delete):
        with pytest.raises(StreamNotFound):
            call("s")


def test_max_streams_must_be_positive(frequency) -> None:
    with pytest.raises(ValueError, match="max_streams must be an integer >= 1"):
        StreamRegistry(frequency, max_streams=0)


# -------------------------------------------------------------------------- threads


@contextmanager
def frequent_thread_switches() -> Iterator[None]:
    """Threads switch every 10 µs instead of 5 ms, so races show up in a short test."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def test_concurrent_pushes_match_sequential_runs(ppo, sample_bars) -> None:
    """Threads released together by a barrier: each one's own stream answers as it
    does alone; on the stream they all share every push is one step (the replies count
    1, 2, ..., N bars, none twice); a small table that keeps evicting keeps its bound."""
    n_threads, n_bars = 4, 25
    sequences = [bars_of(ppo, sample_bars, 20 * i, n_bars) for i in range(n_threads)]
    alone = [feed(StreamRegistry(ppo), f"own-{i}", s) for i, s in enumerate(sequences)]
    registry, small = StreamRegistry(ppo), StreamRegistry(ppo, max_streams=3)
    barrier, results, shared, errors = threading.Barrier(n_threads), {}, [], []

    def client(i: int) -> None:
        try:
            barrier.wait()
            replies = []
            for j, bar in enumerate(sequences[i]):
                replies.append(registry.push(f"own-{i}", bar))
                shared.append(registry.push("shared", bar)["bars_seen"])
                small.push(f"churn-{i}-{j}", bar)
            results[i] = replies
        except Exception as exc:  # reported below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_threads)]
    with frequent_thread_switches():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert [results[i] for i in range(n_threads)] == alone
    assert sorted(shared) == list(range(1, n_threads * n_bars + 1))
    assert len(small) == 3
