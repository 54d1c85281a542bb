"""The live dashboard's settings, one rule for the places that take them: the
``training_dashboard:`` section of a training's YAML config (the seed's config file has
it) and ``Main.TrainingDashboard(...)``.

``port`` (0 = any free port), ``update_interval_ms`` (how often the server looks in the
store for new rows; pages get them pushed), ``theme`` (the theme a browser starts with)
and ``auto_start`` (``run_training.py`` serves the dashboard beside the training while it
runs). The section is about how a run is watched, not about the model: it is taken out
of the config before the trainer sees it and is not saved with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from Utilities.input_errors import InputError, raise_collected

SECTION = "training_dashboard"
THEMES = ("dark", "light", "cyberpunk")


@dataclass(frozen=True)
class DashboardSettings:
    port: int = 8050
    update_interval_ms: float = 500
    theme: str = "dark"
    auto_start: bool = False


def check_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port must be a whole number from 0 to 65535, not {port!r}", "port")
    return port


def check_interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 10 <= value <= 60_000:
        raise InputError("update_interval_ms must be a number of milliseconds from 10 to "
                         f"60000, not {value!r}", "update_interval_ms")
    return float(value)


def check_theme(theme: Any) -> str:
    if theme not in THEMES:
        raise InputError(f"theme must be one of {', '.join(THEMES)}, not {theme!r}", "theme")
    return theme


def dashboard_settings(section: Any) -> DashboardSettings:
    """The checked ``training_dashboard`` section (None: the defaults); every problem at
    once, each under ``training_dashboard.<key>``."""
    if section is None:
        return DashboardSettings()
    if not isinstance(section, dict):
        raise InputError(f"{SECTION} must be a mapping of settings", SECTION)
    checks = {"port": check_port, "update_interval_ms": check_interval,
              "theme": check_theme, "auto_start": _check_flag}
    errors: dict[str | None, str] = {}
    for key in sorted(set(section) - set(checks), key=str):
        errors[f"{SECTION}.{key}"] = (f"unknown key {key!r} in {SECTION}; valid: "
                                      f"{', '.join(checks)}")
    values = {}
    for key, check in checks.items():
        if key in section:
            try:
                values[key] = check(section[key])
            except InputError as exc:
                errors[f"{SECTION}.{key}"] = f"{SECTION}.{exc}"
    if values.get("auto_start") and values.get("port") == 0:
        errors[f"{SECTION}.port"] = (f"{SECTION}.port must be a fixed port (1 to 65535) with "
                                     "auto_start, so the run's address can be printed")
    raise_collected(errors)
    return DashboardSettings(**values)


def _check_flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"auto_start must be true or false, not {value!r}", "auto_start")
    return value
