"""A comparison of runs as tables: their hyperparameters (differing keys first), their
summary figures (final and best per metric) and their models' backtest statistics beside
the baselines, and the same tables as CSV or JSON. What the compare page shows, its
exports and the ExperimentTracker's ``compare_experiments``/``export_comparison`` return.

Every table is run-columned: a row is ``{"key", "values": [one per run, in run order]}``
plus what the row needs (``differs``, ``direction``, ``best``), so the CSV is one header
(``table, key, <run>...``) for all of them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

from Utilities.run_figures import (
    RunFigures,
    best_index,
    direction_of,
    finite,
    model_dir_name,
)
from Utilities.serialization import to_plain

# Backtest statistics a comparison shows, in order (all are numbers).
BACKTEST_STATS = ("Return [%]", "Return (Ann.) [%]", "Sharpe Ratio", "Sortino Ratio",
                  "Calmar Ratio", "Max. Drawdown [%]", "Volatility (Ann.) [%]",
                  "Win Rate [%]", "# Trades", "Profit Factor", "Exposure Time [%]",
                  "Equity Final [$]")
SERIES_FIGURES = ("final", "best")


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"train_params.learning_rate": 0.0003, ...}``; lists stay
    values (shown as JSON)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _same(values: list[Any]) -> bool:
    texts = {json.dumps(to_plain(v), sort_keys=True, default=str) for v in values}
    return len(texts) == 1


def hyperparameters(runs: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per flattened config key (plus model type and data file): the keys whose
    values differ between the runs first (a key a run lacks differs), then the rest,
    each group by name."""
    flats = [{"model_type": r.get("model_type"), "data_file": file_name(r.get("data_file")),
              **flatten(r.get("config") or {})} for r in runs]
    keys = sorted({k for flat in flats for k in flat})
    rows = [{"key": k, "values": [flat.get(k) for flat in flats],
             "differs": not _same([flat.get(k, _MISSING) for flat in flats])} for k in keys]
    return sorted(rows, key=lambda row: (not row["differs"], row["key"]))


def file_name(path: str | None) -> str:
    """A stored file path as tables show it: its name only (folders differ by machine)."""
    return PurePath(path or "").name


_MISSING = "\x00missing"  # never a config value: a key a run lacks differs from any value


def summary(figures: list[RunFigures], keys: Iterable[str] | None = None,
            ) -> list[dict[str, Any]]:
    """Rows of final and best per series key (``keys``, default every key some run
    logged), then the summary fields and the duration; each with its direction and the
    index of the best run (None when no run has a number)."""
    if keys is None:
        keys = sorted({k for f in figures for k in f.series})
    metrics = [f"{figure}:{key}" for key in keys for figure in SERIES_FIGURES]
    metrics += sorted({f"summary:{k}" for f in figures for k in f.summary})
    metrics.append("run:duration_seconds")
    rows = []
    for metric in metrics:
        values = [f.value(metric) for f in figures]
        direction = direction_of(metric.partition(":")[2])
        rows.append({"key": metric, "values": values, "direction": direction,
                     "best": best_index(values, direction)})
    return rows


def backtests(figures: list[RunFigures]) -> dict[str, Any]:
    """Each run's model backtest (where it came from) and the statistics rows: the
    strategy's values and, under ``baselines``, each baseline's on that run's bars and
    costs (Buy & Hold; Random when the backtest had it). Empty when no run's model was
    backtested."""
    sources = [f.backtest for f in figures]
    if not any(sources):
        return {"sources": sources, "rows": []}
    names = list(dict.fromkeys(name for s in sources if s for name in s["baselines"]))
    rows = []
    for stat in BACKTEST_STATS:
        values = [s["statistics"].get(stat) if s else None for s in sources]
        if all(v is None for v in values):
            continue
        direction = direction_of(stat)
        rows.append({"key": stat, "values": values, "direction": direction,
                     "best": best_index(values, direction),
                     "baselines": {name: [(s["baselines"].get(name) or {}).get(stat)
                                          if s else None for s in sources]
                                   for name in names}})
    return {"sources": [_source(s) for s in sources], "rows": rows, "baselines": names}


def _source(backtest: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if backtest is None:
        return None
    period = backtest.get("period") or {}
    return {"result_id": backtest["result_id"], "created_at": backtest["created_at"],
            "data_file": file_name(backtest.get("data_file")),
            "in_sample": backtest["in_sample"], "start": period.get("start"),
            "end": period.get("end"), "bars": period.get("bars")}


def run_row(figures: RunFigures) -> dict[str, Any]:
    """A run's identity as a comparison names it."""
    run = figures.run
    return {"run_id": run["run_id"], "name": run["name"], "model_type": run["model_type"],
            "status": run["status"], "experiment": run.get("experiment", ""),
            "tags": run.get("tags", []), "created_at": run.get("created_at"),
            "data_file": file_name(run.get("data_file")),
            "model": model_dir_name(run) or None, **figures.facts}


def comparison(figures: list[RunFigures], keys: Iterable[str] | None = None,
               ) -> dict[str, Any]:
    """The tables of a comparison (see the module docstring)."""
    return {"runs": [run_row(f) for f in figures],
            "hyperparameters": hyperparameters([f.run for f in figures]),
            "summary": summary(figures, keys), "backtests": backtests(figures)}


def as_json(tables: Mapping[str, Any]) -> str:
    """A comparison as JSON text (no NaN: missing figures are null)."""
    return json.dumps(to_plain(tables), indent=2, allow_nan=False)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(finite(value)) if finite(value) is not None else ""
    if isinstance(value, list | dict):
        return json.dumps(to_plain(value), sort_keys=True)
    return value


def as_csv(tables: Mapping[str, Any]) -> str:
    """A comparison as one CSV: ``table, key, <run name (id)>...``; tables
    ``hyperparameter`` (``differs`` rows first), ``summary``, ``backtest`` and
    ``baseline:<name>``; empty cells where a run has no value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["table", "key", *(f"{r['name']} ({r['run_id'][:8]})"
                                       for r in tables["runs"])])
    writer.writerow(["run", "run_id", *(r["run_id"] for r in tables["runs"])])
    for row in tables["hyperparameters"]:
        writer.writerow(["hyperparameter", row["key"], *map(_cell, row["values"])])
    for row in tables["summary"]:
        writer.writerow(["summary", row["key"], *map(_cell, row["values"])])
    for row in tables["backtests"]["rows"]:
        writer.writerow(["backtest", row["key"], *map(_cell, row["values"])])
        for name, values in row["baselines"].items():
            writer.writerow([f"baseline:{name}", row["key"], *map(_cell, values)])
    return out.getvalue()
