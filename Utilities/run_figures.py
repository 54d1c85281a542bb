"""The one rule for a run's summary figures: what the compare view, the leaderboard, the
experiment pages, the model library's sort and the ExperimentTracker call a run's final,
best and mean of a metric, its summary fields and its backtest statistics.

Figures come from the store's per-series statistics rows, which the writer keeps in the
same transaction as the points (:meth:`Utilities.run_store.RunReads.series_statistics`):
one statement for any number of runs, whatever their series' length. Nothing here reads
a point.

A **metric** is named ``<figure>:<name>``:

* ``final:<key>``, ``best:<key>``, ``mean:<key>`` — a logged series (``final:episode/reward``):
  its value at the highest step, its best value, the mean of its finite values;
* ``summary:<field>`` — a number in the run's summary (what the trainer reported at the
  end: ``summary:test_return_pct``, ``summary:best_val_loss``); nested dicts are flattened
  with dots (``summary:train_class_shares.up``);
* ``backtest:<statistic>`` — a statistic of the newest backtest of the run's saved model
  (``backtest:Sharpe Ratio``), out-of-sample results preferred (see :func:`pick_backtest`);
* ``run:duration_seconds`` — how long the run trained.

**Direction** (which way is better), one rule for every metric, by its name
(:func:`direction_of`): a name holding "drawdown" is best closest to zero (the backtester
writes drawdowns as negative percentages, the seed's ``log_episode(drawdown=...)`` as
positive fractions); a name holding loss, error, mse, mae, rmse, mape, volatility,
commission, fee, regret, latency or duration is best lowest; every other metric is best
highest (reward, return, Sharpe, accuracy, win rate). A series' best is its maximum, its
minimum, or whichever of the two lies closer to zero, accordingly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import Any

from Utilities.input_errors import InputError

FIGURES = ("final", "best", "mean")
KINDS = (*FIGURES, "summary", "backtest", "run")
RUN_FIELDS = ("duration_seconds",)
HIGHER, LOWER, ZERO = "higher", "lower", "zero"
_ZERO_WORDS = re.compile(r"drawdown", re.IGNORECASE)
_LOWER_WORDS = re.compile(r"loss|error|mse|mae|rmse|mape|volatility|commission|fee|regret|"
                          r"latency|duration", re.IGNORECASE)


# ----------------------------------------------------------------------------- rules


def direction_of(name: str) -> str:
    """Which way a metric is better, by its name (the rule in the module docstring):
    ZERO (closest to zero), LOWER or HIGHER. ``name`` may be a metric or a bare key."""
    if _ZERO_WORDS.search(name):
        return ZERO
    return LOWER if _LOWER_WORDS.search(name) else HIGHER


def finite(value: Any) -> float | None:
    """A finite float, else None (bools, strings, NaN and infinities are no figure)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def rank_key(value: float, direction: str) -> float:
    """Sort key putting the better of two values first (ascending)."""
    return -value if direction == HIGHER else abs(value) if direction == ZERO else value


def best_index(values: Iterable[Any], direction: str) -> int | None:
    """Index of the best finite value (the first among equals); None if none is finite
    or all are equal (nothing to single out)."""
    numbers = [finite(v) for v in values]
    found = [(rank_key(v, direction), i) for i, v in enumerate(numbers) if v is not None]
    if not found or (len(found) > 1 and len({key for key, _ in found}) == 1):
        return None
    return min(found)[1]


def parse_metric(metric: str) -> tuple[str, str]:
    """(kind, name) of a metric ``kind:name``; InputError naming ``metric`` otherwise."""
    kind, sep, name = (metric or "").partition(":")
    if not sep or kind not in KINDS or not name:
        raise InputError(f"metric must be one of {', '.join(k + ':…' for k in KINDS)} "
                         f"(e.g. best:episode/reward); got {metric!r}", "metric")
    return kind, name


def metric_label(metric: str) -> str:
    """How a page names a metric: 'best episode/reward', 'backtest Sharpe Ratio'."""
    kind, name = parse_metric(metric)
    return name.replace("_", " ") if kind == "run" else f"{kind} {name}"


# ---------------------------------------------------------------------------- series


def series_figures(key: str, stats: Mapping[str, Any]) -> dict[str, Any]:
    """Final, best and mean of one series from its statistics row, with the steps they
    were reached at, its extremes, point count and direction."""
    direction = direction_of(key)
    low, high = finite(stats.get("min_value")), finite(stats.get("max_value"))
    best, step = (high, stats.get("max_step")) if direction == HIGHER else \
        (low, stats.get("min_step"))
    if direction == ZERO and high is not None and low is not None and abs(high) < abs(low):
        best, step = high, stats.get("max_step")
    return {"final": finite(stats.get("last_value")), "final_step": stats.get("last_step"),
            "best": best, "best_step": step if best is not None else None,
            "mean": finite(stats.get("mean")), "min": low, "max": high,
            "points": int(stats.get("points") or 0), "direction": direction}


def flat_numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a (nested) dict, keys joined with dots."""
    found: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found.update(flat_numbers(value, name + "."))
        elif (number := finite(value)) is not None:
            found[name] = number
    return found


# -------------------------------------------------------------------------- backtests


def model_dir_name(run: Mapping[str, Any]) -> str:
    """The folder name of a run's saved model ('' when it saved none): what saved
    backtests name their model by."""
    return PurePath(run.get("model_dir") or "").name


def pick_backtest(results: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The backtest a model's figures come from: the newest out-of-sample result, else
    the newest at all (flagged ``in_sample``). Results carry ``created_at`` (ISO) and
    ``in_sample`` (bool)."""
    ordered = sorted(results, key=lambda r: str(r.get("created_at") or ""), reverse=True)
    outside = [r for r in ordered if not r.get("in_sample")]
    return (outside or ordered or [None])[0]


def backtest_figures(result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A saved backtest as figures: its numeric statistics, each baseline's, and where
    it came from (``{"result_id", "created_at", "data_file", "in_sample", "period",
    "statistics", "baselines"}``)."""
    if result is None:
        return None
    summary = result.get("summary") or {}
    return {"result_id": result.get("id"), "created_at": result.get("created_at"),
            "data_file": result.get("data_file") or summary.get("data_file"),
            "in_sample": bool(result.get("in_sample")), "period": summary.get("period"),
            "statistics": flat_numbers(summary.get("statistics") or {}),
            "baselines": {name: flat_numbers(stats or {})
                          for name, stats in (summary.get("baselines") or {}).items()}}


# ------------------------------------------------------------------------------ runs


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    moments = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (start, end)]
    return (moments[1] - moments[0]).total_seconds()


@dataclass
class RunFigures:
    """One run's figures: per series (:func:`series_figures`), summary numbers, its
    model's backtest (:func:`backtest_figures`, None if never backtested) and run facts."""

    run: dict[str, Any]
    series: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    backtest: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return self.run["run_id"]

    @property
    def facts(self) -> dict[str, float | None]:
        return {"duration_seconds": _seconds(self.run.get("started_at"),
                                             self.run.get("ended_at"))}

    def value(self, metric: str) -> float | None:
        """The run's value of a metric (``kind:name``), None where it has none."""
        kind, name = parse_metric(metric)
        if kind in FIGURES:
            return (self.series.get(name) or {}).get(kind)
        if kind == "summary":
            return self.summary.get(name)
        if kind == "backtest":
            return (self.backtest or {}).get("statistics", {}).get(name)
        return self.facts.get(name)

    def metrics(self) -> list[str]:
        """Every metric this run has a value for."""
        names = [f"{f}:{key}" for key in self.series for f in FIGURES
                 if self.series[key][f] is not None]
        names += [f"summary:{k}" for k in self.summary]
        names += [f"backtest:{k}" for k in (self.backtest or {}).get("statistics", {})]
        names += [f"run:{k}" for k, v in self.facts.items() if v is not None]
        return names

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "series": self.series, "summary": self.summary,
                "backtest": self.backtest, **self.facts}


def figures_of(run: dict[str, Any], stats: Mapping[str, Mapping[str, Any]],
               backtest: Mapping[str, Any] | None = None) -> RunFigures:
    """One run's figures from its series' statistics rows and its chosen backtest."""
    return RunFigures(run=run,
                      series={key: series_figures(key, row) for key, row in stats.items()},
                      summary=flat_numbers(run.get("summary") or {}),
                      backtest=backtest_figures(backtest))


def figures_of_runs(reads: Any, runs: list[dict[str, Any]],
                    backtests: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
                    stats: Mapping[str, Mapping[str, Any]] | None = None) -> list[RunFigures]:
    """Figures of many runs: ONE statistics statement for all of them (``reads`` is a
    :class:`~Utilities.run_store.RunReads` or a RunStore). ``backtests`` maps a model
    folder name to its saved results (the web layer reads them: Utilities never read
    the dashboard's result folders); ``stats``: the runs' statistics, already read."""
    if stats is None:
        stats = reads.series_statistics([run["run_id"] for run in runs]) if runs else {}
    backtests = backtests or {}
    return [figures_of(run, stats.get(run["run_id"], {}),
                       pick_backtest(backtests.get(model_dir_name(run), ())))
            for run in runs]


def known_metrics(figures: Iterable[RunFigures]) -> list[str]:
    """Every metric some run has, in a stable order: series figures, summary, backtest,
    run facts."""
    order = {kind: i for i, kind in enumerate(KINDS)}
    found = {m for f in figures for m in f.metrics()}
    return sorted(found, key=lambda m: (order[m.partition(":")[0]], m.partition(":")[2],
                                        m.partition(":")[0]))


def check_metric(metric: str, figures: Iterable[RunFigures]) -> str:
    """``metric`` if well formed and some run has it; InputError naming ``metric``
    (and the metric) otherwise."""
    parse_metric(metric)
    figures = list(figures)
    if figures and not any(f.value(metric) is not None for f in figures):
        raise InputError(f"unknown metric {metric!r}: no run here has it", "metric")
    return metric


def ranked(figures: Iterable[RunFigures], metric: str, *, order: str | None = None,
           ) -> list[tuple[RunFigures, float]]:
    """Runs that have ``metric``, best first by its direction (``order`` "asc" or "desc"
    overrides it); ties keep the given order."""
    direction = direction_of(metric)
    if order not in (None, "", "asc", "desc"):
        raise InputError(f"order must be asc or desc; got {order!r}", "order")
    if order:
        direction = LOWER if order == "asc" else HIGHER
    found = [(f, v) for f in figures if (v := f.value(metric)) is not None]
    return sorted(found, key=lambda pair: rank_key(pair[1], direction))


def ranked_first(figures: Iterable[RunFigures], metric: str | None, *,
                 order: str | None = None) -> list[RunFigures]:
    """Every run: those with ``metric`` best first (as :func:`ranked`), then the rest in
    the given order."""
    figures = list(figures)
    if metric is None:
        return figures
    first = [f for f, _ in ranked(figures, metric, order=order)]
    seen = {f.run_id for f in first}
    return first + [f for f in figures if f.run_id not in seen]


def default_metric(available: Iterable[str]) -> str | None:
    """The metric a page ranks by when none is chosen: out-of-sample return first."""
    available = list(available)
    for metric in ("backtest:Return [%]", "summary:test_return_pct",
                   "summary:validation_return_pct", "best:episode/reward",
                   "summary:val_accuracy", "summary:test_accuracy", "best:train/val_loss"):
        if metric in available:
            return metric
    return available[0] if available else None
