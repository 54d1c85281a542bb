"""Model library: every saved model, its page, deletion (pages and JSON API).

Pages: ``/models`` (filter ``?type=``; ``?sort=<metric>&order=`` ranks by the
leaderboard's metrics, :mod:`Utilities.run_figures`), ``/models/<dir_name>``,
``/models/<dir_name>/delete`` (GET confirms, POST deletes). API: ``GET /api/models`` (the
same ``type`` and ``sort``), ``GET|DELETE /api/models/<dir_name>``.
A folder is named by its folder name only; ``validate_name`` and a resolved-path check keep
every request inside ``MODELS_DIR``.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    get_flashed_messages,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from NetworkConfigs import UnknownModelType, get_model_type, type_label
from NetworkConfigs.artifacts import (
    CONFIG_SUFFIX,
    ArtifactError,
    ModelNotFound,
    delete_model,
    list_models,
    model_folder,
    read_config,
    validate_name,
)
from Utilities.number_format import figure
from Utilities.run_figures import known_metrics, metric_label, ranked_first
from Utilities.run_store import RunStoreError
from Utilities.safe_paths import shown
from Utilities.serialization import to_plain
from web import datafiles
from web.formatting import finite
from web.history import public_run
from web.json_io import error_reply, hide_paths, path_roots
from web.run_compare import metric_choices, metric_param, model_figures
from web.store import get_store

log = logging.getLogger(__name__)
bp = Blueprint("library", __name__)

TOP_FEATURES = 15        # feature-importance bars on a model page
MAX_FILES = 500          # files listed on a model page
MAX_CONFIG_CHARS = 200_000
# Validation-history charts: (title, y-axis title, [(row key, series label)]); a chart is
# drawn when any of its keys has a number. Types report what they have; none is named.
HISTORY_CHARTS = (
    ("Validation return", "return %", [("return_pct", "validation return %")]),
    ("Loss", "loss", [("train_loss", "train loss"), ("val_loss", "validation loss")]),
    ("Accuracy", "accuracy", [("train_accuracy", "train accuracy"),
                              ("val_accuracy", "validation accuracy")]),
)
# A flat reference line on a chart: (chart title, metrics key, label); a value far outside
# the curves is named under the chart's title instead.
REFERENCE_LINES = (
    ("Validation return", "validation_buy_hold_pct", "buy & hold %"),
    ("Accuracy", "validation_majority_accuracy", "majority baseline"),
)


# ----------------------------------------------------------------------------- helpers


def _folder(dir_name: str) -> Path | None:
    """The model folder named ``dir_name`` inside MODELS_DIR, or None (bad name, outside
    the library, or not there)."""
    try:
        path = model_folder(datafiles.models_dir(), dir_name)  # the one folder rule
    except ArtifactError:
        return None
    return path if path.is_dir() else None


def _short_error(error: str | None, path: str) -> str | None:
    """An error without the folder's absolute path in front (the row names the folder)."""
    if not error:
        return error
    for prefix in (f"{path}/", f"{path}: ", f"{path}"):
        if error.startswith(prefix):
            return error[len(prefix):].lstrip(": ") or error
    return error


def _train_url() -> str | None:
    """The training page's address once that area exists."""
    return url_for("train.index") if "train.index" in current_app.view_functions else None


def _valid(name: str) -> bool:
    try:
        validate_name(name, "model folder")
    except ArtifactError:
        return False
    return True


def _matches_type(row: dict[str, Any], wanted: str) -> bool:
    if wanted == "unreadable":
        return bool(row["error"])
    with contextlib.suppress(UnknownModelType):
        wanted = get_model_type(wanted).name
    return str(row["type"] or "").lower() == wanted.lower()


def _type_choices(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The filter chips: one per type present in the library, with counts."""
    counts: dict[str, int] = {}
    for model in models:
        key = "unreadable" if model["error"] else str(model["type"])
        counts[key] = counts.get(key, 0) + 1
    chips = [{"value": key, "label": "Unreadable" if key == "unreadable" else type_label(key),
              "count": count} for key, count in counts.items()]
    return sorted(chips, key=lambda c: (c["value"] == "unreadable", c["label"].lower()))


def _size_label(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _files(folder: Path) -> list[dict[str, Any]]:
    """Regular files in the folder (recursively), with sizes; checkpoints are marked."""
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        relative = path.relative_to(folder).as_posix()
        size = path.stat().st_size
        files.append({"name": relative, "size": size, "size_label": _size_label(size),
                      "checkpoint": "checkpoint" in relative.lower()
                      or relative.startswith("checkpoints/")})
        if len(files) >= MAX_FILES:
            break
    return files


def _short_day(value: Any) -> str:
    text = "—" if value in (None, "") else str(value)
    return text[:-9] if text.endswith(" 00:00:00") else text


def _label(step: Any) -> Any:
    return int(step) if isinstance(step, float) and step.is_integer() else step


def history_charts(history: Any, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Chart specs (labels and series) from a config's ``validation_history`` rows."""
    rows = [row for row in history if isinstance(row, dict)] if isinstance(history, list) else []
    if not rows:
        return []
    x_key = next((k for k in ("epoch", "iteration") if all(k in r for r in rows)), None)
    labels = [_label(row[x_key]) if x_key else i + 1 for i, row in enumerate(rows)]
    charts = []
    for title, y_title, keys in HISTORY_CHARTS:
        series = []
        for key, label in keys:
            data = [finite(row.get(key)) for row in rows]
            if any(value is not None for value in data):
                series.append({"label": label, "data": data})
        if not series:
            continue
        values = [v for s in series for v in s["data"] if v is not None]
        low, high = min(values), max(values)
        margin = max(high - low, 1e-9)
        notes = []
        for chart, metric, label in REFERENCE_LINES:
            value = finite(metrics.get(metric))
            if chart != title or value is None:
                continue
            if low - margin <= value <= high + margin:
                series.append({"label": label, "data": [value] * len(rows),
                               "borderDash": [6, 4], "pointRadius": 0})
            else:  # a far-off line would flatten the curve people came to see
                notes.append(f"{label}: {value:.4g}")
        charts.append({"id": f"chart-{y_title.split()[0]}", "title": title, "y_title": y_title,
                       "x_title": x_key or "evaluation", "labels": labels, "series": series,
                       "notes": notes})
    return charts


def _feature_importance(config: dict[str, Any]) -> list[dict[str, Any]]:
    raw = config.get("feature_importance")
    if not isinstance(raw, dict):
        return []
    pairs = [(str(k), v) for k, v in raw.items() if finite(v) is not None]
    pairs.sort(key=lambda pair: -pair[1])
    return [{"feature": name, "importance": value} for name, value in pairs]


def _flat_metrics(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested metric dicts as dotted keys (``train_class_shares.up``), values as text."""
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            rows.extend(_flat_metrics(value, f"{prefix}{key}."))
        else:
            text = ", ".join(map(figure, value)) if isinstance(value, list) else figure(value)
            rows.append((f"{prefix}{key}", text))
    return rows


def _find_run(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the newest run whose model_dir is this folder, None) or (None, store error)."""
    try:
        return get_store().run_of_model_dir(folder), None
    except RunStoreError as exc:
        log.error("run store unavailable: %s", exc)
        return None, str(exc)


def describe(folder: Path, *, with_run: bool = True) -> dict[str, Any]:
    """Everything the model page and ``GET /api/models/<dir_name>`` show about a folder."""
    config: dict[str, Any] = {}
    error = None
    try:
        config = to_plain(read_config(folder))
    except (ArtifactError, OSError, ValueError) as exc:
        error = str(exc)
    metrics = config.get("metrics") if isinstance(config.get("metrics"), dict) else {}
    spec = config.get("feature_spec") if isinstance(config.get("feature_spec"), dict) else {}
    params = config.get("model_params") if isinstance(config.get("model_params"), dict) else {}
    files = _files(folder)
    total = sum(f["size"] for f in files)
    info: dict[str, Any] = {
        "dir_name": folder.name, "path": str(folder),
        "name": str(config.get("model_name") or folder.name),
        "type": config.get("Type"), "type_label": type_label(config.get("Type")),
        "created_at": config.get("created_at"), "data_file": config.get("data_file") or None,
        "data_rows": config.get("data_rows"), "data_hash": config.get("data_hash"),
        "split": config.get("split") if isinstance(config.get("split"), dict) else {},
        "lookback": config.get("lookback", params.get("lookback_window")),
        "features": list(spec.get("features") or []), "transform": spec.get("transform"),
        "metrics": metrics, "validation_history": config.get("validation_history") or [],
        "feature_importance": _feature_importance(config),
        "files": files, "checkpoints": [f["name"] for f in files if f["checkpoint"]],
        "size": total, "size_label": _size_label(total), "error": error,
        "short_error": _short_error(error, str(folder)),
        "config": config or None,
        "links": {"page": url_for("library.model", dir_name=folder.name),
                  "backtest": f"/backtest?model={folder.name}",
                  "hosting": f"/hosting?model={folder.name}"},
    }
    if with_run:
        run, store_error = _find_run(folder)
        info["run"] = run
        info["run_link"] = f"/runs/{run['run_id']}" if run else None
        info["store_error"] = store_error
    return info


def _public(model: dict[str, Any]) -> dict[str, Any]:
    """A model as the API shows it: its data file relative to the data folder, and no
    absolute path in any text (errors, the config's copy of the data file)."""
    roots = path_roots()
    public = hide_paths(model, roots)
    for holder in (public, public.get("config") or {}):
        if holder.get("data_file"):
            holder["data_file"] = shown(model["data_file"], roots)
    return public


def _config_text(folder: Path) -> str | None:
    configs = sorted(folder.glob(f"*{CONFIG_SUFFIX}"))
    if not configs:
        return None
    text = configs[0].read_text(encoding="utf-8", errors="replace")
    if len(text) > MAX_CONFIG_CHARS:
        text = text[:MAX_CONFIG_CHARS] + "\n… (truncated)"
    return text


def _not_found(dir_name: str):
    return render_template("library/not_found.html", dir_name=dir_name), 404


def _api_not_found(dir_name: str):
    return error_reply(404, f"no model folder {dir_name!r} in the library", "dir_name")


# ------------------------------------------------------------------------------- pages


def sorted_by_metric(models: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict]:
    """``?sort=<metric>&order=asc|desc``: the models ranked by a run-figure metric
    (web.run_compare.model_figures: the same figures as the leaderboard), those without
    it last; each model gains ``sort_value``. Newest first without ``sort``."""
    figures = model_figures(models)
    available = known_metrics(figures)
    sort = metric_param(available, "sort") if request.args.get("sort") else None
    order = request.args.get("order", "").strip() or None
    if sort is not None:
        by_name = {m["dir_name"]: m for m in models}
        models = [{**by_name[f.run["model_dir"]], "sort_value": f.value(sort)}
                  for f in ranked_first(figures, sort, order=order)]
    return models, {"sort": sort, "order": order, "label": metric_label(sort) if sort else None,
                    "choices": metric_choices(available)}


@bp.get("/models")
def index() -> str:
    """Every model, newest first (or by ``?sort=<metric>``); ``?type=`` keeps one type;
    broken folders say why."""
    models = list_models(datafiles.models_dir())
    for model in models:
        model["label"] = type_label(model["type"])
        model["short_error"] = _short_error(model["error"], model["path"])
    wanted = request.args.get("type", "").strip()
    shown = [m for m in models if _matches_type(m, wanted)] if wanted else models
    shown, sorting = sorted_by_metric(shown)
    with contextlib.suppress(UnknownModelType):
        wanted = get_model_type(wanted).name if wanted else wanted  # 'XGB' → 'xgboost'
    return render_template("library/index.html", models=shown, total=len(models),
                           chips=_type_choices(models), wanted=wanted,
                           wanted_label=type_label(wanted), sorting=sorting,
                           messages=get_flashed_messages(), train_url=_train_url())



@bp.get("/models/<dir_name>")
def model(dir_name: str):
    folder = _folder(dir_name)
    if folder is None:
        return _not_found(dir_name)
    info = describe(folder)
    split_rows = [(part, _short_day(dates.get("start")), _short_day(dates.get("end")))
                  for part, dates in info["split"].items() if isinstance(dates, dict)]
    top = info["feature_importance"][:TOP_FEATURES]
    top_max = max((f["importance"] for f in top), default=0) or 1
    return render_template(
        "library/model.html", m=info, split_rows=split_rows,
        metric_rows=_flat_metrics(info["metrics"]), top_features=top, top_max=top_max,
        charts=history_charts(info["validation_history"], info["metrics"]),
        config_text=_config_text(folder))


@bp.route("/models/<dir_name>/delete", methods=["GET", "POST"])
def delete(dir_name: str):
    """GET: what will be removed, and a button; POST: remove it, back to the list."""
    folder = _folder(dir_name)
    if folder is None:
        return _not_found(dir_name)
    error, status = None, 200
    if request.method == "POST":
        if request.form.get("confirm") != dir_name:
            error, status = "Deletion was not confirmed: press the button on this page.", 400
        else:
            try:
                delete_model(datafiles.models_dir(), dir_name)
            except ModelNotFound:
                return _not_found(dir_name)
            except (ArtifactError, OSError) as exc:
                log.error("could not delete model %s: %s", dir_name, exc)
                error, status = f"Could not delete {dir_name}: {exc}", 500
            else:
                flash(f"Deleted model {dir_name}.")  # Main sets SECRET_KEY
                return redirect(url_for("library.index"))
    info = describe(folder, with_run=False)
    return render_template("library/delete.html", m=info, error=error), status


# --------------------------------------------------------------------------------- API


@bp.get("/api/models")
def api_list():
    models = list_models(datafiles.models_dir())
    wanted = request.args.get("type", "").strip()
    if wanted:
        models = [m for m in models if _matches_type(m, wanted)]
    if request.args.get("sort"):
        models, _ = sorted_by_metric(models)
    for model in models:
        model["type_label"] = type_label(model["type"])
        model.pop("path", None)
        model["links"] = {"page": url_for("library.model", dir_name=model["dir_name"]),
                          "api": url_for("library.api_model", dir_name=model["dir_name"])}
    return jsonify(models=[_public(model) for model in models], count=len(models))


@bp.get("/api/models/<dir_name>")
def api_model(dir_name: str):
    folder = _folder(dir_name)
    if folder is None:
        return _api_not_found(dir_name)
    info = describe(folder)
    info.pop("path", None)
    if info["run"] is not None:
        info["run"] = public_run(info["run"])
    return jsonify(_public(info))


@bp.delete("/api/models/<dir_name>")
def api_delete(dir_name: str):
    if _folder(dir_name) is None:
        return _api_not_found(dir_name)
    try:
        delete_model(datafiles.models_dir(), dir_name)
    except ModelNotFound:
        return _api_not_found(dir_name)
    except (ArtifactError, OSError) as exc:
        log.error("could not delete model %s: %s", dir_name, exc)
        return error_reply(500, f"could not delete {dir_name!r}: {exc}")  # paths hidden
    return jsonify(deleted=dir_name)
