"""Sectioned model configs: the one rule for merging user keys over a type's defaults
and for checking single values, shared by every model type.

A type's defaults are a mapping of sections (``model_params``, ``train_params``, …) to
keys. Users may give keys inside their section or flat at the top level
(``{"gamma": 0.98}``); flat keys are filed into their section. An unknown key is an
error naming it and the valid ones, never silently ignored.
"""

from __future__ import annotations

import math
from typing import Any

from NetworkConfigs.base import deep_merge


def normalise_sections(config: dict[str, Any] | None,
                       defaults: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Defaults + user config (sectioned or flat); unknown keys raise ValueError."""
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"a config must be a mapping; got {type(config).__name__}")
    section_of = {key: section for section, keys in defaults.items() for key in keys}
    sectioned: dict[str, dict[str, Any]] = {}
    for key, value in (config or {}).items():
        if key in defaults:
            if not isinstance(value, dict):
                raise ValueError(f"config section {key!r} must be a mapping")
            unknown = sorted(set(value) - set(defaults[key]))
            if unknown:
                raise ValueError(f"unknown key(s) {unknown} in {key}; valid: "
                                 f"{sorted(defaults[key])}")
            sectioned.setdefault(key, {}).update(value)
        elif key in section_of:
            sectioned.setdefault(section_of[key], {})[key] = value
        else:
            raise ValueError(f"unknown config key {key!r}; sections: {sorted(defaults)}")
    return deep_merge(defaults, sectioned)


def checked(section: dict[str, Any], name: str, kind: type, *, low: float | None = None,
            high: float | None = None, optional: bool = False) -> Any:
    """``section[name]`` checked for type and range; errors name the key."""
    value = section[name]
    if value is None and optional:
        return None
    ok = (isinstance(value, bool) if kind is bool
          else isinstance(value, int) and not isinstance(value, bool) if kind is int
          else isinstance(value, int | float) and not isinstance(value, bool) if kind is float
          else isinstance(value, kind))
    if not ok:
        raise ValueError(f"{name} must be {kind.__name__ if kind is not float else 'a number'}"
                         f"; got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}; got {value!r}")
    return kind(value)


def choice(section: dict[str, Any], name: str, valid: tuple[str, ...]) -> str:
    """``section[name]`` if it is one of ``valid``; the error lists them."""
    if section[name] not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}; got {section[name]!r}")
    return str(section[name])
