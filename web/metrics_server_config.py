"""The metrics server's settings (issue 17): a YAML file plus the seed's environment
variables, the environment winning; ``metrics_server.example.yaml`` shows every key.

The file is ``TRAINING_METRICS_CONFIG`` when set, else ``metrics_server.yaml`` beside
Main.py when there is one. Environment variables:

=============================  =================================  =====================
variable                       YAML key                           default
=============================  =================================  =====================
TRAINING_METRICS_HOST          host                               127.0.0.1
TRAINING_METRICS_PORT          port                               5000
TRAINING_METRICS_DEBUG         debug                              false
DATABASE_URL                   database_url                       instance/runs.db
CORS_ORIGINS (comma-separated) cors_origins                       none
MAX_CONNECTIONS_PER_SESSION    max_connections_per_session        50
METRICS_HISTORY_SIZE           metrics_history_size               5000
CLEANUP_INTERVAL_SECONDS       cleanup_interval_seconds           300
SESSION_RETENTION_DAYS         session_retention_days             30 (0: keep)
RATE_LIMIT_PER_SECOND          rate_limit.requests_per_second     50 (0: no limit)
RATE_LIMIT_BURST               rate_limit.burst                   200
MAX_BATCH_ITEMS                max_batch_items                    10000
MAX_INGEST_MB                  max_ingest_mb                      32
=============================  =================================  =====================

``max_connections_per_session`` is the live stream's per-run viewer cap
(``LIVE_MAX_VIEWERS_PER_RUN``: one mechanism for runs and sessions) and
``metrics_history_size`` the messages each stream keeps in memory (``LIVE_BACKLOG``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from Utilities.input_errors import InputError

CONFIG_ENV = "TRAINING_METRICS_CONFIG"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "metrics_server.yaml"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Setting:
    key: str  # the YAML key (dotted for a nested one)
    env: str
    default: Any
    check: Callable[[Any, str], Any]
    app_key: str | None  # the Flask config key it sets (None: serving only)


def _port(value: Any, label: str) -> int:
    number = _whole(value, label)
    if not 0 <= number <= 65535:
        raise InputError(f"{label} must be a port from 0 to 65535; got {value!r}", label)
    return number


def _whole(value: Any, label: str, low: int = 0) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InputError(f"{label} must be a whole number; got {value!r}", label) from None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{label} must be a whole number >= {low}; got {value!r}", label)
    return value


def _positive(value: Any, label: str) -> int:
    return _whole(value, label, 1)


def _seconds(value: Any, label: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InputError(f"{label} must be a number; got {value!r}", label) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value >= 0):
        raise InputError(f"{label} must be a number >= 0; got {value!r}", label)
    return float(value)


def _flag(value: Any, label: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise InputError(f"{label} must be true or false; got {value!r}", label)


def _text(value: Any, label: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{label} must be a non-empty string; got {value!r}", label)
    return value.strip()


def _origins(value: Any, label: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise InputError(f"{label} must be a list of origins (or a comma-separated string)",
                         label)
    origins = []
    for item in (str(i).strip().rstrip("/") for i in items):
        if not item:
            continue
        if item != "*" and not (item.startswith(("http://", "https://"))
                                and "/" not in item.split("://", 1)[1]):
            raise InputError(f"{label}: {item!r} is not an origin (scheme://host[:port], "
                             "e.g. http://localhost:3000, or *)", label)
        origins.append(item)
    return tuple(origins)


SETTINGS = (
    Setting("host", "TRAINING_METRICS_HOST", "127.0.0.1", _text, None),
    Setting("port", "TRAINING_METRICS_PORT", 5000, _port, None),
    Setting("debug", "TRAINING_METRICS_DEBUG", False, _flag, None),
    Setting("database_url", "DATABASE_URL", None, _text, "DATABASE_URL"),
    Setting("cors_origins", "CORS_ORIGINS", (), _origins, "CORS_ORIGINS"),
    Setting("max_connections_per_session", "MAX_CONNECTIONS_PER_SESSION", None, _positive,
            "LIVE_MAX_VIEWERS_PER_RUN"),
    Setting("metrics_history_size", "METRICS_HISTORY_SIZE", None, _positive, "LIVE_BACKLOG"),
    Setting("cleanup_interval_seconds", "CLEANUP_INTERVAL_SECONDS", 300.0, _seconds,
            "METRICS_CLEANUP_SECONDS"),
    Setting("session_retention_days", "SESSION_RETENTION_DAYS", 30.0, _seconds,
            "METRICS_RETENTION_DAYS"),
    Setting("rate_limit.requests_per_second", "RATE_LIMIT_PER_SECOND", 50.0, _seconds,
            "METRICS_RATE_PER_SECOND"),
    Setting("rate_limit.burst", "RATE_LIMIT_BURST", 200, _positive, "METRICS_RATE_BURST"),
    Setting("max_batch_items", "MAX_BATCH_ITEMS", 10_000, _positive,
            "METRICS_MAX_BATCH_ITEMS"),
    Setting("max_ingest_mb", "MAX_INGEST_MB", 32.0, _seconds, "METRICS_MAX_INGEST_MB"),
)
KNOWN_KEYS = frozenset(s.key for s in SETTINGS)


def config_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The YAML file to read, or None."""
    environ = os.environ if environ is None else environ
    named = environ.get(CONFIG_ENV, "").strip()
    if named:
        return Path(named)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def read_file(path: Path | None) -> dict[str, Any]:
    """The file's settings flattened to dotted keys; InputError naming a bad one."""
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise InputError(f"{CONFIG_ENV}: cannot read {path}: {exc.strerror}", CONFIG_ENV) \
            from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML: {exc}", CONFIG_ENV) from None
    if not isinstance(raw, dict):
        raise InputError(f"{path} must hold a mapping of settings", CONFIG_ENV)
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "rate_limit" and isinstance(value, dict):
            flat.update({f"rate_limit.{k}": v for k, v in value.items()})
        else:
            flat[str(key)] = value
    unknown = sorted(set(flat) - KNOWN_KEYS)
    if unknown:
        raise InputError(f"{path}: unknown setting {unknown[0]!r} (known: "
                         f"{', '.join(sorted(KNOWN_KEYS))})", unknown[0])
    return flat


def load(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting by YAML key: the environment's, else the file's, else the default."""
    environ = os.environ if environ is None else environ
    path = config_path(environ)
    from_file = read_file(path)
    values = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env)
        if raw is not None and raw.strip() != "":
            values[setting.key] = setting.check(raw, setting.env)
        elif from_file.get(setting.key) is not None:
            values[setting.key] = setting.check(from_file[setting.key], setting.key)
        else:
            values[setting.key] = setting.default
    return values


def app_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Flask config the settings give (those left unset give nothing, so the
    app's own defaults stand)."""
    values = load(environ)
    return {s.app_key: values[s.key] for s in SETTINGS
            if s.app_key is not None and values[s.key] is not None}


def serving(environ: Mapping[str, str] | None = None) -> tuple[str, int, bool]:
    """(host, port, debug) for ``python Main.py``'s defaults."""
    values = load(environ)
    return values["host"], values["port"], values["debug"]
