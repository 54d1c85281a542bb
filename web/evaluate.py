"""Evaluate runs on held-out data: backtest each run's saved model with the same costs,
so a comparison ranks models on out-of-sample trading, not only on training reward.

Each run's model is backtested as any backtest is (:mod:`web.backtest_jobs`: the same
queue, the same saved result with its own page, found later as a backtest of that
model; the result also records ``origin: {"evaluation", "run_id"}``), on its own
training file's held-out test slice by default, or on one data file chosen for all
(then the test slice where that file is the model's training file, else the whole
file). Costs (commission, slippage, initial balance, fill) are the same for every run:
the ones given, else the platform's defaults (``EnvParams``), never each model's own.

An evaluation submits its backtests one after another from a thread of its own (so it
never fills the shared queue: a person's backtest waits behind one of them at most)
and is recorded in ``<backtests>/.evaluations/<id>.json``, so it is known after a
restart (runs not yet submitted then read as interrupted).

Routes
  ``POST /api/evaluations``        JSON ``{"runs": [<run id>, ...] (2 to 20) | "experiment":
                                   <name>, "csv"?: <listed data file>, "start"?, "end"?,
                                   "commission"?, "slippage"?, "initial_balance"?,
                                   "fill"?}`` → 202 ``{"id", "status", "status_url", "url"}``;
                                   400 (not an object, unknown field), 404 (unknown run
                                   ids or experiment, named in ``unknown``), 422 (bad
                                   value; runs without a saved model, or whose training
                                   file is not in the data folder when no ``csv`` is
                                   given, named in ``runs_without``), 503 (store down)
  ``GET  /api/evaluations/<id>``   ``{"id", "status" (running | done), "progress", "csv",
                                   "costs", "fill", "runs": [{"run_id", "run_name",
                                   "model", "backtest_id", "status", "progress", "url",
                                   "error", "figures"}], "ranking"}``: ``figures`` of a done
                                   backtest are its period, Return, Sharpe, max drawdown,
                                   trades, the percentile among random policies and
                                   buy-and-hold's return; ``ranking`` the run ids by
                                   Return, best first; 404 for an unknown id
  ``GET  /evaluate?runs=a,b&experiment=``  the form (the runs listed, costs, data file)
  ``POST /evaluate``               the same from the form: 303 to the evaluation's page,
                                   or the form again with the error beside its field
  ``GET  /evaluate/<id>``          the results table, refreshed while backtests run
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from Utilities.accounting import COSTS, EnvParams
from Utilities.backtest_report import percentile_text
from Utilities.number_format import figure
from Utilities.run_store import RunNotFound, RunStoreError
from web.backtest_jobs import BacktestJobs, QueueFull, jobs
from web.backtest_request import BacktestRequest, FieldErrors, blank, model_choices, prepare
from web.backtest_results import backtests_dir, saved
from web.datafiles import list_csv_files, shown_name
from web.json_io import ApiError, error_reply, read_json_body
from web.query_params import is_run_id
from web.store import get_store

log = logging.getLogger(__name__)

bp = Blueprint("evaluate", __name__)

FIELDS = ("runs", "experiment", "csv", "start", "end", *COSTS, "fill")
MIN_RUNS, MAX_RUNS = 2, 20
MAX_JSON_BYTES = 64 * 1024
FOLDER = ".evaluations"
EXTENSION = "evaluations"
QUEUE_RETRY_S = 5.0  # a full backtest queue is asked again after this long
POLL_MS = 1000
EVALUATION_ID = re.compile(r"eval-\d{8}-\d{6}-[0-9a-f]{6}")
INTERRUPTED = "interrupted: the dashboard stopped before this run's backtest was queued"


class EvaluationError(ApiError):
    """A refused evaluation, with data beside the message (``unknown`` ids, the
    ``runs_without`` a model or data file)."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 **extra: Any) -> None:
        super().__init__(status, message, field)
        self.extra = extra


@dataclass
class Entry:
    """One run of an evaluation and its backtest (once queued)."""

    run_id: str
    run_name: str
    model: str  # the model folder's name in the library
    request: BacktestRequest | None = None  # None once read back from disk
    backtest_id: str | None = None
    error: str | None = None  # why it could not be queued

    def record(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "run_name": self.run_name, "model": self.model,
                "backtest_id": self.backtest_id, "error": self.error}


@dataclass
class Evaluation:
    id: str
    created_at: str
    csv: str | None
    costs: dict[str, Any]
    fill: str
    entries: list[Entry]
    finished: threading.Event = field(default_factory=threading.Event)

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "created_at": self.created_at, "csv": self.csv,
                "costs": self.costs, "fill": self.fill,
                "runs": [entry.record() for entry in self.entries]}


# --------------------------------------------------------------------------- planning


def plan(values: dict[str, Any]) -> tuple[list[Entry], dict[str, Any]]:
    """Entries (each with its prepared backtest) and the shared settings for ``values``
    (the JSON body or the form); ApiError naming the field otherwise."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ApiError(400, f"unknown field(s) {unknown}; valid fields: {list(FIELDS)}",
                       unknown[0])
    runs = _runs(values)
    models = model_choices()
    by_path = {_resolved(row["path"]): row for row in models if not row["error"]}
    csv = None if blank(values.get("csv")) else values["csv"]
    shared = {"start": values.get("start"), "end": values.get("end"),
              "fill": values.get("fill") or "close",
              **{k: EnvParams().to_dict()[k] if blank(values.get(k)) else values[k]
                 for k in COSTS}}
    without, asked = {}, []
    for run in runs:
        row = by_path.get(_resolved(run["model_dir"])) if run["model_dir"] else None
        if row is None:
            without[run["run_id"]] = (f"run {run['name']!r} ({run['run_id']}) has no saved "
                                      "model in the library")
        elif not (csv or row["csv"]):
            without[run["run_id"]] = (
                f"run {run['name']!r}: its training file is not in the data folder; choose "
                "one data file for every run (csv)")
        else:
            asked.append((run, row, {"model": row["dir_name"], "csv": csv or row["csv"],
                                     **shared}))
    if without:
        blamed = "csv" if csv is None and all("training file" in m for m in without.values()) \
            else "runs"
        raise EvaluationError(422, "; ".join(without.values()), blamed, runs_without=without)
    entries = []
    for run, row, backtest in asked:  # every value is checked by the backtest's own rules
        try:
            prepared = prepare(backtest)
        except FieldErrors as exc:
            name, message = next(iter(exc.errors.items()))
            raise ApiError(exc.status, message, None if name == "form" else name) from None
        entries.append(Entry(run["run_id"], run["name"], row["dir_name"], replace(
            prepared, origin={"run_id": run["run_id"]})))
    settings = {"csv": csv, "fill": entries[0].request.options["fill"],
                "costs": {k: entries[0].request.shown[k] for k in COSTS}}
    return entries, settings


def _runs(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs named by ``runs`` (a list, or text with commas) or ``experiment``."""
    ids, experiment = values.get("runs"), values.get("experiment")
    if not blank(ids) and not blank(experiment):
        raise ApiError(422, "give runs or an experiment, not both", "runs")
    store = get_store()
    if not blank(experiment):
        if not isinstance(experiment, str) or "\x00" in experiment:  # PG refuses NUL
            raise ApiError(422, f"experiment must be a name (text without NUL); got "
                                f"{str(experiment)[:80]!r}", "experiment")
        runs, total = store.list_runs(experiment=experiment, archived=None, limit=MAX_RUNS + 1)
        if not total:
            raise ApiError(404, f"no experiment {experiment!r} (no run carries that name)",
                           "experiment")
        return _counted(runs, "experiment", f"experiment {experiment!r} has")
    if isinstance(ids, str):
        ids = [part for part in re.split(r"[\s,]+", ids) if part]
    if blank(ids) or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError(422, f"runs must be a list of {MIN_RUNS} to {MAX_RUNS} run ids",
                       "runs")
    ids = list(dict.fromkeys(ids))  # a run named twice is evaluated once
    _counted(ids, "runs", "runs has")
    found, unknown = [], []
    for run_id in ids:
        try:
            found.append(store.get_run(run_id) if is_run_id(run_id) else None)
        except RunNotFound:
            found.append(None)
        if found[-1] is None:
            unknown.append(run_id)
    if unknown:
        raise EvaluationError(404, f"no run(s) {', '.join(repr(i[:80]) for i in unknown)}",
                              "runs", unknown=unknown)
    return found


def _counted(items: list[Any], name: str, said: str) -> list[Any]:
    if not MIN_RUNS <= len(items) <= MAX_RUNS:
        many = f"more than {MAX_RUNS}" if len(items) > MAX_RUNS else str(len(items))
        raise ApiError(422, f"{said} {many} run(s); an evaluation takes {MIN_RUNS} to "
                            f"{MAX_RUNS}", name)
    return items


def _resolved(path: str | Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(path)


# --------------------------------------------------------------------------- running


class Evaluations:
    """The evaluations of one results folder: their records, and a thread each that
    queues their backtests one at a time."""

    def __init__(self, root: Path, backtests: BacktestJobs) -> None:
        self.folder = Path(root) / FOLDER
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jobs = backtests
        self._lock = threading.Lock()
        self._live: dict[str, Evaluation] = {}

    def start(self, entries: list[Entry], settings: dict[str, Any]) -> str:
        now = datetime.now(UTC)
        evaluation = Evaluation(f"eval-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}",
                                now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                                settings["csv"], settings["costs"], settings["fill"], entries)
        for entry in entries:  # the saved result says why it ran
            entry.request = replace(entry.request, origin={**entry.request.origin,
                                                           "evaluation": evaluation.id})
        self._write(evaluation)
        with self._lock:
            self._live[evaluation.id] = evaluation
        threading.Thread(target=self._drive, args=(evaluation,), daemon=True,
                         name=f"evaluation-{evaluation.id[-6:]}").start()
        log.info("evaluation %s of %d runs started", evaluation.id, len(entries))
        return evaluation.id

    def _drive(self, evaluation: Evaluation) -> None:
        try:
            for entry in evaluation.entries:
                entry.backtest_id = self._submit(entry)
                self._write(evaluation)
                self.jobs.wait(entry.backtest_id)
        except Exception as exc:  # never silently: the rest of the runs say why
            log.exception("evaluation %s stopped", evaluation.id)
            for entry in evaluation.entries:
                if entry.backtest_id is None:
                    entry.error = f"not backtested: {type(exc).__name__}: {exc}"
            self._write(evaluation)
        finally:
            evaluation.finished.set()
            with self._lock:  # its record says the rest (every run's backtest id or error)
                self._live.pop(evaluation.id, None)

    def _submit(self, entry: Entry) -> str:
        while True:
            try:
                with self.jobs.slot() as slot:
                    return slot.submit(entry.request)
            except QueueFull:  # other people's backtests first; ask again in a moment
                threading.Event().wait(QUEUE_RETRY_S)

    def wait(self, evaluation_id: str, timeout: float | None = None) -> bool:
        """Whether every backtest of the evaluation has been queued and has finished
        (tests, shutdown)."""
        with self._lock:
            evaluation = self._live.get(evaluation_id)
        return evaluation is None or evaluation.finished.wait(timeout)

    def get(self, evaluation_id: str) -> Evaluation | None:
        """The evaluation (from memory, else its record); None for an unknown id."""
        if not EVALUATION_ID.fullmatch(evaluation_id):
            return None
        with self._lock:
            live = self._live.get(evaluation_id)
        if live is not None:
            return live
        try:
            record = json.loads((self.folder / f"{evaluation_id}.json").read_text())
        except (OSError, ValueError):
            return None
        entries = [Entry(r["run_id"], r["run_name"], r["model"], None, r.get("backtest_id"),
                         r.get("error") or (None if r.get("backtest_id") else INTERRUPTED))
                   for r in record.get("runs", [])]
        done = Evaluation(record["id"], record["created_at"], record.get("csv"),
                          record.get("costs") or {}, record.get("fill") or "close", entries)
        done.finished.set()
        return done

    def _write(self, evaluation: Evaluation) -> None:
        path = self.folder / f"{evaluation.id}.json"
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        try:
            temporary.write_text(json.dumps(evaluation.record()))
            os.replace(temporary, path)
        except OSError as exc:  # memory still knows it; a restart would not
            log.error("cannot record evaluation %s: %s", evaluation.id, exc)
        finally:
            temporary.unlink(missing_ok=True)


def evaluations() -> Evaluations:
    """The app's evaluations, created on first use."""
    existing = current_app.extensions.get(EXTENSION)
    if existing is None:
        existing = current_app.extensions.setdefault(
            EXTENSION, Evaluations(backtests_dir(), jobs()))
    return existing


# --------------------------------------------------------------------------- reporting


def status(evaluation: Evaluation) -> dict[str, Any]:
    """What ``GET /api/evaluations/<id>`` answers (and the page shows)."""
    rows = [_entry_status(entry, evaluation) for entry in evaluation.entries]
    active = any(row["status"] in ("waiting", "queued", "running") for row in rows)
    ranked = sorted((row for row in rows if row["figures"]),
                    key=lambda row: _sort_key(row["figures"]["return_pct"]))
    return {"id": evaluation.id, "created_at": evaluation.created_at,
            "status": "running" if active else "done",
            "progress": round(sum(row["progress"] for row in rows) / max(len(rows), 1), 4),
            "csv": evaluation.csv, "costs": evaluation.costs, "fill": evaluation.fill,
            "runs": rows, "ranking": [row["run_id"] for row in ranked],
            "url": url_for("evaluate.page", evaluation_id=evaluation.id, _external=True)}


def _sort_key(value: Any) -> tuple[int, float]:
    return (1, 0.0) if value is None else (0, -float(value))


def _entry_status(entry: Entry, evaluation: Evaluation) -> dict[str, Any]:
    row = {"run_id": entry.run_id, "run_name": entry.run_name, "model": entry.model,
           "backtest_id": entry.backtest_id, "status": "waiting", "progress": 0.0,
           "url": None, "error": entry.error, "figures": None}
    if entry.backtest_id is None:
        if entry.error or evaluation.finished.is_set():
            row.update(status="failed", progress=1.0, error=entry.error or INTERRUPTED)
        return row
    row["url"] = url_for("backtests.result", result_id=entry.backtest_id, _external=True)
    job = evaluations().jobs.status(entry.backtest_id)
    if job is None:
        row.update(status="failed", progress=1.0, error="its backtest result was removed")
        return row
    row.update(status=job.status, progress=job.progress if job.status != "failed" else 1.0)
    if job.status == "failed":
        row["error"] = next(iter((job.errors or {"form": "failed"}).values()))
    elif job.status == "done":
        row["figures"] = figures(entry.backtest_id)
    return row


def figures(result_id: str) -> dict[str, Any] | None:
    """The figures a comparison ranks by, from a saved backtest."""
    folder = saved(backtests_dir(), result_id)
    if folder is None:
        return None
    view = json.loads((folder / "view.json").read_text())
    summary = view["summary"]
    stats = summary["statistics"]
    ranked = summary.get("random") or {}
    return {"period": summary["period"], "return_pct": stats.get("Return [%]"),
            "sharpe": stats.get("Sharpe Ratio"), "max_drawdown": stats.get("Max. Drawdown [%]"),
            "trades": stats.get("# Trades"),
            "random_percentile": (ranked.get("return_pct") or {}).get("percentile"),
            "random_sharpe_percentile": (ranked.get("sharpe") or {}).get("percentile"),
            "random_policies": ranked.get("policies"),
            "buy_hold_pct": summary["baselines"].get("Buy & Hold", {}).get("Return [%]"),
            "in_sample": view.get("in_sample") is not None}


# --------------------------------------------------------------------------- routes


@bp.post("/api/evaluations")
def api_start() -> Any:
    try:
        body = read_json_body(MAX_JSON_BYTES)
        entries, settings = plan(body)
        evaluation_id = evaluations().start(entries, settings)
    except ApiError as exc:
        return error_reply(exc.status, str(exc), exc.field, **getattr(exc, "extra", {}))
    except RunStoreError as exc:
        return error_reply(503, f"the run store is unavailable: {exc}")
    status_url = url_for("evaluate.api_status", evaluation_id=evaluation_id, _external=True)
    response = current_app.response_class(json.dumps({
        "id": evaluation_id, "status": "running", "status_url": status_url,
        "url": url_for("evaluate.page", evaluation_id=evaluation_id, _external=True)}),
        status=202, mimetype="application/json")
    response.headers["Location"] = status_url
    return response


@bp.get("/api/evaluations/<evaluation_id>")
def api_status(evaluation_id: str) -> Any:
    found = evaluations().get(evaluation_id)
    if found is None:
        return error_reply(404, f"no evaluation {evaluation_id[:80]!r}; POST "
                                "/api/evaluations starts one")
    return current_app.response_class(json.dumps(status(found), allow_nan=False),
                                      mimetype="application/json")


@bp.get("/evaluate")
def form() -> Any:
    return _form(request.args.to_dict())


@bp.post("/evaluate")
def submit() -> Any:
    values = {k: v for k, v in request.form.items() if k in FIELDS}
    values["runs"] = ",".join(request.form.getlist("runs"))
    values = {k: v for k, v in values.items() if not blank(v)}
    try:
        entries, settings = plan(values)
        evaluation_id = evaluations().start(entries, settings)
    except ApiError as exc:
        return _form(values, {exc.field or "form": str(exc)}, exc.status)
    except RunStoreError as exc:
        return _form(values, {"form": f"the run store is unavailable: {exc}"}, 503)
    return redirect(url_for("evaluate.page", evaluation_id=evaluation_id), code=303)


@bp.get("/evaluate/<evaluation_id>")
def page(evaluation_id: str) -> Any:
    found = evaluations().get(evaluation_id)
    if found is None:
        abort(404, description=f"no evaluation {evaluation_id[:80]!r}")
    shown = status(found)
    return render_template("evaluate/result.html", status=shown, rows=_table(found),
                           poll_ms=POLL_MS, shown_csv=shown_name(shown["csv"]),
                           status_url=url_for("evaluate.api_status",
                                              evaluation_id=evaluation_id))


def _table(evaluation: Evaluation) -> list[dict[str, Any]]:
    """The results table's rows, best return first, then the rest as listed."""
    shown = status(evaluation)
    order = {run_id: i for i, run_id in enumerate(shown["ranking"])}
    rows = sorted(shown["runs"], key=lambda r: order.get(r["run_id"], len(order)))
    for rank, row in enumerate(rows, 1):
        f = row["figures"] or {}
        row["rank"] = rank if row["run_id"] in order else None
        row["cells"] = {"return": figure(f.get("return_pct"), "pct_points"),
                        "sharpe": figure(f.get("sharpe"), "num"),
                        "drawdown": figure(f.get("max_drawdown"), "pct_points"),
                        "trades": figure(f.get("trades"), "int"),
                        "percentile": percentile_text({"percentile": f.get("random_percentile")}),
                        "buy_hold": figure(f.get("buy_hold_pct"), "pct_points")}
        period = f.get("period") or {}
        row["period"] = (f"{str(period.get('start', ''))[:10]} → {str(period.get('end', ''))[:10]}"
                         if period else "")
    return rows


def _form(values: dict[str, Any], errors: dict[str, str] | None = None,
          status_code: int = 200) -> tuple[str, int]:
    """The form: the runs asked for (by id or experiment), data file and costs."""
    errors = dict(errors or {})
    ids = [part for part in re.split(r"[\s,]+", str(values.get("runs") or "")) if part]
    runs, missing = [], []
    try:
        store = get_store()
        for run_id in ids[:MAX_RUNS * 2]:
            try:
                runs.append(store.get_run(run_id) if is_run_id(run_id) else None)
            except RunNotFound:
                runs.append(None)
            if runs[-1] is None:
                runs.pop()
                missing.append(run_id)
        experiments = store.experiment_names()
    except RunStoreError as exc:
        errors.setdefault("form", f"the run store is unavailable: {exc}")
        experiments = []
    if missing and "runs" not in errors:
        errors["runs"] = f"no run(s) {', '.join(repr(i[:80]) for i in missing)}"
    defaults = EnvParams().to_dict()
    shown = {k: str(values.get(k) or "") for k in FIELDS if k != "runs"}
    for name in COSTS:
        shown[name] = shown[name] or figure(defaults[name], "input")
    return render_template("evaluate/form.html", runs=runs, values=shown, errors=errors,
                           files=list_csv_files(), experiments=experiments,
                           shown_name=shown_name, max_runs=MAX_RUNS), status_code
