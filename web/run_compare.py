"""Compare runs: metric overlays, hyperparameters, summary figures and backtests side by
side, and the comparison's export.

Pages and API (the runs: ``runs=<id>,<id>,...``, 2 to 20 of them, or ``experiment=NAME``:
that experiment's first 20 runs by ``metric``, best first)
  ``GET /compare``               the page; its charts ask ``/api/compare`` for series
  ``GET /api/compare?keys=a,b&x=episode|step|wall_time&points=N``
        the overlay: each key's series per run, at most ``points`` points each (whole
        when shorter; else each rollup bucket's min and max point at the finest level
        with at most points/2 buckets: between points/8 and points points, one read per
        series: Utilities.metric_reads.overlay_points), and the comparison's tables
  ``GET /api/compare.csv`` / ``GET /api/compare.json``  the tables as a download

x axes: ``episode`` is the step each point was logged at (the episode for ``episode/*``
keys, the iteration or epoch for ``train/*`` keys); ``step`` is the environment step,
read from the run's ``train/global_step`` series (``train/*`` points by their iteration,
others by their wall time, interpolated; a run without that series has no such line);
``wall_time`` is seconds since the run started.

Errors: fewer than 2 or more than 20 runs 422, an unknown run or experiment 404, a bad
parameter 400/422 naming it (JSON under /api/, a styled page elsewhere).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from flask import Blueprint, Response, jsonify, render_template, request, url_for

from Utilities import run_comparison
from Utilities.number_format import figure
from Utilities.run_figures import (
    RunFigures,
    check_metric,
    default_metric,
    figures_of_runs,
    known_metrics,
    metric_label,
    model_dir_name,
    ranked_first,
)
from Utilities.run_store import (
    MAX_PAGE_SIZE,
    MIN_POINTS,
    RunReads,
    RunStoreError,
    StoreUnavailable,
)
from web import backtest_results
from web import query_params as params
from web.errors import error_page, is_json_path
from web.formatting import parse_time, span
from web.json_io import ApiError, error_reply
from web.query_params import is_run_id
from web.store import get_store

log = logging.getLogger(__name__)
bp = Blueprint("compare", __name__)

MIN_RUNS, MAX_RUNS = 2, 20
DEFAULT_POINTS, MAX_POINTS = 1000, 5000
# x axis -> its label (the module docstring says what each one is).
X_AXES = {"episode": "episode / logged step", "step": "environment step",
          "wall_time": "seconds since start"}
ENV_STEP_KEY = "train/global_step"
# Keys the overlay opens with, those the runs have, in this order (at most DEFAULT_KEYS).
PREFERRED_KEYS = ("episode/reward", "train/val_loss", "train/train_loss", "train/policy_loss",
                  "train/value_loss", "train/entropy", "train/val_accuracy", "episode/steps")
DEFAULT_KEYS = 4
# Runs an experiment's or the leaderboard's ranking reads at most (newest first).
SCAN_LIMIT = 5 * MAX_PAGE_SIZE


def store_unavailable(exc: StoreUnavailable) -> tuple[Response, int] | tuple[str, int]:
    """503: JSON under /api/, the styled page elsewhere (compare, leaderboard,
    experiments)."""
    log.error("run store unavailable: %s", exc)
    if is_json_path(request.path):
        return error_reply(503, f"run store unavailable: {exc}")
    return error_page(503, "Run store unavailable", str(exc))


bp.register_error_handler(StoreUnavailable, store_unavailable)


# ------------------------------------------------------------------- shared readers


def figures_for(reads: RunReads, runs: list[dict], stats: dict | None = None,
                ) -> list[RunFigures]:
    """The runs' figures (:mod:`Utilities.run_figures`) with their models' backtests:
    one statistics statement and one pass over the saved backtests, whatever the count."""
    models = {model_dir_name(run) for run in runs} - {""}
    return figures_of_runs(reads, runs, backtest_results.results_of_models(models),
                           stats=stats)


def model_figures(models: list[dict]) -> list[RunFigures]:
    """Figures of saved models (rows of NetworkConfigs.artifacts.list_models), in their
    order: each model's newest run's series (matched by folder name), its run's summary
    over the model's own metrics, its newest out-of-sample backtest. Two statements
    (the runs with a model, their statistics) whatever the number of models; without a
    store, the models' metrics and backtests alone."""
    names = [m["dir_name"] for m in models]
    backtests = backtest_results.results_of_models(names)
    runs: dict[str, dict] = {}
    stats: dict[str, dict] = {}
    try:
        with get_store().reading() as reads:
            for run in reads.model_runs():  # newest first: the first of a folder wins
                runs.setdefault(model_dir_name(run), run)
            wanted = [runs[n]["run_id"] for n in names if n in runs]
            stats = reads.series_statistics(wanted) if wanted else {}
    except RunStoreError as exc:
        log.warning("model figures without the run store: %s", exc)
    found = []
    for model in models:
        run = runs.get(model["dir_name"]) or {"run_id": model["dir_name"], "name": model["name"]}
        run = {**run, "summary": {**(model.get("metrics") or {}), **(run.get("summary") or {})},
               "model_dir": model["dir_name"]}
        found += figures_of_runs(None, [run], backtests, stats={run["run_id"]: stats.get(
            run["run_id"], {})})
    return found


def scan_runs(reads: RunReads, **filters: Any) -> tuple[list[dict], int]:
    """Up to SCAN_LIMIT runs matching ``filters`` (list_runs' own), newest first, and how
    many matched: a page of MAX_PAGE_SIZE per statement."""
    found, total = [], 0
    while len(found) < SCAN_LIMIT:
        page, total = reads.list_runs(limit=MAX_PAGE_SIZE, offset=len(found), **filters)
        found += page
        if len(page) < MAX_PAGE_SIZE:
            break
    return found, total


def metric_param(available: list[str], name: str = "metric") -> str | None:
    """``metric`` if given (422 naming it when no run has it), else the default one."""
    metric = request.args.get(name, "").strip()
    if not metric:
        return default_metric(available)
    if metric not in available:
        check_metric(metric, [])  # malformed: says what a metric looks like
        raise ApiError(422, f"unknown metric {metric!r}: no run here has it", name)
    return metric


def metric_choices(available: Iterable[str]) -> list[dict[str, str]]:
    """{value, label, group} of each metric, for a grouped select."""
    return [{"value": m, "label": metric_label(m), "group": m.partition(":")[0]}
            for m in available]


# ------------------------------------------------------------------- the selection


def _run_ids_param() -> list[str]:
    raw = request.args.get("runs", "")
    ids = list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not MIN_RUNS <= len(ids) <= MAX_RUNS:
        raise ApiError(422, f"runs must name {MIN_RUNS} to {MAX_RUNS} runs (ids separated "
                            f"by commas); got {len(ids)}", "runs")
    for run_id in ids:
        if not is_run_id(run_id):
            raise ApiError(404, f"no training run has the id {run_id[:80]!r}", "runs")
    return ids


def _experiment_runs(reads: RunReads, name: str) -> tuple[list[RunFigures], str | None]:
    """The experiment's first MAX_RUNS runs by the chosen metric (runs without it last)."""
    runs, _ = scan_runs(reads, experiment=name)
    if not runs:
        raise ApiError(404, f"no experiment is named {name[:80]!r}", "experiment")
    figures = figures_for(reads, runs)
    metric = metric_param(known_metrics(figures))
    figures = ranked_first(figures, metric)[:MAX_RUNS]
    if len(figures) < MIN_RUNS:
        raise ApiError(422, f"experiment {name!r} has {len(figures)} run; a comparison "
                            f"needs {MIN_RUNS} to {MAX_RUNS}", "experiment")
    return figures, metric


def selection(reads: RunReads) -> tuple[list[RunFigures], dict[str, Any]]:
    """The compared runs' figures, in the order asked, and how they were chosen."""
    experiment = params.text_param("experiment")
    if experiment is not None and not request.args.get("runs"):
        figures, metric = _experiment_runs(reads, experiment)
        return figures, {"experiment": experiment, "metric": metric}
    ids = _run_ids_param()
    runs = reads.runs(ids)
    missing = [run_id for run_id in ids if run_id not in {r["run_id"] for r in runs}]
    if missing:
        raise ApiError(404, f"no training run has the id {missing[0]!r}", "runs")
    return figures_for(reads, runs), {"experiment": None, "metric": None}


# ------------------------------------------------------------------------ overlay


def _keys(figures: list[RunFigures]) -> tuple[list[str], list[str]]:
    """(keys asked for or the default ones, every key some run logged)."""
    available = sorted({key for f in figures for key in f.series})
    keys = params.keys_param()
    if keys is None:
        preferred = [k for k in PREFERRED_KEYS if k in available]
        return (preferred or available)[:DEFAULT_KEYS], available
    unknown = [k for k in keys if k not in available]
    if unknown:
        raise ApiError(422, f"no compared run logged the metric {unknown[0]!r}", "keys")
    return keys, available


def _x_param() -> str:
    x = request.args.get("x", "episode").strip() or "episode"
    if x not in X_AXES:
        raise ApiError(422, f"x must be one of {', '.join(X_AXES)}; got {x[:40]!r}", "x")
    return x


def _start_time(run: dict) -> float | None:
    moment = parse_time(run.get("started_at")) or parse_time(run.get("created_at"))
    return moment.timestamp() if moment else None


def _env_steps(points: list[dict], clock: list[dict], by_step: bool) -> np.ndarray:
    """Each point's environment step, interpolated from the run's global-step points."""
    along = "step" if by_step else "wall_time"
    known = np.array([p[along] for p in clock], dtype=float)
    steps = np.array([p["value"] if p["value"] is not None else np.nan for p in clock])
    keep = np.isfinite(steps)
    wanted = np.array([p[along] for p in points], dtype=float)
    return np.interp(wanted, known[keep], steps[keep])


def _xs(points: list[dict], x: str, key: str, run: dict, clock: list[dict] | None,
        ) -> list[float] | None:
    if x == "episode":
        return [p["step"] for p in points]
    if x == "wall_time":
        start = _start_time(run)
        if start is None:
            return None
        return [round(p["wall_time"] - start, 3) for p in points]
    if not clock:
        return None
    return [int(v) for v in _env_steps(points, clock, key.startswith("train/"))]


def overlay(reads: RunReads, figures: list[RunFigures], stats: dict, keys: list[str],
            x: str, points: int) -> tuple[dict[str, list[dict]], dict[str, list[str]]]:
    """({key: [{"run_id", "points": [[x, y], ...]}]}, {key: run ids without a line})."""
    series: dict[str, list[dict]] = {key: [] for key in keys}
    missing: dict[str, list[str]] = {key: [] for key in keys}
    for f in figures:
        rows = stats.get(f.run_id, {})
        clock = None
        if x == "step" and ENV_STEP_KEY in rows:
            clock = reads.overlay_points(rows[ENV_STEP_KEY], points)
        for key in keys:
            found = reads.overlay_points(rows[key], points) if key in rows else []
            xs = _xs(found, x, key, f.run, clock) if found else None
            if not xs:
                missing[key].append(f.run_id)
                continue
            series[key].append({"run_id": f.run_id, "points": [
                [xv, p["value"]] for xv, p in zip(xs, found, strict=True)]})
    return series, {k: v for k, v in missing.items() if v}


def _read(with_series: bool) -> dict[str, Any]:
    """Everything one reply needs, read in one snapshot of the store."""
    x = _x_param()
    points = params.int_param("points", DEFAULT_POINTS, MIN_POINTS, MAX_POINTS)
    with get_store().reading() as reads:
        figures, chosen = selection(reads)
        keys, available = _keys(figures)
        body: dict[str, Any] = {**chosen, "keys": keys, "available_keys": available}
        if with_series:
            stats = reads.series_statistics([f.run_id for f in figures])
            series, missing = overlay(reads, figures, stats, keys, x, points)
            body.update(x=x, x_label=X_AXES[x], points=points, series=series,
                        missing=missing)
    body["figures"] = figures
    return body


# ------------------------------------------------------------------------- routes


@bp.get("/api/compare")
def api_compare() -> Response:
    body = _read(with_series=True)
    figures = body.pop("figures")
    tables = run_comparison.comparison(figures)
    if request.args.get("tables", "1") == "0":
        tables = {"runs": tables["runs"]}
    return jsonify({**body, **tables})


def _download(text: str, extension: str, mimetype: str) -> Response:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Response(text, mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="comparison-{stamp}.{extension}"'})


@bp.get("/api/compare.csv")
def export_csv() -> Response:
    tables = run_comparison.comparison(_read(with_series=False)["figures"])
    return _download(run_comparison.as_csv(tables), "csv", "text/csv")


@bp.get("/api/compare.json")
def export_json() -> Response:
    body = _read(with_series=False)
    tables = run_comparison.comparison(body.pop("figures"))
    tables["selection"] = {"experiment": body["experiment"], "metric": body["metric"]}
    return _download(run_comparison.as_json(tables), "json", "application/json")


def param_text(value: Any) -> str:
    """A hyperparameter as the table writes it: numbers as set (twelve significant
    digits: float noise such as 0.00030000000000000003 hidden), missing as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int | float):
        return figure(value, "param")
    return run_comparison.as_json(value).replace("\n", "").replace("  ", "")


@bp.get("/compare")
def page() -> str:
    if not request.args.get("runs") and not request.args.get("experiment"):
        with get_store().reading() as reads:  # nothing chosen yet: offer the ways to choose
            names = reads.experiment_names()
        return render_template("compare/choose.html", experiments=names, max_runs=MAX_RUNS)
    body = _read(with_series=False)
    figures = body.pop("figures")
    tables = run_comparison.comparison(figures)
    query = {"runs": ",".join(f.run_id for f in figures)}
    available = known_metrics(figures)
    return render_template(
        "compare/index.html", tables=tables, body=body, x_axes=X_AXES,
        export_csv=url_for("compare.export_csv", **query),
        export_json=url_for("compare.export_json", **query),
        api_url=url_for("compare.api_compare", **query),
        metric_choices=metric_choices(available), param_text=param_text, span=span,
        default_points=DEFAULT_POINTS, metric_label=metric_label)
