"""Experiments: the runs that share an experiment name.

  ``GET /experiments?metric=``         every experiment: its runs and its best run by
                                      the metric
  ``GET /experiments/<name>?metric=``  its runs ranked by the metric (the best marked), a
                                      parameter-vs-metric scatter (a point per run; the
                                      page picks the hyperparameter and the metric) and a
                                      link comparing its first runs
  ``GET /api/experiments`` and ``GET /api/experiments/<name>``: the same as JSON

An unknown experiment is 404; a metric no run has, 422 naming it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, render_template, url_for

from Utilities.run_comparison import flatten, hyperparameters
from Utilities.run_figures import (
    RunFigures,
    default_metric,
    direction_of,
    known_metrics,
    metric_label,
    ranked,
    ranked_first,
)
from Utilities.run_store import RunReads, StoreUnavailable
from web import query_params
from web.json_io import ApiError
from web.run_compare import (
    MAX_RUNS,
    figures_for,
    metric_choices,
    metric_param,
    scan_runs,
    store_unavailable,
)
from web.store import get_store

bp = Blueprint("experiments", __name__)
bp.register_error_handler(StoreUnavailable, store_unavailable)


def _best(figures: list[RunFigures], metric: str | None) -> dict[str, Any] | None:
    found = ranked(figures, metric) if metric else []
    if not found:
        return None
    best, value = found[0]
    return {"run_id": best.run_id, "name": best.run["name"], "value": value}


def overview(reads: RunReads) -> dict[str, Any]:
    """Every experiment with its run count and best run by the chosen metric."""
    runs, _ = scan_runs(reads)
    grouped: dict[str, list[dict]] = {}
    for run in runs:
        if run.get("experiment"):
            grouped.setdefault(run["experiment"], []).append(run)
    figures = figures_for(reads, [r for group in grouped.values() for r in group])
    available = known_metrics(figures)
    metric = metric_param(available) if figures else None
    by_run = {f.run_id: f for f in figures}
    rows = [{"name": name, "runs": len(group),
             "best": _best([by_run[r["run_id"]] for r in group], metric),
             "links": {"page": url_for("experiments.detail", name=name)}}
            for name, group in sorted(grouped.items())]
    return {"metric": metric, "label": metric_label(metric) if metric else None,
            "experiments": rows, "metrics": available}


def _point(figures: RunFigures, metrics: list[str]) -> dict[str, Any]:
    """A run as the scatter reads it: its flattened config and every metric's value."""
    run = figures.run
    return {"run_id": run["run_id"], "name": run["name"],
            "params": {k: v for k, v in flatten(run.get("config") or {}).items()
                       if isinstance(v, int | float | str | bool) or v is None},
            "metrics": {m: figures.value(m) for m in metrics}}


def detail_of(reads: RunReads, name: str) -> dict[str, Any]:
    """One experiment: runs ranked by the metric (those without it last), the scatter's
    points and the hyperparameters that differ (the scatter's x choices, first)."""
    # A name with a control character names no experiment (and PostgreSQL's driver
    # refuses a NUL byte with an error, not an empty answer).
    readable = len(name) <= query_params.MAX_TEXT and name.isprintable()
    runs, _ = scan_runs(reads, experiment=name) if readable else ([], 0)
    if not runs:
        raise ApiError(404, f"no experiment is named {name[:80]!r}", "name")
    figures = figures_for(reads, runs)
    available = known_metrics(figures)
    metric = metric_param(available)
    ordered = ranked_first(figures, metric)
    params = hyperparameters(runs)
    numeric = [row["key"] for row in params
               if any(isinstance(v, int | float) and not isinstance(v, bool)
                      for v in row["values"])]
    keys = [row["key"] for row in params if row["differs"]] + \
        [row["key"] for row in params if not row["differs"]]
    return {"name": name, "metric": metric,
            "label": metric_label(metric) if metric else None,
            "direction": direction_of(metric) if metric else None,
            "best": _best(figures, metric), "metrics": available,
            "runs": [{"run_id": f.run_id, "name": f.run["name"], "status": f.run["status"],
                      "model_type": f.run["model_type"], "tags": f.run.get("tags", []),
                      "created_at": f.run["created_at"],
                      "value": f.value(metric) if metric else None} for f in ordered],
            "param_keys": keys,
            # The scatter opens on the first differing numeric hyperparameter.
            "default_param": next((k for k in keys if k in numeric), keys[0] if keys else None),
            "points": [_point(f, available) for f in ordered]}


@bp.get("/api/experiments")
def api_list() -> Response:
    with get_store().reading() as reads:
        return jsonify(overview(reads))


@bp.get("/api/experiments/<path:name>")
def api_detail(name: str) -> Response:
    with get_store().reading() as reads:
        return jsonify(detail_of(reads, name))


@bp.get("/experiments")
def index() -> str:
    with get_store().reading() as reads:
        found = overview(reads)
    return render_template("experiments/index.html", found=found,
                           metric_choices=metric_choices(found["metrics"]))


@bp.get("/experiments/<path:name>")
def detail(name: str) -> str:
    with get_store().reading() as reads:
        found = detail_of(reads, name)
    compare = (url_for("compare.page", experiment=name, metric=found["metric"] or "")
               if len(found["runs"]) >= 2 else None)
    return render_template("experiments/detail.html", found=found, compare_url=compare,
                           metric_choices=metric_choices(found["metrics"]),
                           max_runs=MAX_RUNS, default_metric=default_metric)
