"""Training history: run list, run pages and the seed's JSON API.

Pages
  ``GET /runs``                        runs, filtered by agent and status, paginated
  ``GET /runs/<run_id>``               one run: the live monitor (KPI and agent cards, the
                                       training plots, trades, decisions), information,
                                       statistics, config, checkpoints
  ``GET /runs/<run_id>/live.json``     that page's first paint in one snapshot; it then
                                       follows the run's event stream (web.live_stream)

JSON API (field names as in ../shared/seeds/training_history.md; ``agent_id`` is the
run's name, ``algorithm`` its model type's label)
  ``GET /api/training-runs?agent_id=&status=&experiment=&tag=&archived=&limit=&offset=&episodes=``
        a list of runs, newest first (archived runs only with ``archived=1``, or
        ``all``, beside the others); the total number of matches is in the
        ``X-Total-Count`` header. Each run's ``metrics`` holds its LAST ``episodes``
        (default 100) episodes and their rolling win rate, plus ``episode_count``:
        a run of 100,000 episodes must not turn a list into megabytes.
  ``GET /api/training-runs/<run_id>?episodes=``  one run with config, its LAST
        ``episodes`` (default 1,000) episodes and their rolling win rate with
        ``episode_count``, its last 1,000 checkpoint_paths with ``checkpoint_count``,
        metadata and statistics (read in time independent of the run's length)
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
from typing import Any

from flask import (
    Blueprint,
    Response,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from Utilities.input_errors import InputError
from Utilities.number_format import figure
from Utilities.run_labels import MAX_DESCRIPTION, MAX_EXPERIMENT, MAX_NOTES, MAX_TAGS
from Utilities.run_store import (
    ACTIVE_STATUSES,
    MAX_PAGE_SIZE,
    MIN_POINTS,
    RUN_STATUSES,
    RunNotFound,
    RunStoreError,
    StoreUnavailable,
)
from Utilities.safe_paths import shown
from web import live_page, run_curation, run_list
from web import query_params as params
from web.formatting import basename, duration, parse_time, when
from web.json_io import ApiError, error_reply, hide_paths, path_roots
from web.query_params import DEFAULT_PER_PAGE, PER_PAGE_CHOICES, is_run_id
from web.run_progress import progress, resumable
from web.run_series import LiveCursor, live_feed, series
from web.run_stats import PAGE_CHECKPOINTS, PAGE_EVENTS, ROLLING_WINDOW, RunData
from web.store import get_store

log = logging.getLogger(__name__)
bp = Blueprint("history", __name__)

__all__ = ["bp", "is_run_id", "public_run"]

LIST_EPISODES = 100           # episodes per run in the list API, unless asked otherwise
MAX_LIST_EPISODES = 100_000
RUN_EPISODES = 1000           # episodes of one run in the run API, unless asked otherwise
RUN_CHECKPOINTS = 1000        # checkpoints of one run in the run API (the newest)
DEFAULT_LIMIT = 50
DEFAULT_POINTS = 1000         # points per chart series
MAX_POINTS = 20_000
MAX_SMOOTH = 10_000
DEFAULT_SMOOTH = 20
MAX_COMPARE = 20              # runs the compare view takes at once (its own limit)


@bp.url_value_preprocessor
def _known_run_ids(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Every run route: an id that cannot be a run's is not found, whatever the engine.
    Reads only: URL preprocessors run before the app's request hooks, and a write from
    another site must meet the CSRF refusal (403) first; writes call :func:`_run_id`."""
    if request.method in ("GET", "HEAD") and values and "run_id" in values:
        _run_id(values["run_id"])


def _run_id(run_id: str) -> str:
    """``run_id`` if it can name a run; RunNotFound (the page's 404) otherwise."""
    if not is_run_id(run_id):
        raise RunNotFound(f"run {run_id!r} not found")
    return run_id


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.endswith(".json")


@bp.errorhandler(ApiError)
def _bad_param(exc: ApiError) -> tuple[Response, int]:
    return error_reply(exc.status, str(exc), exc.field)


@bp.errorhandler(StoreUnavailable)
def _store_unavailable(exc: StoreUnavailable) -> tuple[Response, int] | tuple[str, int]:
    log.error("run store unavailable: %s", exc)
    if _wants_json():
        return error_reply(503, f"run store unavailable: {exc}")
    return render_template("history/problem.html", title="Run store unavailable",
                           message=str(exc)), 503


@bp.errorhandler(RunNotFound)
def _run_not_found(exc: RunNotFound) -> tuple[Response, int] | tuple[str, int]:
    run_id = (request.view_args or {}).get("run_id", "")
    if _wants_json():
        return error_reply(404, f"no training run has the id {run_id!r}", "run_id")
    return render_template("history/problem.html", title="Run not found", run_id=run_id,
                           message=f"No training run has the id {run_id}."), 404


# ------------------------------------------------------------------------- run JSON


def public_run(run: dict) -> dict:
    """A stored run as replies show it: its files relative to the models or data folder,
    and no absolute path in its texts (an error often starts with the file it is about)."""
    roots = path_roots()
    paths = {key: shown(run[key], roots) if run[key] else run[key]
             for key in ("data_file", "model_dir")}
    return {**hide_paths(run, roots), **paths}


def _run_json(run: dict) -> dict[str, Any]:
    """The seed's run fields from a stored run."""
    start, end = parse_time(run["started_at"]), parse_time(run["ended_at"])
    return {
        "id": run["run_id"], "run_id": run["run_id"], "agent_id": run["name"],
        "algorithm": run["algorithm"] or run["model_type"], "model_type": run["model_type"],
        "status": run["status"], "start_time": run["started_at"], "end_time": run["ended_at"],
        "duration_seconds": (end - start).total_seconds() if start and end else None,
    }


def _metadata(run: dict) -> dict[str, Any]:
    return {key: run[key] for key in ("error", "description", "tags", "experiment", "notes",
                                      "archived", "archived_at", "data_file", "model_dir",
                                      "created_at", "heartbeat_at", "control", "summary")}


def _labels(run: dict) -> dict[str, Any]:
    """How a person labelled the run (a list row shows these beside the seed's fields)."""
    return {key: run[key] for key in ("experiment", "tags", "description", "archived")}


def _display(run: dict, elapsed: str | None = None) -> dict[str, str]:
    """The run's times as the page shows them; a live run's duration is its time so far."""
    active = run["status"] in ACTIVE_STATUSES
    return {"start_time": when(run["started_at"]), "end_time": when(run["ended_at"]),
            "duration": (f"{elapsed} so far" if elapsed else "—") if active
            else duration(run["started_at"], run["ended_at"]),
            "heartbeat": when(run["heartbeat_at"])}


def _page_state(data: RunData) -> dict[str, Any]:
    """What both the run page and its live feed show beside the metrics."""
    run = data.run
    where = progress(data.store, run, data.latest)
    return {"progress": where, "display": _display(run, where["elapsed_text"]),
            "active": run["status"] in ACTIVE_STATUSES, "supervised": data.supervised,
            "resumable": resumable(run, data.checkpoint_events()),
            "summary_rows": [{"key": key, "text": figure(value)}
                             for key, value in sorted((run["summary"] or {}).items())],
            "model_dir_name": basename(run["model_dir"]) if run["model_dir"] else None}


# ----------------------------------------------------------------------------- API


@bp.get("/api/training-runs")
def api_list() -> Response:
    status, agent_id = params.status_param(), params.text_param("agent_id")
    model_type = params.text_param("model_type")
    experiment, tag = params.text_param("experiment"), params.text_param("tag")
    archived = params.archived_param()
    limit = params.int_param("limit", DEFAULT_LIMIT, 1, MAX_PAGE_SIZE)
    offset = params.int_param("offset", 0, 0, 2**62)
    episodes = params.int_param("episodes", LIST_EPISODES, 0, MAX_LIST_EPISODES)
    with get_store().reading() as reads:  # one snapshot, statements whatever the page size
        runs, total = reads.list_runs(name=agent_id, status=status, model_type=model_type,
                                      experiment=experiment, tag=tag, archived=archived,
                                      limit=limit, offset=offset)
        metrics = run_list.episode_metrics(reads, runs, episodes)
    body = [{**_run_json(run), **_labels(run), "error": hide_paths(run["error"]),
             "metrics": found} for run, found in zip(runs, metrics, strict=True)]
    response = jsonify(body)
    response.headers["X-Total-Count"] = str(total)
    return response


@bp.get("/api/training-runs/agents/list")
def api_agents() -> Response:
    return jsonify({"agent_ids": get_store().agent_names()})


@bp.get("/api/training-runs/<run_id>")
def api_run(run_id: str) -> Response:
    limit = params.int_param("episodes", RUN_EPISODES, 0, MAX_LIST_EPISODES)
    store = get_store()
    data = RunData(store, public_run(store.get_run(run_id)), checkpoint_limit=RUN_CHECKPOINTS)
    episodes, rolling = data.episodes(limit)
    return jsonify({
        **_run_json(data.run), "config": data.run["config"],
        "metrics": {"episodes": episodes, "rolling_win_rate": rolling,
                    "episode_count": data.episode_count()},
        "checkpoint_paths": data.checkpoints(), "checkpoint_count": data.checkpoint_count(),
        "metadata": _metadata(data.run),
        "statistics": {s["key"]: s["value"] for s in data.statistics()},
    })


@bp.get("/api/training-runs/<run_id>/metrics")
def api_metrics(run_id: str) -> Response:
    keys = params.keys_param()
    max_points = params.int_param("max_points", DEFAULT_POINTS, MIN_POINTS, MAX_POINTS)
    smooth = params.int_param("smooth", None, 1, MAX_SMOOTH)
    store = get_store()
    data = RunData(store, store.get_run(run_id))
    wanted = data.keys if keys is None else keys
    return jsonify({"run_id": run_id, "status": data.run["status"], "keys": data.keys,
                    "max_points": max_points, "smooth": smooth,
                    **series(data, wanted, max_points, smooth)})


# --------------------------------------------------------------------------- pages


@bp.get("/runs")
def index() -> tuple[str, int]:
    """Every recorded run, filterable by agent and status, one page at a time."""
    args, problem = params.page_args()
    context: dict[str, Any] = {"args": args, "problem": problem, "statuses": RUN_STATUSES,
                               "per_page_choices": PER_PAGE_CHOICES,
                               "default_per_page": DEFAULT_PER_PAGE, "runs": [], "total": 0,
                               "agents": [], "experiments": [], "tags": [],
                               "store_error": None, "max_compare": MAX_COMPARE}
    archived = {None: False, "1": None, "all": None}[args["archived"]]  # the toggle: both
    try:
        with get_store().reading() as reads:  # one snapshot, statements whatever the page size
            context["agents"] = reads.agent_names()
            context["experiments"], context["tags"] = reads.experiment_names(), reads.tag_names()
            runs, total = reads.list_runs(name=args["agent_id"], status=args["status"],
                                          experiment=args["experiment"], tag=args["tag"],
                                          archived=archived, limit=args["per_page"],
                                          offset=(args["page"] - 1) * args["per_page"])
            rows = run_list.overviews(reads, runs)
        context["runs"] = [{**run, **row, "display": _display(run)}
                           for run, row in zip(runs, rows, strict=True)]
        context["total"] = total
    except RunStoreError as exc:
        log.error("run store unavailable: %s", exc)
        context["store_error"] = str(exc)
    context["pages"] = max(1, math.ceil(context["total"] / args["per_page"]))

    def page_url(page: int, **change: Any) -> str:
        values = {**args, "page": page, **change}
        if values["per_page"] == DEFAULT_PER_PAGE:
            values["per_page"] = None
        return url_for("history.index", **{k: v for k, v in values.items() if v})

    context["page_url"] = page_url
    status_code = 503 if context["store_error"] else 400 if problem else 200
    return render_template("history/index.html", **context), status_code


@bp.get("/runs/<run_id>")
def detail(run_id: str) -> str:
    """One run: where it stands, statistics, charts, configuration and checkpoints."""
    return _detail_page(run_id)


def _detail_page(run_id: str, edit_errors: dict[str, str] | None = None,
                 edit_values: dict[str, str] | None = None) -> str:
    """The run page; with ``edit_errors`` the labels form open, as submitted, each
    problem beside its field."""
    store = get_store()
    data = RunData(store, store.get_run(run_id))
    config = data.run["config"]
    run = data.run
    values = edit_values or {"experiment": run["experiment"], "tags": ", ".join(run["tags"]),
                             "description": run["description"], "notes": run["notes"]}
    return render_template(
        "history/detail.html", run=run, data_keys=data.keys, **_page_state(data),
        statistics=data.statistics(), checkpoints=data.checkpoints(), events=data.events(),
        checkpoint_count=data.checkpoint_count(),
        config_text=json.dumps(config, indent=2, sort_keys=True, default=str) if config else "",
        default_smooth=DEFAULT_SMOOTH, rolling_window=ROLLING_WINDOW,
        edit_errors=edit_errors or {}, edit_values=values,
        experiments=store.experiment_names(), limits=_LIMITS)


_LIMITS = {"experiment": MAX_EXPERIMENT, "description": MAX_DESCRIPTION, "notes": MAX_NOTES,
           "tags": MAX_TAGS}


# ------------------------------------------------------------------ curation pages


@bp.post("/runs/<run_id>/edit")
def edit(run_id: str) -> Any:
    """The run page's labels form: experiment, tags (comma-separated), description and
    notes; back to the page, or the page again with each problem beside its field."""
    values = {key: request.form.get(key, "") for key in ("experiment", "tags", "description",
                                                           "notes")}
    get_store().get_run(_run_id(run_id))  # an unknown run is the page's 404, first
    try:
        fields = run_curation.form_edit(values)
    except InputError as exc:
        errors = {str(field): message for field, message in exc.errors.items()}
        return _detail_page(run_id, errors, values), 422
    run = run_curation.edit(get_store(), run_id, fields)
    flash(f"Saved the labels of run {run['run_id'][:8]}.")
    return redirect(url_for("history.detail", run_id=run_id) + "#run-labels")


@bp.post("/runs/<run_id>/<any(archive, restore):move>")
def archive(run_id: str, move: str) -> Any:
    """Archive (hidden from the list unless asked for) or restore; back to the run."""
    get_store().get_run(_run_id(run_id))  # an unknown run is the page's 404
    try:
        run = run_curation.archive(get_store(), run_id, move == "archive")
    except run_curation.RunIsLive as exc:
        return _refused("Cannot archive this run", str(exc), run_id), 409
    flash(f"Archived run {run_id[:8]}: it is hidden from the history list unless "
          "“Show archived” is ticked." if run["archived"] else f"Restored run {run_id[:8]}.")
    return redirect(url_for("history.detail", run_id=run_id))


@bp.route("/runs/<run_id>/delete", methods=["GET", "POST"])
def delete(run_id: str) -> Any:
    """GET: what deleting the run removes, and the button (an opt-in box for its saved
    model); POST: delete it, back to the list."""
    _run_id(run_id)
    store = get_store()
    error, status = None, 200
    if request.method == "POST":
        if request.form.get("confirm") != run_id:
            error, status = "Deletion was not confirmed: press the button on this page.", 400
        else:
            try:
                done = run_curation.delete(store, run_id,
                                           with_model=request.form.get("delete_model") == "on")
            except ApiError as exc:
                error, status = str(exc), exc.status
            else:
                flash(_deleted_text(done))
                return redirect(url_for("history.index"))
    run = store.get_run(run_id)
    return render_template("history/delete.html", run=run,
                           plan=run_curation.delete_plan(store, run), error=error), status


def _deleted_text(done: dict[str, Any]) -> str:
    model = (f" and its model {done['model_deleted']}" if done["model_deleted"]
             else f"; its model {done['model_kept']} is kept" if done["model_kept"] else "")
    return (f"Deleted run {done['deleted'][:8]} ({done['points']:,} metric points, "
            f"{done['events']:,} events){model}.")


def _refused(title: str, message: str, run_id: str) -> str:
    return render_template("history/problem.html", title=title, message=message,
                           back_url=url_for("history.detail", run_id=run_id))


@bp.get("/runs/<run_id>/live.json")
def live(run_id: str) -> Response:
    """What the run page redraws: status, progress, statistics, the saved model's metrics,
    checkpoints, events and every metric series (reward and win also as averages); with
    ``after=<cursor>`` only what came after it (:func:`web.run_series.live_feed`).
    A snapshot also carries the run page's live monitor (:mod:`web.live_page`): the
    ``stream_cursor`` its event stream goes on from and the ``monitor`` figures; the page
    takes one snapshot and follows the stream, asking again only when a person changes a
    window."""
    max_points = params.int_param("max_points", DEFAULT_POINTS, MIN_POINTS, MAX_POINTS)
    smooth = params.int_param("smooth", DEFAULT_SMOOTH, 1, MAX_SMOOTH)
    win_window = params.int_param("win_window", live_page.WIN_WINDOW, 1,
                                  live_page.MAX_WIN_WINDOW)
    after = request.args.get("after")
    cursor = None if after is None else LiveCursor.parse(after)
    store = get_store()
    data = RunData(store, public_run(store.get_run(run_id)))
    # The stream's cursor before any figure (web.live_page): what is written meanwhile is
    # in both, and the page drops the repeats; never in neither.
    stream = live_page.stream_cursor(data) if cursor is None else None
    feed = live_feed(data, cursor, max_points, smooth)
    if feed["mode"] == "snapshot" and stream is not None:
        # The reward's average is the feed's (same window): not computed twice.
        known = {k: v for k, v in feed["smoothed"].items() if k == "episode/reward"}
        feed = {**feed, "stream_cursor": stream,
                "monitor": live_page.monitor(data, win_window, max_points, smooth, known)}
    state = _page_state(data)
    statistics = [{k: s[k] for k in ("key", "label", "text", "note")} for s in data.statistics()]
    return jsonify({
        "run": {**_run_json(data.run), "error": data.run["error"], **state,
                "control": data.run["control"],
                "summary": data.run["summary"]},
        "keys": data.keys, "smooth": smooth, "rolling_window": ROLLING_WINDOW,
        "statistics": statistics, "page_checkpoints": PAGE_CHECKPOINTS,
        "page_events": PAGE_EVENTS, **feed,
    })
