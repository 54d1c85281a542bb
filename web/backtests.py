"""Backtest page: a model and a CSV in, statistics, charts and exports out. Backtests
run as background jobs (:mod:`web.backtest_jobs`); a job's id is its result's id.

Routes
  ``GET  /backtest``                    the form; query arguments prefill it
                                        (``?model=<dir_name>&csv=sample.csv&start=…``)
  ``POST /backtest``                    validate, queue, 303 to the job's page; a bad
                                        field is a 422 re-render with the error beside
                                        it (an upload over MAX_CONTENT_LENGTH: the app's
                                        413 page; 503 queue full)
  ``GET  /backtest/<id>``               queued or running: progress (the page polls the
                                        status below); done: statistics beside Buy & Hold
                                        and the median random policy (coloured against
                                        them, with a legend; an in-sample period said), the
                                        model's percentile among the random policies with
                                        their histogram, equity + drawdown, price with
                                        trade markers; failed: the form again, the
                                        error beside its field; unknown: the app's 404 page
  ``GET  /backtest/<id>/<file>``        trades.csv, equity.csv, decisions.csv,
                                        statistics.json, as attachments
  ``GET|POST /backtest/uploads/<name>/remove``
                                        an upload (listed on the form page by the name it
                                        was uploaded under): GET asks, POST with
                                        ``confirm=<name>`` removes it; 409 while a queued
                                        or running backtest or training reads it, 404 for
                                        a name that is no kept upload
  ``POST /api/backtest``                the same as JSON: 202 ``{"id", "status":
                                        "queued", "status_url", "url"}``; errors
                                        ``{"error", "field"}`` with 400 (not an object,
                                        unknown field, too deep), 404 (unknown model),
                                        413 (body over 64 KiB), 422 (bad value), 503 (queue
                                        full, with Retry-After). Body: ``{"model":
                                        <folder>, "csv": <listed file name>, "start"?,
                                        "end"?, "commission"?, "slippage"?,
                                        "initial_balance"?, "fill"?}`` (uploads: the form)
  ``GET  /api/backtest/<id>``           ``{"id", "status", "progress", ...}``: queued
                                        (``ahead``), running (``progress`` 0-1,
                                        ``stage``), done (``result``: statistics, period,
                                        baselines, ``random`` (the random policies: kind,
                                        count, seed, per figure the model's value,
                                        ``percentile``, ``median``, ``p5``, ``p95``; a
                                        ``histogram`` of returns), ``in_sample``, file
                                        URLs), failed (``error``,
                                        ``field``); 404 for an unknown id

Where results live and how they are written: :mod:`web.backtest_results`. What a
request may ask for: :mod:`web.backtest_request`.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from Utilities.data_utils import DataError
from Utilities.input_errors import InputError
from Utilities.number_format import figure
from Utilities.run_store import RunStoreError
from Utilities.serialization import to_plain
from web.backtest_jobs import QueueFull, jobs
from web.backtest_request import (
    COSTS,
    FIELDS,
    FieldErrors,
    blank,
    find_model,
    model_choices,
    prepare,
)
from web.backtest_results import (
    FILES,
    MAX_TRADE_ROWS,
    VERDICTS,
    backtests_dir,
    headline,
    random_rows,
    recent_results,
    references,
    saved,
    statistics_rows,
)
from web.datafiles import (
    StagedUpload,
    UploadInUse,
    find_upload,
    list_csv_files,
    remove_upload,
    shown_name,
    stage_upload,
    upload_users,
    uploads,
)
from web.json_io import ApiError, error_reply, read_json_body

bp = Blueprint("backtests", __name__)

FILL_LABELS = {"close": "this bar's close", "next_open": "next bar's open"}
MAX_JSON_BYTES = 64 * 1024  # a backtest request is a few hundred bytes
POLL_MS = 700               # how often a job's page asks for its status


# --------------------------------------------------------------------------- presenting


def _form_values(source: dict[str, Any], models: list[dict[str, Any]],
                 files: list[Any]) -> dict[str, str]:
    """What the form shows: given values, else the chosen model's defaults."""
    values = {k: "" if blank(source.get(k)) else str(source.get(k)).strip() for k in FIELDS}
    readable = [m for m in models if not m["error"]]
    chosen = next((m for m in readable if m["dir_name"] == values["model"]), None)
    if not values["model"] and readable:
        chosen = readable[0]
        values["model"] = chosen["dir_name"]
    if chosen:
        for field in COSTS:
            if not values[field]:
                values[field] = figure(chosen["defaults"].get(field), "input")
        if not values["csv"] and chosen["csv"]:
            values["csv"] = chosen["csv"]
    if not values["csv"] and files:
        values["csv"] = files[0].name
    values["fill"] = values["fill"] or "close"
    return values


def render_form(source: dict[str, Any], errors: dict[str, str] | None = None,
                status: int = 200, failed: str | None = None) -> tuple[str, int]:
    """The form with ``source`` values and ``errors`` beside their fields; ``failed``:
    the id of the job whose errors these are."""
    models = model_choices()
    files = list_csv_files()
    values = _form_values(source, models, files)
    errors = dict(errors or {})
    if values["model"] and not errors.get("model") and request.method == "GET":
        try:  # a link to a model that is gone or broken says so
            find_model(values["model"], models)
        except InputError as exc:
            errors["model"] = str(exc)
    kept = uploads()
    return render_template("backtests/index.html", models=models, files=files,
                           values=values, errors=errors, fill_labels=FILL_LABELS,
                           recent=recent_results(), failed=failed, active=jobs().active(),
                           readable=[m for m in models if not m["error"]], uploads=kept,
                           users=_users(kept), verdicts=VERDICTS, shown=shown_name,
                           removed=request.args.get("removed", "")), status


def _users(files: list[Any]) -> dict[str, str]:
    """What reads each upload now; when the run store cannot say, every upload is
    marked busy (a remove would be refused anyway)."""
    try:
        return upload_users(files)
    except RunStoreError:
        return {f.name: "a training (the run store cannot be read)" for f in files}


# --------------------------------------------------------------------------- routes


@bp.get("/backtest")
def index() -> tuple[str, int]:
    return render_form(request.args.to_dict())


@bp.post("/backtest")
def submit() -> Any:
    values = {k: request.form.get(k, "") for k in FIELDS}
    errors: dict[str, str] = {}
    status = 422
    staged: StagedUpload | None = None
    upload = request.files.get("upload")
    if upload is not None and upload.filename:
        try:
            staged = stage_upload(upload.filename, upload.stream)
        except DataError as exc:
            errors["upload"], status = str(exc), getattr(exc, "status", 422)
    with staged or nullcontext():  # a refused form keeps no upload
        try:
            backtest = prepare(values, upload=staged.staged if staged else None)
        except FieldErrors as exc:
            errors = {**exc.errors, **errors}
        if errors:
            return render_form(values, errors, status)
        try:
            with jobs().slot() as slot:
                if staged is not None:  # the whole form is valid: now the upload is kept
                    kept = staged.keep()
                    backtest = backtest.on_file(kept.name, kept.path)
                job_id = slot.submit(backtest)
        except QueueFull as exc:
            return render_form(values, {"form": str(exc)}, 503)
        except DataError as exc:  # no room for the upload
            return render_form(values, {"upload": str(exc)}, getattr(exc, "status", 422))
    return redirect(url_for("backtests.result", result_id=job_id), code=303)


class UploadTooLarge(HTTPException):
    """The page's 413, naming the limit; the app's error page renders it."""

    code = 413


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Any:
    """A body over the limit: JSON for the API; for the form, the app's styled 413 page
    naming the limit (a UploadTooLarge, so this handler does not catch it again)."""
    limit = MAX_JSON_BYTES if request.path.startswith("/api/") else \
        current_app.config.get("MAX_CONTENT_LENGTH") or 0
    size = f"{limit / 2**20:,.0f} MiB" if limit >= 2**20 else f"{limit / 1024:,.0f} KiB"
    if request.path.startswith("/api/"):
        return error_reply(413, f"the body is larger than the {size} limit")
    return current_app.handle_http_exception(UploadTooLarge(
        f"the upload is larger than the {size} limit (MAX_CONTENT_LENGTH); upload a "
        "smaller file or split it"))


@bp.route("/backtest/uploads/<path:name>/remove", methods=["GET", "POST"])
def remove(name: str) -> Any:
    """GET: what removing the upload ``name`` loses, and a button; POST (with
    ``confirm`` = the name; the app refuses other sites' writes): remove it, unless a
    queued or running job reads it (409, said on this page)."""
    found = find_upload(name)
    if found is None:
        abort(404, description=f"no upload {shown_name(name)!r}: it was removed already")
    error, status = None, 200
    if request.method == "POST":
        if request.form.get("confirm") != name:
            error, status = "The removal was not confirmed: press the button on this page.", 400
        else:
            try:
                remove_upload(name)
                return redirect(url_for("backtests.index", removed=found.label, _anchor="uploads"),
                                code=303)
            except UploadInUse as exc:
                error, status = str(exc), UploadInUse.status
    return render_template("backtests/remove.html", file=found, error=error,
                           user=_users([found]).get(found.name),
                           named_by=references(found.name)), status


@bp.get("/backtest/<result_id>")
def result(result_id: str) -> Any:
    folder = saved(backtests_dir(), result_id)
    if folder is None:
        job = jobs().status(result_id)
        if job is None:
            abort(404, description=f"no backtest {result_id[:80]!r}: it never ran here, or "
                                   "its result was removed")
        if job.status == "failed":
            return render_form(job.values or {}, job.errors, failed=job.id)
        if job.status != "done":
            return render_template("backtests/progress.html", job=job, poll_ms=POLL_MS,
                                   csv_label=shown_name(job.csv),
                                   status_url=url_for("backtests.api_status",
                                                      result_id=result_id))
        folder = saved(backtests_dir(), result_id)
        if folder is None:
            abort(404)
    view = json.loads((folder / "view.json").read_text())
    columns, rows = statistics_rows(view["summary"])
    rerun = {k: figure(v, "input") if isinstance(v, float) else v
             for k, v in view["request"].items() if v not in (None, "")}
    return render_template("backtests/result.html", view=view, columns=columns, rows=rows,
                           headline=headline(view["summary"]), verdicts=VERDICTS,
                           csv_label=view.get("csv_label") or shown_name(view["csv"]),
                           files=FILES, fill_labels=FILL_LABELS, rerun=rerun,
                           max_trade_rows=MAX_TRADE_ROWS, random=random_rows(view["summary"]))


@bp.get("/backtest/<result_id>/<name>")
def download(result_id: str, name: str) -> Any:
    folder = saved(backtests_dir(), result_id)
    if name not in FILES or folder is None:
        abort(404)
    mimetype = "text/csv" if name.endswith(".csv") else "application/json"
    return send_from_directory(folder, name, mimetype=mimetype, as_attachment=True,
                               download_name=f"{result_id}-{name}")


@bp.post("/api/backtest")
def api_run() -> Any:
    try:
        body = read_json_body(MAX_JSON_BYTES)
    except ApiError as exc:
        return error_reply(exc.status, str(exc), exc.field)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        return error_reply(400, f"unknown field(s) {unknown}; valid fields: {list(FIELDS)}",
                           unknown[0])
    try:
        backtest = prepare(body)
        with jobs().slot() as slot:
            job_id = slot.submit(backtest)
    except FieldErrors as exc:
        field, message = next(iter(exc.errors.items()))
        return error_reply(exc.status, message, None if field == "form" else field,
                           errors=exc.errors if len(exc.errors) > 1 else None)
    except QueueFull as exc:
        response, code = error_reply(503, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, code
    status_url = url_for("backtests.api_status", result_id=job_id, _external=True)
    response = current_app.response_class(json.dumps({
        "id": job_id, "status": "queued", "status_url": status_url,
        "url": url_for("backtests.result", result_id=job_id, _external=True)}),
        status=202, mimetype="application/json")
    response.headers["Location"] = status_url
    return response


@bp.get("/api/backtest/<result_id>")
def api_status(result_id: str) -> Any:
    job = jobs().status(result_id)
    if job is None:
        return error_reply(404, f"no backtest {result_id[:80]!r}; POST /api/backtest starts one")
    body = job.to_json()
    if job.status == "done":
        body["result"] = api_result(result_id)
    # Not jsonify: it sorts keys, and the statistics read best in their table order.
    return current_app.response_class(json.dumps(to_plain(body), allow_nan=False),
                                      mimetype="application/json")


def api_result(result_id: str) -> dict[str, Any]:
    """A saved result as the API reports it: statistics, period, baselines, file URLs."""
    folder = saved(backtests_dir(), result_id)
    if folder is None:
        abort(404)
    view = json.loads((folder / "view.json").read_text())
    summary = view["summary"]
    files = {name: url_for("backtests.download", result_id=result_id, name=name,
                           _external=True) for name in FILES}
    return {"id": result_id, "url": url_for("backtests.result", result_id=result_id,
                                            _external=True),
            "model": view["model"]["dir_name"], "type": view["model"]["type"],
            "csv": view["csv"], "csv_label": view.get("csv_label") or shown_name(view["csv"]),
            "in_sample": view.get("in_sample"), "period": summary["period"],
            "fill": summary["fill"],
            "params": summary["params"], "statistics": summary["statistics"],
            "baselines": summary["baselines"], "random": summary.get("random"),
            "open_trade": summary["open_trade"],
            "trades_count": view["trades_count"], "files": files}


