"""Where a run stands: how much of its budget is done, how long it has run, how long it
has left, and whether it can be resumed from a checkpoint.

The budget and its unit come from the model type's trainer (``progress_total``: steps
for PPO, epochs for XGBoost/Transformer), built from the config the run recorded — the
same number the CLI's progress bar counts to. What is done is the run's latest
``train/global_step`` (the store logger records it every iteration); for epoch types
that predate it, the latest epoch. The rate is measured over the last few iterations,
so a pause or a slow data load early on does not skew the time left.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from NetworkConfigs import UnknownModelType, get_model_type
from Utilities.number_format import figure
from Utilities.run_store import ACTIVE_STATUSES, RunStore
from web.formatting import parse_time, span

log = logging.getLogger(__name__)

DONE_KEY = "train/global_step"
RATE_WINDOW = 20  # iterations the speed is measured over


def is_epoch_type(model_type: str) -> bool | None:
    """Whether the registry's type trains in epochs; None for a type it lacks."""
    try:
        return get_model_type(model_type).trainer_class().progress_unit == "epoch"
    except (UnknownModelType, ImportError):
        return None


def budget(model_type: str, config: dict | None) -> tuple[int | None, str]:
    """(total, unit) the run trains for, by its type's trainer; total None if unknown."""
    try:
        trainer = get_model_type(model_type).trainer_class()(dict(config or {}))
        total = trainer.progress_total
        return (int(total) if total else None), trainer.progress_unit
    except (UnknownModelType, ImportError, ValueError, TypeError, KeyError) as exc:
        # An outside producer's or an old config: no budget, not a broken page.
        log.debug("no training budget for run of type %r: %s", model_type, exc)
        unit = "epoch" if is_epoch_type(model_type) else "step"
        return None, unit


def _timestamp(iso: str | None) -> float | None:
    moment = parse_time(iso)
    return moment.timestamp() if moment else None


def _done_samples(store: RunStore, run_id: str, latest: dict[str, dict],
                  unit: str) -> list[tuple[float, float]]:
    """(amount done, wall time) of the last RATE_WINDOW iterations, oldest first."""
    if DONE_KEY in latest:
        start = max(0, latest[DONE_KEY]["step"] - RATE_WINDOW)
        return [(p["value"], p["wall_time"]) for p in
                store.metric_series(run_id, DONE_KEY, start_step=start) if p["value"] is not None]
    epoch_keys = [k for k in latest if k.startswith("train/")]
    if unit != "epoch" or not epoch_keys:
        return []
    key = max(epoch_keys, key=lambda k: latest[k]["step"])
    start = max(0, latest[key]["step"] - RATE_WINDOW)
    return [(p["step"], p["wall_time"]) for p in
            store.metric_series(run_id, key, start_step=start)]


def progress(store: RunStore, run: dict, latest: dict[str, dict],
             now: float | None = None) -> dict[str, Any]:
    """Done / total, percent, elapsed and time left of a run, with their texts."""
    now = time.time() if now is None else now
    total, unit = budget(run["model_type"], run["config"])
    started, ended = _timestamp(run["started_at"]), _timestamp(run["ended_at"])
    elapsed = None if started is None else (ended or now) - started
    samples = _done_samples(store, run["run_id"], latest, unit)
    done = int(samples[-1][0]) if samples else None
    if done is None and run["status"] in ACTIVE_STATUSES and not latest:
        done = 0  # nothing logged yet; a run that logged no counter (an old one) is unknown
    left = None
    if run["status"] == "running" and total and samples and done < total:
        left = _time_left(samples, total, started, now)
    percent = min(100.0, 100.0 * done / total) if total and done is not None else None
    return {"unit": unit, "done": done, "total": total, "percent": percent,
            "elapsed_seconds": elapsed, "seconds_left": left,
            "done_text": _done_text(done, total, f"{unit}s"),
            "percent_text": "" if percent is None else f"{percent:.1f}%",
            "elapsed_text": span(elapsed), "left_text": _left_text(run, left, done)}


def _done_text(done: int | None, total: int | None, units: str) -> str:
    """'4 / 10 epochs', '7 epochs' (no budget), '200,000 steps planned' (no count)."""
    if done is None:
        return f"{figure(total, 'int')} {units} planned" if total else "—"
    if total:
        return f"{figure(done, 'int')} / {figure(total, 'int')} {units}"
    return f"{figure(done, 'int')} {units}"


def _time_left(samples: list[tuple[float, float]], total: int, started: float | None,
               now: float) -> float | None:
    """Remaining amount / recent speed, less the time since the last sample."""
    (first, first_time), (last, last_time) = samples[0], samples[-1]
    if len(samples) == 1 or last_time <= first_time:
        first, first_time = 0.0, started or last_time  # one sample: since the start
    if last <= first or last_time <= first_time:
        return None
    rate = (last - first) / (last_time - first_time)
    return max(0.0, (total - last) / rate - (now - last_time))


def _left_text(run: dict, left: float | None, done: int | None) -> str:
    if run["status"] == "paused":
        return "paused"
    if run["status"] != "running":
        return "—"
    if left is None:
        return "estimating…" if done is not None else "—"
    return "almost done" if left < 1 else f"about {span(left)}"


def resumable(run: dict, checkpoint_events: list[dict]) -> bool:
    """A run that ended early (stopped or failed) with a checkpoint still on disk."""
    if run["status"] not in ("stopped", "failed"):
        return False
    for event in reversed(checkpoint_events):
        path = str((event["payload"] or {}).get("path", ""))
        try:
            if path and Path(path).is_file():
                return True
        except (OSError, ValueError):
            continue
    return False
