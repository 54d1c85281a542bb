"""The training runs' control API (JSON), for programs and the live pages alike:

- ``GET  /api/training-runs/<id>/state``  the run's whole live state (the seed's
  ``/api/state``): status and the moves allowed from it, headline figures, the latest
  update metrics, the featured accounts ("agents"), the latest decision, recent trades,
  and the stream cursor to follow it from (``/api/training-runs/<id>/events``).
- ``POST /api/training-runs``  start a training from a JSON body: ``{"model_type": "ppo",
  "data": "<a listed data file>", "model_name": "...", "mode": "smoke" | "full",
  "config": {<overrides, as in a config file>}, "experiment": "...", "tags": [...],
  "description": "..."}``; 202 with the run's id and URLs.
- ``POST /api/training-runs/<id>/pause`` / ``resume`` / ``stop``: ask the trainer (it
  obeys between iterations); 409 when the run's state does not allow the move.
- ``PATCH /api/training-runs/<id>``  set any of ``description``, ``experiment``,
  ``notes`` (strings) and ``tags`` (a list of strings, replacing the run's); the run.
- ``POST /api/training-runs/<id>/archive`` / ``restore``: hide the run from lists (a
  finished run only) or show it again; the run.
- ``DELETE /api/training-runs/<id>[?delete_model=1]``: delete a finished run with its
  metrics and events; its saved model only with ``delete_model`` (query or JSON body),
  through the model library's rule (web/run_curation.py). What was removed.
- ``GET /api/training-runs/<id>/metrics.csv`` / ``metrics.json``: every metric point of
  the run, streamed (Utilities/metric_export.py).

Errors are the one JSON body (``{"error", "field"}``): 400 unreadable JSON, 404 unknown
run, 409 a move or start the state refuses (a live run's archive or delete: ``"reason":
"active"``), 413 too large, 422 a bad value or an unknown field, 503 the store is down.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from NetworkConfigs import DEFAULT_MODEL_TYPE
from Utilities import metric_export
from Utilities.data_loading import DataError
from Utilities.input_errors import InputError
from Utilities.run_labels import check_labels
from Utilities.run_store import (
    TERMINAL_STATUSES,
    RunNotFound,
    RunStoreError,
    StoreUnavailable,
)
from Utilities.run_training import default_model_name
from Utilities.training_request import MODES, TrainingRequest, UsageError, precheck
from web import datafiles, run_curation
from web.history import public_run
from web.json_io import ApiError, error_reply, json_reply, parse_json, read_json_body
from web.live_tail import stream_start
from web.query_params import is_run_id
from web.run_stats import RunData
from web.store import get_store
from web.training_form import form_types
from web.training_jobs import Busy, jobs

bp = Blueprint("run_api", __name__)

CONTROL_ACTIONS = ("pause", "resume", "stop")
# The moves a run accepts in each state. "stopping" is a live run with a stop pending
# (the trainer stops at its next iteration's end); terminal states accept none.
_MOVES = {"starting": ("stop",), "running": ("pause", "stop"), "paused": ("resume", "stop"),
          "stopping": ()}
MAX_START_BYTES = 64 * 1024
START_FIELDS = ("model_type", "data", "model_name", "mode", "config")
LABEL_FIELDS = ("experiment", "tags", "description")  # the run's, as on the Train form
MAX_DELETE_BYTES = 4096     # {"delete_model": true} is 22 bytes
MAX_EDIT_BYTES = 256 * 1024  # notes may be long (run_labels.MAX_NOTES characters)
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False,
          "": False}
STATE_TRADES = 20   # recent trades in a state reply
STATE_EVENTS = 200  # newest account events read to find each agent's latest


def live_state(run: dict) -> str:
    """The state a person sees: the run's status, or "stopping" while a stop is pending."""
    if run["status"] in ("running", "paused") and run.get("control") == "stop":
        return "stopping"
    return run["status"]


def allowed_actions(run: dict) -> list[str]:
    """The control moves the run accepts now (what the pages' buttons enable)."""
    return list(_MOVES.get(live_state(run), ()))


def control_reply(run_id: str, action: str) -> Response | tuple[Response, int]:
    """Ask the run's trainer to pause, resume or stop: the reply of both control routes
    (the run page's and the API's). 409 when the run's state does not allow the move."""
    if action not in CONTROL_ACTIONS:
        return error_reply(422, f"action must be one of {list(CONTROL_ACTIONS)}", "action")
    if not is_run_id(run_id):  # the store only makes UUIDs: nothing else can be found
        return error_reply(404, f"run {run_id!r} not found", "run_id")
    store = get_store()
    try:
        run = store.get_run(run_id)
        # An ended run is left to the store, which refuses it, except a stop of a run
        # whose trainer was found gone: that answers with the run (it is not running).
        if run["status"] not in TERMINAL_STATUSES and action not in allowed_actions(run):
            moves = ", ".join(allowed_actions(run)) or "none"
            return error_reply(409, f"run {run_id[:8]} is {live_state(run)}: {action} is not "
                                    f"a move it allows now (allowed: {moves})", "action",
                               state=live_state(run), allowed_actions=allowed_actions(run))
        run = store.request_control(run_id, action)
    except RunNotFound:
        return error_reply(404, f"run {run_id!r} not found", "run_id")
    except StoreUnavailable as exc:
        return error_reply(503, str(exc))
    except RunStoreError as exc:  # it turned terminal meanwhile
        return error_reply(409, str(exc), "action")
    return json_reply({"run_id": run_id, "control": action, "status": run.get("status"),
                       "state": live_state(run), "allowed_actions": allowed_actions(run)})


@bp.post("/api/training-runs/<run_id>/<any(pause, resume, stop):action>")
def control(run_id: str, action: str) -> Response | tuple[Response, int]:
    return control_reply(run_id, action)


@bp.get("/api/training-runs/<run_id>/state")
def state(run_id: str) -> Response:
    if not is_run_id(run_id):
        raise ApiError(404, f"no training run has the id {run_id!r}", "run_id")
    store = get_store()
    try:
        cursor = stream_start(store, run_id)  # first: what lands meanwhile is streamed
        run = public_run(store.get_run(run_id))
        data = RunData(store, run)
        body = run_state(data, store.latest_events(run_id, ["account"], STATE_EVENTS),
                         store.latest_events(run_id, ["trade"], STATE_TRADES),
                         store.latest_events(run_id, ["decision"], 1))
    except RunNotFound:
        raise ApiError(404, f"no training run has the id {run_id!r}", "run_id") from None
    except RunStoreError as exc:
        raise ApiError(503, f"run store unavailable: {exc}") from exc
    body["cursor"] = cursor.text()
    body["events_url"] = url_for("live_stream.events", run_id=run_id)
    return json_reply(body)


def run_state(data: RunData, accounts: list[dict], trades: list[dict],
              decisions: list[dict]) -> dict[str, Any]:
    """The state reply from a run's stored figures and its newest events."""
    run, stats = data.run, data.stats
    agents: dict[str, dict] = {}
    for event in accounts:  # newest first: the first of each agent is its latest
        agents.setdefault(str(event["payload"].get("agent")), event["payload"])
    return {
        "run_id": run["run_id"], "name": run["name"], "model_type": run["model_type"],
        "status": run["status"], "state": live_state(run), "error": run["error"],
        "control": run.get("control"), "allowed_actions": allowed_actions(run),
        "created_at": run["created_at"], "started_at": run["started_at"],
        "ended_at": run["ended_at"], "heartbeat_at": run["heartbeat_at"],
        "training": {item["key"]: item["value"] for item in data.statistics()},
        "metrics": {key: point["value"] for key, point in data.latest.items()},
        "episodes": _count(stats.get("episode/reward")),
        "agents": dict(sorted(agents.items())),
        "decision": decisions[0]["payload"] if decisions else None,
        "recent_trades": [event["payload"] for event in trades],
    }


def _count(stats: dict | None) -> int:
    return int(stats["points"]) if stats else 0


@bp.post("/api/training-runs")
def start() -> tuple[Response, int]:
    request.max_content_length = MAX_START_BYTES  # before the body is first read
    try:
        body = read_json_body()
    except RequestEntityTooLarge:
        raise ApiError(413, f"the request body is larger than the {MAX_START_BYTES:,}-byte "
                            "limit") from None
    training = _training_of(body)
    try:
        config = precheck(training)
        run_id = jobs().start(training, config)
    except UsageError as exc:
        field, message = next(iter(exc.errors.items()))
        return error_reply(422, message, field and _config_field(field),
                           errors={_config_field(k or "config"): v
                                   for k, v in exc.errors.items()})
    except Busy as exc:
        return error_reply(409, str(exc), exc.field)
    urls = {"url": url_for("history.detail", run_id=run_id),
            "state_url": url_for("run_api.state", run_id=run_id),
            "events_url": url_for("live_stream.events", run_id=run_id)}
    response = json_reply({"run_id": run_id, "status": "starting", **urls}, 202)
    response.headers["Location"] = urls["url"]
    return response, 202


def _config_field(field: str) -> str:
    """A request error's field as this body names it (config keys under ``config``)."""
    top = ("model_type", "data", "model_name", "mode", "csv", "csv_path", "config")
    return field if field in top else f"config.{field}"


def _training_of(body: dict[str, Any]) -> TrainingRequest:
    """The TrainingRequest of a start body; ApiError naming the first bad field."""
    unknown = sorted(set(body) - {*START_FIELDS, *LABEL_FIELDS})
    if unknown:
        raise ApiError(422, f"unknown field(s) {', '.join(unknown)}; a start body has "
                            f"{', '.join(START_FIELDS)} and the run's "
                            f"{', '.join(LABEL_FIELDS)}", unknown[0])
    try:  # the run's labels, by the one rule (422 naming the field)
        labels = check_labels({key: body[key] for key in LABEL_FIELDS if key in body})
    except InputError as exc:
        raise ApiError.of(exc) from None
    model_type = body.get("model_type", DEFAULT_MODEL_TYPE)
    if model_type not in form_types():
        raise ApiError(422, f"model_type must be one of {list(form_types())}", "model_type")
    mode = body.get("mode", "full")
    if mode not in MODES:
        raise ApiError(422, f"mode must be one of {list(MODES)}", "mode")
    name = body.get("model_name")
    if name is not None and not isinstance(name, str):
        raise ApiError(422, "model_name must be a string", "model_name")
    config = body.get("config", {})
    if not isinstance(config, dict):
        raise ApiError(422, "config must be an object of settings, as in a config file",
                       "config")
    data = body.get("data")
    if not isinstance(data, str) or not data:
        raise ApiError(422, "data must name a listed data file (see the Train page), "
                            "e.g. \"sample.csv\"", "data")
    try:
        csv_path = datafiles.resolve_csv(data)
    except DataError as exc:
        raise ApiError(422, str(exc), "data") from None
    training = TrainingRequest(csv_path=csv_path, model_type=model_type, model_name=name,
                               mode=mode, overrides=config, models_dir=datafiles.models_dir(),
                               database_url=current_app.config["DATABASE_URL"],
                               experiment=labels.get("experiment", ""),
                               user_tags=tuple(labels.get("tags", ())),
                               description=labels.get("description", ""))
    return training if name else replace(training, model_name=default_model_name(training))


# ------------------------------------------------------------------ curation


@bp.errorhandler(run_curation.RunIsLive)
def _run_is_live(exc: run_curation.RunIsLive) -> tuple[Response, int]:
    return error_reply(409, str(exc), exc.field, reason=exc.reason, status=exc.run_status)


@bp.errorhandler(StoreUnavailable)
def _store_down(exc: StoreUnavailable) -> tuple[Response, int]:
    return error_reply(503, f"run store unavailable: {exc}")


def _known_id(run_id: str) -> str:
    """The id if it can name a run (the store only makes UUIDs), else 404."""
    if not is_run_id(run_id):
        raise run_curation.not_found(run_id)
    return run_id


def _body(limit: int) -> dict[str, Any]:
    """The request's JSON object, at most ``limit`` bytes (413 JSON beyond)."""
    try:
        return read_json_body(limit)
    except RequestEntityTooLarge:
        raise ApiError(413, f"the request body is larger than the {limit:,}-byte "
                            "limit") from None


@bp.patch("/api/training-runs/<run_id>")
def edit(run_id: str) -> Response:
    """Set a run's labels: any of description, experiment, notes, tags; the run."""
    _known_id(run_id)
    fields = run_curation.checked_edit(_body(MAX_EDIT_BYTES))
    return json_reply(public_run(run_curation.edit(get_store(), run_id, fields)))


@bp.post("/api/training-runs/<run_id>/<any(archive, restore):move>")
def archive(run_id: str, move: str) -> Response:
    _known_id(run_id)
    return json_reply(public_run(run_curation.archive(get_store(), run_id,
                                                      move == "archive")))


@bp.delete("/api/training-runs/<run_id>")
def delete(run_id: str) -> Response:
    """Delete a finished run; its model only with ``delete_model``."""
    _known_id(run_id)
    removed = run_curation.delete(get_store(), run_id, with_model=_delete_model_flag())
    return json_reply(removed)


def _delete_model_flag() -> bool:
    """``delete_model`` from the query (``1``/``0``, ``true``/``false``) or a JSON body
    (a boolean); false when absent. 422 for anything else or another body field."""
    raw = request.args.get("delete_model")
    if raw is not None:
        if raw.strip().lower() not in _FLAGS:
            raise ApiError(422, f"delete_model must be 1 or 0; got {raw!r}", "delete_model")
        return _FLAGS[raw.strip().lower()]
    request.max_content_length = MAX_DELETE_BYTES  # before the body is first read
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise ApiError(413, f"the request body is larger than the {MAX_DELETE_BYTES:,}-byte "
                            "limit") from None
    if not raw:
        return False
    body = read_json_body() if request.is_json else parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object, e.g. {\"delete_model\": true}")
    unknown = sorted(set(body) - {"delete_model"})
    if unknown:
        raise ApiError(422, f"unknown field(s) {', '.join(unknown)}; a delete body has only "
                            "delete_model", unknown[0])
    flag = body.get("delete_model", False)
    if not isinstance(flag, bool):
        raise ApiError(422, f"delete_model must be true or false; got {flag!r}", "delete_model")
    return flag


@bp.get("/api/training-runs/<run_id>/metrics.<any(csv, json):kind>")
def download(run_id: str, kind: str) -> Response:
    """Every metric point of the run, streamed as it is read (long format: one row per
    point, ``key,step,value,wall_time``; JSON ``{"series": {key: [points]}}``)."""
    _known_id(run_id)
    store = get_store()
    try:
        run = store.get_run(run_id)
        series = metric_export.run_series(store, run_id)
    except RunNotFound:
        raise run_curation.not_found(run_id) from None
    name = f"run-{run_id[:8]}-{_file_safe(run['name'])}-metrics.{kind}"
    if kind == "csv":
        body, mimetype = metric_export.csv_chunks(store, series), "text/csv"
    else:
        header = {"run_id": run_id, "name": run["name"], "model_type": run["model_type"],
                  "experiment": run["experiment"], "tags": run["tags"],
                  "points": sum(points for _, _, points in series)}
        body, mimetype = metric_export.json_chunks(store, series, header), "application/json"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _file_safe(text: str) -> str:
    """A run name as part of a download's file name (letters, digits, ``._-``)."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_"
                   for c in text)[:60] or "run"
