"""Jinja filters that present stored values to people.

Figures go through :func:`Utilities.number_format.figure` (the ``figure`` filter: one rule
for every page and the CLI); times and durations are written here.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from flask import Flask

from Utilities.number_format import figure
from web.datafiles import is_upload_name, shown_name


def parse_time(iso: str | None) -> datetime | None:
    """A stored ISO time ('…Z') as an aware datetime; None when absent or unreadable."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None


def when(iso: str | None) -> str:
    """'2026-11-21 09:33:30 UTC' from a stored ISO time; '—' when absent."""
    moment = parse_time(iso)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else (iso or "—")


def duration(start_iso: str | None, end_iso: str | None) -> str:
    """'1h 02m', '3m 05s' or '0.4s' between two stored times; '—' if either is missing."""
    start, end = parse_time(start_iso), parse_time(end_iso)
    if not start or not end:
        return "—"
    seconds = (end - start).total_seconds()
    return f"{seconds:.1f}s" if seconds < 10 else span(seconds)


def span(seconds: float | None) -> str:
    """'45s', '3m 05s', '1h 02m' (whole seconds); '—' when unknown."""
    if seconds is None:
        return "—"
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


# The few figures a model-library row shows, in this order (types report what they have).
HEADLINE_METRICS = (
    ("validation_return_pct", "validation return %"), ("test_return_pct", "test return %"),
    ("test_buy_hold_pct", "buy & hold %"), ("validation_accuracy", "val. accuracy"),
    ("validation_majority_accuracy", "majority baseline"), ("val_accuracy", "val. accuracy"),
    ("val_loss", "val. loss"), ("train_up_share", "train up share"),
)


def headline(metrics: dict | None, limit: int = 3) -> list[tuple[str, object]]:
    """(label, value) pairs of the known headline metrics present in ``metrics``."""
    metrics = metrics if isinstance(metrics, dict) else {}
    found = [(label, metrics[key]) for key, label in HEADLINE_METRICS if key in metrics]
    return found[:limit]


def basename(path: str | None) -> str:
    if path and is_upload_name(path):  # an upload by the name the person gave it
        return shown_name(path)
    return path.replace("\\", "/").rsplit("/", 1)[-1] if path else "—"


def finite(value: Any) -> float | None:
    """A finite number as float, else None (text, bools, NaN, ±inf: nothing to plot)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def init_app(app: Flask) -> None:
    for function in (when, duration, headline, basename, figure):
        app.add_template_filter(function)
