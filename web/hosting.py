"""API hosting: the hosted model, /predict in the main app, the playground.

What is hosted (:mod:`web.hosted`): the model chosen on the page, remembered across
restarts; before anyone has chosen, the newest model that loads
(:meth:`~web.hosted.Hosting.host_at_start`, which ``python Main.py`` calls at start: the
demo model after ``make run``).

Routes:

- ``GET /hosting``: the hosted model, the form that chooses it (``?model=<dir_name>``
  preselects one) and the playground. ``POST /hosting`` loads ``model=<dir_name>`` and
  hosts it (``action=stop`` stops hosting); a model that cannot be loaded is named beside
  the field (422) and the hosted model stays as it was.
- ``POST /predict``, ``GET /info``, ``GET /health``, ``GET|DELETE /streams/<id>``,
  ``GET /openapi.json``: ``web.predict.prediction_blueprint`` serving the hosted model
  (503 naming what to do while none is), exactly as ``python Api_Loader.py --model-dir
  ...`` serves one.
- ``POST /api/models/<dir_name>/predict``: any library model by folder name, the same body,
  envelope and JSON errors (404 for a model not in the library). Loaders are cached (LRU)
  and reloaded when the folder's config file changes.
- ``GET /api/hosting/sample-window?csv=<name>&end=<index|date>&model=<dir_name>``: the
  model's ``window_size`` bars of a listed CSV ending at ``end`` (default: the last bar),
  feature columns only, ready to send as ``{"window": ...}``.

The hosted model and the loader cache live in ``app.extensions["hosting"]`` (one
:class:`~web.hosted.Hosting` per app).
"""

from __future__ import annotations

import functools
import math
import re
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.blueprints import BlueprintSetupState

from NetworkConfigs import type_label
from NetworkConfigs.artifacts import list_models
from Utilities.data_loading import parse_time
from Utilities.data_utils import DataError, load_bars
from Utilities.input_errors import InputError
from web.datafiles import list_csv_files, models_dir, resolve_csv
from web.hosted import Cached, Hosting
from web.json_io import ApiError, Reply, read_json_body
from web.predict import MAX_BODY_BYTES, MAX_STREAMS, check_request, prediction_blueprint, reply

bp = Blueprint("hosting", __name__)
# JSON endpoints of this area (nested: endpoints "hosting.api.*"), under /api/: the app's
# handlers (web/errors.py) answer their errors in JSON.
api = Blueprint("api", __name__)

PREDICT_BLUEPRINT = "hosted_model"  # the root-level /predict routes' blueprint name
CSV_CACHE_SIZE = 4
NO_MODEL_HOSTED = ("no model is hosted: choose one on the API page (/hosting), or train one "
                   "first on the Train page (/train)")
_REPO_ROOT = Path(__file__).resolve().parent.parent
_INTEGER = re.compile(r"[+-]?\d+")


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    """Per app: the hosting state, and the prediction routes at the root that serve it."""
    app = state.app
    hosting = Hosting(app)
    app.extensions["hosting"] = hosting
    app.register_blueprint(prediction_blueprint(
        hosting.loader, name=PREDICT_BLUEPRINT,
        max_streams=int(app.config.get("MAX_STREAMS", MAX_STREAMS)),
        max_body_bytes=MAX_BODY_BYTES,  # the app allows large uploads; requests stay small
        no_model=NO_MODEL_HOSTED))


def get_hosting() -> Hosting:
    return current_app.extensions["hosting"]



# ----------------------------------------------------------------------- the page


@bp.get("/hosting")
def index() -> str:
    return _page(selected=request.args.get("model", "").strip())


@bp.post("/hosting")
def host() -> Any:
    hosting = get_hosting()
    if request.form.get("action") == "stop":
        hosting.stop()
        return redirect(url_for(".index"))
    dir_name = request.form.get("model", "").strip()
    try:
        hosting.host(models_dir(), dir_name)
    except ApiError as exc:
        return _page(selected=dir_name, error=str(exc)), 422
    return redirect(url_for(".index"))


def standalone_model_dir(dir_name: str) -> str:
    """``--model-dir`` for ``python Api_Loader.py`` run from the repository root."""
    path = models_dir().resolve() / dir_name
    try:
        return shlex.quote(path.relative_to(_REPO_ROOT).as_posix())
    except ValueError:  # a library outside the repository: its full path
        return shlex.quote(str(path))


def _page(selected: str = "", error: str | None = None) -> str:
    models = list_models(models_dir())
    for model in models:
        model["label"] = type_label(model["type"])
        model["model_dir_arg"] = standalone_model_dir(model["dir_name"])
    hosted = get_hosting().current()
    hosted_view = None
    if hosted is not None:
        hosted_view = {
            "dir_name": hosted.dir_name, "since": hosted.since, "reason": hosted.reason,
            "info": hosted.loader.info(),
            "label": type_label(hosted.loader.config.get("Type")),
            "model_dir_arg": standalone_model_dir(hosted.dir_name),
            "in_library": (models_dir() / hosted.dir_name).is_dir()}
        selected = selected or hosted.dir_name
    return render_template("hosting/index.html", models=models, hosted=hosted_view,
                           stopped=hosted is None and get_hosting().stopped_on_purpose(),
                           selected=selected, error=error,
                           target=_default_target(models, hosted_view, selected),
                           csv_files=[f.to_dict() for f in list_csv_files()],
                           predict_url=url_for(f"{PREDICT_BLUEPRINT}.predict"),
                           max_body_bytes=MAX_BODY_BYTES)


def _default_target(models: list[dict[str, Any]], hosted: dict[str, Any] | None,
                    selected: str) -> dict[str, Any] | None:
    """What the playground sends to first: the hosted model, else the chosen (or first)
    readable library model; None when there is nothing to send to."""
    if hosted is not None:
        return {"dir_name": "", "model_dir_arg": hosted["model_dir_arg"],
                "url": url_for(f"{PREDICT_BLUEPRINT}.predict")}
    servable = [m for m in models if not m["error"]]
    chosen = next((m for m in servable if m["dir_name"] == selected), None) or \
        (servable[0] if servable else None)
    if chosen is None:
        return None
    return {"dir_name": chosen["dir_name"], "model_dir_arg": chosen["model_dir_arg"],
            "url": url_for("hosting.api.predict_model", dir_name=chosen["dir_name"])}


# ------------------------------------------------------------------ JSON endpoints


def _served(dir_name: str) -> Cached:
    return get_hosting().cache.get(models_dir(), dir_name)


@api.post("/api/models/<dir_name>/predict")
def predict_model(dir_name: str) -> Response | Reply:
    """``POST /predict`` for any library model: same body, envelope and errors. The body
    is checked before the model is loaded: an invalid request loads nothing."""
    body = read_json_body(MAX_BODY_BYTES)
    check_request(body)
    entry = _served(dir_name)
    return reply(body, entry.loader, entry.streams)


@api.get("/api/hosting/sample-window")
def sample_window() -> Response:
    """A ready request: the model's window of a listed CSV, ending at ``end``."""
    name = request.args.get("csv", "").strip()
    if not name:
        raise ApiError(422, "choose a CSV file: csv=<a name from the list>", "csv")
    dir_name = request.args.get("model", "").strip()
    if dir_name:
        loader = _served(dir_name).loader
    else:
        hosted = get_hosting().current()
        if hosted is None:
            raise ApiError(422, "no model is hosted: pass model=<folder name> or host one",
                           "model")
        loader, dir_name = hosted.loader, hosted.dir_name
    try:
        path = resolve_csv(name)
    except DataError as exc:
        raise ApiError(404, str(exc), "csv") from None
    bars = _read_bars(path, name)
    features = list(loader.spec.features)
    missing = [f for f in features if f not in bars.columns]
    if missing:
        raise ApiError(422, f"{name} has no column(s) {missing} that model {dir_name!r} needs; "
                            f"its columns: {list(bars.columns)}", "csv")
    end = _end_index(request.args.get("end", ""), bars.index)
    size = loader.window_size
    if end + 1 < size:
        raise ApiError(422, f"model {dir_name!r} needs {size} bars ending at the chosen bar, but "
                            f"bar {end} has only {end + 1} up to it: choose bar {size - 1} or "
                            "later", "end")
    frame = bars[features].iloc[end + 1 - size:end + 1]
    window = [{f: _finite(v, f) for f, v in zip(features, row, strict=True)}
              for row in frame.itertuples(index=False, name=None)]
    payload = {"model": dir_name, "csv": name, "window_size": size, "features": features,
               "rows": len(bars), "first": _iso(bars.index[0]), "last": _iso(bars.index[-1]),
               "end": {"index": end, "time": _iso(bars.index[end])},
               "times": [_iso(t) for t in frame.index], "window": window}
    # Bars keep the model's feature order (Open, High, ...): people read and edit them.
    return current_app.response_class(current_app.json.dumps(payload, sort_keys=False),
                                      mimetype="application/json")


def _read_bars(path: Path, name: str) -> pd.DataFrame:
    """The bars of a listed CSV (cached while the file is unchanged); DataError: 422."""
    stat = path.stat()
    return _cached_bars(str(path), name, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=CSV_CACHE_SIZE)
def _cached_bars(path: str, name: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return load_bars(path, name=name)  # read only: callers never change the frame


def _end_index(text: str, index: pd.DatetimeIndex) -> int:
    """A bar index (0 … n-1), or the last bar at or before a date/time (a date alone: that
    day's last bar); default the last bar."""
    text, n = text.strip(), len(index)
    if text in ("", "last"):
        return n - 1
    if _INTEGER.fullmatch(text):
        end = int(text)
        if not 0 <= end < n:
            raise ApiError(422, f"end {end} is out of range: the file has bars 0 to {n - 1}",
                           "end")
        return end
    try:  # the one date rule: as a CSV's time column is read, a date alone is that day
        when = parse_time(text, "end", whole_day=True)
    except InputError:
        raise ApiError(422, f"end must be a bar index (0 to {n - 1}) or a date/time; got "
                            f"{text!r}", "end") from None
    upto = index <= when
    if not upto.any() or when > index[-1]:
        raise ApiError(422, f"end {text!r} is out of range: the file runs from "
                            f"{_iso(index[0])} to {_iso(index[-1])}", "end")
    return int(upto.sum()) - 1  # the index is in time order (load_bars checks)


def _finite(value: Any, feature: str) -> float:
    number = float(value)
    if not math.isfinite(number):  # load_bars refuses these; never send NaN as JSON
        raise ApiError(422, f"column {feature!r} has a non-finite value in this window", "csv")
    return number


def _iso(when: pd.Timestamp) -> str:
    return pd.Timestamp(when).isoformat()


bp.register_blueprint(api)
