"""Run statistics and series math: what the run pages and the runs API say about a run's
stored metrics (episodes joined into records, rolling win rate, summary figures, the list
row's overview, checkpoints, alerts). Reads the store through :class:`RunData` only."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from Utilities.number_format import figure
from Utilities.run_store import RunStore
from Utilities.safe_paths import shown
from web.json_io import hide_paths, path_roots
from web.run_progress import is_epoch_type

ROLLING_WINDOW = 100          # episodes in the rolling win rate and the "recent" figures
PAGE_EVENTS = 50              # alerts and log lines shown on a run page
MAX_CHECKPOINTS = 10_000
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


def _best(points: list[dict], pick: Callable) -> tuple[int, float] | None:
    """(step, value) of the min or max finite value, None when there is none."""
    finite = [(p["step"], v) for p in points if (v := num(p["value"])) is not None]
    return pick(finite, key=lambda sv: sv[1]) if finite else None


class RunData:
    """One run's stored metrics for one request; full series are read at most once."""

    def __init__(self, store: RunStore, run: dict) -> None:
        self.store, self.run, self.run_id = store, run, run["run_id"]
        self._keys: list[str] | None = None
        self._latest: dict[str, dict] | None = None
        self._full: dict[str, list[dict]] = {}

    @property
    def keys(self) -> list[str]:
        if self._keys is None:
            self._keys = self.store.metric_keys(self.run_id)
        return self._keys

    @property
    def latest(self) -> dict[str, dict]:
        """Each key's sample with the highest step."""
        if self._latest is None:
            self._latest = self.store.latest_metrics(self.run_id)
        return self._latest

    def full(self, key: str) -> list[dict]:
        if key not in self.keys:
            return []
        if key not in self._full:
            self._full[key] = self.store.metric_series(self.run_id, key)
        return self._full[key]

    def is_loaded(self, key: str) -> bool:
        return key in self._full

    @property
    def supervised(self) -> bool:
        """An epoch-trained run (XGBoost, Transformer): known from its model type before
        any metric arrives; for a type the registry lacks, from its epoch metrics."""
        by_type = is_epoch_type(self.run["model_type"])
        if by_type is not None:
            return by_type
        return "episode/reward" not in self.keys and any(k in self.keys for k in EPOCH_KEYS)

    def episodes(self) -> tuple[list[dict], list[dict]]:
        """Every episode as the seed's records, and the rolling win rate."""
        return episode_records({k: self.full(k) for k in self.keys if k.startswith("episode/")})

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

    def _episode_statistics(self, add: Callable[..., None]) -> None:
        rewards = self.full("episode/reward")
        if rewards:
            add("total_episodes", "Episodes", len(rewards), "int")
        rewarded = values(rewards)
        if rewarded:
            recent = rewarded[-ROLLING_WINDOW:]
            best_step, best = _best(rewards, max)
            add("average_reward", "Average reward", sum(rewarded) / len(rewarded))
            add("max_reward", "Max reward", best, note=f"episode {best_step:,}")
            add("recent_reward", f"Mean reward, last {len(recent)}", sum(recent) / len(recent))
        wins = values(self.full("episode/win"))
        if wins:
            recent = wins[-ROLLING_WINDOW:]
            add("final_win_rate", f"Final win rate, last {len(recent)}",
                sum(recent) / len(recent), "pct")
            add("win_rate", "Overall win rate", sum(wins) / len(wins), "pct")
        lengths = values(self.full("episode/steps"))
        if lengths:
            add("mean_episode_length", "Mean episode length", sum(lengths) / len(lengths))

    def _training_statistics(self, add: Callable[..., None]) -> None:
        train_keys = [k for k in self.keys if k.startswith("train/")]
        if not train_keys:
            return
        latest = self.latest
        last_step = max((latest[k]["step"] for k in train_keys if k in latest), default=0)
        add("epochs" if self.supervised else "updates",
            "Epochs" if self.supervised else "Updates", last_step, "int")
        if best := _best(self.full("train/val_loss"), min):
            add("best_val_loss", "Best val. loss", best[1], note=f"epoch {best[0]:,}")
        if best := _best(self.full("train/val_accuracy"), max):
            add("best_val_accuracy", "Best val. accuracy", best[1], "pct", f"epoch {best[0]:,}")
            add("final_val_accuracy", "Final val. accuracy",
                values(self.full("train/val_accuracy"))[-1], "pct")
        for key, label in FINAL_TRAINING:
            if key in latest:
                add(key.split("/", 1)[1] if key != "train/train_loss" else "final_train_loss",
                    label, num(latest[key]["value"]))

    def checkpoint_events(self) -> list[dict]:
        return self.store.events_after(0, run_id=self.run_id, kinds=["checkpoint"],
                                       limit=MAX_CHECKPOINTS)

    def checkpoints(self) -> list[dict]:
        """Saved checkpoints, oldest first, each with the episode reached when it was saved."""
        rewards = self.full("episode/reward")
        times = [p["wall_time"] for p in rewards]
        result = []
        for event in self.checkpoint_events():
            payload = event["payload"] or {}
            episode = payload.get("episode")
            if episode is None and rewards:
                reached = bisect_right(times, event["wall_time"])
                episode = rewards[reached - 1]["step"] if reached else 0
            path = str(payload.get("path", ""))
            result.append({"episode": whole(episode),
                           "path": shown(path, path_roots()) if path else "",
                           "step": whole(payload.get("step")), "time": iso(event["wall_time"])})
        return result

    def events(self) -> list[dict]:
        """The latest alerts and log lines of the run (newest last)."""
        events = self.store.events_after(0, run_id=self.run_id, kinds=["alert", "log"],
                                         limit=10_000)[-PAGE_EVENTS:]
        return hide_paths([{"kind": e["kind"], "time": iso(e["wall_time"]),
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
