"""The CSV files the pages offer: the bundled sample, every CSV in the data folder, and
uploads (validated with the data contract, then kept in ``<data folder>/uploads/``).

Pages name a file by its name in this list, never by a path, so a form cannot reach
outside the folders it lists; and a listed name must *resolve* inside the data folder
(``Utilities.safe_paths``): ``x.csv -> /etc/passwd`` is neither listed nor read.

An upload is streamed to a hidden file in ``uploads/`` (never held in memory whole),
counted against ``UPLOAD_MAX_ROWS`` while it is copied, parsed from that file (one
parse at a time, so parsing memory is bounded by the limits) and becomes a listed file
only when its form is accepted (:meth:`StagedUpload.keep`); a refused form removes it.
Keeping one applies the folder's quota and clean-up (:mod:`web.upload_quota`).
"""

from __future__ import annotations

import io
import logging
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flask import current_app

from Utilities.data_utils import DataError, load_bars
from Utilities.safe_paths import OutsideFolder, inside, is_inside
from web import upload_quota

log = logging.getLogger(__name__)

SAMPLE = Path(__file__).resolve().parent.parent / "sample.csv"
UPLOADS = "uploads"
STAGING_PREFIX = ".tmp-"  # hidden: never listed, removed by the clean-up when left behind
# Rows (lines after the header) an upload may have (UPLOAD_MAX_ROWS). With
# MAX_CONTENT_LENGTH it bounds what one parse holds (about 4x the file's size at its
# peak, bench/upload_memory.py) and what its backtest holds (~1 GB per 500k bars for a
# PPO model): twice the 500k-bar files users have.
DEFAULT_MAX_ROWS = 1_000_000
_CHUNK = 1 << 20
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# One upload is parsed at a time: eight request threads parsing 64 MiB files at once
# would need eight times the memory.
_PARSING = threading.Lock()
# What a client is shown of a file's content: a quoted value is cut after this many
# characters, a message after MAX_MESSAGE (a header line of a non-CSV is one "cell").
MAX_QUOTED, MAX_MESSAGE = 40, 400
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")


@dataclass(frozen=True)
class DataFile:
    name: str    # what forms send: "sample.csv", "nq.csv", "uploads/abc123-mine.csv"
    path: Path
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size}

    @property
    def label(self) -> str:
        """What a page shows: an upload by the person's file name ("mine.csv (upload)"),
        never the stored ``uploads/<hex>-mine.csv``."""
        if not self.name.startswith(f"{UPLOADS}/"):
            return self.name
        return re.sub(r"^[0-9a-f]{8}-", "", Path(self.name).name) + " (upload)"


class UploadRefused(DataError):
    """An upload over a limit (``status`` 413) or with no room left (507)."""

    def __init__(self, message: str, status: int = 413) -> None:
        super().__init__(message)
        self.status = status


def data_dir() -> Path:
    return Path(current_app.config["DATA_DIR"])


def models_dir() -> Path:
    """The app's model library (``MODELS_DIR``), for every area."""
    return Path(current_app.config["MODELS_DIR"])


def uploads_dir() -> Path:
    """``<data folder>/uploads``, created; refused when it leads outside the data folder."""
    root = data_dir()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / UPLOADS
    folder.mkdir(exist_ok=True)
    try:
        inside(root, UPLOADS, what="folder")
    except OutsideFolder as exc:
        raise DataError(str(exc)) from None
    return folder


def list_csv_files() -> list[DataFile]:
    """sample.csv first, then the data folder's CSVs (uploads included), by name; a file
    (or a link) that resolves outside the data folder is left out."""
    files = [DataFile("sample.csv", SAMPLE, SAMPLE.stat().st_size)] if SAMPLE.is_file() else []
    root = data_dir()
    if root.is_dir():
        for path in sorted(root.rglob("*.csv")):
            relative = path.relative_to(root)
            if any(p.startswith(".") for p in relative.parts) or not is_inside(root, path):
                continue
            if path.is_file():
                files.append(DataFile(relative.as_posix(), path, path.stat().st_size))
    return files


def resolve_csv(name: str) -> Path:
    """The path of a listed file; DataError (naming the choices) for anything else."""
    for item in list_csv_files():
        if item.name == name:
            return item.path
    if _linked_outside(data_dir(), name):
        raise DataError(f"data file {name!r} is a link that leads outside the data folder; "
                        "it is refused (copy the file into the data folder instead)",
                        source="csv")
    raise DataError(f"unknown data file {name!r}; choose one of the listed files or upload one",
                    source="csv")


def _linked_outside(root: Path, name: str) -> bool:
    """Whether ``name`` goes through a link in the data folder to a place outside it
    (said as such; any other unlisted name is just unknown, even one that exists)."""
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts:
        return False
    try:
        through_link = any((root.joinpath(*parts[:i])).is_symlink()
                           for i in range(1, len(parts) + 1))
        return through_link and not is_inside(root, root / name)
    except OSError:  # a name too long for the file system is no file of ours
        return False


def is_upload(path: Path) -> bool:
    """Whether ``path`` is a file :func:`save_upload` kept (and so may remove)."""
    folder = (data_dir() / UPLOADS).resolve()
    return Path(path).resolve().parent == folder


def client_message(exc: Exception) -> str:
    """An error as a client may see it: quoted values cut short, the whole bounded, so a
    message never carries more of a file than the offending cell's start."""
    def cut(match: re.Match) -> str:
        text = match.group(0)
        return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED - 2] + "…" + text[0]

    message = _QUOTED.sub(cut, str(exc))
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE - 1] + "…"


@dataclass
class StagedUpload:
    """A validated upload waiting for its form: :meth:`keep` lists it, :meth:`discard`
    (or leaving a ``with`` block without keeping it) removes it."""

    name: str      # the name it is listed under once kept: "uploads/<hex>-<stem>.csv"
    staged: Path   # the hidden file it was streamed to
    size: int
    kept: DataFile | None = None

    def keep(self) -> DataFile:
        """List the upload, after the quota made room for it (UploadRefused if none)."""
        if self.kept is None:
            folder = self.staged.parent
            try:
                upload_quota.make_room(folder, self.size)
            except upload_quota.NoRoom as exc:
                raise UploadRefused(str(exc), exc.status) from None
            final = folder / Path(self.name).name
            self.staged.rename(final)
            self.kept = DataFile(self.name, final, self.size)
            log.info("kept upload %s (%d bytes)", self.name, self.size)
        return self.kept

    def discard(self) -> None:
        if self.kept is None:
            self.staged.unlink(missing_ok=True)

    def __enter__(self) -> StagedUpload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def stage_upload(filename: str, stream: IO[bytes]) -> StagedUpload:
    """Stream an uploaded CSV to a hidden file and validate it with the data contract;
    DataError (UploadRefused over a limit) names what is wrong, and nothing is kept."""
    stem = _SAFE.sub("_", Path(filename or "upload.csv").stem).strip("._") or "upload"
    final = f"{uuid.uuid4().hex[:8]}-{stem[:60]}.csv"
    folder = data_dir() / UPLOADS
    staged = folder / f"{STAGING_PREFIX}{final}"
    try:
        folder = uploads_dir()
        upload_quota.clean_up(folder)
        if _copy_counting_rows(stream, staged) == 0:
            raise DataError("the uploaded file is empty", source=filename or "upload")
        with _PARSING:
            load_bars(staged, name=filename or "upload")  # DataError with the details
    except DataError as exc:
        staged.unlink(missing_ok=True)
        if isinstance(exc, UploadRefused):
            raise
        raise DataError(client_message(exc)) from None
    except OSError as exc:  # a full disk: the server's problem, said plainly
        staged.unlink(missing_ok=True)
        log.error("cannot store an upload in %s: %s", folder, exc)
        raise UploadRefused(f"the upload could not be stored ({exc.strerror or exc}); "
                            "try again later", 507) from None
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return StagedUpload(f"{UPLOADS}/{final}", staged, staged.stat().st_size)


def save_upload(filename: str, content: bytes | IO[bytes]) -> DataFile:
    """Validate an uploaded CSV (bytes, or better its stream) and keep it; DataError
    names what is wrong and nothing is kept."""
    if isinstance(content, bytes | bytearray):
        content = io.BytesIO(content)
    with stage_upload(filename, content) as staged:
        return staged.keep()


def max_rows() -> int:
    return int(current_app.config.get("UPLOAD_MAX_ROWS") or DEFAULT_MAX_ROWS)


def _copy_counting_rows(stream: IO[bytes], target: Path) -> int:
    """Copy in chunks; UploadRefused as soon as the file has more rows than allowed."""
    limit, lines, size = max_rows(), 0, 0
    last = b"\n"
    with target.open("wb") as out:
        while chunk := stream.read(_CHUNK):
            lines += chunk.count(b"\n")
            size += len(chunk)
            last = chunk[-1:]
            if lines - 1 > limit:
                break
            out.write(chunk)
    rows = lines - (1 if last == b"\n" else 0)  # the header is not a row
    if rows > limit:
        target.unlink(missing_ok=True)
        raise UploadRefused(f"the upload has more than {limit:,} lines of bars, the limit "
                            "(UPLOAD_MAX_ROWS); split the file or raise the limit")
    return size

