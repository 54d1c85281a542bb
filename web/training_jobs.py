"""Training started from the web: the CLI's own entry point in a child process.

``python Utilities/run_training.py …`` with a run id chosen here, so the page can open
the run at once. The launch first claims its run in the run store (one training per
model type + name, at most one per CPU, counted over the store's live runs: they
survive a dashboard restart, and every dashboard process on the store sees them); the
child takes that run over and records it exactly like a shell run. The child's output
goes to ``<instance>/train_logs/<run_id>.log``. A reaper thread waits for each child;
one that ends without recording the end of its run (a crash at start-up, a kill -9) is
recorded as failed with the end of its log, so no launch ever disappears silently.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml
from flask import Flask, current_app

from NetworkConfigs import type_label
from Utilities.run_store import (
    TERMINAL_STATUSES,
    RunBusy,
    RunNotFound,
    RunStore,
    RunStoreError,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

EXTENSION = "training_jobs"  # where an app keeps its TrainingJobs
ENTRY_POINT = Path(__file__).resolve().parent.parent / "Utilities" / "run_training.py"
LOG_TAIL_CHARS = 2000


@dataclass(frozen=True)
class Launch:
    """What to train: everything the CLI is given."""

    model_type: str
    model_name: str
    csv_path: Path
    mode: str
    config: dict
    models_dir: Path
    database_url: str


class TrainingJobs:
    """The children this app started, by run id."""

    def __init__(self, work_dir: Path, max_running: int | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.max_running = max_running or max(1, os.cpu_count() or 1)
        self._children: dict[str, subprocess.Popen] = {}
        self._reapers: dict[str, threading.Thread] = {}
        self._stores: dict[str, RunStore] = {}
        self._lock = threading.Lock()

    def command(self, launch: Launch, run_id: str, config_file: Path) -> list[str]:
        # The store's URL (it may hold a password) goes by environment, not argv: argv is
        # visible to every user in `ps`.
        return [sys.executable, str(ENTRY_POINT), "--csv_path", str(launch.csv_path),
                "--model", launch.model_type, "--model_name", launch.model_name,
                "--mode", launch.mode, "--config", str(config_file),
                "--models-dir", str(launch.models_dir), "--run-id", run_id, "--no-progress"]

    def start(self, launch: Launch) -> str:
        """Claim the run and start training; the run id. Raises Busy when the same model
        is already training, or too many trainings run (both read from the store)."""
        try:
            store = self.store(launch.database_url)
            run_id = self._claim(store, launch)
        except StoreUnavailable as exc:  # a training nobody could see or stop: refused
            raise Busy("form", f"cannot start a training now: {exc}") from None
        try:
            return self._spawn(launch, run_id)
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

    def _claim(self, store: RunStore, launch: Launch) -> str:
        """The launch's run, created before the child starts, so that a second launch of
        the model (from this or another dashboard) is refused at once."""
        try:
            return store.claim_run(
                name=launch.model_name, model_type=launch.model_type,
                algorithm=type_label(launch.model_type), config=launch.config,
                data_file=str(launch.csv_path), tags=["smoke"] if launch.mode == "smoke" else [],
                run_id=str(uuid.uuid4()), max_active=self.max_running)
        except RunBusy as exc:
            if exc.reason == "duplicate":
                raise Busy("model_name", f"a {launch.model_type} model named "
                                         f"{launch.model_name!r} is already training (run "
                                         f"{exc.run['run_id']})") from None
            raise Busy("form", f"{exc.limit} trainings are already running (one per CPU); "
                               "wait for one to finish") from None

    def _spawn(self, launch: Launch, run_id: str) -> str:
        logs = self.work_dir / "train_logs"
        logs.mkdir(parents=True, exist_ok=True)
        config_file = logs / f"{run_id}.yaml"
        config_file.write_text(yaml.safe_dump(launch.config))
        log_file = logs / f"{run_id}.log"
        with log_file.open("wb") as out:
            child = subprocess.Popen(self.command(launch, run_id, config_file), stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "DATABASE_URL": launch.database_url})
        reaper = threading.Thread(target=self._reap, args=(run_id, child, launch, log_file),
                                  daemon=True, name=f"reap-{run_id[:8]}")
        with self._lock:
            self._children[run_id], self._reapers[run_id] = child, reaper
        reaper.start()
        log.info("started training %s (%s, pid %d)", run_id, launch.model_type, child.pid)
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

    def _reap(self, run_id: str, child: subprocess.Popen, launch: Launch,
              log_file: Path) -> None:
        code = child.wait()
        _record_end(self.store(launch.database_url), run_id, code, launch, log_file)

    def close(self) -> None:
        """Release the stores' connections (tests, shutdown)."""
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            store.close()


def launched_here(run_id: str) -> bool:
    """Whether this app started ``run_id`` (its run may not be recorded yet)."""
    jobs = current_app.extensions.get(EXTENSION)
    return jobs is not None and jobs.knows(run_id)


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


def _record_end(store: RunStore, run_id: str, code: int, launch: Launch,
                log_file: Path) -> None:
    """A child that ended without recording the end of its run leaves a failed run: one
    that died before taking over its run (a crash at start-up), and one killed mid-run
    (SIGKILL, the OOM killer) that could not record its end, alike. A child that
    recorded its own end is left as it is."""
    try:
        try:
            status = store.get_run(run_id)["status"]
        except RunNotFound:  # deleted meanwhile: record the launch again
            store.create_run(name=launch.model_name, model_type=launch.model_type,
                             data_file=str(launch.csv_path), run_id=run_id)
            status = "running"
        if status not in TERMINAL_STATUSES:
            tail = log_file.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip()
            store.set_status(run_id, "failed", error=f"exit {code}: {tail}")
    except RunStoreError as exc:
        log.error("training %s ended (exit %d) and its end could not be recorded: %s",
                  run_id, code, exc)


class Busy(RuntimeError):
    """A launch refused for now; ``field`` is the form input it is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
