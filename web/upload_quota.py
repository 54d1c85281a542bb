"""The uploads folder's quota and clean-up (``<data folder>/uploads/``).

Rules, with their app config keys and defaults:

- ``UPLOADS_MAX_BYTES`` (1 GiB) and ``UPLOADS_MAX_FILES`` (100): keeping an upload first
  removes the oldest uploads (by modification time) until it fits. Never removed to
  make room: an upload younger than :data:`GRACE_SECONDS` (a training started from the
  form reads its file in its first seconds) or one a queued or running backtest will
  read. When those alone fill the quota, the new upload is refused (507); one larger
  than the whole quota is refused (413).
- ``UPLOADS_MAX_AGE_DAYS`` (30): an upload older than this is removed unless a saved
  backtest result or a model in the library names it: a result's "Change and run
  again" and a model's default test slice need their very file (the quota still
  removes those, oldest first, when it needs the room).
- A staged upload (``.tmp-*``) older than an hour is a left-over of a request that was
  killed mid-upload: removed.

The clean-up runs whenever an upload is staged and when the backtest jobs start.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_MAX_FILES = 100
DEFAULT_MAX_AGE_DAYS = 30.0
GRACE_SECONDS = 15 * 60
STALE_STAGED_SECONDS = 3600
_DAY = 86400.0


class NoRoom(ValueError):
    """The quota cannot take the upload; ``status`` 413 (never fits) or 507 (not now)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Quota:
    max_bytes: int
    max_files: int
    max_age_days: float

    @classmethod
    def of_app(cls) -> Quota:
        config = current_app.config
        return cls(int(config.get("UPLOADS_MAX_BYTES") or DEFAULT_MAX_BYTES),
                   int(config.get("UPLOADS_MAX_FILES") or DEFAULT_MAX_FILES),
                   float(config.get("UPLOADS_MAX_AGE_DAYS") or DEFAULT_MAX_AGE_DAYS))


def kept_uploads(folder: Path) -> list[Path]:
    """The listed uploads (plain files, not staged ones), oldest first."""
    files = [p for p in folder.glob("*.csv")
             if not p.name.startswith(".") and p.is_file() and not p.is_symlink()]
    return sorted(files, key=lambda p: p.stat().st_mtime)


def make_room(folder: Path, incoming: int) -> list[Path]:
    """Remove the oldest uploads until ``incoming`` more bytes and one more file fit;
    NoRoom when they cannot. Returns what was removed."""
    quota = Quota.of_app()
    if incoming > quota.max_bytes:
        raise NoRoom(f"the upload ({size_text(incoming)}) is larger than the uploads "
                     f"folder's quota of {size_text(quota.max_bytes)} (UPLOADS_MAX_BYTES)", 413)
    files = kept_uploads(folder)
    total = sum(p.stat().st_size for p in files) + incoming
    count = len(files) + 1
    busy, young = _in_use_by_jobs(), time.time() - GRACE_SECONDS
    removed: list[Path] = []
    for path in files:
        if total <= quota.max_bytes and count <= quota.max_files:
            break
        if path.name in busy or path.stat().st_mtime > young:
            continue
        total -= path.stat().st_size
        count -= 1
        _remove(path, "over the uploads quota")
        removed.append(path)
    if total > quota.max_bytes or count > quota.max_files:
        raise NoRoom(f"the uploads folder is full ({quota.max_files} files or "
                     f"{size_text(quota.max_bytes)}: UPLOADS_MAX_FILES, UPLOADS_MAX_BYTES) "
                     "with uploads in use or from the last "
                     f"{GRACE_SECONDS // 60} minutes; try again later", 507)
    return removed


def clean_up(folder: Path) -> list[Path]:
    """Remove stale staged uploads, and old uploads nothing names (see the module doc)."""
    now = time.time()
    removed = []
    for path in folder.glob(".tmp-*"):
        if path.is_file() and now - path.stat().st_mtime > STALE_STAGED_SECONDS:
            _remove(path, "a left-over of an interrupted upload")
            removed.append(path)
    cutoff = now - Quota.of_app().max_age_days * _DAY
    old = [p for p in kept_uploads(folder) if p.stat().st_mtime < cutoff]
    if old:
        keep = _referenced() | _in_use_by_jobs()
        for path in old:
            if path.name not in keep:
                _remove(path, "older than UPLOADS_MAX_AGE_DAYS and named by no result or model")
                removed.append(path)
    return removed


def size_text(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB" if size >= 2**20 else f"{size / 1024:,.0f} KiB"


def _remove(path: Path, why: str) -> None:
    path.unlink(missing_ok=True)
    log.info("removed upload %s: %s", path.name, why)


def _referenced() -> set[str]:
    """Upload file names a saved backtest result or a model's training file names."""
    from NetworkConfigs.artifacts import list_models
    from web.backtest_results import csv_names_of_results
    from web.datafiles import UPLOADS, models_dir

    names = {Path(n).name for n in csv_names_of_results() if n.startswith(f"{UPLOADS}/")}
    for row in list_models(models_dir()):
        data_file = row.get("data_file")
        if data_file and Path(str(data_file)).parent.name == UPLOADS:
            names.add(Path(str(data_file)).name)
    return names


def users(paths: list[Path]) -> dict[Path, str]:
    """What uses each of ``paths`` now (resolved path -> "a queued or running backtest",
    "the running training <name>"), so a person cannot remove a file a job still reads.
    RunStoreError when the run store cannot be read (then nobody can tell)."""
    from Utilities.run_store import ACTIVE_STATUSES, MAX_PAGE_SIZE
    from web.backtest_jobs import jobs_if_started
    from web.store import get_store

    wanted = {Path(p).resolve() for p in paths}
    found: dict[Path, str] = {}
    jobs = jobs_if_started()
    for path in [] if jobs is None else jobs.csv_paths():
        if Path(path).resolve() in wanted:
            found[Path(path).resolve()] = "a queued or running backtest"
    runs, _ = get_store().list_runs(status=ACTIVE_STATUSES, limit=MAX_PAGE_SIZE)
    for run in runs:
        data_file = Path(str(run.get("data_file") or "")).resolve() if run.get("data_file") \
            else None
        if data_file in wanted:
            found.setdefault(data_file, f"the {run['status']} training {run['name']!r}")
    return found


def remove(path: Path, why: str) -> None:
    """Remove one kept upload (logged with the reason)."""
    _remove(path, why)


def _in_use_by_jobs() -> set[str]:
    from web.backtest_jobs import jobs_if_started

    jobs = jobs_if_started()
    return set() if jobs is None else {Path(p).name for p in jobs.csv_paths()}
