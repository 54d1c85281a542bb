"""The CSV files the pages offer: the bundled sample, every CSV in the data folder, and
uploads (validated with the data contract, then kept in ``<data folder>/uploads/``).

Pages name a file by its name in this list, never by a path, so a form cannot reach
outside the folders it lists.
"""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app

from Utilities.data_utils import DataError, load_bars

SAMPLE = Path(__file__).resolve().parent.parent / "sample.csv"
UPLOADS = "uploads"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class DataFile:
    name: str    # what forms send: "sample.csv", "nq.csv", "uploads/abc123-mine.csv"
    path: Path
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size}


def data_dir() -> Path:
    return Path(current_app.config["DATA_DIR"])


def models_dir() -> Path:
    """The app's model library (``MODELS_DIR``), for every area."""
    return Path(current_app.config["MODELS_DIR"])


def list_csv_files() -> list[DataFile]:
    """sample.csv first, then the data folder's CSVs (uploads included), by name."""
    files = [DataFile("sample.csv", SAMPLE, SAMPLE.stat().st_size)] if SAMPLE.is_file() else []
    root = data_dir()
    if root.is_dir():
        for path in sorted(root.rglob("*.csv")):
            if path.is_file() and not any(p.startswith(".") for p in path.relative_to(root).parts):
                files.append(DataFile(path.relative_to(root).as_posix(), path,
                                      path.stat().st_size))
    return files


def resolve_csv(name: str) -> Path:
    """The path of a listed file; DataError (naming the choices) for anything else."""
    for item in list_csv_files():
        if item.name == name:
            return item.path
    raise DataError(f"unknown data file {name!r}; choose one of the listed files or upload one",
                    source="csv")


def is_upload(path: Path) -> bool:
    """Whether ``path`` is a file :func:`save_upload` kept (and so may remove)."""
    folder = (data_dir() / UPLOADS).resolve()
    return Path(path).resolve().parent == folder


def save_upload(filename: str, content: bytes) -> DataFile:
    """Validate an uploaded CSV with the data contract, then keep it; DataError names
    what is wrong and nothing is kept."""
    stem = _SAFE.sub("_", Path(filename or "upload.csv").stem).strip("._") or "upload"
    if not content.strip():
        raise DataError("the uploaded file is empty", source=filename or "upload")
    load_bars(io.BytesIO(content), name=filename or "upload")  # DataError with the details
    folder = data_dir() / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex[:8]}-{stem[:60]}.csv"
    path.write_bytes(content)
    return DataFile(f"{UPLOADS}/{path.name}", path, len(content))
