"""The seed's ExperimentTracker (../shared/seeds/metrics_alerts_experiments.md) on the run
store: an experiment is a run, so one logged from any script shows up in the web beside
the trainers' runs, with its series, hyperparameters, tags and leaderboard place.

>>> tracker = ExperimentTracker()                                   # doctest: +SKIP
>>> exp_id = tracker.create_experiment("dqn_baseline", {"gamma": 0.99}, tags=["dqn"])
>>> tracker.log_result(exp_id, episode=1, profit=12.5, sharpe=0.8)
>>> tracker.complete_experiment(exp_id, final_metrics={"best_profit": 12.5})
>>> tracker.get_leaderboard(metric="profit", top_n=10)

How the seed's terms map onto the store:

- ``create_experiment(name, hyperparameters, description, tags)`` creates a running run
  named ``name``, filed under experiment ``name``, of model type ``"experiment"`` (what
  marks a run a script logged rather than one of the trainers; the history pages filter
  on it), with ``hyperparameters`` as its config. The experiment id is the run id.
- ``log_result(exp_id, episode, **metrics)`` logs one episode through a
  :class:`~Utilities.metrics_logger.MetricsLogger` per open experiment: each metric
  becomes the series ``episode/<metric>`` (as the trainers' ``episode/reward``), written
  by the logger's thread in batches every 200 ms, so a call costs a few microseconds and
  no transaction. While the experiment is open the logger heartbeats its run; a script
  that dies leaves it marked lost (failed) within 30 s, as a killed trainer's.
- ``complete_experiment`` flushes, merges ``final_metrics`` into the run's summary and
  marks it completed. Experiments still open when the tracker closes (or the interpreter
  exits) are marked stopped, or failed when the script died of an exception.
- The figures (final, best and mean of a metric) come from the store's per-series
  statistics under ONE rule (:mod:`Utilities.run_figures`, also the compare view's and the
  leaderboard page's). A metric is named as the seed names it: ``profit`` means
  ``episode/profit``; a name with a slash is a full key (``train/loss``).
- ``experiments_dir`` (the seed's argument) is the folder ``export_comparison`` writes
  into, created on first export. It holds no store of its own: a second store would hide
  the experiments from the web. The store is ``store``, else ``database_url``, else
  :func:`Utilities.run_store.default_database_url` (``DATABASE_URL``, else the
  dashboard's SQLite file) — where the web looks.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
import threading
import weakref
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from Utilities.input_errors import InputError
from Utilities.metrics_logger import EXPERIMENT_MODEL_TYPE, MetricsLogger
from Utilities.run_figures import direction_of, rank_key, series_figures  # the one rule
from Utilities.run_store import (
    MAX_PAGE_SIZE,
    TERMINAL_STATUSES,
    RunStore,
    RunStoreError,
)
from Utilities.serialization import to_plain

log = logging.getLogger(__name__)

FIGURES = ("final", "best", "mean")
EXPORT_FORMATS = ("json", "csv")
# Runs read per page while ranking the whole store.
_PAGE = MAX_PAGE_SIZE


def metric_key(metric: str) -> str:
    """The stored key of a metric as the seed names it: ``profit`` → ``episode/profit``;
    a name with a slash is a key already (``train/loss``)."""
    if not isinstance(metric, str) or not metric.strip():
        raise InputError(f"a metric must be a non-empty name; got {metric!r}", "metric")
    metric = metric.strip()
    return metric if "/" in metric else f"episode/{metric}"


def _short(key: str) -> str:
    """``episode/profit`` → ``profit``: how the seed names an episode metric."""
    return key.removeprefix("episode/")


class ExperimentTracker:
    """Create, log, complete, compare, rank, export, archive and delete experiments
    (runs of the run store). Thread-safe; a context manager (close() on exit)."""

    def __init__(self, experiments_dir: str | Path = "experiments", *,
                 store: RunStore | None = None, database_url: str | None = None,
                 flush_interval: float = 0.2) -> None:
        """``experiments_dir``: where exports go. ``store`` (else the store at
        ``database_url``, else the dashboard's) holds the experiments.
        ``flush_interval``: seconds between the loggers' batched writes."""
        self.experiments_dir = Path(experiments_dir)
        self._owns_store = store is None
        self.store = store if store is not None else RunStore(database_url)
        self.flush_interval = flush_interval
        self._loggers: dict[str, MetricsLogger] = {}
        self._lock = threading.Lock()
        self._closed = False
        # Experiments left open when the script ends are flushed and ended, not lost.
        self._at_exit = weakref.finalize(self, _close_at_exit, weakref.ref(self))

    # ------------------------------------------------------------------ one experiment

    def create_experiment(self, name: str, hyperparameters: Mapping[str, Any] | None = None,
                          description: str = "", tags: Iterable[str] | None = None, *,
                          data_file: str = "") -> str:
        """Start an experiment (a running run): its id, the run id."""
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"an experiment needs a name; got {name!r}", "name")
        if hyperparameters is not None and not isinstance(hyperparameters, Mapping):
            raise InputError("hyperparameters must be a dict of name → value; got "
                             f"{type(hyperparameters).__name__}", "hyperparameters")
        if isinstance(tags, str):  # tags="dqn" would become four one-letter tags
            raise InputError("tags must be a list of strings, not one string", "tags")
        run_id = self.store.create_run(
            name=name.strip(), model_type=EXPERIMENT_MODEL_TYPE, experiment=name.strip(),
            config=dict(hyperparameters or {}), tags=list(tags or ()),
            description=description or "", data_file=data_file)
        self._open(run_id)  # heartbeats from now on, as a trainer's run
        return run_id

    def log_result(self, exp_id: str, episode: int, *values: float, **metrics: float) -> None:
        """One episode's results, each as the series ``episode/<metric>`` at step
        ``episode``. Queued in memory and written in batches (cheap in a loop). Values
        given by position are the seed's episode fields in order: profit, sharpe,
        win_rate, drawdown, num_trades, epsilon, learning_rate."""
        logger = self._loggers.get(exp_id) or self._open(exp_id)
        logger.log_episode(episode, *values, **metrics)

    def save_experiment(self, exp_id: str) -> None:
        """Write what is queued for the experiment now (the seed's explicit save)."""
        logger = self._loggers.get(exp_id)
        if logger is not None:
            logger.flush()
        else:
            self.store.get_run(exp_id)  # RunNotFound for an unknown id

    def complete_experiment(self, exp_id: str,
                            final_metrics: Mapping[str, Any] | None = None) -> dict:
        """Flush, merge ``final_metrics`` into the run's summary, mark it completed (a
        no-op for one completed already); return the run."""
        if final_metrics is not None and not isinstance(final_metrics, Mapping):
            raise InputError("final_metrics must be a dict; got "
                             f"{type(final_metrics).__name__}", "final_metrics")
        self._close_logger(exp_id)
        if final_metrics:
            self.store.update_run(exp_id, summary=dict(final_metrics))
        run = self.store.get_run(exp_id)
        if run["status"] != "completed":
            run = self.store.set_status(exp_id, "completed")  # InvalidTransition if ended
        return run

    def get_experiment(self, exp_id: str) -> dict:
        """The experiment as the store has it (:func:`run_as_dict`) with its figures."""
        run = self.store.get_run(exp_id)
        stats = self.store.series_statistics([exp_id]).get(exp_id, {})
        return {**run, "figures": _figures(stats)}

    def archive_experiment(self, exp_id: str) -> dict:
        """Hide a finished experiment from lists (restorable; RunBusy while open)."""
        return self.store.archive_run(exp_id)

    def restore_experiment(self, exp_id: str) -> dict:
        """Show an archived experiment in lists again."""
        return self.store.restore_run(exp_id)

    def delete_experiment(self, exp_id: str) -> None:
        """Delete an experiment with its series and events. One this tracker has open is
        stopped first; one open elsewhere is refused (RunBusy)."""
        if self._close_logger(exp_id):
            run = self.store.get_run(exp_id)
            if run["status"] not in TERMINAL_STATUSES:
                self.store.set_status(exp_id, "stopped")
        self.store.delete_run(exp_id)

    # ------------------------------------------------------------------ several of them

    def compare_experiments(self, exp_ids: Iterable[str],
                            metrics: Iterable[str] | None = None) -> dict[str, Any]:
        """Experiments side by side, in the order given::

            {"experiments": {id: {name, experiment, status, description, tags,
                                  created_at, hyperparameters, summary}},
             "hyperparameters": {"keys": [...], "differing": [...],
                                 "values": {key: {id: value}}},
             "metrics": {metric: {id: {final, best, mean, points, ...} | None}},
             "best": {metric: id of the best final value}}

        ``metrics``: the seed's names (``profit``) or keys; default every ``episode/*``
        metric any of them logged. RunNotFound names unknown ids; InputError a metric
        none of them has."""
        ids = self._ids(exp_ids)
        runs = [self.store.get_run(exp_id) for exp_id in ids]
        stats = self.store.series_statistics(ids)
        keys = self._metric_keys(metrics, stats)
        table: dict[str, dict[str, Any]] = {}
        best: dict[str, str | None] = {}
        for key in keys:
            row = {exp_id: (series_figures(key, stats[exp_id][key])
                            if key in stats.get(exp_id, {}) else None) for exp_id in ids}
            table[_short(key)] = row
            best[_short(key)] = _best_of(key, {i: f["final"] for i, f in row.items() if f})
        return {"experiments": {run["run_id"]: _description(run) for run in runs},
                "hyperparameters": _hyperparameters(runs),
                "metrics": table, "best": best}

    def get_leaderboard(self, metric: str = "profit", top_n: int = 10, *,
                        figure: str = "best", experiment: str | None = None,
                        model_type: str | None = None, tag: str | None = None,
                        ) -> list[dict[str, Any]]:
        """Runs ranked by a metric, best first (by the metric's direction: a loss is best
        lowest), at most ``top_n``. The value is the series' ``figure`` (best, final or
        mean), else a number of that name in the run's summary (``final_metrics``).
        Every unarchived run of the store takes part, tracker experiments and trainers'
        runs alike, narrowed by ``experiment``, ``model_type`` and ``tag``."""
        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
            raise InputError(f"top_n must be a whole number >= 1; got {top_n!r}", "top_n")
        if figure not in FIGURES:
            raise InputError(f"figure must be one of {', '.join(FIGURES)}; got {figure!r}",
                             "figure")
        key, name = metric_key(metric), metric.strip()
        direction = direction_of(key)
        entries = []
        for runs in self._all_runs(experiment=experiment, model_type=model_type, tag=tag):
            stats = self.store.series_statistics([run["run_id"] for run in runs])
            for run in runs:
                series = stats.get(run["run_id"], {}).get(key)
                figures = series_figures(key, series) if series else None
                value = figures[figure] if figures else _summary_number(run, name)
                if value is not None:
                    entries.append((run, value, figures))
        entries.sort(key=lambda entry: rank_key(entry[1], direction))
        return [{"rank": rank, "exp_id": run["run_id"], "name": run["name"],
                 "experiment": run["experiment"], "model_type": run["model_type"],
                 "status": run["status"], "tags": run["tags"], "metric": name,
                 "figure": figure if figures else "summary", "value": value,
                 "figures": figures, "hyperparameters": run["config"]}
                for rank, (run, value, figures) in enumerate(entries[:top_n], start=1)]

    def export_comparison(self, exp_ids: Iterable[str], format: str = "json",
                          metrics: Iterable[str] | None = None) -> str:
        """Write :meth:`compare_experiments` to ``<experiments_dir>/comparison_<UTC
        time>.<format>`` and return its path. JSON: the comparison as it is. CSV: one row
        per experiment: id, name, experiment, status, tags, description, ``hp.<key>`` per
        hyperparameter (differing keys first), ``<metric>.final/.best/.mean``."""
        if format not in EXPORT_FORMATS:
            raise InputError(f"format must be one of {', '.join(EXPORT_FORMATS)}; got "
                             f"{format!r}", "format")
        comparison = self.compare_experiments(exp_ids, metrics)
        self.experiments_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S_%fZ")
        target = self.experiments_dir / f"comparison_{stamp}.{format}"
        temporary = target.with_name(f".{target.name}.tmp")
        if format == "json":
            temporary.write_text(json.dumps(to_plain(comparison), indent=2), encoding="utf-8")
        else:
            _write_comparison_csv(temporary, comparison)
        temporary.replace(target)  # a reader never sees half a file
        log.info("comparison of %d experiments written to %s",
                 len(comparison["experiments"]), target)
        return str(target)

    # ------------------------------------------------------------------------ plumbing

    def _open(self, exp_id: str) -> MetricsLogger:
        """The experiment's logger, opened on first use; refused for an ended run."""
        with self._lock:
            logger = self._loggers.get(exp_id)
            if logger is not None:
                return logger
            if self._closed:
                raise InputError("this tracker is closed", "exp_id")
            run = self.store.get_run(exp_id)  # RunNotFound for an unknown id
            if run["status"] in TERMINAL_STATUSES:
                raise InputError(f"experiment {exp_id} is {run['status']}: it takes no more "
                                 "results", "exp_id")
            logger = self._loggers[exp_id] = MetricsLogger(
                self.store, exp_id, flush_interval=self.flush_interval)
            return logger

    def _close_logger(self, exp_id: str) -> bool:
        """Flush and close the experiment's logger; False when none was open."""
        with self._lock:
            logger = self._loggers.pop(exp_id, None)
        if logger is None:
            return False
        logger.close()
        return True

    def close(self, error: BaseException | None = None) -> None:
        """Flush every open experiment and mark it stopped (failed with ``error``); close
        the store if the tracker opened it. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loggers, self._loggers = self._loggers, {}
        self._at_exit.detach()
        status = "stopped" if error is None or isinstance(error, KeyboardInterrupt) else "failed"
        message = None if status == "stopped" else f"{type(error).__name__}: {error}"
        for exp_id, logger in loggers.items():
            logger.close()
            try:
                if self.store.get_run(exp_id)["status"] not in TERMINAL_STATUSES:
                    self.store.set_status(exp_id, status, error=message)
            except RunStoreError as exc:
                log.warning("could not end experiment %s: %s", exp_id, exc)
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> ExperimentTracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None,
                 traceback: object) -> None:
        self.close(error)

    @staticmethod
    def _ids(exp_ids: Iterable[str]) -> list[str]:
        if isinstance(exp_ids, str):
            raise InputError("exp_ids must be a list of experiment ids, not one id",
                             "exp_ids")
        ids = list(dict.fromkeys(exp_ids))
        if not ids:
            raise InputError("name at least one experiment to compare", "exp_ids")
        return ids

    @staticmethod
    def _metric_keys(metrics: Iterable[str] | None,
                     stats: Mapping[str, Mapping[str, Any]]) -> list[str]:
        logged = {key for series in stats.values() for key in series}
        if metrics is None:
            return sorted(key for key in logged if key.startswith("episode/"))
        if isinstance(metrics, str):
            metrics = [metrics]
        keys = list(dict.fromkeys(metric_key(m) for m in metrics))
        unknown = [_short(key) for key in keys if key not in logged]
        if unknown:
            raise InputError(f"unknown metric(s) {', '.join(unknown)}: none of these "
                             f"experiments logged them (logged: "
                             f"{', '.join(sorted(map(_short, logged))) or 'nothing'})",
                             "metrics")
        return keys

    def _all_runs(self, **filters: str | None) -> Iterable[list[dict]]:
        """Every unarchived run matching the filters, a page at a time."""
        offset = 0
        while True:
            runs, total = self.store.list_runs(limit=_PAGE, offset=offset, **filters)
            if runs:
                yield runs
            offset += len(runs)
            if not runs or offset >= total:
                return


def _figures(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """{metric: figures} of a run's series (episode metrics by their short names)."""
    return {_short(key): series_figures(key, row) for key, row in sorted(stats.items())}


def _best_of(key: str, values: Mapping[str, float | None]) -> str | None:
    found = [(rank_key(v, direction_of(key)), i) for i, v in values.items() if v is not None]
    return min(found)[1] if found else None


def _summary_number(run: Mapping[str, Any], name: str) -> float | None:
    value = (run.get("summary") or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _description(run: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": run["name"], "experiment": run["experiment"], "status": run["status"],
            "model_type": run["model_type"], "description": run["description"],
            "tags": run["tags"], "created_at": run["created_at"],
            "hyperparameters": run["config"], "summary": run["summary"]}


def _hyperparameters(runs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Every hyperparameter key, those whose values differ between runs first (a key a
    run lacks differs), and each run's value."""
    keys = sorted({key for run in runs for key in run["config"]})
    values = {key: {run["run_id"]: run["config"].get(key) for run in runs} for key in keys}

    def differs(key: str) -> bool:
        seen = {json.dumps(to_plain(run["config"].get(key, _MISSING)), sort_keys=True,
                           default=str) for run in runs}
        return len(seen) > 1

    differing = [key for key in keys if differs(key)]
    return {"keys": differing + [key for key in keys if key not in differing],
            "differing": differing, "values": values}


_MISSING = "\x00missing"  # a key a run lacks: differs from every value it could have


def _write_comparison_csv(target: Path, comparison: Mapping[str, Any]) -> None:
    hyper = comparison["hyperparameters"]
    columns = ["exp_id", "name", "experiment", "status", "tags", "description",
               *(f"hp.{key}" for key in hyper["keys"]),
               *(f"{metric}.{figure}" for metric in comparison["metrics"]
                 for figure in FIGURES)]
    with target.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for exp_id, info in comparison["experiments"].items():
            row: dict[str, Any] = {"exp_id": exp_id, "name": info["name"],
                                   "experiment": info["experiment"], "status": info["status"],
                                   "tags": ";".join(info["tags"]),
                                   "description": info["description"]}
            for key in hyper["keys"]:
                value = hyper["values"][key][exp_id]
                row[f"hp.{key}"] = (json.dumps(to_plain(value)) if isinstance(value, dict | list)
                                    else value)
            for metric, figures in comparison["metrics"].items():
                for figure in FIGURES:
                    row[f"{metric}.{figure}"] = (figures[exp_id] or {}).get(figure)
            writer.writerow(row)


def _close_at_exit(ref: weakref.ReferenceType[ExperimentTracker]) -> None:
    """At the interpreter's exit: flush a tracker never closed and end its open
    experiments (failed when the script died of an exception, kept in sys.last_value)."""
    tracker = ref()
    if tracker is not None:
        tracker.close(getattr(sys, "last_value", None))
