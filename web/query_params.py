"""Query parameters of the run-history routes, read strictly (the JSON API: a bad one is an
:class:`~web.json_io.ApiError` naming it, 400 malformed, 422 out of range) or leniently
(the list page: odd numbers fall back, a bad filter is named and dropped)."""

from __future__ import annotations

import re
from typing import Any

from flask import request

from Utilities.run_store import RUN_STATUSES
from web.json_io import ApiError

MAX_KEYS = 100
MAX_TEXT = 200
PER_PAGE_CHOICES = (10, 20, 50, 100)
DEFAULT_PER_PAGE = 20
MAX_PAGE = 10**9  # far past any real store; keeps the row offset a valid integer

# Characters no agent name, model type or run id holds (C0, DEL and C1 controls).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_run_id(text: str) -> bool:
    """Whether ``text`` can be a run id: the store writes lowercase UUIDs only, so
    anything else names no run and is never sent to the database (PostgreSQL's driver
    refuses a NUL byte with an error, not an empty answer)."""
    return _RUN_ID.fullmatch(text) is not None


def int_param(name: str, default: int | None, low: int, high: int) -> int | None:
    """Query parameter ``name`` as an int in low..high (400 not an int, 422 out of range)."""
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ApiError(400, f"{name} must be an integer; got {raw!r}", name) from None
    if not low <= value <= high:
        raise ApiError(422, f"{name} must be between {low} and {high}; got {value}", name)
    return value


def status_param() -> str | None:
    """``status``: one of the run statuses, or None when absent."""
    status = request.args.get("status", "").strip()
    if not status:
        return None
    if status not in RUN_STATUSES:
        raise ApiError(422, f"unknown status {status!r}; expected one of: "
                            f"{', '.join(RUN_STATUSES)}", "status")
    return status


def text_param(name: str) -> str | None:
    """A name filter: no control characters, at most MAX_TEXT characters."""
    value = request.args.get(name, "").strip()
    if found := _CONTROL.search(value):
        raise ApiError(400, f"{name} contains a control character ({found[0]!r}); names "
                            "never do", name)
    if len(value) > MAX_TEXT:
        raise ApiError(422, f"{name} is longer than {MAX_TEXT} characters", name)
    return value or None


ARCHIVED_CHOICES = {"0": False, "1": True, "all": None}


def archived_param() -> bool | None:
    """``archived``: ``0`` (default, runs not archived), ``1`` (only archived), ``all``."""
    raw = request.args.get("archived", "0").strip() or "0"
    if raw not in ARCHIVED_CHOICES:
        raise ApiError(422, f"archived must be one of 0, 1, all; got {raw!r}", "archived")
    return ARCHIVED_CHOICES[raw]


def keys_param() -> list[str] | None:
    """``keys=a,b``: distinct metric keys in the order given, None when absent."""
    raw = request.args.get("keys", "").strip()
    if not raw:
        return None
    keys = list(dict.fromkeys(k.strip() for k in raw.split(",") if k.strip()))
    if len(keys) > MAX_KEYS:
        raise ApiError(422, f"keys names {len(keys)} metrics; at most {MAX_KEYS}", "keys")
    if any(len(k) > MAX_TEXT for k in keys):
        raise ApiError(422, f"a metric key in keys is longer than {MAX_TEXT} characters",
                       "keys")
    return keys


def page_args() -> tuple[dict[str, Any], str | None]:
    """The list page's filters, leniently: odd numbers fall back, a bad status is named."""
    problem = None
    agent_id = request.args.get("agent_id", "").strip() or None
    status = request.args.get("status", "").strip() or None
    names = {key: request.args.get(key, "").strip()[:MAX_TEXT] or None
             for key in ("experiment", "tag")}
    for key, value in names.items():
        if value is not None and _CONTROL.search(value):
            problem, names[key] = f"That {key} contains a control character: showing all.", None
    if agent_id is not None and _CONTROL.search(agent_id):
        problem = "That agent name contains a control character: showing every agent."
        agent_id = None
    if status is not None and status not in RUN_STATUSES:
        problem = (f"Unknown status “{status}”: showing every status. Choose one of "
                   f"{', '.join(RUN_STATUSES)}.")
        status = None
    page = min(max(1, _lenient_int("page", 1)), MAX_PAGE)
    per_page = min(max(_lenient_int("per_page", DEFAULT_PER_PAGE), 1), max(PER_PAGE_CHOICES))
    # "show archived": archived runs beside the others (the toggle), or only them.
    archived = request.args.get("archived", "").strip()
    if archived not in ("", "0", "1", "all"):
        problem, archived = f"Unknown archived choice “{archived}”: archived runs are hidden.", ""
    return {"agent_id": agent_id, "status": status, **names,
            "archived": archived if archived in ("1", "all") else None,
            "page": page, "per_page": per_page}, problem


def _lenient_int(name: str, default: int) -> int:
    try:
        return int(request.args.get(name, default))
    except ValueError:
        return default
