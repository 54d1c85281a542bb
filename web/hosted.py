"""What the dashboard hosts: the model ``/predict`` serves, chosen on the API page and
remembered across restarts, and the cache of library models that
``/api/models/<dir_name>/predict`` serves by folder name. State only; the routes are in
:mod:`web.hosting`. One :class:`Hosting` per app (``app.extensions["hosting"]``),
thread-safe: waitress answers on several threads.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask

from NetworkConfigs import load_model
from NetworkConfigs.artifacts import ModelNotFound, find_config, list_models, model_folder
from NetworkConfigs.base import ModelLoader
from NetworkConfigs.streams import StreamRegistry
from web.json_io import ApiError

log = logging.getLogger(__name__)

CACHE_SIZE = 8                      # library models kept loaded for /api/models/<dir>/predict
STREAMS_PER_CACHED_MODEL = 100      # streams of one cached model (its own registry)
CHOICE_FILE = "hosted_model.json"   # in the instance folder: {"model": dir_name or null}
# Why a model is hosted (the log and the page say it).
CHOSEN = "chosen on the API page"
RESTORED = "chosen on the API page before the restart"
NEWEST = "the newest model that loads, hosted at start"


@dataclass(frozen=True)
class HostedModel:
    dir_name: str
    loader: ModelLoader
    since: str  # ISO 8601 UTC
    reason: str  # why this one: CHOSEN, RESTORED or NEWEST


@dataclass(frozen=True)
class Cached:
    signature: tuple[Any, ...]  # the config file's path, mtime, inode and size
    loader: ModelLoader
    streams: StreamRegistry


def _load(models_dir: Path, dir_name: str) -> tuple[Path, ModelLoader]:
    """Load a library model by folder name; ApiError 404 (not there) or 503 (broken), its
    field ``model`` (the hosting form's field and the sample window's parameter)."""
    try:
        path = model_folder(models_dir, dir_name)  # the one folder rule: no link out
    except ValueError as exc:
        raise ApiError(404, str(exc), "model") from None
    try:
        return path, load_model(path)
    except ModelNotFound as exc:
        status = 503 if path.is_dir() and any(path.glob("*_config.yaml")) else 404
        raise ApiError(status, str(exc), "model") from None
    except (ValueError, OSError) as exc:  # ArtifactError, UnknownModelType, DataError, ...
        raise ApiError(503, str(exc), "model") from None
    except Exception as exc:  # a damaged model file fails in many ways
        log.exception("loading model %s failed", path)
        raise ApiError(503, f"{dir_name}: cannot be loaded ({type(exc).__name__}: {exc})",
                       "model") from None


class LoaderCache:
    """Library models by folder name, the ``size`` most recently used kept loaded.

    A model is reloaded when its config file changes (retrained, overwritten) and
    forgotten when its folder is gone. Loading happens outside the lock.
    """

    def __init__(self, size: int = CACHE_SIZE, max_streams: int = STREAMS_PER_CACHED_MODEL):
        self.size, self.max_streams = size, max_streams
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, models_dir: Path, dir_name: str) -> Cached:
        key = f"{Path(models_dir).resolve()}/{dir_name}"
        signature = self._signature(Path(models_dir), dir_name)
        if signature is None:
            self._forget(key)
            raise ApiError(404, f"no model {dir_name!r} in the library", "model")
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.signature == signature:
                self._entries.move_to_end(key)
                return entry
        _, loader = _load(models_dir, dir_name)
        entry = Cached(signature, loader, StreamRegistry(loader, self.max_streams))
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry

    @staticmethod
    def _signature(models_dir: Path, dir_name: str) -> tuple[Any, ...] | None:
        """What identifies one saved version of a model; None when it is not there."""
        try:
            config = find_config(model_folder(models_dir, dir_name))
            stat = config.stat()
        except (ValueError, OSError):  # an invalid name, ModelNotFound, a vanished file
            return None
        return str(config), stat.st_mtime_ns, stat.st_ino, stat.st_size

    def _forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)


class Hosting:
    """One app's hosted model and its library loader cache.

    What to host is a person's choice, made on the API page and remembered in the
    instance folder (:data:`CHOICE_FILE`) so a restart serves the same model. Before
    anyone has chosen, :meth:`host_at_start` hosts the newest model that loads: after
    ``make run`` trains the demo model, ``POST /predict`` answers at once instead of 503.

    "Stop hosting" stays possible and is remembered too: a person takes a model out of
    service (it misbehaves, or clients must not act on it while a better one trains),
    and a restart must not quietly put the newest model back in front of those clients.
    """

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._hosted: HostedModel | None = None
        self._lock = threading.Lock()
        self.cache = LoaderCache()

    def current(self) -> HostedModel | None:
        return self._hosted

    def loader(self) -> ModelLoader | None:
        """What ``/predict`` serves (the prediction blueprint's ``get_loader``)."""
        hosted = self._hosted
        return hosted.loader if hosted is not None else None

    def host(self, models_dir: Path, dir_name: str, *, reason: str = CHOSEN,
             remember: bool = True) -> HostedModel:
        """Load ``dir_name`` (again, if it is hosted already) and serve it from now on;
        ``remember``: a restart hosts it again."""
        if not dir_name:
            raise ApiError(422, "choose a model to host", "model")
        _, loader = _load(models_dir, dir_name)
        hosted = HostedModel(dir_name, loader, _now(), reason)
        with self._lock:
            self._hosted = hosted
            if remember:
                self._save_choice(dir_name)
        log.info("hosting model %s (%s)", dir_name, reason)
        return hosted

    def stop(self) -> None:
        """Serve nothing (``/predict`` answers 503), also after a restart."""
        with self._lock:
            self._hosted = None
            self._save_choice(None)
        log.info("stopped hosting: /predict answers 503 until a model is hosted")

    def host_at_start(self, models_dir: Path) -> HostedModel | None:
        """At start: the remembered choice, else the newest model that loads; None (and a
        log line saying why) when nothing is to be served."""
        chosen, choice = self._saved_choice()
        if chosen and choice is None:
            log.info("no model hosted: hosting was stopped on the API page; host one there "
                     "to serve /predict")
            return None
        if choice is not None:
            try:
                return self.host(models_dir, choice, reason=RESTORED, remember=False)
            except ApiError as exc:
                log.warning("the model chosen on the API page cannot be hosted now (%s); "
                            "hosting the newest model that loads instead", exc)
        return self._host_newest(models_dir)

    def _host_newest(self, models_dir: Path) -> HostedModel | None:
        for model in list_models(models_dir):  # newest first
            if model["error"]:
                continue
            try:
                return self.host(models_dir, model["dir_name"], reason=NEWEST,
                                 remember=False)
            except ApiError as exc:
                log.warning("not hosting %s: %s", model["dir_name"], exc)
        log.info("no model hosted: the library has none that loads; /predict answers 503 "
                 "until one is trained and hosted")
        return None

    def stopped_on_purpose(self) -> bool:
        """Whether "stop hosting" is the remembered choice (a restart hosts nothing)."""
        return self._saved_choice() == (True, None)

    def _choice_file(self) -> Path:
        return Path(self._app.instance_path) / CHOICE_FILE

    def _saved_choice(self) -> tuple[bool, str | None]:
        """(whether a choice is remembered, the folder name or None: stopped on purpose)."""
        try:
            saved = json.loads(self._choice_file().read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False, None
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", self._choice_file(), exc)
            return False, None
        model = saved.get("model", "") if isinstance(saved, dict) else ""
        if model is None or (isinstance(model, str) and model):
            return True, model
        log.warning("ignoring %s: no model name in it", self._choice_file())
        return False, None

    def _save_choice(self, dir_name: str | None) -> None:
        """Write the choice atomically (a crash leaves the old file or the new one)."""
        path = self._choice_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            staging.write_text(json.dumps({"model": dir_name}) + "\n", encoding="utf-8")
            os.replace(staging, path)
        except OSError as exc:  # hosting still works; only the next start forgets it
            log.warning("cannot remember the hosted model in %s: %s", path, exc)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
