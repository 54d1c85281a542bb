"""What an outside trainer sends the metrics server (issue 17), checked and turned into
run-store rows.

A training session of an outside trainer is a run whose ``model_type`` is
:data:`EXTERNAL`. It reports the seed's three data models, each as one item or as a
batch ``{"batch_id": "<client's id>", "items": [...]}``:

- ``TrainingMetricsData`` (``/metrics``) → one ``episode`` event whose payload is the
  item, and metric points at ``step = episode``: ``episode/reward`` (current_reward),
  ``episode/average_reward``, ``episode/best_reward``, ``episode/steps``
  (episode_length), ``episode/win_rate``, ``train/loss`` (loss_value),
  ``train/learning_rate``, ``train/epsilon``, ``train/actions_per_second``,
  ``train/frames_per_second``, ``train/memory_usage_mb``, ``train/training_time_elapsed``
  (a field left out or null writes no point). The points are what the run pages,
  alerts and comparisons read; the event is the item as sent, for the session's history.
- ``BotDecisionData`` (``/bot_decision``) → one ``decision`` event (payload: the item).
- ``PerformanceGraphData`` (``/graph_update``) → one ``graph`` event (payload: the item)
  and, per data point, a metric point ``graph/<graph_id>/<metric>`` whose step is the
  point's ``step`` when it has one, else its timestamp in epoch milliseconds. A graph
  update usually re-sends its whole window: points at or before the series' last stored
  step are taken as stored already and skipped (so a window sent again writes nothing).

Every field is checked before anything is written: a bad item is an
:class:`~Utilities.input_errors.InputError` naming it (``items[3].episode``), and the
batch is refused whole. Layer: a foundation module (it knows the store, not HTTP).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from Utilities.input_errors import InputError
from Utilities.metric_writes import MetricBatch

EXTERNAL = "external"  # the model type of every outside trainer's run
MAX_BATCH_ITEMS = 10_000
MAX_BATCH_ID = 64
MAX_TEXT = 200  # names, actions, graph ids
MAX_LIST = 10_000  # q-values, data points of one metric, probabilities
_INT_MAX = 2**63 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# The route's name → (store event kind, the stream's and history's message type).
KINDS = {"metrics": ("episode", "training_metrics"),
         "bot_decision": ("decision", "bot_decision"),
         "graph_update": ("graph", "graph_update")}

# TrainingMetricsData's number fields → metric keys (written at step = episode).
METRIC_KEYS = {
    "current_reward": "episode/reward", "average_reward": "episode/average_reward",
    "best_reward": "episode/best_reward", "episode_length": "episode/steps",
    "win_rate": "episode/win_rate", "loss_value": "train/loss",
    "learning_rate": "train/learning_rate", "epsilon": "train/epsilon",
    "actions_per_second": "train/actions_per_second",
    "frames_per_second": "train/frames_per_second",
    "memory_usage_mb": "train/memory_usage_mb",
    "training_time_elapsed": "train/training_time_elapsed",
}
_METRIC_KEY_ITEMS = tuple(METRIC_KEYS.items())


@dataclass(frozen=True)
class Ingest:
    """A checked request: the client's batch id (None for a single item) and its items,
    each with its wall time (epoch seconds)."""

    batch_id: str | None
    items: list[dict[str, Any]]
    walls: list[float]


# ---------------------------------------------------------------- field checks


def _where(prefix: str, key: str) -> str:
    return f"{prefix}{key}"


def _bad(field: str, message: str) -> InputError:
    return InputError(f"{field} {message}", field)


def _int(value: Any, field: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field, f"must be a whole number; got {value!r}"[:200])
    if not low <= value <= _INT_MAX:
        raise _bad(field, f"must be from {low} to {_INT_MAX}; got {value}")
    return value


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(field, f"must be a number; got {value!r}"[:200])
    if not math.isfinite(value) or abs(value) > 1e300:
        raise _bad(field, f"must be a finite number; got {value!r}")
    return value


def _text(value: Any, field: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise _bad(field, "must be a non-empty string" if required else "must be a string")
    if len(value) > limit:
        raise _bad(field, f"has {len(value)} characters; at most {limit}")
    if found := _CONTROL.search(value):
        raise _bad(field, f"contains the control character {found[0]!r}")
    return value


def parse_time(value: Any, field: str) -> float:
    """An ISO-8601 time (a naive one is UTC) or epoch seconds, as epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number(value, field)
    if not isinstance(value, str) or len(value) > 64:
        raise _bad(field, "must be an ISO-8601 time (2024-01-01T12:00:00Z) or epoch seconds")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _bad(field, f"must be an ISO-8601 time (2024-01-01T12:00:00Z); got "
                          f"{value[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _known(item: dict, fields: Iterable[str], prefix: str) -> None:
    unknown = sorted(set(item) - set(fields), key=str)
    if unknown:
        raise _bad(_where(prefix, str(unknown[0])),
                   f"is not a field of this item (known: {', '.join(sorted(fields))})")


def _optional(item: dict, key: str, check: Callable[[Any, str], Any], prefix: str) -> None:
    value = item.get(key)
    if value is not None:
        check(value, _where(prefix, key))


# ----------------------------------------------------------- the three models

_TM_INTS = ("episode_length", "total_episodes", "model_generation")
_TM_NUMBERS = tuple(k for k in METRIC_KEYS if k != "episode_length")
_TM_FIELDS = ("timestamp", "episode", "algorithm", *_TM_INTS, *_TM_NUMBERS)


# TrainingMetricsData's fields by kind, for the fast check.
_TM_KIND = {"timestamp": "t", "episode": "i", "algorithm": "s",
            **dict.fromkeys(_TM_INTS, "i"), **dict.fromkeys(_TM_NUMBERS, "n")}


def _plain_training_metrics(item: dict) -> bool:
    """Whether the item is certainly good (required fields there, every value of its
    field's type and range): one pass with no calls, the usual case of a big batch
    (the detailed checks cost a third of a batch's time). False: check it in detail."""
    if item.get("episode") is None or item.get("current_reward") is None:
        return False
    for key, value in item.items():
        kind = _TM_KIND.get(key)
        if kind is None:
            return False
        if value is None or kind == "t":
            continue  # the timestamp is parsed with the wall time
        cls = value.__class__
        if kind == "n":
            if not ((cls is float or cls is int) and -1e300 <= value <= 1e300):
                return False
        elif kind == "i":
            if not (cls is int and 0 <= value <= _INT_MAX):
                return False
        elif not (cls is str and len(value) <= MAX_TEXT and not _CONTROL.search(value)):
            return False
    return True


def _training_metrics(item: dict, prefix: str) -> None:
    if _plain_training_metrics(item):
        return
    _known(item, _TM_FIELDS, prefix)
    if item.get("episode") is None:
        raise _bad(_where(prefix, "episode"), "is required (the episode's number)")
    _int(item["episode"], _where(prefix, "episode"))
    if item.get("current_reward") is None:
        raise _bad(_where(prefix, "current_reward"), "is required (the episode's reward)")
    for key in _TM_NUMBERS:
        _optional(item, key, _number, prefix)
    for key in _TM_INTS:
        _optional(item, key, _int, prefix)
    _optional(item, "algorithm", _text, prefix)


_BD_FIELDS = ("timestamp", "action_probabilities", "state_values", "q_values",
              "selected_action", "confidence_score", "episode", "step")


def _numbers(value: Any, field: str) -> None:
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise _bad(field, f"must be a list of at most {MAX_LIST} numbers")
    for i, number in enumerate(value):
        _number(number, f"{field}[{i}]")


def _bot_decision(item: dict, prefix: str) -> None:
    _known(item, _BD_FIELDS, prefix)
    action = item.get("selected_action")
    field = _where(prefix, "selected_action")
    if isinstance(action, int) and not isinstance(action, bool):
        _int(action, field, -_INT_MAX)
    else:
        if action is None:
            raise _bad(field, "is required (the action taken: a name or a number)")
        _text(action, field, required=True)
    probabilities = item.get("action_probabilities")
    if probabilities is not None:
        field = _where(prefix, "action_probabilities")
        if not isinstance(probabilities, dict) or len(probabilities) > MAX_LIST:
            raise _bad(field, "must be an object of action name → probability")
        for name, number in probabilities.items():
            _text(name, f"{field}.{name}", required=True)
            _number(number, f"{field}.{name}")
    states = item.get("state_values")
    if isinstance(states, list):
        _numbers(states, _where(prefix, "state_values"))
    else:
        _optional(item, "state_values", _number, prefix)
    _optional(item, "q_values", _numbers, prefix)
    _optional(item, "confidence_score", _number, prefix)
    _optional(item, "episode", _int, prefix)
    _optional(item, "step", _int, prefix)


_GRAPH_FIELDS = ("graph_id", "title", "y_label", "x_label", "metrics", "data_points",
                 "max_points", "timestamp")
_POINT_FIELDS = ("timestamp", "value", "step")
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _graph_update(item: dict, prefix: str) -> None:
    _known(item, _GRAPH_FIELDS, prefix)
    field = _where(prefix, "graph_id")
    graph_id = item.get("graph_id")
    if not isinstance(graph_id, str) or not _NAME.fullmatch(graph_id):
        raise _bad(field, "is required: 1 to 64 letters, digits or _ . : -")
    for key in ("title", "y_label", "x_label"):
        _optional(item, key, _text, prefix)
    _optional(item, "max_points", _int, prefix)
    metrics = item.get("metrics")
    if metrics is not None:
        field = _where(prefix, "metrics")
        if not isinstance(metrics, list) or len(metrics) > 100:
            raise _bad(field, "must be a list of at most 100 metric names")
        for i, name in enumerate(metrics):
            _text(name, f"{field}[{i}]", required=True)
    field = _where(prefix, "data_points")
    points = item.get("data_points")
    if not isinstance(points, dict):
        raise _bad(field, "is required: an object of metric name → [{timestamp, value}]")
    for name, series in points.items():
        where = f"{field}.{name}"
        if not _NAME.fullmatch(name):
            raise _bad(where, "names a metric with 1 to 64 letters, digits or _ . : -")
        if not isinstance(series, list) or len(series) > MAX_LIST:
            raise _bad(where, f"must be a list of at most {MAX_LIST} points")
        for i, point in enumerate(series):
            _graph_point(point, f"{where}[{i}]")


def _graph_point(point: Any, field: str) -> None:
    if not isinstance(point, dict):
        raise _bad(field, "must be an object {timestamp, value} (or {step, value})")
    _known(point, _POINT_FIELDS, f"{field}.")
    if point.get("value") is not None:
        _number(point["value"], f"{field}.value")
    if point.get("step") is not None:
        _int(point["step"], f"{field}.step")
    elif point.get("timestamp") is not None:
        parse_time(point["timestamp"], f"{field}.timestamp")
    else:
        raise _bad(field, "needs a step or a timestamp")


_CHECKS: dict[str, Callable[[dict, str], None]] = {
    "metrics": _training_metrics, "bot_decision": _bot_decision,
    "graph_update": _graph_update}


def read_ingest(kind: str, body: dict[str, Any], now: float,
                max_items: int = MAX_BATCH_ITEMS) -> Ingest:
    """The checked items of a request body (one item, or ``{"batch_id", "items"}``);
    InputError naming the first bad field (``items[3].episode`` in a batch)."""
    check = _CHECKS[kind]
    if "items" in body:
        unknown = sorted(set(body) - {"items", "batch_id"}, key=str)
        if unknown:
            raise _bad(str(unknown[0]), "is not a field of a batch (batch_id, items)")
        batch_id = body.get("batch_id")
        if batch_id is not None:
            batch_id = _text(batch_id, "batch_id", required=True, limit=MAX_BATCH_ID)
        items = body["items"]
        if not isinstance(items, list):
            raise _bad("items", "must be a list of items")
        if len(items) > max_items:
            raise _bad("items", f"holds {len(items):,} items; at most {max_items:,} a batch")
        prefixes = [f"items[{i}]." for i in range(len(items))]
    else:
        batch_id, items, prefixes = None, [body], [""]
    walls = []
    for item, prefix in zip(items, prefixes, strict=True):
        if not isinstance(item, dict):
            raise _bad(prefix.rstrip(".") or "body", "must be a JSON object")
        check(item, prefix)
        stamp = item.get("timestamp")
        walls.append(now if stamp is None else parse_time(stamp, _where(prefix, "timestamp")))
    return Ingest(batch_id, items, walls)


# ------------------------------------------------------------------- to rows


def metric_rows(run_id: str, kind: str, ingest: Ingest,
                last_steps: dict[str, int] | None = None) -> MetricBatch:
    """The items' metric points as columns (see the module's mapping); ``last_steps``:
    the run's last stored step per key, for graph points (those at or before it are
    skipped)."""
    keys: list[str] = []
    steps: list[int] = []
    values: list[float] = []
    walls: list[float] = []
    if kind == "metrics":
        for item, wall in zip(ingest.items, ingest.walls, strict=True):
            episode = item["episode"]
            for field, key in _METRIC_KEY_ITEMS:
                value = item.get(field)
                if value is not None:
                    keys.append(key), steps.append(episode), values.append(value)
                    walls.append(wall)
    elif kind == "graph_update":
        last = dict(last_steps or {})
        for item, wall in zip(ingest.items, ingest.walls, strict=True):
            for name, series in item["data_points"].items():
                key = f"graph/{item['graph_id']}/{name}"
                for point in series:
                    step = point.get("step")
                    when = wall if point.get("timestamp") is None else parse_time(
                        point["timestamp"], "timestamp")
                    if step is None:
                        step = round(when * 1000)
                    if step <= last.get(key, -1):
                        continue  # stored already (a window sent again)
                    last[key] = step
                    value = point.get("value")
                    keys.append(key), steps.append(step), walls.append(when)
                    values.append(math.nan if value is None else value)
    return MetricBatch(runs=[run_id] * len(keys), keys=keys,
                       step=np.array(steps, dtype=np.int64),
                       value=np.array(values, dtype=float), wall=np.array(walls, dtype=float))


def event_rows(run_id: str, kind: str, ingest: Ingest) -> list[tuple[str, str, dict, float]]:
    """One event per item: (run_id, kind, the item, wall time)."""
    event_kind = KINDS[kind][0]
    return [(run_id, event_kind, item, wall)
            for item, wall in zip(ingest.items, ingest.walls, strict=True)]


def graph_keys(ingest: Ingest) -> set[str]:
    """The metric keys a graph request writes (to read their last steps first)."""
    return {f"graph/{item['graph_id']}/{name}" for item in ingest.items
            for name in item["data_points"]}
