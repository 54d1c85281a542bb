"""Both store engines in one test run: SQLite always, PostgreSQL when one can be had.

PostgreSQL is DATABASE_URL when that names one, else a throw-away local server started
with tools/local_postgres.sh when this machine has PostgreSQL's binaries; otherwise the
PostgreSQL half of a test is skipped, saying why."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.paths import ROOT

SCRIPT = ROOT / "tools" / "local_postgres.sh"


def _has_binaries() -> bool:
    return bool(shutil.which("pg_ctl")) or any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


@contextmanager
def postgres_url() -> Iterator[str | None]:
    """A PostgreSQL URL for the duration, or None when none is available."""
    configured = os.environ.get("DATABASE_URL", "")
    if configured.startswith("postgresql"):
        yield configured
        return
    if not _has_binaries():
        yield None
        return
    folder = tempfile.mkdtemp(prefix="galaxy-pg-test-")  # under /tmp: the owner can reach it
    try:
        started = subprocess.run(["bash", str(SCRIPT), "start", folder], capture_output=True,
                                 text=True, timeout=120, check=False)
        yield started.stdout.strip() if started.returncode == 0 else None
    finally:
        subprocess.run(["bash", str(SCRIPT), "wipe", folder], capture_output=True,
                       timeout=120, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def write_rows(url: str, rows: list[tuple], batch: int) -> None:
    """Write metric rows through a RunStore of its own, ``batch`` rows per transaction
    (the body of one concurrent writer process)."""
    from Utilities.run_store import RunStore

    store = RunStore(url)
    try:
        for start in range(0, len(rows), batch):
            store.write_batch(metrics=rows[start:start + batch])
    finally:
        store.close()


def drop_tables(url: str) -> None:
    """Drop every table of the database at ``url`` (a bench's PostgreSQL leaves nothing
    behind; a SQLite file goes with its temporary folder)."""
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        return
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    engine.dispose()
