"""Curating runs, the one rule behind both the run page's forms (web/history.py) and the
JSON API (web/run_api.py): edit a run's labels, archive and restore it, delete it.

Deleting a run removes its record, tags, metric points and events (the store's
``delete_run``, which refuses a live run). Its saved model is removed only when asked,
and then by the model library's own rule (``NetworkConfigs.artifacts.model_folder`` to
name the folder, ``delete_model`` to remove it, as web/library.py's delete does), and only
when the run's model folder is a folder of this dashboard's library: a model saved
elsewhere is never touched from here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from NetworkConfigs.artifacts import ArtifactError, ModelNotFound, delete_model, model_folder
from Utilities.input_errors import InputError, raise_collected
from Utilities.run_labels import FIELDS, check_labels, parse_tags
from Utilities.run_store import (
    ACTIVE_STATUSES,
    EVENT_KINDS,
    RunBusy,
    RunNotFound,
    RunStore,
    StoreUnavailable,
)
from web import datafiles
from web.json_io import ApiError

log = logging.getLogger(__name__)


def not_found(run_id: str) -> ApiError:
    return ApiError(404, f"no training run has the id {run_id!r}", "run_id")


def checked_edit(body: dict[str, Any]) -> dict[str, Any]:
    """The label fields of a PATCH body, checked: 422 naming the first unknown or bad
    field (every problem in the message), 422 for an empty body."""
    if not body:
        raise ApiError(422, f"send at least one of {', '.join(FIELDS)}")
    try:
        return check_labels(body)
    except InputError as exc:
        raise ApiError.of(exc) from None


def form_edit(values: dict[str, str]) -> dict[str, Any]:
    """A labels form's fields (tags typed ``a, b``), checked: InputErrors by field."""
    errors: dict[str | None, str] = {}
    fields: dict[str, Any] = {}
    try:
        fields["tags"] = parse_tags(values.get("tags", ""))
    except InputError as exc:
        errors.update(exc.errors)
    try:
        fields.update(check_labels({k: v for k, v in values.items() if k != "tags"}))
    except InputError as exc:
        errors.update(exc.errors)
    raise_collected(errors)
    return fields


def edit(store: RunStore, run_id: str, fields: dict[str, Any]) -> dict:
    """Set the checked label fields of a run; the run."""
    try:
        return store.update_run(run_id, **fields)
    except RunNotFound:
        raise not_found(run_id) from None


class RunIsLive(ApiError):
    """409: archive or delete refused because the run is live (the store's RunBusy,
    ``reason`` "active"; the JSON body carries the reason and the run's status)."""

    reason = "active"

    def __init__(self, run: dict, verb: str) -> None:
        super().__init__(409, f"run {run['run_id'][:8]} is {run['status']}: stop it (or wait "
                              f"for it to end) before it can be {verb}", "run_id")
        self.run_status = run["status"]


def busy(run: dict, verb: str) -> RunIsLive:
    """409 for a move that a live run refuses (archive, delete)."""
    return RunIsLive(run, verb)


def archive(store: RunStore, run_id: str, archived: bool) -> dict:
    """Archive (hide from lists) or restore a run; the run. 409 for a live run."""
    try:
        return store.archive_run(run_id) if archived else store.restore_run(run_id)
    except RunNotFound:
        raise not_found(run_id) from None
    except RunBusy as exc:
        raise busy(exc.run or {"run_id": run_id, "status": "live"}, "archived") from None


@dataclass(frozen=True)
class SavedModel:
    """A run's saved model folder as the delete page shows it."""

    dir_name: str
    in_library: bool   # a folder of this dashboard's library (only then deletable here)
    exists: bool


def saved_model(run: dict) -> SavedModel | None:
    """The run's model folder, or None when it saved none."""
    if not run.get("model_dir"):
        return None
    recorded = Path(run["model_dir"])
    try:
        folder = model_folder(datafiles.models_dir(), recorded.name)  # the library's rule
        in_library = folder.resolve() == recorded.resolve()
    except (ArtifactError, OSError, ValueError):
        in_library = False
    exists = in_library and recorded.is_dir() and not recorded.is_symlink()
    return SavedModel(recorded.name, in_library, exists)


def delete_plan(store: RunStore, run: dict) -> dict[str, Any]:
    """What deleting the run removes: its metric points and events, counted, and its
    saved model (kept unless asked)."""
    stats = store.series_statistics([run["run_id"]]).get(run["run_id"], {})
    events, _ = store.event_count(run["run_id"], EVENT_KINDS)
    return {"points": sum(int(s["points"]) for s in stats.values()), "series": len(stats),
            "events": events, "model": saved_model(run),
            "live": run["status"] in ACTIVE_STATUSES}


def delete(store: RunStore, run_id: str, *, with_model: bool) -> dict[str, Any]:
    """Delete a finished run (its metrics and events); its saved model too when
    ``with_model``. What was removed. 404 unknown, 409 live (nothing removed), 409 when
    the model asked for is outside the library (nothing removed)."""
    try:
        run = store.get_run(run_id)
    except RunNotFound:
        raise not_found(run_id) from None
    plan = delete_plan(store, run)
    model: SavedModel | None = plan["model"]
    if with_model and model is not None and not model.in_library:
        raise ApiError(409, f"the model of run {run_id[:8]} ({model.dir_name}) is not in this "
                            "dashboard's model library; delete it by hand, or delete the run "
                            "without it", "delete_model")
    try:
        store.delete_run(run_id)  # refuses a live run: then nothing is removed
    except RunNotFound:
        raise not_found(run_id) from None
    except RunBusy as exc:
        raise busy(exc.run or run, "deleted") from None
    removed = _remove_model(model) if with_model and model is not None else None
    log.info("deleted run %s (%d points, %d events%s)", run_id, plan["points"],
             plan["events"], f", model {removed}" if removed else "")
    return {"deleted": run_id, "points": plan["points"], "events": plan["events"],
            "model_deleted": removed, "model_kept": None if model is None or removed
            else model.dir_name}


def _remove_model(model: SavedModel) -> str | None:
    """Remove the model through the library's rule; its folder name, or None when it was
    already gone. An error after the run is gone says so (the model can still be deleted
    from the library)."""
    try:
        delete_model(datafiles.models_dir(), model.dir_name)
    except ModelNotFound:
        return None
    except (ArtifactError, OSError) as exc:
        log.error("run deleted, but not its model %s: %s", model.dir_name, exc)
        raise ApiError(500, f"the run was deleted, but not its model {model.dir_name}: "
                            f"{exc}; delete it from the model library", "delete_model") from exc
    return model.dir_name


def store_error(exc: StoreUnavailable) -> ApiError:
    return ApiError(503, f"run store unavailable: {exc}")
