"""Named bar-by-bar prediction streams over any loaded model.

A client that receives one bar at a time pushes it to a stream it names. Each stream
keeps its own rolling window (``loader.window_size`` bars) and its own simulated
account, so clients never share state. Once the window is full, every bar is answered
with the model's prediction for that bar (given the stream's account) and the predicted
action is filled at the bar's Close by ``accounting.apply_actions``, the one
accounting rule, with the model's ``env_params``.

Decisions:

- Until the window is full a push answers ``status: "warming_up"`` with the count of
  bars ("warming up: 3 of 21 bars"); that is normal operation, not an error. No action
  is taken and the account stays flat during warm-up.
- ``Close`` is required in every bar: it is the accounting price (in the data contract's range).
  When it is not one of the model's features it rides along as an extra key; any other
  key that is not a feature is an error.
- A bar that cannot be used (bad values, prices outside the data contract, a time not
  after the previous bar's, or one the feature transform cannot take) is refused with a
  DataError and the stream is left exactly as it was: every check, the accounting's
  included, runs before anything is changed.
- A bar may carry its time (``Date``, ``Datetime``, ``timestamp``, as in the CSV it was
  copied from): it is not a feature, but it must be later than the previous bar's.
- At most ``max_streams`` streams are kept; creating one more evicts the least
  recently used (a push or a read counts as a use).
- One lock guards the table of streams, one lock per stream serialises its pushes:
  pushes to different streams do not wait for each other's predictions.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from NetworkConfigs.base import ACCOUNT_FIELDS, ACTION_NAMES, ModelLoader, Prediction
from Utilities.accounting import Accounts, EnvParams, apply_actions
from Utilities.data_utils import (
    WINDOW_ROWS,
    DataError,
    check_prices,
    read_window,
    transform_features,
    window_cells,
)

log = logging.getLogger(__name__)

PRICE = "Close"  # the accounting price of every bar
STREAM_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
WARMING_UP, READY = "warming_up", "ready"


class StreamNotFound(LookupError):
    """No stream with this id (never created, deleted, or evicted as least recently used)."""


def check_stream_id(stream_id: Any) -> str:
    """``stream_id`` if it is 1-128 letters, digits, '_', '.', ':' or '-'; else DataError."""
    if not isinstance(stream_id, str) or not STREAM_ID.fullmatch(stream_id):
        raise DataError(f"must be 1-128 letters, digits, '_', '.', ':' or '-'; got "
                        f"{stream_id!r}", source="stream_id")
    return stream_id


class _Stream:
    """One client's rolling window (validated float rows) and simulated account."""

    def __init__(self, size: int, initial_balance: float) -> None:
        self.rows: deque[np.ndarray] = deque(maxlen=size)
        self.accounts = Accounts.open(1, initial_balance)
        self.bars_seen = 0
        self.price: float | None = None  # Close of the last accepted bar
        self.time: pd.Timestamp | None = None  # time of the last accepted bar, if sent
        self.lock = threading.Lock()

    def accept(self, bar: Bar, accounts: Accounts | None = None) -> None:
        """Take a bar that passed every check (and the account it was filled into)."""
        self.rows.append(bar.row)
        self.bars_seen += 1
        self.price = bar.price
        self.time = bar.time if bar.time is not None else self.time
        if accounts is not None:
            self.accounts = accounts


class Bar:
    """One parsed bar: feature row in the model's order, accounting price, time if sent."""

    __slots__ = ("price", "row", "time", "time_column")

    def __init__(self, row: np.ndarray, price: float, times: pd.Series | None) -> None:
        self.row, self.price = row, price
        self.time = None if times is None else times.iloc[0]
        self.time_column = None if times is None else str(times.name)


class StreamRegistry:
    """Streams of one model, keyed by id, at most ``max_streams`` (LRU). Thread-safe."""

    def __init__(self, loader: ModelLoader, max_streams: int = 1000) -> None:
        if isinstance(max_streams, bool) or not isinstance(max_streams, int) or max_streams < 1:
            raise ValueError(f"max_streams must be an integer >= 1; got {max_streams!r}")
        self.loader = loader
        self.max_streams = max_streams
        # Types that are not trained in the trading env trade with the env's defaults.
        self.params: EnvParams = loader.env_params
        self.window_size = loader.window_size
        self.features = tuple(loader.spec.features)
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._streams

    def push(self, stream_id: str, bar: Mapping[str, Any], *, sample: bool = False,
             rng: np.random.Generator | None = None) -> dict[str, Any]:
        """Add one bar to the stream (created on first use) and answer it: a warm-up
        status until the window is full, then the prediction and the account after the
        predicted action was filled at the bar's Close."""
        check_stream_id(stream_id)
        parsed = self.parse_bar(bar)
        stream = self._use(stream_id, create=True)
        with stream.lock:
            _check_time(stream, parsed)
            if len(stream.rows) + 1 < self.window_size:
                self._check_transform(stream, parsed.row)
                stream.accept(parsed)
                return self._view(stream_id, stream)
            prediction = self._predict(stream, parsed, sample, rng)
            stream.accept(parsed, self._filled(stream, prediction, parsed.price))
            return {**prediction.to_dict(), **self._view(stream_id, stream)}

    def get(self, stream_id: str) -> dict[str, Any]:
        """The stream's status and account; StreamNotFound if there is none."""
        stream = self._use(stream_id, create=False)
        with stream.lock:
            return self._view(stream_id, stream)

    def reset(self, stream_id: str) -> dict[str, Any]:
        """Empty the stream's window and reopen its account; StreamNotFound if none."""
        with self._lock:
            self._find(stream_id)
            self._streams[stream_id] = stream = self._new_stream()
            self._streams.move_to_end(stream_id)
        with stream.lock:
            return self._view(stream_id, stream)

    def delete(self, stream_id: str) -> None:
        """Forget the stream; StreamNotFound if there is none."""
        with self._lock:
            self._find(stream_id)
            del self._streams[stream_id]

    def parse_bar(self, bar: Any) -> Bar:
        """One bar's feature row (model order), Close and time; DataError names problems."""
        if not isinstance(bar, Mapping):
            raise DataError(f"one bar must be an object of feature name -> number; got "
                            f"{type(bar).__name__}", source="features")
        price_is_feature = PRICE in self.features
        if not price_is_feature and PRICE not in bar:
            raise DataError(f"every bar needs {PRICE!r}, the price trades are filled at "
                            "(it is not a model feature, so add it beside them)",
                            source="features", column=PRICE)
        features = {k: v for k, v in bar.items() if price_is_feature or k != PRICE}
        values, times = read_window([features], self.features, source="features")
        row = values[0]
        if price_is_feature:
            price = row[self.features.index(PRICE)]
        else:  # the data contract's price checks, Close included
            price = _price(bar[PRICE])
            frame = pd.DataFrame(values, columns=list(self.features))
            check_prices(frame.assign(**{PRICE: price}), "features", WINDOW_ROWS)
        return Bar(row, float(price), times)

    # ---------------------------------------------------------------------- internals

    def _new_stream(self) -> _Stream:
        return _Stream(self.window_size, self.params.initial_balance)

    def _find(self, stream_id: str) -> _Stream:
        """The stream (caller holds the table lock); StreamNotFound if there is none."""
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(f"no stream {stream_id!r}: it was never created, was "
                                 f"deleted, or was evicted (at most {self.max_streams} "
                                 "streams are kept, least recently used first out)")
        return stream

    def _use(self, stream_id: str, *, create: bool) -> _Stream:
        """The stream, marked most recently used; created (evicting the least recently
        used beyond ``max_streams``) when ``create``."""
        with self._lock:
            if stream_id in self._streams or not create:
                stream = self._find(stream_id)
                self._streams.move_to_end(stream_id)
                return stream
            while len(self._streams) >= self.max_streams:
                evicted, _ = self._streams.popitem(last=False)
                log.info("stream %r evicted (least recently used of %d)", evicted,
                         self.max_streams)
            self._streams[stream_id] = stream = self._new_stream()
            return stream

    def _check_transform(self, stream: _Stream, row: np.ndarray) -> None:
        """During warm-up no prediction checks the bar, so the feature transform does: a
        bar it cannot take would otherwise spoil every full window it is part of."""
        if stream.rows and self.loader.spec.warmup:
            pair = pd.DataFrame([stream.rows[-1], row], columns=list(self.features))
            transform_features(pair, self.loader.spec, source="features")

    def _predict(self, stream: _Stream, bar: Bar, sample: bool,
                 rng: np.random.Generator | None) -> Prediction:
        rows = list(stream.rows)  # at least window_size - 1 once warm
        window = np.stack([*rows[len(rows) + 1 - self.window_size:], bar.row])
        state = {key: float(getattr(stream.accounts, key)[0]) for key in ACCOUNT_FIELDS}
        try:
            return self.loader.predict_with(window, {**state, "price": bar.price},
                                            sample=sample, rng=rng)
        except DataError as exc:  # earlier bars all passed, so it is this bar's fault
            if exc.source in ("sample", "account_state"):
                raise
            raise DataError(f"bar refused, the stream is unchanged: {exc}", source="features",
                            column=exc.column) from None

    def _filled(self, stream: _Stream, prediction: Prediction, price: float) -> Accounts:
        """The stream's account after the predicted action is filled at ``price``, on a
        copy: an account the arithmetic cannot hold is refused, the stream unchanged."""
        accounts = copy.deepcopy(stream.accounts)
        action = np.array([ACTION_NAMES.index(prediction.action_name)])
        with np.errstate(all="ignore"):  # checked just below, with a message
            apply_actions(accounts, action, price, self.params)
            equity = accounts.equity(price)
        if not all(np.isfinite(v).all() for v in (accounts.cash, accounts.units, equity)):
            raise DataError(f"bar refused, the stream is unchanged: filling "
                            f"{prediction.action_name} at {PRICE} {price!r} leaves an account "
                            "that is not a finite number", source="features", column=PRICE)
        return accounts

    def _view(self, stream_id: str, stream: _Stream) -> dict[str, Any]:
        """What a client sees of a stream (the caller holds the stream's lock)."""
        view = {"stream_id": stream_id, "bars_seen": stream.bars_seen,
                "bars_needed": self.window_size, "account": self._account(stream)}
        if len(stream.rows) < self.window_size:
            view |= {"status": WARMING_UP,
                     "message": f"warming up: {len(stream.rows)} of {self.window_size} bars"}
        else:
            view["status"] = READY
        return view

    def _account(self, stream: _Stream) -> dict[str, Any]:
        acc = stream.accounts
        price = stream.price if stream.price is not None else 0.0  # no units before a bar
        return {"position": int(acc.position[0]), "units": float(acc.units[0]),
                "cash": float(acc.cash[0]), "equity": float(acc.equity(price)[0]),
                "entry_price": float(acc.entry_price[0]), "entry_cost": float(acc.entry_cost[0]),
                "trades": int(acc.trades[0]), "wins": int(acc.wins[0]), "price": stream.price}


def _check_time(stream: _Stream, bar: Bar) -> None:
    """A bar that says when it is must come after the stream's last bar that did."""
    if bar.time is not None and stream.time is not None and bar.time <= stream.time:
        problem = "repeats" if bar.time == stream.time else "is before"
        raise DataError(f"bar refused, the stream is unchanged: its time {bar.time} {problem} "
                        f"the previous bar's ({stream.time}); send bars in time order",
                        source="features", column=bar.time_column)


def _price(value: Any) -> float:
    """A bar's extra Close as a float, by the data contract's rule for window cells."""
    (price,), bad = window_cells([value])
    if bad[0] or not np.isfinite(price):
        raise DataError(f"{PRICE} must be a finite number; got {value!r}", source="features",
                        column=PRICE)
    return float(price)
