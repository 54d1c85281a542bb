"""Backtests as background jobs, like trainings: a request is validated in the request
thread (:func:`web.backtest_request.prepare`), queued here, run by a worker thread and
saved in ``backtests/<id>/`` as before; the job id *is* the result id, so the result's
page is the job's page.

Workers: ``BACKTEST_WORKERS`` threads (default 1), at most ``BACKTEST_QUEUE`` jobs
waiting (default 8); beyond that :class:`QueueFull` (the routes answer 503 with
Retry-After). Threads, not processes: a backtest's time goes to numpy, torch and
xgboost calls that release the GIL, so a worker does not stall the page threads, and
a thread starts at once, shares the loaded libraries and hands its progress and
result over without pickling (a child process re-imports torch, ~2 s, and duplicates
the memory). One worker by default because a 500k-bar backtest peaks at ~1 GB and
already keeps the cores busy (torch's own threads); a second mostly halves both.
Threads are started when a job is queued and end when the queue is empty, so an idle
dashboard holds none.

State: in memory while this process runs (with progress), and a record on disk,
``backtests/.jobs/<id>.json`` (written atomically, naming the owner process), so a job
is known after a restart: a queued or running record whose owner is gone reads as
failed ("interrupted"), never as running forever. A finished job's truth is its result
folder (written under a hidden name and renamed when complete); its record is then
removed. A failed job's record keeps the error and the values sent, so its page can
show the form again with the error beside the field.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import current_app

from web import upload_quota
from web.backtest_request import BacktestRequest, FieldErrors, run_request
from web.backtest_results import STAGING, backtests_dir, new_result_id, save, saved, valid_id
from web.datafiles import UPLOADS, client_message, data_dir

log = logging.getLogger(__name__)

EXTENSION = "backtest_jobs"
RECORDS = ".jobs"
DEFAULT_WORKERS, DEFAULT_QUEUE = 1, 8
RETRY_AFTER_S = 30
INTERRUPTED = ("interrupted: the dashboard stopped before this backtest finished; "
               "run it again")
ACTIVE = ("queued", "running")
_SAVING = 0.9          # the backtest is [0, 0.9] of a job's progress, saving the rest
_REMEMBERED = 200      # finished jobs kept in memory (their truth is on disk)
_FAILED_KEPT_DAYS = 30  # failed records older than this are removed at start
_LIVE: weakref.WeakValueDictionary[str, BacktestJobs] = weakref.WeakValueDictionary()
_CREATING = threading.Lock()


class QueueFull(RuntimeError):
    """No room for another job now (every worker busy and the queue full, or its record
    cannot be written): try again later."""

    retry_after = RETRY_AFTER_S


@dataclass
class Job:
    id: str
    request: BacktestRequest
    created_at: str
    status: str = "queued"
    progress: float = 0.0
    stage: str = "waiting for a worker"
    errors: dict[str, str] | None = None
    finished: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class JobStatus:
    """What a job's page and ``GET /api/backtest/<id>`` show."""

    id: str
    status: str                       # queued | running | done | failed
    model: str
    csv: str
    progress: float = 0.0
    stage: str = ""
    ahead: int | None = None          # queued: jobs to run before this one
    errors: dict[str, str] | None = None
    values: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "status": self.status, "model": self.model,
                                "csv": self.csv, "progress": round(self.progress, 4)}
        if self.status in ACTIVE:
            body["stage"] = self.stage
        if self.ahead is not None:
            body["ahead"] = self.ahead
        if self.errors:
            field_name, message = next(iter(self.errors.items()))
            body["error"] = message
            body["field"] = None if field_name == "form" else field_name
            if len(self.errors) > 1:
                body["errors"] = self.errors
        return body


class BacktestJobs:
    """The queue, the workers and the records of one results folder."""

    def __init__(self, root: Path, workers: int = DEFAULT_WORKERS,
                 queue: int = DEFAULT_QUEUE) -> None:
        self.root = Path(root)
        self.records = self.root / RECORDS
        self.records.mkdir(parents=True, exist_ok=True)
        self.workers, self.capacity = max(1, workers), max(1, workers) + max(0, queue)
        self.token = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._pending: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._threads = self._running = self._reserved = 0
        _LIVE[self.token] = self
        self.recover()

    # ----------------------------------------------------------------- submitting

    @contextmanager
    def slot(self) -> Iterator[Slot]:
        """A place in the queue, held while the caller gets ready (keeps an upload);
        QueueFull when there is none."""
        with self._lock:
            if self._in_flight() + self._reserved >= self.capacity:
                raise QueueFull(f"the backtest queue is full ({self._running} running, "
                                f"{len(self._pending)} waiting); try again in a minute")
            self._reserved += 1
        slot = Slot(self)
        try:
            yield slot
        finally:
            if slot.job_id is None:
                with self._lock:
                    self._reserved -= 1

    def _submit(self, request: BacktestRequest) -> str:
        """Queue a job in a reserved slot (the reservation becomes the job)."""
        job = Job(new_result_id(request.model["dir_name"]), request, _now())
        try:  # before anyone can see the job: a kill from now on reads as failed
            self._write_record(job)
        except OSError as exc:
            log.error("cannot record backtest %s: %s", job.id, exc)
            raise QueueFull(f"the backtest cannot be recorded ({exc.strerror or exc}); "
                            "try again later") from None
        with self._lock:
            self._reserved -= 1
            self._jobs[job.id] = job
            self._pending.append(job)
            if self._threads < self.workers:
                self._threads += 1
                threading.Thread(target=self._work, daemon=True,
                                 name=f"backtest-{job.id[-6:]}").start()
        log.info("queued backtest %s (%s on %s)", job.id, request.model["dir_name"],
                 request.csv_name)
        return job.id

    def _in_flight(self) -> int:
        return len(self._pending) + self._running

    # ----------------------------------------------------------------- running

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._threads -= 1
                    return
                job = self._pending.popleft()
                job.status, job.stage = "running", "starting"
                self._running += 1
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._running -= 1
                    self._forget_finished()

    def _run(self, job: Job) -> None:
        try:
            self._update_record(job)
            report = run_request(job.request, progress=lambda fraction, stage: self._progress(
                job, _SAVING * fraction, stage))
            self._progress(job, _SAVING, "saving the result")
            save(report, job.request, self.root, job.id)
        except FieldErrors as exc:
            self._fail(job, exc.errors)
        except Exception as exc:  # a job never dies silently: it fails, saying why
            log.exception("backtest %s failed", job.id)
            # An OSError's text names the file: its reason only (the log has the rest).
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
                client_message(exc)
            self._fail(job, {"form": f"the backtest failed unexpectedly "
                                     f"({type(exc).__name__}: {detail})"})
        else:
            job.status, job.progress, job.stage = "done", 1.0, "done"
            self._record_path(job.id).unlink(missing_ok=True)
            log.info("backtest %s done", job.id)
        finally:
            job.finished.set()

    @staticmethod
    def _progress(job: Job, fraction: float, stage: str) -> None:
        job.progress, job.stage = max(job.progress, fraction), stage

    def _fail(self, job: Job, errors: dict[str, str]) -> None:
        job.status, job.errors = "failed", errors
        self._update_record(job)

    def _update_record(self, job: Job) -> None:
        """A running job's record; when the disk refuses, the job goes on (memory
        knows it), and a restart reads it as interrupted."""
        try:
            self._write_record(job)
        except OSError as exc:
            log.error("cannot update the record of backtest %s: %s", job.id, exc)

    def _forget_finished(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.status not in ACTIVE]
        for key in finished[:max(0, len(finished) - _REMEMBERED)]:
            del self._jobs[key]

    # ----------------------------------------------------------------- reading

    def status(self, job_id: str) -> JobStatus | None:
        """The job's state now; None for an id that is neither a job nor a result."""
        if not valid_id(job_id):
            return None
        with self._lock:
            job = self._jobs.get(job_id)
            ahead = next((i for i, j in enumerate(self._pending) if j.id == job_id), None)
        if job is not None and job.status in ACTIVE:
            request = job.request
            return JobStatus(job.id, job.status, request.model["dir_name"], request.csv_name,
                             job.progress, _stage(job.stage, ahead), ahead)
        if saved(self.root, job_id):
            return self._done(job_id)
        if job is not None:
            return JobStatus(job.id, job.status, job.request.model["dir_name"],
                             job.request.csv_name, job.progress, errors=job.errors,
                             values=job.request.values)
        record = self._read_record(job_id)
        if record is None:
            return None
        if record["status"] in ACTIVE and not _alive(record.get("owner") or {}):
            record = self._interrupted(record)
        return JobStatus(job_id, record["status"], str(record.get("model", "")),
                         str(record.get("csv", "")), errors=record.get("errors"),
                         values=record.get("values"),
                         stage="recorded by another dashboard process"
                         if record["status"] in ACTIVE else "")

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Whether the job has finished within ``timeout`` (tests, shutdown)."""
        with self._lock:
            job = self._jobs.get(job_id)
        return True if job is None else job.finished.wait(timeout)

    def active(self) -> list[JobStatus]:
        """Queued and running jobs, oldest first."""
        with self._lock:
            ids = [k for k, j in self._jobs.items() if j.status in ACTIVE]
        return [s for s in map(self.status, ids) if s is not None and s.status in ACTIVE]

    def csv_paths(self) -> list[Path]:
        """The data files queued and running jobs will read."""
        with self._lock:
            return [j.request.csv_path for j in self._jobs.values() if j.status in ACTIVE]

    def _done(self, job_id: str) -> JobStatus:
        try:
            meta = json.loads((self.root / job_id / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {}
        return JobStatus(job_id, "done", str(meta.get("model", "")), str(meta.get("csv", "")),
                         1.0, "done")

    # ----------------------------------------------------------------- records

    def _record_path(self, job_id: str) -> Path:
        return self.records / f"{job_id}.json"

    def _write_record(self, job: Job) -> None:
        record = {"id": job.id, "status": job.status, "created_at": job.created_at,
                  "owner": {"process": _process_id(), "token": self.token},
                  "model": job.request.model["dir_name"], "csv": job.request.csv_name,
                  "values": job.request.values, "errors": job.errors}
        _write_atomically(self._record_path(job.id), record)

    def _read_record(self, job_id: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self._record_path(job_id).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("status") else None

    def _interrupted(self, record: dict[str, Any]) -> dict[str, Any]:
        record = {**record, "status": "failed", "errors": {"form": INTERRUPTED}}
        _write_atomically(self._record_path(record["id"]), record)
        log.warning("backtest %s was interrupted (its dashboard process is gone)",
                    record["id"])
        return record

    def recover(self) -> None:
        """Jobs of a dashboard that stopped: records marked failed (or removed when
        their result was saved after all), staging folders removed, old failures
        forgotten."""
        cutoff = time.time() - _FAILED_KEPT_DAYS * 86400
        for path in self.records.glob("*.json"):
            record = self._read_record(path.stem)
            if record is None or record.get("id") != path.stem:
                continue
            if saved(self.root, path.stem):
                path.unlink(missing_ok=True)
            elif record["status"] in ACTIVE and not _alive(record.get("owner") or {}):
                self._interrupted(record)
            elif record["status"] == "failed" and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
        for staging in self.root.glob(f"{STAGING}*"):
            record = self._read_record(staging.name[len(STAGING):])
            if staging.is_dir() and (record is None or record["status"] not in ACTIVE):
                shutil.rmtree(staging, ignore_errors=True)
                log.info("removed %s: a result interrupted while it was written",
                         staging.name)


class Slot:
    """A reserved place in the queue; :meth:`submit` queues the job (once)."""

    def __init__(self, jobs: BacktestJobs) -> None:
        self._jobs, self.job_id = jobs, None

    def submit(self, request: BacktestRequest) -> str:
        if self.job_id is None:
            self.job_id = self._jobs._submit(request)
        return self.job_id


# --------------------------------------------------------------------------- the app's


def jobs() -> BacktestJobs:
    """The app's jobs, created on first use (which also tidies what a stopped dashboard
    left behind)."""
    with _CREATING:
        existing = current_app.extensions.get(EXTENSION)
        if existing is None:
            config = current_app.config
            existing = BacktestJobs(backtests_dir(),
                                    int(config.get("BACKTEST_WORKERS") or DEFAULT_WORKERS),
                                    int(config.get("BACKTEST_QUEUE") or DEFAULT_QUEUE))
            current_app.extensions[EXTENSION] = existing
            uploads = data_dir() / UPLOADS
            if uploads.is_dir():
                upload_quota.clean_up(uploads)
    return existing


def jobs_if_started() -> BacktestJobs | None:
    return current_app.extensions.get(EXTENSION)


# --------------------------------------------------------------------------- helpers


def _stage(stage: str, ahead: int | None) -> str:
    if not ahead:
        return stage
    return f"waiting for a worker ({ahead} backtest{'s' if ahead > 1 else ''} ahead)"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary name and rename: a reader sees the old or the new record."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        temporary.write_text(json.dumps(data))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _start_time(pid: int) -> str:
    """When process ``pid`` started (Linux clock ticks), so a reused pid is not taken
    for the dashboard that wrote a record; "" where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def _process_id() -> str:
    pid = os.getpid()
    return f"{pid}:{_start_time(pid)}"


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the jobs object that wrote a record still runs (here or elsewhere)."""
    process = str(owner.get("process") or "")
    if process == _process_id():
        return owner.get("token") in _LIVE
    pid_text, _, started = process.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    return not started or started == _start_time(pid)
