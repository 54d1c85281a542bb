"""Training history: run list, run pages and the seed's JSON API.

Pages
  ``GET /runs``                        runs, filtered by agent and status, paginated
  ``GET /runs/<run_id>``               one run: information, statistics, charts, config,
                                       checkpoints; polls ``live.json`` while it is active
  ``GET /runs/<run_id>/live.json``     everything that page redraws, in one reply

JSON API (field names as in ../shared/seeds/training_history.md; ``agent_id`` is the
run's name, ``algorithm`` its model type's label)
  ``GET /api/training-runs?agent_id=&status=&limit=&offset=&episodes=``
        a list of runs, newest first; the total number of matches is in the
        ``X-Total-Count`` header. Each run's ``metrics`` holds its LAST ``episodes``
        (default 100) episodes and their rolling win rate, plus ``episode_count``:
        a run of 100,000 episodes must not turn a list into megabytes.
  ``GET /api/training-runs/<run_id>``  one run with config, every episode, rolling win
        rate, checkpoint_paths, metadata and statistics
  ``GET /api/training-runs/agents/list``   ``{"agent_ids": [...]}``
  ``GET /api/training-runs/<run_id>/metrics?keys=a,b&max_points=N&smooth=W``
        metric series (min/max downsampled to at most N points), optionally with
        trailing moving averages over W samples

Errors are JSON ``{"error": ..., "field": ...}``: 400 a malformed parameter (not an
integer), 422 a well-formed but invalid one (unknown status, out of range), 404 an
unknown run, 503 the run store is unavailable.
"""

from __future__ import annotations

import json
import logging
import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from flask import Blueprint, Response, jsonify, render_template, request, url_for

from Utilities.run_store import (
    MAX_PAGE_SIZE,
    MIN_POINTS,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    RunNotFound,
    RunStore,
    RunStoreError,
    StoreUnavailable,
)
from Utilities.safe_paths import shown
from web.formatting import basename, duration, when
from web.json_io import error_reply, hide_paths, path_roots
from web.store import get_store

log = logging.getLogger(__name__)
bp = Blueprint("history", __name__)

ACTIVE_STATUSES = tuple(s for s in RUN_STATUSES if s not in TERMINAL_STATUSES)
ROLLING_WINDOW = 100          # episodes in the rolling win rate and the "recent" figures
LIST_EPISODES = 100           # episodes per run in the list API, unless asked otherwise
MAX_LIST_EPISODES = 100_000
DEFAULT_LIMIT = 50
PER_PAGE_CHOICES = (10, 20, 50, 100)
DEFAULT_PER_PAGE = 20
DEFAULT_POINTS = 1000         # points per chart series
MAX_POINTS = 20_000
MAX_SMOOTH = 10_000
DEFAULT_SMOOTH = 20
MAX_KEYS = 100
PAGE_EVENTS = 50              # alerts and log lines shown on a run page
MAX_CHECKPOINTS = 10_000
# Episode fields whose 0/1 values mean false/true.
BOOL_FIELDS = frozenset({"win", "terminated"})
# Stored key -> the seed's episode field name.
EPISODE_FIELDS = {"episode/reward": "total_reward"}


# Characters no agent name, model type or run id holds (C0, DEL and C1 controls).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class BadParam(Exception):
    """A refused query parameter: HTTP status, message, the parameter's name."""

    def __init__(self, status: int, message: str, field: str) -> None:
        super().__init__(message)
        self.status, self.field = status, field


# ---------------------------------------------------------------------------- params


def _int_param(name: str, default: int | None, low: int, high: int) -> int | None:
    """Query parameter ``name`` as an int in low..high (400 not an int, 422 out of range)."""
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadParam(400, f"{name} must be an integer; got {raw!r}", name) from None
    if not low <= value <= high:
        raise BadParam(422, f"{name} must be between {low} and {high}; got {value}", name)
    return value


def _status_param() -> str | None:
    status = request.args.get("status", "").strip()
    if not status:
        return None
    if status not in RUN_STATUSES:
        raise BadParam(422, f"unknown status {status!r}; expected one of: "
                            f"{', '.join(RUN_STATUSES)}", "status")
    return status


def _text_param(name: str) -> str | None:
    value = request.args.get(name, "").strip()
    if _CONTROL.search(value):
        raise BadParam(400, f"{name} contains a control character ({_CONTROL.search(value)[0]!r});"
                            " names never do", name)
    if len(value) > 200:
        raise BadParam(422, f"{name} is longer than 200 characters", name)
    return value or None


def is_run_id(text: str) -> bool:
    """Whether ``text`` can be a run id: the store writes lowercase UUIDs only, so
    anything else names no run and is never sent to the database (PostgreSQL's driver
    refuses a NUL byte with an error, not an empty answer)."""
    return _RUN_ID.fullmatch(text) is not None


@bp.url_value_preprocessor
def _known_run_ids(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Every run route: an id that cannot be a run's is not found, whatever the engine."""
    if values and "run_id" in values and not is_run_id(values["run_id"]):
        raise RunNotFound(f"run {values['run_id']!r} not found")


def _keys_param() -> list[str] | None:
    raw = request.args.get("keys", "").strip()
    if not raw:
        return None
    keys = list(dict.fromkeys(k.strip() for k in raw.split(",") if k.strip()))
    if len(keys) > MAX_KEYS:
        raise BadParam(422, f"keys names {len(keys)} metrics; at most {MAX_KEYS}", "keys")
    if any(len(k) > 200 for k in keys):
        raise BadParam(422, "a metric key in keys is longer than 200 characters", "keys")
    return keys


@bp.errorhandler(BadParam)
def _bad_param(exc: BadParam) -> tuple[Response, int]:
    return error_reply(exc.status, str(exc), exc.field)


@bp.errorhandler(StoreUnavailable)
def _store_unavailable(exc: StoreUnavailable) -> tuple[Response, int] | tuple[str, int]:
    log.error("run store unavailable: %s", exc)
    if request.path.startswith("/api/") or request.path.endswith(".json"):
        return error_reply(503, f"run store unavailable: {exc}")
    return render_template("history/problem.html", title="Run store unavailable",
                           message=str(exc)), 503


@bp.errorhandler(RunNotFound)
def _run_not_found(exc: RunNotFound) -> tuple[Response, int] | tuple[str, int]:
    run_id = (request.view_args or {}).get("run_id", "")
    if request.path.startswith("/api/") or request.path.endswith(".json"):
        return error_reply(404, f"no training run has the id {run_id!r}", "run_id")
    return render_template("history/problem.html", title="Run not found", run_id=run_id,
                           message=f"No training run has the id {run_id}."), 404


# ---------------------------------------------------------------------- numbers


def _num(value: Any) -> float | None:
    """A finite float, else None (JSON has no NaN or Infinity)."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _whole(value: Any) -> int | None:
    """An event payload's count as an int, None when it is not a finite number."""
    try:
        number = _num(value)
    except (TypeError, ValueError):
        return None
    return None if number is None else int(number)


def _values(points: Iterable[dict]) -> list[float]:
    return [v for p in points if (v := _num(p["value"])) is not None]


def _fmt(value: float | None, kind: str = "num") -> str:
    """How a page shows a figure: counts with separators, shares as %, else 4 digits."""
    if value is None:
        return "—"
    if kind == "int":
        return f"{round(value):,}"
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"


def _trailing_means(points: list[dict], window: int) -> np.ndarray:
    """Mean of the last ``window`` finite values at every point (fewer at the start)."""
    values = np.array([np.nan if _num(p["value"]) is None else p["value"] for p in points],
                      dtype=float)
    finite = np.isfinite(values)
    sums = np.concatenate(([0.0], np.cumsum(np.where(finite, values, 0.0))))
    counts = np.concatenate(([0], np.cumsum(finite)))
    index = np.arange(len(values))
    low = np.maximum(0, index + 1 - window)
    total, count = sums[index + 1] - sums[low], counts[index + 1] - counts[low]
    return np.divide(total, count, out=np.full(len(values), np.nan), where=count > 0)


def _even_indices(length: int, max_points: int) -> Iterable[int]:
    """At most max_points indices spread evenly over range(length), both ends included."""
    if length <= max_points:
        return range(length)
    return np.unique(np.linspace(0, length - 1, max_points).round().astype(int)).tolist()


def _smoothed(points: list[dict], window: int, max_points: int) -> list[dict]:
    """The trailing moving average of a series, evenly thinned to max_points."""
    if not points:
        return []
    means = _trailing_means(points, window)
    return [{"step": points[i]["step"], "value": _num(means[i])}
            for i in _even_indices(len(points), max_points)]


def _point(p: dict) -> dict:
    return {"step": p["step"], "value": _num(p["value"]), "wall_time": p["wall_time"]}


# -------------------------------------------------------------------------- run data


class RunData:
    """One run's stored metrics for one request; full series are read at most once."""

    def __init__(self, store: RunStore, run: dict) -> None:
        self.store, self.run, self.run_id = store, run, run["run_id"]
        self._keys: list[str] | None = None
        self._full: dict[str, list[dict]] = {}

    @property
    def keys(self) -> list[str]:
        if self._keys is None:
            self._keys = self.store.metric_keys(self.run_id)
        return self._keys

    def full(self, key: str) -> list[dict]:
        if key not in self.keys:
            return []
        if key not in self._full:
            self._full[key] = self.store.metric_series(self.run_id, key)
        return self._full[key]

    def thinned(self, key: str, max_points: int) -> list[dict]:
        """The series as charts get it: min/max downsampled by the store, spikes kept."""
        if key not in self.keys:
            return []
        if key in self._full and len(self._full[key]) <= max_points:
            return [_point(p) for p in self._full[key]]
        return [_point(p) for p in
                self.store.metric_series(self.run_id, key, max_points=max_points)]

    @property
    def supervised(self) -> bool:
        """No episodes but epoch metrics: an XGBoost / Transformer style run."""
        return "episode/reward" not in self.keys and any(
            k in self.keys for k in ("train/val_loss", "train/val_accuracy", "train/train_loss"))

    # ---- episodes ------------------------------------------------------------------

    def episodes(self) -> tuple[list[dict], list[dict]]:
        """Every episode as the seed's records, and the rolling win rate."""
        return _episode_records({k: self.full(k) for k in self.keys if k.startswith("episode/")})

    def statistics(self) -> list[dict]:
        """{key, label, value, text, note} of the run's summary figures, in display order."""
        stats: list[dict] = []

        def add(key: str, label: str, value: float | None, kind: str = "num",
                note: str = "") -> None:
            if value is not None:
                stats.append({"key": key, "label": label, "value": value,
                              "text": _fmt(value, kind), "note": note})

        rewards = self.full("episode/reward")
        finite = [(p["step"], v) for p in rewards if (v := _num(p["value"])) is not None]
        if rewards:
            add("total_episodes", "Episodes", len(rewards), "int")
        if finite:
            values = [v for _, v in finite]
            best_step, best = max(finite, key=lambda sv: sv[1])
            recent = values[-ROLLING_WINDOW:]
            add("average_reward", "Average reward", sum(values) / len(values))
            add("max_reward", "Max reward", best, note=f"episode {best_step:,}")
            add("recent_reward", f"Mean reward, last {len(recent)}", sum(recent) / len(recent))
        wins = _values(self.full("episode/win"))
        if wins:
            recent = wins[-ROLLING_WINDOW:]
            add("final_win_rate", f"Final win rate, last {len(recent)}",
                sum(recent) / len(recent), "pct")
            add("win_rate", "Overall win rate", sum(wins) / len(wins), "pct")
        lengths = _values(self.full("episode/steps"))
        if lengths:
            add("mean_episode_length", "Mean episode length", sum(lengths) / len(lengths))
        self._training_statistics(add)
        return stats

    def _training_statistics(self, add: Callable[..., None]) -> None:
        train_keys = [k for k in self.keys if k.startswith("train/")]
        if not train_keys:
            return
        latest = self.store.latest_metrics(self.run_id)
        last_step = max((latest[k]["step"] for k in train_keys if k in latest), default=0)
        add("epochs" if self.supervised else "updates",
            "Epochs" if self.supervised else "Updates", last_step, "int")
        val_loss = [(p["step"], v) for p in self.full("train/val_loss")
                    if (v := _num(p["value"])) is not None]
        if val_loss:
            step, best = min(val_loss, key=lambda sv: sv[1])
            add("best_val_loss", "Best val. loss", best, note=f"epoch {step:,}")
        val_acc = [(p["step"], v) for p in self.full("train/val_accuracy")
                   if (v := _num(p["value"])) is not None]
        if val_acc:
            step, best = max(val_acc, key=lambda sv: sv[1])
            add("best_val_accuracy", "Best val. accuracy", best, "pct", f"epoch {step:,}")
            add("final_val_accuracy", "Final val. accuracy", val_acc[-1][1], "pct")
        for key, label in (("train/train_loss", "Final train loss"),
                           ("train/policy_loss", "Final policy loss"),
                           ("train/value_loss", "Final value loss"),
                           ("train/entropy", "Final entropy")):
            if key in latest:
                add(key.split("/", 1)[1] if key != "train/train_loss" else "final_train_loss",
                    label, _num(latest[key]["value"]))

    def checkpoints(self) -> list[dict]:
        """Saved checkpoints, oldest first, each with the episode reached when it was saved."""
        events = self.store.events_after(0, run_id=self.run_id, kinds=["checkpoint"],
                                         limit=MAX_CHECKPOINTS)
        rewards = self.full("episode/reward")
        times = [p["wall_time"] for p in rewards]
        result = []
        for event in events:
            payload = event["payload"] or {}
            episode = payload.get("episode")
            if episode is None and rewards:
                reached = bisect_right(times, event["wall_time"])
                episode = rewards[reached - 1]["step"] if reached else 0
            path = str(payload.get("path", ""))
            result.append({"episode": _whole(episode),
                           "path": shown(path, path_roots()) if path else "",
                           "step": _whole(payload.get("step")), "time": _iso(event["wall_time"])})
        return result

    def events(self) -> list[dict]:
        """The latest alerts and log lines of the run (newest last)."""
        events = self.store.events_after(0, run_id=self.run_id, kinds=["alert", "log"],
                                         limit=10_000)[-PAGE_EVENTS:]
        return hide_paths([{"kind": e["kind"], "time": _iso(e["wall_time"]),
                            "level": str((e["payload"] or {}).get("level", "info")),
                            "title": str((e["payload"] or {}).get("title", "")),
                            "message": str((e["payload"] or {}).get("message", ""))}
                           for e in events])

    # ---- charts --------------------------------------------------------------------

    def series(self, keys: Iterable[str], max_points: int, smooth: int | None,
               smooth_keys: Iterable[str] | None = None) -> dict[str, Any]:
        """{"series": {key: points}, "smoothed": {key: points}} for the charts."""
        keys = list(keys)
        smooth_keys = keys if smooth_keys is None else [k for k in smooth_keys if k in keys]
        smoothed = {}
        if smooth:
            smoothed = {k: _smoothed(self.full(k), smooth, max_points) for k in smooth_keys}
        return {"series": {k: self.thinned(k, max_points) for k in keys}, "smoothed": smoothed}


def _iso(wall_time: float | None) -> str | None:
    if wall_time is None:
        return None
    moment = datetime.fromtimestamp(wall_time, UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def _episode_records(columns: dict[str, list[dict]], first: int | None = None,
                     ) -> tuple[list[dict], list[dict]]:
    """Join episode/* series by episode number into the seed's episode records.

    ``first``: leave out episodes before it (the win series may start earlier, so the
    rolling win rate of the first kept episode still covers a full window).
    """
    rewards = columns.get("episode/reward") or []
    records: dict[int, dict] = {}
    for p in rewards:
        if first is None or p["step"] >= first:
            records[p["step"]] = {"episode": p["step"], "total_reward": _num(p["value"])}
    for key, points in columns.items():
        if key == "episode/reward":
            continue
        field = EPISODE_FIELDS.get(key, key.split("/", 1)[1])
        for p in points:
            record = records.get(p["step"])
            if record is None:
                continue
            value = _num(p["value"])
            if value is not None and field in BOOL_FIELDS:
                value = bool(value)
            elif value is not None and field == "steps":
                value = int(value)
            record[field] = value
    rolling = []
    wins = columns.get("episode/win") or []
    if wins:
        means = _trailing_means(wins, ROLLING_WINDOW)
        rolling = [{"episode": p["step"], "win_rate": _num(means[i])}
                   for i, p in enumerate(wins) if first is None or p["step"] >= first]
    return list(records.values()), rolling


def _list_metrics(store: RunStore, run_id: str, episodes: int) -> dict[str, Any]:
    """A run's last ``episodes`` episodes, their rolling win rate and the episode count."""
    latest = store.latest_metrics(run_id)
    if "episode/reward" not in latest:
        return {"episode_count": 0, "episodes": [], "rolling_win_rate": []}
    last = latest["episode/reward"]["step"]
    result: dict[str, Any] = {"episode_count": last}
    if episodes == 0:
        return {**result, "episodes": [], "rolling_win_rate": []}
    first = max(1, last - episodes + 1)
    columns = {}
    for key in (k for k in latest if k.startswith("episode/")):
        start = max(1, first - ROLLING_WINDOW + 1) if key == "episode/win" else first
        columns[key] = store.metric_series(run_id, key, start_step=start)
    found, rolling = _episode_records(columns, first)
    return {**result, "episodes": found, "rolling_win_rate": rolling}


def _overview(store: RunStore, run: dict) -> dict[str, Any]:
    """What a list row shows beside the run's fields: episodes and one final metric."""
    latest = store.latest_metrics(run["run_id"])
    overview: dict[str, Any] = {"episodes": None, "epochs": None, "final": None}
    if "episode/reward" in latest:
        last = latest["episode/reward"]["step"]
        overview["episodes"] = last
        start = max(1, last - ROLLING_WINDOW + 1)
        rewards = _values(store.metric_series(run["run_id"], "episode/reward", start_step=start))
        parts = []
        if rewards:
            parts.append(("mean reward", _fmt(sum(rewards) / len(rewards)),
                          f"mean reward of the last {len(rewards)} episodes"))
        if "episode/win" in latest:
            wins = _values(store.metric_series(run["run_id"], "episode/win", start_step=start))
            if wins:
                parts.append(("win rate", _fmt(sum(wins) / len(wins), "pct"),
                              f"win rate of the last {len(wins)} episodes"))
        overview["final"] = parts or None
        return overview
    epoch_keys = [k for k in latest if k.startswith("train/")]
    if epoch_keys:
        overview["epochs"] = max(latest[k]["step"] for k in epoch_keys)
    for key, label, kind in (("train/val_accuracy", "val. accuracy", "pct"),
                             ("train/val_loss", "val. loss", "num")):
        if key in latest and _num(latest[key]["value"]) is not None:
            overview["final"] = [(label, _fmt(latest[key]["value"], kind),
                                  f"{label} of the last epoch")]
            break
    return overview


# ------------------------------------------------------------------------- run JSON


def _duration_seconds(run: dict) -> float | None:
    start, end = run.get("started_at"), run.get("ended_at")
    if not start or not end:
        return None
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))
            ).total_seconds()


def public_run(run: dict) -> dict:
    """A stored run as replies show it: its files relative to the models or data folder,
    and no absolute path in its texts (an error often starts with the file it is about)."""
    roots = path_roots()
    paths = {key: shown(run[key], roots) if run[key] else run[key]
             for key in ("data_file", "model_dir")}
    return {**hide_paths(run, roots), **paths}


def _run_json(run: dict) -> dict[str, Any]:
    """The seed's run fields from a stored run."""
    return {
        "id": run["run_id"], "run_id": run["run_id"], "agent_id": run["name"],
        "algorithm": run["algorithm"] or run["model_type"], "model_type": run["model_type"],
        "status": run["status"], "start_time": run["started_at"], "end_time": run["ended_at"],
        "duration_seconds": _duration_seconds(run),
    }


def _metadata(run: dict) -> dict[str, Any]:
    return {key: run[key] for key in ("error", "description", "tags", "data_file", "model_dir",
                                      "created_at", "heartbeat_at", "control", "summary")}


def _display(run: dict) -> dict[str, str]:
    """The run's times and duration as the page shows them."""
    active = run["status"] in ACTIVE_STATUSES
    return {"start_time": when(run["started_at"]), "end_time": when(run["ended_at"]),
            "duration": "Running…" if active else duration(run["started_at"], run["ended_at"]),
            "heartbeat": when(run["heartbeat_at"])}


# ----------------------------------------------------------------------------- API


@bp.get("/api/training-runs")
def api_list() -> Response:
    status, agent_id = _status_param(), _text_param("agent_id")
    model_type = _text_param("model_type")
    limit = _int_param("limit", DEFAULT_LIMIT, 1, MAX_PAGE_SIZE)
    offset = _int_param("offset", 0, 0, 2**62)
    episodes = _int_param("episodes", LIST_EPISODES, 0, MAX_LIST_EPISODES)
    store = get_store()
    runs, total = store.list_runs(name=agent_id, status=status, model_type=model_type,
                                  limit=limit, offset=offset)
    body = [{**_run_json(run), "tags": run["tags"], "error": hide_paths(run["error"]),
             "metrics": _list_metrics(store, run["run_id"], episodes)} for run in runs]
    response = jsonify(body)
    response.headers["X-Total-Count"] = str(total)
    return response


@bp.get("/api/training-runs/agents/list")
def api_agents() -> Response:
    return jsonify({"agent_ids": get_store().agent_names()})


@bp.get("/api/training-runs/<run_id>")
def api_run(run_id: str) -> Response:
    store = get_store()
    data = RunData(store, public_run(store.get_run(run_id)))
    episodes, rolling = data.episodes()
    return jsonify({
        **_run_json(data.run), "config": data.run["config"],
        "metrics": {"episodes": episodes, "rolling_win_rate": rolling},
        "checkpoint_paths": data.checkpoints(), "metadata": _metadata(data.run),
        "statistics": {s["key"]: s["value"] for s in data.statistics()},
    })


@bp.get("/api/training-runs/<run_id>/metrics")
def api_metrics(run_id: str) -> Response:
    keys = _keys_param()
    max_points = _int_param("max_points", DEFAULT_POINTS, MIN_POINTS, MAX_POINTS)
    smooth = _int_param("smooth", None, 1, MAX_SMOOTH)
    store = get_store()
    data = RunData(store, store.get_run(run_id))
    wanted = data.keys if keys is None else keys
    return jsonify({"run_id": run_id, "status": data.run["status"], "keys": data.keys,
                    "max_points": max_points, "smooth": smooth,
                    **data.series(wanted, max_points, smooth)})


# --------------------------------------------------------------------------- pages


def _page_args() -> tuple[dict[str, Any], str | None]:
    """The list page's filters, leniently: odd numbers fall back, a bad status is named."""
    problem = None
    agent_id = request.args.get("agent_id", "").strip() or None
    status = request.args.get("status", "").strip() or None
    if agent_id is not None and _CONTROL.search(agent_id):
        problem = "That agent name contains a control character: showing every agent."
        agent_id = None
    if status is not None and status not in RUN_STATUSES:
        problem = (f"Unknown status “{status}”: showing every status. Choose one of "
                   f"{', '.join(RUN_STATUSES)}.")
        status = None
    try:
        page = min(max(1, int(request.args.get("page", "1"))), MAX_PAGE)
    except ValueError:
        page = 1
    try:
        per_page = int(request.args.get("per_page", DEFAULT_PER_PAGE))
    except ValueError:
        per_page = DEFAULT_PER_PAGE
    per_page = min(max(per_page, 1), max(PER_PAGE_CHOICES))
    return {"agent_id": agent_id, "status": status, "page": page, "per_page": per_page}, problem


MAX_PAGE = 10**9  # far past any real store; keeps the row offset a valid integer


@bp.get("/runs")
def index() -> tuple[str, int]:
    """Every recorded run, filterable by agent and status, one page at a time."""
    args, problem = _page_args()
    context: dict[str, Any] = {"args": args, "problem": problem, "statuses": RUN_STATUSES,
                               "per_page_choices": PER_PAGE_CHOICES,
                               "default_per_page": DEFAULT_PER_PAGE, "runs": [], "total": 0,
                               "agents": [], "store_error": None}
    try:
        store = get_store()
        context["agents"] = store.agent_names()
        runs, total = store.list_runs(name=args["agent_id"], status=args["status"],
                                      limit=args["per_page"],
                                      offset=(args["page"] - 1) * args["per_page"])
        context["runs"] = [{**run, **_overview(store, run), "display": _display(run)}
                           for run in runs]
        context["total"] = total
    except RunStoreError as exc:
        log.error("run store unavailable: %s", exc)
        context["store_error"] = str(exc)
    pages = max(1, math.ceil(context["total"] / args["per_page"]))
    context["pages"] = pages

    def page_url(page: int, **change: Any) -> str:
        values = {**args, "page": page, **change}
        if values["per_page"] == DEFAULT_PER_PAGE:
            values["per_page"] = None
        return url_for("history.index", **{k: v for k, v in values.items() if v})

    context["page_url"] = page_url
    status_code = 503 if context["store_error"] else 400 if problem else 200
    return render_template("history/index.html", **context), status_code


def _config_text(config: dict) -> str:
    return json.dumps(config, indent=2, sort_keys=True, default=str) if config else ""


@bp.get("/runs/<run_id>")
def detail(run_id: str) -> str:
    """One run: information, statistics, charts, configuration and checkpoints."""
    store = get_store()
    data = RunData(store, store.get_run(run_id))
    run = data.run
    model_dir = basename(run["model_dir"]) if run["model_dir"] else None
    return render_template(
        "history/detail.html", run=run, display=_display(run), data_keys=data.keys,
        statistics=data.statistics(), checkpoints=data.checkpoints(), events=data.events(),
        config_text=_config_text(run["config"]), model_dir_name=model_dir,
        active=run["status"] in ACTIVE_STATUSES, supervised=data.supervised,
        default_smooth=DEFAULT_SMOOTH, rolling_window=ROLLING_WINDOW)


@bp.get("/runs/<run_id>/live.json")
def live(run_id: str) -> Response:
    """What the run page redraws: status, statistics, checkpoints, events and every
    metric series (episode reward and win also as moving averages)."""
    max_points = _int_param("max_points", DEFAULT_POINTS, MIN_POINTS, MAX_POINTS)
    smooth = _int_param("smooth", DEFAULT_SMOOTH, 1, MAX_SMOOTH)
    store = get_store()
    data = RunData(store, public_run(store.get_run(run_id)))
    run = data.run
    # 0/1 series are not drawn as points: wins become the rolling win rate.
    charted = [k for k in data.keys if k not in ("episode/win", "episode/terminated")]
    body = data.series(charted, max_points, smooth, ["episode/reward"])
    for key, points in body["series"].items():  # the page plots steps; times are dead weight
        body["series"][key] = [{"step": p["step"], "value": p["value"]} for p in points]
    if "episode/win" in data.keys:
        body["smoothed"]["episode/win"] = _smoothed(data.full("episode/win"), ROLLING_WINDOW,
                                                    max_points)
    return jsonify({
        "run": {**_run_json(run), "error": run["error"], "display": _display(run),
                "model_dir_name": basename(run["model_dir"]) if run["model_dir"] else None,
                "active": run["status"] in ACTIVE_STATUSES},
        "keys": data.keys, "smooth": smooth, "rolling_window": ROLLING_WINDOW,
        "statistics": [{k: s[k] for k in ("key", "label", "text", "note")}
                       for s in data.statistics()],
        "checkpoints": data.checkpoints(), "events": data.events(), **body,
    })
