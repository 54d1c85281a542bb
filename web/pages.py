"""Human-facing pages. The home page lists the model library and recent runs."""

from __future__ import annotations

import logging

from flask import Blueprint, render_template

from NetworkConfigs import type_label
from NetworkConfigs.artifacts import list_models
from Utilities.run_store import RunStoreError
from web import datafiles
from web.store import get_store

log = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)

RECENT_RUNS = 20


@bp.get("/")
def home() -> str:
    """Models in the library and the latest runs, each with a clear empty state."""
    models = list_models(datafiles.models_dir())
    for model in models:
        model["label"] = type_label(model["type"])
    runs, total_runs, store_error = [], 0, None
    try:
        runs, total_runs = get_store().list_runs(limit=RECENT_RUNS)
    except RunStoreError as exc:
        log.error("run store unavailable: %s", exc)
        store_error = str(exc)
    return render_template("pages/home.html", models=models, runs=runs,
                           total_runs=total_runs, store_error=store_error)
