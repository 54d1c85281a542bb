"""Model folders on disk: one place that knows their names, layout and atomic writing.

Layout: ``<models_dir>/<PREFIX>_<name>/<name>_config.yaml`` plus ``<name>_scaler.json``
and the type's model file (``<name>_model.pt``, ``<name>_model.json``, …). Nothing in a
model folder is read with pickle: the scaler is plain JSON (:mod:`scaler_io`), torch
files are read with ``weights_only=True``, xgboost models are xgboost's JSON.

A model is written into a hidden temporary folder beside its final place and renamed
when complete, so a crash never leaves half a model in the library
(:func:`clean_staging` removes what a killed writer left). Names are checked against
``[A-Za-z0-9_.-]``; a model folder must resolve inside the library and its files inside
the folder (``Utilities.safe_paths``: a symlink that leads elsewhere is refused), and
messages name paths relative to the library (``Models/PPO_x/x_model.pt``), never the
server's absolute layout.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from NetworkConfigs.scaler_io import ScalerFormatError, scaler_from_json, scaler_to_json
from Utilities.safe_paths import OutsideFolder, inside, is_inside, shown
from Utilities.serialization import to_plain

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,100}")
CONFIG_SUFFIX = "_config.yaml"
SCALER_KIND = "scaler.json"
LEGACY_SCALER_KIND = "scaler.pkl"  # read only by tools/migrate_scaler.py, by hand
MAX_SCALER_BYTES = 8 << 20  # 10,000 features x 5 arrays of full-precision floats fit
MIGRATE_COMMAND = "python tools/migrate_scaler.py"
_TMP_PREFIX = ".tmp-"
# A staging folder is named for its writer: ``.tmp-<host>.<pid>.<token>-<what>``, so
# clean_staging can tell a killed writer's leftovers (its pid is gone) from a live
# write, and leaves folders written from another machine (a shared library) to that one.
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
_STAGING_OWNER = re.compile(r"\.tmp-(?P<host>[A-Za-z0-9]*)\.(?P<pid>\d+)\.[0-9a-f]{8}-")
# Staging folders of earlier versions carry no pid; a write lasts seconds (files only:
# metrics are computed before), so one untouched for an hour has no writer left.
LEGACY_STAGING_AGE_S = 3600
_REPO_ROOT = Path(__file__).resolve().parent.parent


class ArtifactError(ValueError):
    """A model folder or name is unusable; the message says which and why."""


class ModelNotFound(ArtifactError, FileNotFoundError):
    """No model folder (or no config in it) at the given place."""


class ModelExists(ArtifactError, FileExistsError):
    """A model with this type and name is already in the library."""


def default_models_dir() -> Path:
    """``MODELS_DIR`` from the environment, else the repository's ``Models/``."""
    return Path(os.environ.get("MODELS_DIR") or _REPO_ROOT / "Models")


def validate_name(name: str, what: str = "model name") -> str:
    """Return ``name`` if it is safe to use in a file name, else raise ArtifactError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name.startswith("."):
        raise ArtifactError(
            f"invalid {what} {name!r}: use 1-100 letters, digits, '_', '.' or '-', "
            "not starting with '.'")
    return name


def shown_path(path: Path | str, model_dir: Path | str) -> str:
    """How messages name a path in (or of) a model folder: from the library folder that
    holds it, ``Models/PPO_x/x_model.pt``, never the server's absolute path."""
    return shown(path, [Path(model_dir).absolute().parent])


def model_folder(models_dir: Path, dir_name: str) -> Path:
    """The library's folder ``dir_name``, resolved; ModelNotFound when the name is not
    a folder name or the folder resolves outside ``models_dir`` (a symlink to
    elsewhere): the one rule every area (library, predict, backtest) resolves with."""
    validate_name(dir_name, "model folder")
    try:
        return inside(models_dir, dir_name, "model folder")
    except OutsideFolder as exc:
        raise ModelNotFound(f"{exc}; it is not served from the library") from None


def model_dir_for(models_dir: Path, prefix: str, name: str) -> Path:
    """Where the model of this type prefix and name lives."""
    validate_name(prefix, "type prefix")
    return model_folder(models_dir, f"{prefix}_{validate_name(name)}")


def checked_model_dir(model_dir: Path | str) -> Path:
    """``model_dir`` as given, if it resolves inside the folder it is listed in (a model
    named by path, on a command line, follows the library's rule too)."""
    path = Path(model_dir)
    absolute = path.absolute()
    if not is_inside(absolute.parent, absolute):
        raise ModelNotFound(f"model folder {shown_path(path, path)} resolves outside "
                            f"{shown(absolute.parent)} (a symlink or '..' that leads "
                            "elsewhere is refused)")
    return path


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, so a config names exactly the data it was trained on."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_path(model_dir: Path, name: str, kind: str) -> Path:
    """``<model_dir>/<name>_<kind>``, e.g. kind ``scaler.json`` or ``model.pt``;
    ArtifactError when that file is a link leading out of the folder."""
    path = Path(model_dir) / f"{validate_name(name)}_{validate_name(kind, 'artifact kind')}"
    _check_file_inside(model_dir, path)
    return path


def _check_file_inside(model_dir: Path, path: Path) -> None:
    if not is_inside(model_dir, path):
        raise ArtifactError(f"{shown_path(path, model_dir)} resolves outside its model "
                            "folder (a symlink that leads elsewhere is refused)")


@dataclass
class ModelWriter:
    """Collects a model's files in a temporary folder; see :func:`write_model`."""

    name: str
    type_name: str
    staging: Path
    target: Path  # where the model will be once complete
    config: dict[str, Any] = field(default_factory=dict)

    def path(self, kind: str) -> Path:
        """Where to write the artifact of this kind (inside the temporary folder)."""
        return artifact_path(self.staging, self.name, kind)

    def save_scaler(self, scaler: Any) -> Path:
        """The scaler as plain JSON (:mod:`NetworkConfigs.scaler_io`), never a pickle."""
        target = self.path(SCALER_KIND)
        target.write_text(scaler_to_json(scaler), encoding="utf-8")
        return target

    def _write_config(self) -> None:
        files = sorted(p.name for p in self.staging.iterdir())
        config = {
            **to_plain(self.config),
            "Type": self.type_name,
            "model_name": self.name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "artifact_paths": [*files, f"{self.name}{CONFIG_SUFFIX}"],
        }
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        (self.staging / f"{self.name}{CONFIG_SUFFIX}").write_text(text, encoding="utf-8")


def ensure_available(models_dir: Path, prefix: str, name: str, overwrite: bool = False) -> Path:
    """Raise ModelExists before any training time is spent on a name already taken.

    Every trainer calls this first, so it is also where a training clears the staging
    folders killed writers left (:func:`clean_staging`)."""
    target = model_dir_for(models_dir, prefix, name)
    clean_staging(models_dir)
    if target.exists() and not overwrite:
        raise ModelExists(f"model {target.name!r} already exists in the library; "
                          "choose another name or pass overwrite")
    return target


def _staging_name(what: str) -> str:
    return f"{_TMP_PREFIX}{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}-{what}"


@contextmanager
def write_model(models_dir: Path, prefix: str, type_name: str, name: str,
                *, overwrite: bool = False) -> Iterator[ModelWriter]:
    """Stage a model's files; on success write its config and move it into place.

    >>> with write_model(Path("Models"), "PPO", "ppo", "demo") as w:   # doctest: +SKIP
    ...     torch.save(state, w.path("model.pt")); w.save_scaler(scaler)
    ...     w.config.update(lookback=30, feature_spec=spec.to_dict())
    """
    target = ensure_available(models_dir, prefix, name, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / _staging_name(target.name)
    staging.mkdir()
    try:
        writer = ModelWriter(name, type_name, staging, target)
        yield writer
        writer._write_config()
        _move_into_place(staging, target, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("saved model %s", shown(target, [models_dir]))


def _move_into_place(staging: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished folder into place; an old model is swapped out, then removed."""
    old = None
    if target.exists():
        if not overwrite:  # another writer finished the same name while we trained
            raise ModelExists(f"model {target.name!r} appeared in the library meanwhile")
        old = target.parent / _staging_name(f"old-{target.name}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_staging(models_dir: Path | None = None) -> list[str]:
    """Remove the staging folders (``.tmp-*``) of writers that are gone: killed during
    :func:`write_model`. Returns the names removed.

    A folder names its writer's host and pid: it is removed when that pid is not alive
    on this host. Folders of another host are left to it (a library shared over the
    network), and a live writer's folder is never touched. Folders of earlier versions
    (no pid in the name) are removed once untouched for ``LEGACY_STAGING_AGE_S``.
    """
    root = Path(models_dir or default_models_dir())
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(_TMP_PREFIX)]
    except OSError:  # no library yet
        return []
    removed = []
    for path in candidates:
        if path.is_symlink() or not path.is_dir() or not _abandoned(path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
        log.info("removed a staging folder left by an interrupted model write: %s",
                 path.name)
    return removed


def _abandoned(path: Path) -> bool:
    owner = _STAGING_OWNER.match(path.name)
    if owner is None:
        try:
            return time.time() - path.stat().st_mtime > LEGACY_STAGING_AGE_S
        except OSError:
            return False
    return owner["host"] == _HOST and not _pid_alive(int(owner["pid"]))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone; a number no process can have
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def find_config(model_dir: Path) -> Path:
    """The one ``*_config.yaml`` in a model folder (which must resolve inside the folder
    it is listed in, the config inside it)."""
    model_dir = checked_model_dir(model_dir)
    if not model_dir.is_dir():
        raise ModelNotFound(f"model folder not found: {shown_path(model_dir, model_dir)}")
    configs = sorted(model_dir.glob(f"*{CONFIG_SUFFIX}"))
    if len(configs) != 1:
        found = "no" if not configs else f"{len(configs)}"
        raise ModelNotFound(f"{shown_path(model_dir, model_dir)}: expected one "
                            f"*{CONFIG_SUFFIX}, found {found}")
    _check_file_inside(model_dir, configs[0])
    return configs[0]


def read_config(model_dir: Path) -> dict[str, Any]:
    """A model's config, checked for the keys every loader relies on."""
    path = find_config(model_dir)
    where = shown_path(path, model_dir)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{where}: not a readable YAML file ({exc})") from None
    if not isinstance(config, dict):
        raise ArtifactError(f"{where}: expected a mapping at the top level")
    missing = [k for k in ("Type", "model_name") if k not in config]
    if missing:
        raise ArtifactError(f"{where}: missing key(s) {missing}")
    validate_name(config["model_name"])
    return config


def load_scaler(model_dir: Path, name: str) -> Any:
    """The model's scaler, rebuilt from ``<name>_scaler.json``. A folder that still has
    only the pickled scaler of earlier versions is refused (a pickle runs code when
    read); the message names the one-off migration."""
    path = artifact_path(model_dir, name, SCALER_KIND)
    where = shown_path(path, model_dir)
    if not path.is_file():
        _refuse_legacy_scaler(model_dir, name)
        raise ModelNotFound(f"{shown_path(model_dir, model_dir)}: scaler file {path.name} "
                            "is missing")
    try:
        if path.stat().st_size > MAX_SCALER_BYTES:
            raise ScalerFormatError(f"larger than {MAX_SCALER_BYTES >> 20} MiB")
        return scaler_from_json(path.read_bytes())
    except (ScalerFormatError, OSError, TypeError) as exc:  # TypeError: odd params
        raise ArtifactError(f"{where}: not a readable scaler file ({exc})") from None


def _refuse_legacy_scaler(model_dir: Path, name: str) -> None:
    """ArtifactError naming the migration when the folder has only an old pickled scaler
    (checked without reading it: listing shows the problem before anything loads)."""
    if artifact_path(model_dir, name, SCALER_KIND).is_file():
        return
    if (Path(model_dir) / f"{name}_{LEGACY_SCALER_KIND}").exists():
        folder = shown_path(model_dir, model_dir)
        raise ArtifactError(
            f"{folder} has only a pickled scaler ({name}_{LEGACY_SCALER_KIND}) from an "
            "earlier version; pickles are not loaded because they can run code. If you "
            f"trust this model, convert it once: {MIGRATE_COMMAND} {folder}")


def _summary(model_dir: Path) -> dict[str, Any]:
    config = to_plain(read_config(model_dir))  # YAML may hold dates, lists, anything
    _refuse_legacy_scaler(model_dir, str(config["model_name"]))
    for name in config.get("artifact_paths") or []:  # a few stats, no file is read
        if isinstance(name, str) and (model_dir / name).exists():
            _check_file_inside(model_dir, model_dir / name)
    metrics = config.get("metrics")
    return {
        "dir_name": model_dir.name, "path": str(model_dir), "name": str(config["model_name"]),
        "type": str(config["Type"]), "created_at": _text(config.get("created_at")),
        "data_file": _text(config.get("data_file")),
        "metrics": metrics if isinstance(metrics, dict) else {}, "error": None,
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def list_models(models_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every model folder, newest first. A broken folder is listed with its error; a
    folder that resolves outside the library (a symlink) is not in the library."""
    root = Path(models_dir or default_models_dir())
    if not root.is_dir():
        return []
    rows = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not is_inside(root, path):
            log.warning("skipping model folder %s: it resolves outside the library "
                        "(a symlink)", path.name)
            continue
        try:
            rows.append(_summary(path))
        except (ArtifactError, OSError, ValueError) as exc:
            log.warning("skipping unreadable model folder %s: %s", path.name, exc)
            rows.append({"dir_name": path.name, "path": str(path), "name": path.name,
                         "type": None, "created_at": None, "data_file": None, "metrics": {},
                         "error": str(exc)})
    return sorted(rows, key=lambda r: r["created_at"] or "", reverse=True)


def delete_model(models_dir: Path, dir_name: str) -> None:
    """Remove one model folder from the library."""
    model_folder(models_dir, dir_name)
    path = Path(models_dir) / dir_name  # not resolved: a link is refused, never followed
    if path.is_symlink() or not path.is_dir():
        raise ModelNotFound(f"no model folder {dir_name!r} in the library")
    shutil.rmtree(path)
    log.info("deleted model %s", dir_name)
