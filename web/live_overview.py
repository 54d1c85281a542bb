"""Everything training now, on one page: ``GET /live`` and its stream
``GET /api/live/overview`` (server-sent events).

One card per live run (and runs that ended in the last ``RECENT_MINUTES``): its state,
the moves it allows, headline figures, links; and totals over the live runs like the
seed's global metrics. The figures come from the store's per-series statistics, in a
handful of statements for every run at once. :class:`OverviewFeed` builds the overview
once every ``LIVE_OVERVIEW_SECONDS`` (1 s) while anyone watches and sends it to every
viewer as an ``overview`` message when it changed: one query set a second, whatever the
number of viewers. A snapshot needs no resume id: a reconnect gets the next one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, render_template

from Utilities.run_store import ACTIVE_STATUSES, TERMINAL_STATUSES, RunStore, RunStoreError
from web.json_io import hide_paths
from web.live_stream import RETRY_MS, hub, setting
from web.run_api import allowed_actions, live_state
from web.store import get_store

bp = Blueprint("live", __name__)

RECENT_MINUTES = 10   # ended runs stay on the overview this long
MAX_RUNS = 100        # live runs shown (newest first)
# Headline figures of a card: (name, stored key, statistic).
HEADLINES = (("episodes", "episode/reward", "points"),
             ("latest_reward", "episode/reward", "last_value"),
             ("best_reward", "episode/reward", "max_value"),
             ("best_episode", "episode/reward", "max_step"),
             ("mean_reward", "episode/reward", "mean"),
             ("win_rate", "episode/win", "mean"),
             ("env_steps", "train/env_steps", "last_value"),
             ("steps_per_second", "train/steps_per_second", "last_value"),
             ("policy_loss", "train/policy_loss", "last_value"),
             ("val_loss", "train/val_loss", "last_value"))


def overview(store: RunStore, now: datetime | None = None) -> dict[str, Any]:
    """The overview: live and recently ended runs with their figures, and the totals."""
    now = now or datetime.now(UTC)
    with store.reading() as reads:  # one snapshot; marks dead trainers' runs lost first
        live, _ = reads.list_runs(status=ACTIVE_STATUSES, limit=MAX_RUNS)
        ended, _ = reads.list_runs(status=TERMINAL_STATUSES, sort="ended_at", limit=20)
        cutoff = now - timedelta(minutes=RECENT_MINUTES)
        ended = [run for run in ended if run["ended_at"] and _time(run["ended_at"]) >= cutoff]
        stats = reads.series_statistics([run["run_id"] for run in live + ended])
    cards = [_card(run, stats.get(run["run_id"], {}), now) for run in live + ended]
    return {"generated_at": now.isoformat().replace("+00:00", "Z"),
            "runs": cards, "totals": _totals([card for card in cards if card["live"]])}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _card(run: dict, stats: dict[str, dict], now: datetime) -> dict[str, Any]:
    figures = {name: (stats[key][statistic] if key in stats else None)
               for name, key, statistic in HEADLINES}
    started = run["started_at"] or run["created_at"]
    end = _time(run["ended_at"]) if run["ended_at"] else now
    return {"run_id": run["run_id"], "name": run["name"], "model_type": run["model_type"],
            "status": run["status"], "state": live_state(run),
            "live": run["status"] in ACTIVE_STATUSES,
            "allowed_actions": allowed_actions(run), "error": hide_paths(run["error"]),
            "started_at": started, "ended_at": run["ended_at"],
            "elapsed_seconds": max(0.0, (end - _time(started)).total_seconds()),
            **{name: value for name, value in figures.items()}}


def _totals(cards: list[dict]) -> dict[str, Any]:
    """Over the live runs: the seed's global metrics."""
    def values(name: str) -> list[float]:
        return [card[name] for card in cards if card[name] is not None]

    episodes = sum(values("episodes"))
    weighted = [(card["mean_reward"], card["episodes"]) for card in cards
                if card["mean_reward"] is not None and card["episodes"]]
    return {"active": len(cards), "episodes": episodes,
            "env_steps": sum(values("env_steps")),
            "steps_per_second": sum(values("steps_per_second")),
            "avg_reward": (sum(m * n for m, n in weighted) / sum(n for _, n in weighted)
                           if weighted else None),
            "best_reward": max(values("best_reward"), default=None),
            "policy_loss": (sum(values("policy_loss")) / len(values("policy_loss"))
                            if values("policy_loss") else None),
            "elapsed_seconds": max(values("elapsed_seconds"), default=0.0)}


class OverviewFeed:
    """Builds the overview once a period while anyone watches; viewers wait for the
    next version."""

    def __init__(self, app: Any, period: float, linger: float = 10.0) -> None:
        self._app, self.period, self.linger = app, period, linger
        self._cond = threading.Condition()
        self._body: bytes | None = None
        self._version = 0
        self._viewers = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def attach(self) -> None:
        with self._cond:
            self._viewers += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="live-overview",
                                                daemon=True)
                self._thread.start()

    def detach(self) -> None:
        with self._cond:
            self._viewers -= 1

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        idle_since = None
        while not self._stop.is_set():
            with self._cond:
                if self._viewers:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= self.linger:
                    self._thread = None
                    return
            self._refresh()
            self._stop.wait(self.period)

    def _refresh(self) -> None:
        try:
            with self._app.app_context():
                body = orjson.dumps(overview(get_store()))
        except RunStoreError as exc:
            body = orjson.dumps({"error": f"run store unavailable: {exc}"})
        with self._cond:
            if body != self._body:
                self._body, self._version = body, self._version + 1
                self._cond.notify_all()

    def follow(self, keepalive: float) -> Iterator[bytes | None]:
        """Each new overview as it is built (None: a keep-alive)."""
        seen = 0
        while not self._stop.is_set():
            with self._cond:
                if self._version == seen:
                    self._cond.wait(keepalive)
                if self._version == seen:
                    body = None
                else:
                    body, seen = self._body, self._version
            yield body


def init_app(app: Any) -> None:
    app.extensions["live_overview"] = OverviewFeed(
        app, setting(app.config, "LIVE_OVERVIEW_SECONDS"))
    app.register_blueprint(bp)


@bp.get("/live")
def page() -> str:
    """The overview page; its first paint is built here, the stream keeps it current."""
    try:
        first = overview(get_store())
    except RunStoreError as exc:
        first = {"error": f"run store unavailable: {exc}", "runs": [], "totals": {}}
    return render_template("live/index.html", first=first, recent_minutes=RECENT_MINUTES)


@bp.get("/api/live/overview")
def stream() -> Response:
    live, feed = hub(), current_app.extensions["live_overview"]
    live.reserve()  # counts against LIVE_MAX_VIEWERS like a run's stream (503 when full)
    feed.attach()
    keepalive = live.keepalive_seconds

    def messages() -> Iterator[bytes]:
        yield b"retry: %d\n\n" % RETRY_MS
        for body in feed.follow(keepalive):
            yield b": keep-alive\n\n" if body is None else b"event: overview\ndata: %s\n\n" % body

    def close() -> None:
        feed.detach()
        live.release()

    response = Response(messages(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(close)
    return response
