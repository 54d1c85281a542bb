"""Run statistics and series math: what the run pages and the runs API say about a run's
stored metrics (episodes joined into records, rolling win rate, summary figures, the list
row's overview, checkpoints, alerts). Reads the store through :class:`RunData` only."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from Utilities.number_format import figure
from Utilities.run_store import RunStore
from Utilities.safe_paths import shown
from web.json_io import hide_paths, path_roots
from web.run_progress import is_epoch_type

ROLLING_WINDOW = 100          # episodes in the rolling win rate and the "recent" figures
PAGE_EVENTS = 50              # alerts and log lines shown on a run page
PAGE_CHECKPOINTS = 20         # checkpoints listed on a run page (the count says how many)
# The keys whose last ROLLING_WINDOW points the "recent" figures need.
RECENT_KEYS = ("episode/reward", "episode/win")
# Episode fields whose 0/1 values mean false/true.
BOOL_FIELDS = frozenset({"win", "terminated"})
# Stored key -> the seed's episode field name.
EPISODE_FIELDS = {"episode/reward": "total_reward"}
EPOCH_KEYS = ("train/val_loss", "train/val_accuracy", "train/train_loss")
# (key, label) of the final training figures, in display order.
FINAL_TRAINING = (("train/train_loss", "Final train loss"),
                  ("train/policy_loss", "Final policy loss"),
                  ("train/value_loss", "Final value loss"), ("train/entropy", "Final entropy"))


def num(value: Any) -> float | None:
    """A finite float, else None (JSON has no NaN or Infinity)."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def whole(value: Any) -> int | None:
    """An event payload's count as an int, None when it is not a finite number."""
    try:
        number = num(value)
    except (TypeError, ValueError):
        return None
    return None if number is None else int(number)


def values(points: Iterable[dict]) -> list[float]:
    """The finite values of a series."""
    return [v for p in points if (v := num(p["value"])) is not None]


def iso(wall_time: float | None) -> str | None:
    """A wall time as the store writes times ('…Z')."""
    if wall_time is None:
        return None
    moment = datetime.fromtimestamp(wall_time, UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def trailing_means(points: list[dict], window: int) -> np.ndarray:
    """Mean of the last ``window`` finite values at every point (fewer at the start)."""
    data = np.array([np.nan if num(p["value"]) is None else p["value"] for p in points],
                    dtype=float)
    finite = np.isfinite(data)
    sums = np.concatenate(([0.0], np.cumsum(np.where(finite, data, 0.0))))
    counts = np.concatenate(([0], np.cumsum(finite)))
    index = np.arange(len(data))
    low = np.maximum(0, index + 1 - window)
    total, count = sums[index + 1] - sums[low], counts[index + 1] - counts[low]
    return np.divide(total, count, out=np.full(len(data), np.nan), where=count > 0)


class RunData:
    """One run's stored metrics for one request, read in time independent of the run's
    length: figures from the series' statistics rows (kept by the writer), "recent"
    figures from index-bounded tails, events newest first with a limit. Every read is
    made at most once per request."""

    def __init__(self, store: RunStore, run: dict, *,
                 checkpoint_limit: int = PAGE_CHECKPOINTS) -> None:
        self.store, self.run, self.run_id = store, run, run["run_id"]
        self.checkpoint_limit = checkpoint_limit
        self._stats: dict[str, dict] | None = None
        self._tails: dict[str, list[dict]] | None = None
        self._checkpoints: tuple[list[dict], int, int] | None = None
        self._events: list[dict] | None = None

    @property
    def stats(self) -> dict[str, dict]:
        """{key: statistics} of every series with points (one query)."""
        if self._stats is None:
            self._stats = self.store.series_statistics([self.run_id])[self.run_id]
        return self._stats

    @property
    def keys(self) -> list[str]:
        return sorted(self.stats)

    @property
    def latest(self) -> dict[str, dict]:
        """Each key's sample with the highest step (from the statistics rows)."""
        return {key: {"step": s["last_step"], "value": s["last_value"],
                      "wall_time": s["last_wall_time"]} for key, s in self.stats.items()}

    def tail(self, key: str) -> list[dict]:
        """The key's last ROLLING_WINDOW points (by step), oldest first; the recent
        figures' keys are read together in one statement."""
        if self._tails is None:
            wanted = {self.stats[k]["id"]: k for k in RECENT_KEYS if k in self.stats}
            found = self.store.recent_points(wanted, ROLLING_WINDOW) if wanted else {}
            self._tails = {key: found[sid] for sid, key in wanted.items()}
        return self._tails.get(key, [])

    @property
    def supervised(self) -> bool:
        """An epoch-trained run (XGBoost, Transformer): known from its model type before
        any metric arrives; for a type the registry lacks, from its epoch metrics."""
        by_type = is_epoch_type(self.run["model_type"])
        if by_type is not None:
            return by_type
        return "episode/reward" not in self.keys and any(k in self.keys for k in EPOCH_KEYS)

    def episode_count(self) -> int:
        """Episodes logged: the reward series' points."""
        reward = self.stats.get("episode/reward")
        return reward["points"] if reward else 0

    def episodes(self, limit: int) -> tuple[list[dict], list[dict]]:
        """The last ``limit`` episodes (by episode number) as the seed's records, and
        their rolling win rate (each over a full window: the win series is read
        ROLLING_WINDOW - 1 points further back)."""
        keys = [k for k in self.keys if k.startswith("episode/")]
        if not limit or "episode/reward" not in keys:
            return [], []
        ids = {self.stats[k]["id"]: k for k in keys}
        tails = self.store.recent_points(ids, limit + ROLLING_WINDOW - 1)
        columns = {key: tails[sid] for sid, key in ids.items()}
        rewards = columns["episode/reward"][-limit:]
        first = rewards[0]["step"]
        columns = {key: points if key == "episode/win" else
                   [p for p in points if p["step"] >= first]
                   for key, points in columns.items()}
        return episode_records(columns, first)

    def statistics(self) -> list[dict]:
        """{key, label, value, text, note} of the run's summary figures, in display order."""
        stats: list[dict] = []

        def add(key: str, label: str, value: float | None, kind: str = "num",
                note: str = "") -> None:
            if value is not None:
                stats.append({"key": key, "label": label, "value": value,
                              "text": figure(value, kind), "note": note})

        self._episode_statistics(add)
        self._training_statistics(add)
        return stats

    def _recent_mean(self, key: str) -> tuple[int, float] | None:
        """(finite values, their mean) among the key's last ROLLING_WINDOW points."""
        recent = values(self.tail(key))
        return (len(recent), sum(recent) / len(recent)) if recent else None

    def _episode_statistics(self, add: Callable[..., None]) -> None:
        rewards = self.stats.get("episode/reward")
        if rewards:
            add("total_episodes", "Episodes", rewards["points"], "int")
        if rewards and rewards["finite"]:
            add("average_reward", "Average reward", rewards["mean"])
            add("max_reward", "Max reward", rewards["max_value"],
                note=f"episode {rewards['max_step']:,}")
            if recent := self._recent_mean("episode/reward"):
                add("recent_reward", f"Mean reward, last {recent[0]}", recent[1])
        wins = self.stats.get("episode/win")
        if wins and wins["finite"]:
            if recent := self._recent_mean("episode/win"):
                add("final_win_rate", f"Final win rate, last {recent[0]}", recent[1], "pct")
            add("win_rate", "Overall win rate", wins["mean"], "pct")
        lengths = self.stats.get("episode/steps")
        if lengths and lengths["finite"]:
            add("mean_episode_length", "Mean episode length", lengths["mean"])

    def _training_statistics(self, add: Callable[..., None]) -> None:
        train_keys = [k for k in self.keys if k.startswith("train/")]
        if not train_keys:
            return
        latest = self.latest
        last_step = max(latest[k]["step"] for k in train_keys)
        add("epochs" if self.supervised else "updates",
            "Epochs" if self.supervised else "Updates", last_step, "int")
        loss = self.stats.get("train/val_loss")
        if loss and loss["finite"]:
            add("best_val_loss", "Best val. loss", loss["min_value"],
                note=f"epoch {loss['min_step']:,}")
        accuracy = self.stats.get("train/val_accuracy")
        if accuracy and accuracy["finite"]:
            add("best_val_accuracy", "Best val. accuracy", accuracy["max_value"], "pct",
                f"epoch {accuracy['max_step']:,}")
            add("final_val_accuracy", "Final val. accuracy",
                self._last_finite("train/val_accuracy"), "pct")
        for key, label in FINAL_TRAINING:
            if key in latest:
                add(key.split("/", 1)[1] if key != "train/train_loss" else "final_train_loss",
                    label, num(latest[key]["value"]))

    def _last_finite(self, key: str) -> float | None:
        """The key's last finite value: its last point's, else (rarely: it was NaN) the
        last finite one among its last ROLLING_WINDOW points."""
        stats = self.stats[key]
        if num(stats["last_value"]) is not None:
            return stats["last_value"]
        found = values(self.store.recent_points([stats["id"]], ROLLING_WINDOW)[stats["id"]])
        return found[-1] if found else None

    def checkpoint_events(self) -> list[dict]:
        """The run's last ``checkpoint_limit`` checkpoint events, oldest first."""
        return self._checkpoint_read()[0]

    def checkpoint_count(self) -> int:
        """How many checkpoints the run saved (all of them, not only those listed)."""
        return self._checkpoint_read()[1]

    def _checkpoint_read(self) -> tuple[list[dict], int, int]:
        """(the last checkpoint_limit checkpoint events, oldest first; how many the run
        has; the highest checkpoint seq)."""
        if self._checkpoints is None:
            count, last = self.store.event_count(self.run_id, ["checkpoint"])
            events = (self.store.latest_events(self.run_id, ["checkpoint"],
                                               self.checkpoint_limit) if count else [])
            self._checkpoints = (events[::-1], count, last)
        return self._checkpoints

    def checkpoints(self, events: list[dict] | None = None) -> list[dict]:
        """Saved checkpoints still on disk (of the last ``checkpoint_limit``, or of the
        given checkpoint events), oldest first, one row per file, each with the episode
        reached when it was saved: its payload's, else the last episode logged by its
        time (a binary search over the reward series' steps, not a read of it).

        A run keeps only its newest checkpoint files (``keep_checkpoints``), and runs
        before that saved every checkpoint over one ``last.pt``: a file's newest event
        stands for it, and events whose file is gone are left out. The newest row is
        marked ``resume``: the file ``--resume <run>`` continues from (the same rule as
        :func:`Utilities.run_training.checkpoint_of_run`: its newest file on disk)."""
        events = on_disk(self.checkpoint_events() if events is None else events)
        missing = [e for e in events if (e["payload"] or {}).get("episode") is None]
        reached: dict[int, int] = {}
        if missing and "episode/reward" in self.stats:
            steps = self.store.steps_at_times(self.run_id, "episode/reward",
                                              [e["wall_time"] for e in missing])
            reached = {e["seq"]: step or 0 for e, step in zip(missing, steps, strict=True)}
        result = []
        for event in events:
            payload = event["payload"] or {}
            episode = payload.get("episode")
            if episode is None:
                episode = reached.get(event["seq"])
            path = str(payload.get("path", ""))
            result.append({"seq": event["seq"], "episode": whole(episode),
                           "path": shown(path, path_roots()) if path else "",
                           "step": whole(payload.get("step")), "time": iso(event["wall_time"]),
                           "resume": False})
        if result:
            result[-1]["resume"] = True
        return result

    def events(self) -> list[dict]:
        """The latest PAGE_EVENTS alerts and log lines of the run (newest last)."""
        return shown_events(self._latest_events()[::-1])

    def _latest_events(self) -> list[dict]:
        if self._events is None:
            self._events = self.store.latest_events(self.run_id, ["alert", "log"], PAGE_EVENTS)
        return self._events

    def event_cursor(self) -> int:
        """The highest seq among the events the page shows (0 if none): its feed sends
        the alerts, log lines and checkpoints after it."""
        latest = self._latest_events()
        return max(self._checkpoint_read()[2], latest[0]["seq"] if latest else 0)

    def events_after(self, seq: int) -> tuple[list[dict], list[dict], int]:
        """(alerts and log lines, checkpoint rows) saved after ``seq``, each at most as
        many as the page lists (the newest), oldest first; and the seq to ask after next."""
        found = []
        for kinds, limit in ((["alert", "log"], PAGE_EVENTS),
                             (["checkpoint"], self.checkpoint_limit)):
            events = self.store.events_after(seq, run_id=self.run_id, kinds=kinds,
                                             limit=limit + 1)
            if len(events) > limit:  # more than the page shows: the newest of them
                events = self.store.latest_events(self.run_id, kinds, limit)[::-1]
            found.append(events)
        alerts, checkpoints = found
        last = max([seq] + [e["seq"] for e in alerts + checkpoints])
        return shown_events(alerts), self.checkpoints(checkpoints), last


def on_disk(events: list[dict]) -> list[dict]:
    """Checkpoint events whose file exists, the newest per file, oldest first."""
    kept: list[dict] = []
    seen: set[str] = set()
    for event in reversed(events):
        path = str((event["payload"] or {}).get("path") or "")
        if path and path not in seen and _is_file(path):
            seen.add(path)
            kept.append(event)
    return kept[::-1]


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a payload's path this machine cannot even look up
        return False


def shown_events(events: list[dict]) -> list[dict]:
    """Alert and log events as the run page lists them (``seq`` orders them)."""
    return hide_paths([{"seq": e["seq"], "kind": e["kind"], "time": iso(e["wall_time"]),
                        "level": str((e["payload"] or {}).get("level", "info")),
                        "title": str((e["payload"] or {}).get("title", "")),
                        "message": str((e["payload"] or {}).get("message", ""))}
                       for e in events])


def episode_records(columns: dict[str, list[dict]], first: int | None = None,
                    ) -> tuple[list[dict], list[dict]]:
    """Join episode/* series by episode number into the seed's episode records.

    ``first``: leave out episodes before it (the win series may start earlier, so the
    rolling win rate of the first kept episode still covers a full window).
    """
    records: dict[int, dict] = {}
    for p in columns.get("episode/reward") or []:
        if first is None or p["step"] >= first:
            records[p["step"]] = {"episode": p["step"], "total_reward": num(p["value"])}
    for key, points in columns.items():
        if key != "episode/reward":
            _join_field(records, EPISODE_FIELDS.get(key, key.split("/", 1)[1]), points)
    rolling = []
    wins = columns.get("episode/win") or []
    if wins:
        means = trailing_means(wins, ROLLING_WINDOW)
        rolling = [{"episode": p["step"], "win_rate": num(means[i])}
                   for i, p in enumerate(wins) if first is None or p["step"] >= first]
    return list(records.values()), rolling


def _join_field(records: dict[int, dict], field: str, points: list[dict]) -> None:
    for p in points:
        record = records.get(p["step"])
        if record is None:
            continue
        value: Any = num(p["value"])
        if value is not None and field in BOOL_FIELDS:
            value = bool(value)
        elif value is not None and field == "steps":
            value = int(value)
        record[field] = value
