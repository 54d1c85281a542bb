"""Training started from the web: the CLI's own entry point in a child process.

``python Utilities/run_training.py …`` given a :class:`TrainingRequest` as its command
line, with a run id chosen here. The launch first records its run in the run store as
"starting" (one training per model type + name, at most one per CPU, counted over the
store's live runs: they survive a dashboard restart, and every dashboard process on the
store sees them), and only then starts the child, so the run's page exists from the
first moment. The child reads and checks the data, takes the run over ("running") and
records it exactly like a shell run. Its output goes to
``<instance>/train_logs/<run_id>.log``. A reaper thread waits for each child; one that
ends without recording the end of its run (a crash at start-up, a kill -9) is recorded
as failed with the end of its log, so no launch ever disappears silently.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import yaml
from flask import Flask, current_app

from NetworkConfigs import type_label
from Utilities.input_errors import InputError
from Utilities.run_store import (
    TERMINAL_STATUSES,
    RunBusy,
    RunNotFound,
    RunStore,
    RunStoreError,
    StoreUnavailable,
)
from Utilities.training_request import TrainingRequest, parse_threads

log = logging.getLogger(__name__)

EXTENSION = "training_jobs"  # where an app keeps its TrainingJobs
ENTRY_POINT = Path(__file__).resolve().parent.parent / "Utilities" / "run_training.py"
LOG_TAIL_CHARS = 2000


def jobs() -> TrainingJobs:
    """The app's launcher (one per app, created on first use): the Train form, resumes
    and the start API share it."""
    if current_app.extensions.get(EXTENSION) is None:
        current_app.extensions[EXTENSION] = TrainingJobs(Path(current_app.instance_path))
    return current_app.extensions[EXTENSION]


class TrainingJobs:
    """The children this app started, by run id."""

    def __init__(self, work_dir: Path, max_running: int | None = None,
                 threads: int | None = None) -> None:
        self.work_dir = Path(work_dir)
        # Each training gets a CPU budget (TRAIN_THREADS, default 1) and its torch uses
        # that many threads; as many trainings run at once as budgets fit in the CPUs.
        # The two rules are one: N trainings never ask for more threads than there are
        # cores (oversubscribed, a training ran 6x slower).
        self.threads = threads or _web_threads()
        self.max_running = max_running or max(1, (os.cpu_count() or 1) // self.threads)
        self._children: dict[str, subprocess.Popen] = {}
        self._reapers: dict[str, threading.Thread] = {}
        self._stores: dict[str, RunStore] = {}
        self._lock = threading.Lock()

    def command(self, request: TrainingRequest, config_file: Path | None) -> list[str]:
        # The store's URL (it may hold a password) goes by environment, not argv: argv is
        # visible to every user in `ps`.
        return [sys.executable, str(ENTRY_POINT), *request.argv(config_file)]

    def start(self, request: TrainingRequest, config: dict | None = None) -> str:
        """Record the run ("starting", with ``config``, the config the training will use
        when known, else the request's overrides), then start its training; the run id.
        Raises Busy when the same model is already training, or too many trainings run
        (both read from the store). ``request.database_url`` names the store."""
        request = replace(request, run_id=request.run_id or str(uuid.uuid4()),
                          progress=False, threads=request.threads or self.threads)
        try:
            store = self.store(request.database_url)
            run_id = self._claim(store, request, config)
        except StoreUnavailable as exc:  # a training nobody could see or stop: refused
            raise Busy(None, f"cannot start a training now: {exc}") from None
        try:
            return self._spawn(request, run_id)
        except BaseException as exc:
            try:
                store.set_status(run_id, "failed", error=f"the training process could not "
                                                         f"start: {exc}")
            except RunStoreError as record_error:
                log.error("could not record the failed start of %s: %s", run_id, record_error)
            raise

    def store(self, url: str) -> RunStore:
        """One store per database for claims and reapers (RunStore is thread-safe)."""
        with self._lock:
            if url not in self._stores:
                self._stores[url] = RunStore(url)
            return self._stores[url]

    def _claim(self, store: RunStore, request: TrainingRequest, config: dict | None) -> str:
        """The request's run, recorded as starting before the child starts, so its page
        exists at once and a second launch of the model (from this or another
        dashboard) is refused."""
        type_name, name = request.type_name(), request.model_name or ""
        try:
            return store.claim_run(
                name=name, model_type=type_name, algorithm=type_label(type_name),
                config=config or dict(request.overrides), data_file=str(request.csv_path),
                **request.run_labels(), run_id=request.run_id, max_active=self.max_running,
                status="starting")
        except RunBusy as exc:
            if exc.reason == "duplicate":
                raise Busy("model_name", f"a {type_name} model named {name!r} is already "
                                         f"training (run {exc.run['run_id']})") from None
            raise Busy(None, f"{exc.limit} trainings are already running ({self.threads} "
                             f"CPU thread(s) each, TRAIN_THREADS, on {os.cpu_count()} CPUs); "
                             "wait for one to finish") from None

    def _spawn(self, request: TrainingRequest, run_id: str) -> str:
        logs = self.work_dir / "train_logs"
        logs.mkdir(parents=True, exist_ok=True)
        config_file = logs / f"{run_id}.yaml"
        config_file.write_text(yaml.safe_dump(dict(request.overrides)))
        log_file = logs / f"{run_id}.log"
        with log_file.open("wb") as out:
            child = subprocess.Popen(self.command(request, config_file), stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "DATABASE_URL": request.database_url})
        reaper = threading.Thread(target=self._reap, args=(run_id, child, request, log_file),
                                  daemon=True, name=f"reap-{run_id[:8]}")
        with self._lock:
            self._children[run_id], self._reapers[run_id] = child, reaper
        reaper.start()
        log.info("started training %s (%s, pid %d)", run_id, request.type_name(), child.pid)
        return run_id

    def wait(self, run_id: str, timeout: float | None = None) -> int:
        """The child's exit status once it and its reaper are done (tests, shutdown);
        raises KeyError if it is not ours."""
        with self._lock:
            child, reaper = self._children[run_id], self._reapers[run_id]
        code = child.wait(timeout)
        reaper.join(timeout)
        return code

    def knows(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._children

    def running(self) -> list[str]:
        with self._lock:
            return [run_id for run_id, child in self._children.items() if child.poll() is None]

    def _reap(self, run_id: str, child: subprocess.Popen, request: TrainingRequest,
              log_file: Path) -> None:
        code = child.wait()
        _record_end(self.store(request.database_url), run_id, code, log_file)

    def close(self) -> None:
        """Release the stores' connections (tests, shutdown)."""
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            store.close()


def sweep_lost_runs(app: Flask) -> list[str]:
    """At dashboard start: mark the runs whose trainer died while no dashboard was
    watching (their heartbeat is stale) as lost. Without a store, the app still starts;
    with a bad RUN_LOST_AFTER_SECONDS it does not (SystemExit naming the setting)."""
    from web.store import get_store

    try:
        with app.app_context():
            marked = get_store().sweep_lost()
    except StoreUnavailable as exc:
        log.warning("could not look for lost runs: %s", exc)
        return []
    except ValueError as exc:  # a setting no page could work with
        raise SystemExit(f"error: {exc}") from None
    if marked:
        log.warning("marked %d run(s) lost (no heartbeat): %s", len(marked), ", ".join(marked))
    return marked


def _record_end(store: RunStore, run_id: str, code: int, log_file: Path) -> None:
    """A child that ended without recording the end of its run leaves a failed run: one
    that died before taking over its run (a crash at start-up), and one killed mid-run
    (SIGKILL, the OOM killer) that could not record its end, alike. A child that
    recorded its own end is left as it is; a run deleted meanwhile stays deleted (it was
    recorded before the child started, so there is nothing to create)."""
    try:
        try:
            status = store.get_run(run_id)["status"]
        except RunNotFound:
            log.info("training %s ended (exit %d); its run was deleted meanwhile", run_id, code)
            return
        if status not in TERMINAL_STATUSES:
            tail = log_file.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip()
            store.set_status(run_id, "failed", error=f"exit {code}: {tail}")
    except RunStoreError as exc:
        log.error("training %s ended (exit %d) and its end could not be recorded: %s",
                  run_id, code, exc)


class Busy(InputError):
    """A launch refused for now (409); ``field`` is the input it is about, or None."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message, field)


def _web_threads() -> int:
    """A web-started training's CPU budget: ``TRAIN_THREADS``, else 1 (one per CPU)."""
    text = os.environ.get("TRAIN_THREADS")
    return parse_threads(text, "TRAIN_THREADS") if text else 1
