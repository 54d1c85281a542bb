"""Train page: a form per model type; a valid submission starts the CLI's training in a
child process (web/training_jobs.py) and opens the run's page.

Validation is the CLI's own (``run_training.prepare``: config, name, data contract and
the trainer's data checks), run in-process before anything starts, so a form error and
a shell error are the same message; it is shown beside the field it names.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from NetworkConfigs import DEFAULT_MODEL_TYPE, get_model_type, type_label
from NetworkConfigs.artifacts import ArtifactError, validate_name
from Utilities import run_training
from Utilities.data_utils import DataError
from Utilities.run_store import RunStoreError, StoreUnavailable
from web import datafiles
from web.history import is_run_id
from web.json_io import ApiError, error_reply, read_json_body
from web.store import get_store
from web.training_form import changed_config, field_of_message, fields_of, form_types
from web.training_jobs import EXTENSION, Busy, Launch, TrainingJobs

log = logging.getLogger(__name__)
bp = Blueprint("train", __name__)
CONTROL_ACTIONS = ("pause", "resume", "stop")
MAX_CONTROL_BYTES = 4096  # {"action": "resume"} is 20 bytes


def jobs() -> TrainingJobs:
    """The app's launcher (one per app, created on first use)."""
    if current_app.extensions.get(EXTENSION) is None:
        current_app.extensions[EXTENSION] = TrainingJobs(Path(current_app.instance_path))
    return current_app.extensions[EXTENSION]


@bp.get("/train")
def index() -> str:
    chosen = request.args.get("model", DEFAULT_MODEL_TYPE)
    if chosen not in form_types():
        chosen = DEFAULT_MODEL_TYPE
    return _render(chosen, {}, {})


@bp.post("/train")
def start() -> Any:
    form = request.form.to_dict()
    type_name = form.get("model_type", "")
    if type_name not in form_types():
        return _render(DEFAULT_MODEL_TYPE, form, {"model_type": f"unknown model type "
                                                                f"{type_name!r}"}), 422
    errors: dict[str, str] = {}
    launch = _launch_from(type_name, form, errors)
    if launch is None:
        return _render(type_name, form, errors), 422
    try:
        run_id = jobs().start(launch)
    except Busy as exc:
        _discard_upload(launch.csv_path)
        return _render(type_name, form, {exc.field: str(exc)}), 409
    return redirect(url_for("history.detail", run_id=run_id)
                    if "history.detail" in current_app.view_functions else url_for("train.index"))


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> tuple[str, int]:
    """An upload over the limit: the form again, saying so beside the file field."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
    size = f"{limit / 2**20:,.0f} MiB" if limit >= 2**20 else f"{limit / 1024:,.0f} KiB"
    message = f"the upload is larger than the {size} limit"
    chosen = request.args.get("model", DEFAULT_MODEL_TYPE)
    return _render(chosen if chosen in form_types() else DEFAULT_MODEL_TYPE, {},
                   {"csv": message}), 413


@bp.post("/runs/<run_id>/control")
def control(run_id: str) -> Any:
    """Pause, resume or stop a running run (the trainer obeys between iterations).
    The action comes as JSON (``{"action": "stop"}``, read by the one body parser) or
    as a form field; every reply is JSON."""
    request.max_content_length = MAX_CONTROL_BYTES  # before the body is first read
    try:
        body = read_json_body() if request.is_json else request.form
    except ApiError as exc:
        return error_reply(exc.status, str(exc), exc.field)
    except RequestEntityTooLarge:  # not the Train form's 413 page: this route is JSON
        return error_reply(413, f"the request body is larger than the {MAX_CONTROL_BYTES:,}-"
                                "byte limit")
    action = body.get("action")
    if not isinstance(action, str) or action not in CONTROL_ACTIONS:
        return error_reply(422, f"action must be one of {list(CONTROL_ACTIONS)}", "action")
    if not is_run_id(run_id):  # the store only makes UUIDs: nothing else can be found
        return error_reply(404, f"run {run_id!r} not found", "run_id")
    try:
        run = get_store().request_control(run_id, action)
    except KeyError:
        return error_reply(404, f"run {run_id!r} not found", "run_id")
    except StoreUnavailable as exc:
        return error_reply(503, str(exc))
    except RunStoreError as exc:
        return error_reply(409, str(exc))
    return jsonify(run_id=run_id, control=action, status=run.get("status"))


def _launch_from(type_name: str, form: dict[str, str], errors: dict[str, str]) -> Launch | None:
    """The launch a valid form describes; otherwise ``errors`` says what is wrong."""
    config, field_errors = changed_config(type_name, form)
    errors.update(field_errors)
    name = form.get("model_name", "").strip()
    csv_path = _csv_of(form, errors)
    mode = form.get("mode", "smoke") if form.get("mode") in ("smoke", "full") else "smoke"
    try:
        validate_name(name)
    except ArtifactError as exc:
        errors["model_name"] = str(exc)
    if errors:
        _discard_upload(csv_path)
        return None
    launch = Launch(type_name, name, csv_path, mode, config,
                    datafiles.models_dir(), current_app.config["DATABASE_URL"])
    message = _cli_check(launch)
    if message:
        errors[_field_for(type_name, message)] = message
        _discard_upload(csv_path)
        return None
    return launch


def _csv_of(form: dict[str, str], errors: dict[str, str]) -> Path | None:
    upload = request.files.get("csv_upload")
    try:
        if upload is not None and upload.filename:
            return datafiles.save_upload(upload.filename, upload.stream).path
        return datafiles.resolve_csv(form.get("csv", ""))
    except DataError as exc:
        errors["csv"] = str(exc)
        return None


def _discard_upload(path: Path | None) -> None:
    """A refused form keeps nothing: an upload is only kept for a run that starts."""
    if path is not None and datafiles.is_upload(path):
        path.unlink(missing_ok=True)


def _cli_check(launch: Launch) -> str | None:
    """The CLI's own validation of exactly what the child will be given."""
    args = run_training.parse_args([
        "--csv_path", str(launch.csv_path), "--model", launch.model_type,
        "--model_name", launch.model_name, "--mode", launch.mode,
        "--models-dir", str(launch.models_dir), "--training_params",
        json.dumps(launch.config)])
    try:
        job = run_training.prepare(args, store=None)
    except run_training.UsageError as exc:
        return str(exc)
    target = launch.models_dir / f"{get_model_type(launch.model_type).prefix}_{job['name']}"
    if target.exists():
        return (f"model_name: a {type_label(launch.model_type)} model named "
                f"{launch.model_name!r} already exists; choose another name")
    return None


def _field_for(type_name: str, message: str) -> str:
    """The input a CLI message is about: the name, a parameter it names, else the data."""
    if message.startswith("model_name") or "model name" in message:
        return "model_name"
    return field_of_message(type_name, message) or (
        "csv" if "csv" in message.lower() or "rows" in message else "form")


def _sections(type_name: str) -> list[tuple[str, list]]:
    """Fields grouped by config section, in the type's own order (model first)."""
    grouped: dict[str, list] = {}
    for field in fields_of(type_name):
        grouped.setdefault(field.section, []).append(field)
    return list(grouped.items())


def _render(type_name: str, values: dict[str, str], errors: dict[str, str]) -> str:
    return render_template(
        "train/index.html", type_name=type_name,
        types=[(name, type_label(name)) for name in form_types()],
        sections=_sections(type_name), values=values, errors=errors,
        files=datafiles.list_csv_files())
