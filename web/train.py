"""Train page: a form per model type; a valid submission becomes one
:class:`~Utilities.training_request.TrainingRequest`, its run is recorded ("starting")
and the CLI's own training starts in a child process (web/training_jobs.py); the page
then opens the run.

The request thread checks what it can without parsing the data
(:func:`~Utilities.training_request.precheck`: the type, the name, every config value,
the file's header and row count) and shows every problem at once, each beside the
field its error names (``exc.field``). The data itself is read and checked once, by the
child. An upload is kept (hidden, for an hour) while its form is refused, so a person
fixes the form without uploading again.

Routes the run page links to: ``GET /train?from_run=<id>`` (the form filled in with
that run's type, data and config) and ``POST /runs/<id>/resume`` (continue the run from
its last checkpoint, as ``run_training.py --resume <id>`` does).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import RequestEntityTooLarge

from NetworkConfigs import DEFAULT_MODEL_TYPE, get_model_type, type_label
from Utilities import run_training
from Utilities.alert_config import RUN_CHOICES, run_choice
from Utilities.data_utils import DataError
from Utilities.input_errors import InputError
from Utilities.run_labels import MAX_DESCRIPTION, MAX_EXPERIMENT, MAX_TAGS
from Utilities.run_store import ACTIVE_STATUSES, RunNotFound, StoreUnavailable
from Utilities.training_request import TrainingRequest, UsageError, precheck
from web import datafiles, run_curation
from web.history import is_run_id
from web.json_io import ApiError, error_reply, read_json_body
from web.run_api import control_reply
from web.store import get_store
from web.training_form import (
    changed_config,
    common_fields,
    errors_by_input,
    fields_of,
    form_types,
    form_values,
    mode_of,
    preset_values,
)
from web.training_jobs import Busy, jobs

log = logging.getLogger(__name__)
bp = Blueprint("train", __name__)
MAX_CONTROL_BYTES = 4096  # {"action": "resume"} is 20 bytes
STAGED_CHOICE = "@upload"  # the data choice that means "the upload this form kept"
# A kept upload's token: the name stage_upload gave it (8 hex digits, the safe stem).
MAX_SHOWN_NAME = 120
LABEL_INPUTS = ("experiment", "tags", "description")
LABEL_LIMITS = {"experiment": MAX_EXPERIMENT, "tags": MAX_TAGS, "description": MAX_DESCRIPTION}


@dataclass
class DataChoice:
    """The data a form chose: a listed file, a new upload or the upload it kept."""

    path: Path | None = None
    staged: datafiles.StagedUpload | None = None
    shown: str = ""  # the person's own file name for an upload

    @property
    def token(self) -> str:
        return Path(self.staged.name).name if self.staged is not None else ""


@bp.get("/train")
def index() -> Any:
    if "from_run" in request.args:
        return _from_run(request.args["from_run"])
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
    choice = _data_of(form, errors)
    training, config = _request_of(type_name, form, choice, errors)
    if errors:
        return _render(type_name, form, errors, choice), 422
    try:
        if choice.staged is not None:  # accepted: the upload becomes a listed file
            kept = choice.staged.keep()
            form["csv"], choice = kept.name, DataChoice(kept.path)
            training = replace(training, csv_path=kept.path)
        run_id = jobs().start(training, config)
    except DataError as exc:  # no room left for the upload
        return _render(type_name, form, {"csv": str(exc)}, choice), getattr(exc, "status", 507)
    except Busy as exc:
        return _render(type_name, form, errors_by_input(type_name, exc), choice), 409
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
    as a form field; every reply is JSON (the API's own, web/run_api.py)."""
    request.max_content_length = MAX_CONTROL_BYTES  # before the body is first read
    try:
        body = read_json_body() if request.is_json else request.form
    except ApiError as exc:
        return error_reply(exc.status, str(exc), exc.field)
    except RequestEntityTooLarge:  # not the Train form's 413 page: this route is JSON
        return error_reply(413, f"the request body is larger than the {MAX_CONTROL_BYTES:,}-"
                                "byte limit")
    action = body.get("action")
    return control_reply(run_id, action if isinstance(action, str) else "")


@bp.post("/runs/<run_id>/resume")
def resume(run_id: str) -> Any:
    """Continue a run from its newest checkpoint in a new run (the run page's Resume
    button; ``run_training.py --resume <id>``): the new run's page, or 202 JSON with
    its id for a client that asks for JSON. 404 for an unknown run, 409 while it is
    still live or when it left no checkpoint."""
    wants_json = request.is_json or (request.accept_mimetypes.best == "application/json")
    try:
        new_id = jobs().start(_resume_request(run_id))
    except (ApiError, Busy) as exc:
        status = exc.status if isinstance(exc, ApiError) else 409
        if wants_json:
            return error_reply(status, str(exc), exc.field)
        return render_template("train/problem.html", title="Cannot resume this run",
                               message=str(exc), run_id=run_id if is_run_id(run_id) else None,
                               status=status), status
    url = url_for("history.detail", run_id=new_id)
    if wants_json:
        return jsonify(run_id=new_id, resumes=run_id, url=url), 202
    return redirect(url)


def _resume_request(run_id: str) -> TrainingRequest:
    """The request that resumes ``run_id``; ApiError saying why it cannot."""
    if not is_run_id(run_id):
        raise ApiError(404, f"no training run has the id {run_id!r}", "run_id")
    store = get_store()
    try:
        run = store.get_run(run_id)
    except RunNotFound:
        raise ApiError(404, f"no training run has the id {run_id!r}", "run_id") from None
    except StoreUnavailable as exc:
        raise ApiError(503, f"run store unavailable: {exc}") from None
    if run["status"] in ACTIVE_STATUSES:
        raise ApiError(409, f"run {run_id[:8]} is still {run['status']}; stop it (or wait for "
                            "it to end) before resuming it", "run_id")
    try:
        run_training.checkpoint_of_run(run_id, store)
    except UsageError:
        raise ApiError(409, f"run {run_id[:8]} left no checkpoint on disk to resume from "
                            "(it ended before its first checkpoint, or the checkpoint was "
                            "removed); train it again instead", "run_id") from None
    data = _listed(run["data_file"])
    if data is None:
        raise ApiError(409, f"the data file of run {run_id[:8]} "
                            f"({Path(run['data_file']).name}) is no longer in the data "
                            "folder; resuming needs that very file", "csv")
    return TrainingRequest(csv_path=data.path, model_type=run["model_type"],
                           model_name=run["name"], mode="full", resume=run_id,
                           models_dir=datafiles.models_dir(),
                           database_url=current_app.config["DATABASE_URL"],
                           # the continuation belongs where the run did
                           experiment=run.get("experiment", ""),
                           user_tags=tuple(_own_tags(run)),
                           description=run.get("description", ""))


def _from_run(run_id: str) -> Any:
    """The form filled in from a run: its type, data, preset and config, and a new name
    (the run's model folder keeps its own)."""
    try:
        if not is_run_id(run_id):
            raise RunNotFound(run_id)
        run = get_store().get_run(run_id)
    except RunNotFound:
        return render_template("train/problem.html", title="Run not found", run_id=None,
                               message=f"No training run has the id {run_id}.",
                               status=404), 404
    except StoreUnavailable as exc:
        return render_template("train/problem.html", title="Run store unavailable",
                               run_id=None, message=str(exc), status=503), 503
    type_name = run["model_type"]
    if type_name not in form_types():
        return render_template("train/problem.html", title="Cannot train this type here",
                               message=f"run {run_id[:8]} is of the model type "
                                       f"{type_name!r}, which this dashboard does not train.",
                               run_id=run_id, status=422), 422
    mode = "smoke" if "smoke" in run.get("tags", []) else "full"
    values = {**form_values(type_name, run.get("config") or {}), "mode": mode,
              "model_name": _new_name(type_name, run["name"]),
              # Same experiment and tags (a new try of it); the description is the new run's.
              "experiment": run.get("experiment", ""), "tags": ", ".join(_own_tags(run))}
    errors = {}
    data = _listed(run.get("data_file") or "")
    if data is not None:
        values["csv"] = data.name
    else:
        errors["csv"] = (f"the run's data file ({Path(run.get('data_file') or '?').name}) is no "
                         "longer in the data folder; choose a file or upload one")
    return _render(type_name, values, errors, from_run=run)


def _own_tags(run: dict) -> list[str]:
    """A run's tags but the preset's own ("smoke": the preset adds it again)."""
    return [tag for tag in run.get("tags", []) if tag != "smoke"]


def _new_name(type_name: str, name: str) -> str:
    """``name_2``, ``name_3``, …: the first with no model folder yet."""
    prefix, root = get_model_type(type_name).prefix, datafiles.models_dir()
    stem = re.sub(r"_\d+$", "", name)[:56]
    for number in range(2, 1000):
        candidate = f"{stem}_{number}"
        if not (root / f"{prefix}_{candidate}").exists():
            return candidate
    return f"{stem}_again"


def _listed(data_file: str) -> datafiles.DataFile | None:
    """The listed file a run's recorded path is (the pages read no other file)."""
    if not data_file:
        return None
    try:
        target = Path(data_file).resolve()
    except OSError:
        return None
    return next((item for item in datafiles.list_csv_files()
                 if item.path.resolve() == target), None)


def _request_of(type_name: str, form: dict[str, str], choice: DataChoice,
                errors: dict[str, str]) -> tuple[TrainingRequest, dict | None]:
    """The TrainingRequest a form makes and the config it will train with, with every
    problem found in one pass added to ``errors`` (unreadable inputs, the config, the
    name, the data's header and rows)."""
    mode, mode_error = mode_of(form)
    if mode_error:
        errors["mode"] = mode_error
    overrides, unreadable = changed_config(type_name, form, mode)
    errors.update(unreadable)
    labels = _labels_of(form, errors)
    training = TrainingRequest(
        csv_path=choice.path or datafiles.SAMPLE, model_type=type_name,
        model_name=form.get("model_name", "").strip(), mode=mode, overrides=overrides,
        models_dir=datafiles.models_dir(), database_url=current_app.config["DATABASE_URL"],
        alerts=_alerts_of(form, errors), **labels)
    try:
        config = precheck(training, data=choice.path is not None)
    except UsageError as exc:
        for name, message in errors_by_input(type_name, exc).items():
            errors.setdefault(name, message)  # a data-choice error says it better
        config = None
    return training, config


def _alerts_of(form: dict[str, str], errors: dict[str, str]) -> str | None:
    """The form's alert preset (Utilities.alert_config.RUN_CHOICES); a bad one named."""
    choice = form.get("alerts", "default")
    if choice not in RUN_CHOICES:
        errors["alerts"] = f"choose one of {', '.join(RUN_CHOICES)}"
        return None
    return run_choice(choice)


def _labels_of(form: dict[str, str], errors: dict[str, str]) -> dict[str, Any]:
    """The run's labels the form gives (experiment, tags typed ``a, b``, description), as
    TrainingRequest fields; each problem added to ``errors`` by its input."""
    try:
        labels = run_curation.form_edit({key: form.get(key, "") for key in LABEL_INPUTS})
    except InputError as exc:
        errors.update({str(field): message for field, message in exc.errors.items()})
        return {}
    return {"experiment": labels["experiment"], "user_tags": tuple(labels["tags"]),
            "description": labels["description"]}


def _experiment_names() -> list[str]:
    """Experiments already recorded (the form's suggestions); none while the store is
    down (the form still works: its submit says what is wrong)."""
    try:
        return get_store().experiment_names()
    except StoreUnavailable:
        return []


def _data_of(form: dict[str, str], errors: dict[str, str]) -> DataChoice:
    """The data the form chose; an error on ``csv`` when it cannot be used."""
    upload = request.files.get("csv_upload")
    try:
        if upload is not None and upload.filename:
            staged = datafiles.stage_upload(upload.filename, upload.stream)
            return DataChoice(staged.staged, staged, _shown_name(upload.filename))
        if form.get("csv") == STAGED_CHOICE:
            return _kept_upload(form, errors)
        return DataChoice(datafiles.resolve_csv(form.get("csv", "")))
    except DataError as exc:
        errors["csv"] = str(exc)
        return DataChoice()


def _kept_upload(form: dict[str, str], errors: dict[str, str]) -> DataChoice:
    """The upload a refused submission of this form kept (hidden, for an hour)."""
    token = form.get("staged_upload", "")
    shown = _shown_name(form.get("upload_name", "")) or "your upload"
    path = None
    if _is_staged_token(token):
        path = datafiles.uploads_dir() / f"{datafiles.STAGING_PREFIX}{token}"
    if path is None or not path.is_file():
        errors["csv"] = (f"{shown} is no longer kept (an upload waits an hour for its form); "
                         "upload it again")
        return DataChoice()
    os.utime(path)  # another hour from now: the person is still at it
    return DataChoice(path, datafiles.StagedUpload(f"{datafiles.UPLOADS}/{token}", path,
                                                   path.stat().st_size), shown)


def _is_staged_token(token: str) -> bool:
    """A name ``stage_upload`` could have made (hex prefix + a kept name): the same rule
    as the uploads' own, so a token can never name a path outside the uploads folder."""
    prefix, _, rest = token.partition("-")
    return (len(prefix) == 8 and all(c in "0123456789abcdef" for c in prefix)
            and bool(rest) and datafiles.kept_name(rest) == rest)


def _shown_name(filename: str) -> str:
    """The person's own file name (no folders), as the page shows it."""
    return Path(filename.replace("\\", "/")).name[:MAX_SHOWN_NAME]


def _render(type_name: str, values: dict[str, str], errors: dict[str, str],
            choice: DataChoice | None = None, *, from_run: dict | None = None) -> str:
    """The form: every input shows the submitted text, else what the chosen preset
    really uses; every error beside its input (the first is scrolled to by train.js)."""
    mode, _ = mode_of(values)
    shown = {**preset_values(type_name, mode), **values}
    common = common_fields(type_name)
    common_names = [field.name for field in common]
    sections: dict[str, list] = {}
    for field in fields_of(type_name):
        if field.name not in common_names:
            sections.setdefault(field.section, []).append(field)
    # Errors in page order, so the summary reads as the form does.
    order = ["form", "model_type", "csv", "model_name", "mode", *common_names, *LABEL_INPUTS,
             "alerts",
             *(field.name for items in sections.values() for field in items)]
    errors = dict(sorted(errors.items(), key=lambda item: order.index(item[0])
                         if item[0] in order else len(order)))
    return render_template(
        "train/index.html", type_name=type_name, type_label=type_label(type_name),
        types=[(name, type_label(name)) for name in form_types()], common=common,
        sections=list(sections.items()), values=shown, mode=mode, errors=errors,
        folded_errors=[name for name in errors if name.split(".")[0] in sections
                       and name not in common_names],
        files=datafiles.list_csv_files(), choice=choice if choice and choice.staged else None,
        staged_choice=STAGED_CHOICE, from_run=from_run, experiments=_experiment_names(),
        label_limits=LABEL_LIMITS, alert_choices=RUN_CHOICES)
