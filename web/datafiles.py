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
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from flask import current_app

from Utilities.data_utils import DataError, load_bars
from Utilities.run_store import RunStoreError
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
# What of a person's file name is kept on disk: letters (any script), digits, spaces and
# the usual punctuation; a separator, a control character or a quote becomes "_".
_UNSAFE = re.compile(r"[^\w .,()\[\]+=@&-]+")
# An upload is kept as "<8 hex>-<the person's name>.csv": the prefix keeps two uploads of
# one name apart and is never shown (shown_name strips it).
_UPLOAD_NAME = re.compile(r"(?P<id>[0-9a-f]{8})-(?P<name>.+)")
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

    @property
    def label(self) -> str:
        """What people see: an upload by the name they gave it."""
        return shown_name(self.name)

    @property
    def is_upload(self) -> bool:
        return is_upload_name(self.name)

    @property
    def size_text(self) -> str:
        return upload_quota.size_text(self.size)

    @property
    def uploaded(self) -> str:
        """When an upload was kept, "2026-12-07 04:31 UTC"."""
        return f"{datetime.fromtimestamp(self.path.stat().st_mtime, UTC):%Y-%m-%d %H:%M} UTC"

    @property
    def choice(self) -> str:
        """An option of a file select: the shown name, and for an upload when it came
        (two uploads may share a name), then the size."""
        if not self.is_upload:
            return f"{self.label} ({self.size_text})"
        return f"{self.label} · uploaded {self.uploaded} ({self.size_text})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "size": self.size}


def is_upload_name(name: str | None) -> bool:
    """Whether a listed name (or a stored path) is a kept upload's."""
    if not name:
        return False
    path = Path(str(name).replace("\\", "/"))
    return path.parent.name == UPLOADS and _UPLOAD_NAME.fullmatch(path.name) is not None


def shown_name(name: str | None) -> str:
    """A data file as people know it: an upload (listed name or stored path) by the
    name it was uploaded under, anything else by its file name; "" for none."""
    if not name:
        return ""
    path = Path(str(name).replace("\\", "/"))
    if is_upload_name(name):
        return _UPLOAD_NAME.fullmatch(path.name)["name"]
    return str(name) if len(path.parts) > 1 and not path.is_absolute() else path.name


class UploadInUse(DataError):
    """An upload a queued or running job still reads: it cannot be removed now (409)."""

    status = 409


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
    final = f"{uuid.uuid4().hex[:8]}-{kept_name(filename)}"
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


def kept_name(filename: str | None) -> str:
    """The person's file name as it is kept: its last part (a browser may send a whole
    Windows path), unsafe characters replaced, at most 80 characters, ending ".csv"
    (the folder lists ``*.csv``). "upload.csv" when nothing is left."""
    base = re.split(r"[\\/]", filename or "")[-1]
    stem = base[:-4] if base.lower().endswith(".csv") else base
    stem = _UNSAFE.sub("_", stem).strip(" ._")[:76].rstrip(" ._")
    return f"{stem or 'upload'}.csv"


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



# --------------------------------------------------------------------------- removing


def uploads() -> list[DataFile]:
    """The kept uploads, newest first."""
    kept = [f for f in list_csv_files() if f.is_upload]
    return sorted(kept, key=lambda f: f.path.stat().st_mtime, reverse=True)


def find_upload(name: str) -> DataFile | None:
    """The kept upload listed as ``name``, or None."""
    return next((f for f in uploads() if f.name == name), None)


def upload_users(files: list[DataFile]) -> dict[str, str]:
    """Listed name -> what uses that upload now (see :func:`upload_quota.users`)."""
    by_path = {f.path.resolve(): f.name for f in files}
    return {by_path[p]: why for p, why in upload_quota.users(list(by_path)).items()}


def remove_upload(name: str) -> DataFile:
    """Remove the kept upload listed as ``name``: LookupError when there is none,
    UploadInUse while a queued or running backtest or training reads it."""
    found = find_upload(name)
    if found is None:
        raise LookupError(f"no upload {name!r}")
    try:
        user = upload_users([found]).get(found.name)
    except RunStoreError as exc:
        raise UploadInUse(f"{found.label} cannot be removed now: the run store, which says "
                          f"which trainings run, cannot be read ({exc})") from None
    if user:
        raise UploadInUse(f"{found.label} is read by {user}; remove it once that has "
                          "finished")
    upload_quota.remove(found.path, "removed from the uploads list")
    return found
