"""Leaderboard: runs ranked by any summary metric (:mod:`Utilities.run_figures`: final,
best or mean of a logged key, a summary field, a backtest statistic, the duration).

  ``GET /leaderboard``  the page (a form of the same parameters)
  ``GET /api/leaderboard?metric=&top=N&model_type=&experiment=&tag=&data_file=&order=``
        ``{"metric", "direction", "order", "rows": [{rank, run_id, name, value, ...}],
        "candidates", "without_metric", "metrics"}``; ``order`` asc|desc overrides the
        metric's direction; ``data_file`` matches the file's name.

A metric no candidate run has is 422 naming it; the ranking reads the newest
SCAN_LIMIT runs matching the filters (web.run_compare.scan_runs) and their figures in one
statistics statement.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request, url_for

from Utilities.run_comparison import file_name
from Utilities.run_figures import (
    HIGHER,
    LOWER,
    RunFigures,
    check_metric,
    direction_of,
    known_metrics,
    metric_label,
    ranked,
)
from Utilities.run_store import RunReads, StoreUnavailable
from web import query_params as params
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

bp = Blueprint("leaderboard", __name__)
bp.register_error_handler(StoreUnavailable, store_unavailable)

DEFAULT_TOP, MAX_TOP = 20, 1000
FILTERS = ("model_type", "experiment", "tag", "data_file")


def _order() -> str | None:
    order = request.args.get("order", "").strip()
    if order not in ("", "asc", "desc"):
        raise ApiError(422, f"order must be asc or desc; got {order[:20]!r}", "order")
    return order or None


def _row(rank: int, figures: RunFigures, value: float) -> dict[str, Any]:
    run = figures.run
    return {"rank": rank, "run_id": run["run_id"], "name": run["name"],
            "model_type": run["model_type"], "status": run["status"],
            "experiment": run.get("experiment", ""), "tags": run.get("tags", []),
            "data_file": file_name(run.get("data_file")), "created_at": run["created_at"],
            "value": value, "backtest": (figures.backtest or {}).get("result_id"),
            "links": {"page": url_for("history.detail", run_id=run["run_id"])}}


def board(reads: RunReads) -> dict[str, Any]:
    """The ranking the page and the API show."""
    filters = {name: params.text_param(name) for name in FILTERS}
    top = params.int_param("top", DEFAULT_TOP, 1, MAX_TOP)
    order = _order()
    runs, _ = scan_runs(reads, model_type=filters["model_type"],
                        experiment=filters["experiment"], tag=filters["tag"])
    data_files = sorted({file_name(r["data_file"]) for r in runs} - {""})
    if filters["data_file"]:
        runs = [r for r in runs if file_name(r["data_file"]) == file_name(filters["data_file"])]
    figures = figures_for(reads, runs)
    available = known_metrics(figures)
    if figures:
        metric = metric_param(available)
    else:  # nothing to rank: a well-formed metric is an empty board, not an unknown one
        metric = request.args.get("metric", "").strip() or None
        metric = check_metric(metric, []) if metric else None
    found = ranked(figures, metric, order=order) if metric else []
    direction = direction_of(metric) if metric else HIGHER
    return {"metric": metric, "label": metric_label(metric) if metric else None,
            "direction": direction,
            "order": order or ("asc" if direction == LOWER else "desc"),
            "filters": filters, "top": top,
            "rows": [_row(i + 1, f, v) for i, (f, v) in enumerate(found[:top])],
            "candidates": len(figures), "without_metric": len(figures) - len(found),
            "metrics": available, "data_files": data_files}


@bp.get("/api/leaderboard")
def api_board() -> Response:
    with get_store().reading() as reads:
        return jsonify(board(reads))


@bp.get("/leaderboard")
def index() -> str:
    with get_store().reading() as reads:
        found = board(reads)
        choices = {"experiments": reads.experiment_names(), "tags": reads.tag_names(),
                   "model_types": sorted({r["model_type"] for r in reads.list_runs(
                       limit=1000)[0]})}
    ids = [row["run_id"] for row in found["rows"][:MAX_RUNS]]
    compare = url_for("compare.page", runs=",".join(ids)) if len(ids) >= 2 else None
    return render_template("experiments/leaderboard.html", board=found, choices=choices,
                           metric_choices=metric_choices(found["metrics"]),
                           compare_url=compare, max_runs=MAX_RUNS)
