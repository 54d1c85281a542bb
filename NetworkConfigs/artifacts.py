"""Model folders on disk: one place that knows their names, layout and atomic writing.

Layout: ``<models_dir>/<PREFIX>_<name>/<name>_config.yaml`` plus ``<name>_scaler.pkl``
and the type's model file (``<name>_model.pt``, ``<name>_model.json``, …).

A model is written into a hidden temporary folder beside its final place and renamed
when complete, so a crash never leaves half a model in the library. Names are checked
against ``[A-Za-z0-9_.-]`` and the final path is checked to stay inside ``models_dir``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import yaml

from Utilities.serialization import to_plain

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,100}")
CONFIG_SUFFIX = "_config.yaml"
_TMP_PREFIX = ".tmp-"
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


def _inside(models_dir: Path, dir_name: str) -> Path:
    """``models_dir/dir_name``, refusing anything that would escape ``models_dir``."""
    validate_name(dir_name, "model folder")
    root = Path(models_dir).resolve()
    path = (root / dir_name).resolve()
    if path.parent != root:
        raise ArtifactError(f"model folder {dir_name!r} is outside {root}")
    return path


def model_dir_for(models_dir: Path, prefix: str, name: str) -> Path:
    """Where the model of this type prefix and name lives."""
    validate_name(prefix, "type prefix")
    return _inside(models_dir, f"{prefix}_{validate_name(name)}")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, so a config names exactly the data it was trained on."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_path(model_dir: Path, name: str, kind: str) -> Path:
    """``<model_dir>/<name>_<kind>``, e.g. kind ``scaler.pkl`` or ``model.pt``."""
    return Path(model_dir) / f"{validate_name(name)}_{validate_name(kind, 'artifact kind')}"


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
        target = self.path("scaler.pkl")
        joblib.dump(scaler, target)
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
    """Raise ModelExists before any training time is spent on a name already taken."""
    target = model_dir_for(models_dir, prefix, name)
    if target.exists() and not overwrite:
        raise ModelExists(f"model {target.name!r} already exists in {models_dir}; "
                          "choose another name or pass overwrite")
    return target


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
    staging = target.parent / f"{_TMP_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        writer = ModelWriter(name, type_name, staging, target)
        yield writer
        writer._write_config()
        _move_into_place(staging, target, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("saved model %s", target)


def _move_into_place(staging: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished folder into place; an old model is swapped out, then removed."""
    old = None
    if target.exists():
        if not overwrite:  # another writer finished the same name while we trained
            raise ModelExists(f"model {target.name!r} appeared in {target.parent} meanwhile")
        old = target.parent / f"{_TMP_PREFIX}old-{target.name}-{uuid.uuid4().hex[:8]}"
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def find_config(model_dir: Path) -> Path:
    """The one ``*_config.yaml`` in a model folder."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelNotFound(f"model folder not found: {model_dir}")
    configs = sorted(model_dir.glob(f"*{CONFIG_SUFFIX}"))
    if len(configs) != 1:
        found = "no" if not configs else f"{len(configs)}"
        raise ModelNotFound(f"{model_dir}: expected one *{CONFIG_SUFFIX}, found {found}")
    return configs[0]


def read_config(model_dir: Path) -> dict[str, Any]:
    """A model's config, checked for the keys every loader relies on."""
    path = find_config(model_dir)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not a readable YAML file ({exc})") from None
    if not isinstance(config, dict):
        raise ArtifactError(f"{path}: expected a mapping at the top level")
    missing = [k for k in ("Type", "model_name") if k not in config]
    if missing:
        raise ArtifactError(f"{path}: missing key(s) {missing}")
    validate_name(config["model_name"])
    return config


def load_scaler(model_dir: Path, name: str) -> Any:
    path = artifact_path(model_dir, name, "scaler.pkl")
    if not path.is_file():
        raise ModelNotFound(f"{model_dir}: scaler file {path.name} is missing")
    try:
        return joblib.load(path)
    except Exception as exc:  # a damaged pickle fails in many ways (EOF, unpickling, ...)
        raise ArtifactError(f"{path}: not a readable scaler file "
                            f"({type(exc).__name__}: {exc})") from None


def _summary(model_dir: Path) -> dict[str, Any]:
    config = to_plain(read_config(model_dir))  # YAML may hold dates, lists, anything
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
    """Every model folder, newest first. A broken folder is listed with its error."""
    root = Path(models_dir or default_models_dir())
    if not root.is_dir():
        return []
    rows = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            rows.append(_summary(path))
        except (ArtifactError, OSError, ValueError) as exc:
            log.warning("skipping unreadable model folder %s: %s", path, exc)
            rows.append({"dir_name": path.name, "path": str(path), "name": path.name,
                         "type": None, "created_at": None, "data_file": None, "metrics": {},
                         "error": str(exc)})
    return sorted(rows, key=lambda r: r["created_at"] or "", reverse=True)


def delete_model(models_dir: Path, dir_name: str) -> None:
    """Remove one model folder from the library."""
    path = _inside(models_dir, dir_name)
    if not path.is_dir():
        raise ModelNotFound(f"no model folder {dir_name!r} in {models_dir}")
    shutil.rmtree(path)
    log.info("deleted model %s", path)
