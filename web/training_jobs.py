"""Training started from the web: the CLI's own entry point in a child process.

``python Utilities/run_training.py …`` with a run id chosen here, so the page can open
the run at once and a web run is recorded exactly like a shell run. The child's output
goes to ``<instance>/train_logs/<run_id>.log``. A reaper thread waits for each child;
one that dies before it could record its run (a crash at start-up) is recorded as a
failed run with the end of its log, so no launch ever disappears silently.
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
from flask import current_app

from Utilities.run_store import TERMINAL_STATUSES, RunNotFound, RunStore, RunStoreError

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
        self._training: set[tuple[str, str]] = set()  # (type, name) in flight
        self._children: dict[str, subprocess.Popen] = {}
        self._reapers: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def command(self, launch: Launch, run_id: str, config_file: Path) -> list[str]:
        # The store's URL (it may hold a password) goes by environment, not argv: argv is
        # visible to every user in `ps`.
        return [sys.executable, str(ENTRY_POINT), "--csv_path", str(launch.csv_path),
                "--model", launch.model_type, "--model_name", launch.model_name,
                "--mode", launch.mode, "--config", str(config_file),
                "--models-dir", str(launch.models_dir), "--run-id", run_id, "--no-progress"]

    def start(self, launch: Launch) -> str:
        """Start training; the run id the child records its run under. Raises Busy when
        the same model is already training here, or too many trainings run."""
        self._claim(launch)
        try:
            return self._spawn(launch)
        except BaseException:
            self._release(launch)
            raise

    def _claim(self, launch: Launch) -> None:
        key = (launch.model_type, launch.model_name)
        with self._lock:
            if key in self._training:
                raise Busy("model_name", f"a {launch.model_type} model named "
                                         f"{launch.model_name!r} is already training")
            if len(self._training) >= self.max_running:
                raise Busy("form", f"{self.max_running} trainings are already running on this "
                                   "machine; wait for one to finish")
            self._training.add(key)

    def _release(self, launch: Launch) -> None:
        with self._lock:
            self._training.discard((launch.model_type, launch.model_name))

    def _spawn(self, launch: Launch) -> str:
        run_id = str(uuid.uuid4())
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
        self._release(launch)
        if code != 0:
            _record_failure(run_id, code, launch, log_file)


def launched_here(run_id: str) -> bool:
    """Whether this app started ``run_id`` (its run may not be recorded yet)."""
    jobs = current_app.extensions.get(EXTENSION)
    return jobs is not None and jobs.knows(run_id)


def _record_failure(run_id: str, code: int, launch: Launch, log_file: Path) -> None:
    """A child that failed leaves a failed run: one that died before recording its run
    (a crash at start-up), and one killed mid-run (SIGKILL, the OOM killer) that could
    not record its end, alike. A child that recorded its own end is left as it is."""
    tail = log_file.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip()
    store = None
    try:
        store = RunStore(launch.database_url)
        try:
            status = store.get_run(run_id)["status"]
        except RunNotFound:
            store.create_run(name=launch.model_name, model_type=launch.model_type,
                             data_file=str(launch.csv_path), run_id=run_id)
            status = "running"
        if status not in TERMINAL_STATUSES:
            store.set_status(run_id, "failed", error=f"exit {code}: {tail}")
    except RunStoreError as exc:
        log.error("training %s failed (exit %d) and could not be recorded: %s", run_id, code,
                  exc)
    finally:
        if store is not None:
            store.close()


class Busy(RuntimeError):
    """A launch refused for now; ``field`` is the form input it is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
