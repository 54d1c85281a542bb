"""Alerts in the dashboard: the global alerts page and its JSON API (newest first,
filters, acknowledgement), the unread count in the navigation, the alert settings page
with "send test alert", and the sweep that alerts on runs whose trainer died.

A run's alerts are raised where the run trains (Utilities/run_alerts.py in its
process); a run whose process was killed cannot say so itself, so the dashboard's
:class:`LostRunSweeper` marks it lost and alerts, once, whichever process gets there
first (the alerts table says whether it was told).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, jsonify, redirect, render_template, request, url_for
from sqlalchemy.exc import SQLAlchemyError

from Utilities import alert_records
from Utilities.alert_config import AlertSettings, load_settings
from Utilities.alert_rules import LEVELS
from Utilities.alert_system import AlertSystem
from Utilities.input_errors import InputError
from Utilities.run_alerts import alert_lost_runs
from Utilities.run_store import RunStoreError
from web.json_io import ApiError, read_json_body
from web.query_params import int_param, is_run_id, text_param
from web.store import get_store

log = logging.getLogger(__name__)
bp = Blueprint("alerts", __name__)

PER_PAGE = 50
SWEEP_SECONDS = 10.0  # how soon a killed run is alerted (after RUN_LOST_AFTER_SECONDS)
TEST_WAIT_SECONDS = 30.0  # the test button waits this long for every channel's answer


def settings_or_error() -> tuple[AlertSettings | None, str | None]:
    """The alert settings (ALERTS_CONFIG / alerts.yaml), or the reason they are unusable."""
    try:
        return load_settings(), None
    except InputError as exc:
        return None, str(exc)


def alerts_for(run: dict[str, Any], settings: AlertSettings | None = None) -> AlertSystem:
    """An AlertSystem recording into the app's store for ``run``."""
    settings = settings or settings_or_error()[0] or AlertSystem().settings
    return AlertSystem(settings, store=get_store(), run_id=run["run_id"],
                       run_name=run.get("name"))


class LostRunSweeper:
    """Every ``seconds``: runs whose heartbeat stopped are marked lost, and each failed
    run that ended since the dashboard started and has no run-failed alert gets one."""

    def __init__(self, app: Flask, seconds: float = SWEEP_SECONDS) -> None:
        self.app, self.seconds = app, seconds
        self.since = datetime.now(UTC).replace(tzinfo=None).isoformat() + "Z"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="lost-runs")

    def start(self) -> LostRunSweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def sweep(self) -> list[str]:
        with self.app.app_context():
            settings = settings_or_error()[0]
            return alert_lost_runs(get_store(), lambda run: alerts_for(run, settings),
                                   self.since)

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                told = self.sweep()
            except (RunStoreError, SQLAlchemyError) as exc:
                log.warning("lost-run sweep: %s", exc)
                continue
            if told:
                log.warning("alerted %d failed run(s): %s", len(told), ", ".join(told))


def start_sweeper(app: Flask) -> LostRunSweeper:
    sweeper = LostRunSweeper(app).start()
    app.extensions["lost_run_sweeper"] = sweeper
    return sweeper


@bp.app_context_processor
def unread() -> dict[str, Any]:
    """``alerts_unread`` for the navigation's badge (None when the store is down)."""
    try:
        return {"alerts_unread": alert_records.unread_count(get_store())}
    except (RunStoreError, SQLAlchemyError):
        return {"alerts_unread": None}


def _filters() -> dict[str, Any]:
    """The page's and the API's filters, strictly read (400/422 naming the parameter)."""
    level = text_param("level")
    if level is not None and level not in LEVELS:
        raise ApiError(422, f"level must be one of {', '.join(LEVELS)}; got {level!r}", "level")
    run_id = text_param("run")
    if run_id is not None and not is_run_id(run_id):
        raise ApiError(422, f"run must be a run id; got {run_id!r}", "run")
    state = request.args.get("state", "all")
    if state not in ("all", "unread", "read"):
        raise ApiError(422, "state must be all, unread or read", "state")
    acked = {"all": None, "unread": False, "read": True}[state]
    return {"level": level, "run_id": run_id, "rule": text_param("rule"), "acked": acked}


@bp.get("/api/alerts")
def api_list() -> Any:
    filters = _filters()
    limit = int_param("limit", PER_PAGE, 1, 1000)
    offset = int_param("offset", 0, 0, 10**9)
    store = get_store()
    alerts, total = alert_records.list_alerts(store, **filters, limit=limit, offset=offset)
    return jsonify({"alerts": alerts, "total": total, "limit": limit, "offset": offset,
                    "unread": alert_records.unread_count(store)})


@bp.get("/api/alerts/unread")
def api_unread() -> Any:
    return jsonify({"unread": alert_records.unread_count(get_store())})


@bp.post("/api/alerts/ack")
def api_ack() -> Any:
    """``{"alert_ids": [...]}`` or ``{"all": true}``: mark alerts read."""
    body = read_json_body()
    ids = _ack_ids(body)
    store = get_store()
    changed = alert_records.acknowledge(store, ids)
    return jsonify({"acknowledged": changed, "unread": alert_records.unread_count(store)})


def _ack_ids(body: Any) -> list[str] | None:
    if not isinstance(body, dict) or set(body) - {"alert_ids", "all"}:
        raise ApiError(422, 'send {"alert_ids": [...]} or {"all": true}', "alert_ids")
    if body.get("all") is True and "alert_ids" not in body:
        return None
    ids = body.get("alert_ids")
    if not isinstance(ids, list) or not ids or not all(
            isinstance(i, str) and 0 < len(i) <= 64 for i in ids) or len(ids) > 1000:
        raise ApiError(422, "alert_ids must be a list of 1 to 1000 alert ids", "alert_ids")
    return ids


@bp.get("/alerts")
def index() -> Any:
    """The page; a bad filter is named above the unfiltered list."""
    page = max(1, request.args.get("page", 1, type=int) or 1)
    try:
        return _page(_filters(), page)
    except ApiError as exc:
        unfiltered = {"level": None, "run_id": None, "rule": None, "acked": None}
        return _page(unfiltered, 1, error=str(exc)), exc.status


def _page(filters: dict[str, Any], page: int, error: str | None = None) -> Any:
    store = get_store()
    alerts, total = alert_records.list_alerts(store, **filters, limit=PER_PAGE,
                                              offset=(page - 1) * PER_PAGE)
    state = {None: "all", False: "unread", True: "read"}[filters["acked"]]
    return render_template("alerts/index.html", alerts=alerts, total=total, page=page,
                           pages=max(1, -(-total // PER_PAGE)), filters=filters, state=state,
                           levels=LEVELS, rules=alert_records.rules_seen(store), error=error)


@bp.post("/alerts/ack")
def ack() -> Any:
    """The page's buttons: one alert (``alert_id``) or every unread one (``all``)."""
    alert_id = request.form.get("alert_id")
    alert_records.acknowledge(get_store(), None if request.form.get("all") else
                              [alert_id] if alert_id else [])
    return redirect(request.referrer or url_for(".index"), 303)


@bp.get("/alerts/settings")
def settings_page() -> Any:
    settings, problem = settings_or_error()
    described = AlertSystem(settings).describe() if settings else None
    return render_template("alerts/settings.html", settings=described, problem=problem,
                           outcomes=None)


@bp.post("/alerts/test")
def send_test() -> Any:
    """Send a test alert through every configured channel and show each answer."""
    settings, problem = settings_or_error()
    if settings is None:
        return render_template("alerts/settings.html", settings=None, problem=problem,
                               outcomes=None), 422
    alerts = AlertSystem(settings, store=get_store())
    alerts.send_alert("info", "Test alert", "A test from the Galaxy Models dashboard: "
                      "this channel works.", {"source": "alerts settings page"}, force=True,
                      rule="test")
    finished = alerts.flush(TEST_WAIT_SECONDS)
    alerts.close(0.1)
    outcomes = list(alerts.deliveries)
    return render_template("alerts/settings.html", settings=alerts.describe(), problem=None,
                           outcomes=outcomes, finished=finished)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
