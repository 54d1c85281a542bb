"""Training-health rules: the thresholds (the seed's presets or custom values) and what
they say about one episode and the episodes before it. Pure functions: no I/O, no
clock; :mod:`Utilities.alert_system` throttles, records and delivers what they find.

An episode is a dict of the seed's shape (``{"episode": 12, "profit": -40.0, "loss":
3.2, "sharpe": 0.4, ...}``); our trainers' ``episode/*`` metrics are the same dicts with
``reward`` where the seed says ``profit`` (:data:`PROFIT_KEYS` reads either).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from Utilities.input_errors import InputError

LEVELS = ("info", "warning", "critical")
PROFIT_KEYS = ("profit", "reward", "pnl")  # the first present is an episode's P/L
LOSS_KEYS = ("loss", "total_loss")


class AlertThresholds:
    """The seed's presets. CONSERVATIVE alerts soonest, AGGRESSIVE least."""

    CONSERVATIVE: ClassVar[dict[str, Any]] = {
        "no_improvement_episodes": 50, "critical_loss_threshold": 500.0,
        "min_profit_warning": -200.0}
    MODERATE: ClassVar[dict[str, Any]] = {
        "no_improvement_episodes": 100, "critical_loss_threshold": 1000.0,
        "min_profit_warning": -500.0}
    AGGRESSIVE: ClassVar[dict[str, Any]] = {
        "no_improvement_episodes": 200, "critical_loss_threshold": 2000.0,
        "min_profit_warning": -1000.0}
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "CONSERVATIVE": CONSERVATIVE, "MODERATE": MODERATE, "AGGRESSIVE": AGGRESSIVE}


@dataclass(frozen=True)
class Thresholds:
    """Validated threshold values (every field finite; episodes ≥ 1)."""

    no_improvement_episodes: int = 100
    critical_loss_threshold: float = 1000.0
    min_profit_warning: float = -500.0

    @classmethod
    def of(cls, value: str | Mapping[str, Any] | Thresholds | None) -> Thresholds:
        """From a preset name (any case), a dict of the seed's keys (missing keys take
        MODERATE's values), or Thresholds; InputError naming the bad key otherwise."""
        if isinstance(value, Thresholds):
            return value
        if value is None:
            return cls()
        if isinstance(value, str):
            preset = AlertThresholds.PRESETS.get(value.strip().upper())
            if preset is None:
                raise InputError(f"thresholds: unknown preset {value!r}; choose one of "
                                 f"{', '.join(AlertThresholds.PRESETS)} or give values",
                                 field="thresholds")
            return cls(**preset)
        if not isinstance(value, Mapping):
            raise InputError("thresholds: give a preset name or a mapping of values",
                             field="thresholds")
        return cls._from_mapping(value)

    @classmethod
    def _from_mapping(cls, value: Mapping[str, Any]) -> Thresholds:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise InputError(f"thresholds: unknown key {unknown[0]!r}; known: "
                             f"{', '.join(sorted(known))}", field=f"thresholds.{unknown[0]}")
        values = {**AlertThresholds.MODERATE, **value}
        episodes = values["no_improvement_episodes"]
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise InputError("thresholds.no_improvement_episodes must be an integer ≥ 1",
                             field="thresholds.no_improvement_episodes")
        for key in ("critical_loss_threshold", "min_profit_warning"):
            number = values[key]
            if isinstance(number, bool) or not isinstance(number, int | float) \
                    or not math.isfinite(number):
                raise InputError(f"thresholds.{key} must be a finite number",
                                 field=f"thresholds.{key}")
        return cls(no_improvement_episodes=episodes,
                   critical_loss_threshold=float(values["critical_loss_threshold"]),
                   min_profit_warning=float(values["min_profit_warning"]))


@dataclass(frozen=True)
class Finding:
    """What a rule found: the alert to raise (before throttling)."""

    rule: str
    level: str
    title: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


def first_number(episode: Mapping[str, Any], keys: Iterable[str]) -> tuple[str, float] | None:
    """(key, value) of the first of ``keys`` the episode holds as a number."""
    for key in keys:
        value = episode.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return key, float(value)
    return None


def non_finite(episode: Mapping[str, Any]) -> Finding | None:
    """Critical: a NaN or infinite number anywhere in the episode (nested dicts too)."""
    bad = sorted(_non_finite_keys(episode))
    if not bad:
        return None
    return Finding("non_finite", "critical", "Non-finite metric",
                   f"{', '.join(bad)} is NaN or infinite at episode "
                   f"{episode.get('episode', '?')}: training has probably diverged",
                   {"keys": bad, "episode": episode.get("episode")})


def _non_finite_keys(values: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from _non_finite_keys(value, f"{prefix}{key}.")
        elif isinstance(value, float) and not math.isfinite(value):
            yield f"{prefix}{key}"


def critical_loss(episode: Mapping[str, Any], thresholds: Thresholds) -> Finding | None:
    """Critical: the episode's loss above ``critical_loss_threshold``."""
    found = first_number(episode, LOSS_KEYS)
    if found is None or not found[1] > thresholds.critical_loss_threshold:
        return None
    key, loss = found
    return Finding("critical_loss", "critical", "Loss above the critical threshold",
                   f"{key} {loss:g} > {thresholds.critical_loss_threshold:g} at episode "
                   f"{episode.get('episode', '?')}",
                   {"key": key, "value": loss, "threshold": thresholds.critical_loss_threshold,
                    "episode": episode.get("episode")})


def profit_floor(episode: Mapping[str, Any], thresholds: Thresholds) -> Finding | None:
    """Warning: the episode's P/L below ``min_profit_warning``."""
    found = first_number(episode, PROFIT_KEYS)
    if found is None or not found[1] < thresholds.min_profit_warning:
        return None
    key, profit = found
    return Finding("profit_floor", "warning", "Episode P/L below the floor",
                   f"{key} {profit:g} < {thresholds.min_profit_warning:g} at episode "
                   f"{episode.get('episode', '?')}",
                   {"key": key, "value": profit, "threshold": thresholds.min_profit_warning,
                    "episode": episode.get("episode")})


def plateau(history: Sequence[Mapping[str, Any]], thresholds: Thresholds,
            ) -> tuple[int, float, int] | None:
    """(index of the best episode, its P/L, episodes since) when the last
    ``no_improvement_episodes`` episodes of ``history`` (oldest first) brought no new
    best; None while the run still improves or the history is too short to say."""
    values = [found[1] if (found := first_number(e, PROFIT_KEYS)) else math.nan
              for e in history]
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    if not finite:
        return None
    best_value = max(v for v, _ in finite)
    best_index = min(i for v, i in finite if v == best_value)  # the first time it was hit
    since = len(history) - 1 - best_index
    if since < thresholds.no_improvement_episodes:
        return None
    return best_index, best_value, since


def no_improvement(history: Sequence[Mapping[str, Any]], thresholds: Thresholds,
                   ) -> Finding | None:
    """Warning: no new best P/L in ``no_improvement_episodes`` episodes."""
    found = plateau(history, thresholds)
    if found is None:
        return None
    index, best, since = found
    best_episode = history[index].get("episode", index)
    return Finding("no_improvement", "warning", "No improvement",
                   f"no new best P/L in {since} episodes (best {best:g} at episode "
                   f"{best_episode})",
                   {"episodes_since_best": since, "best": best, "best_episode": best_episode,
                    "threshold": thresholds.no_improvement_episodes})


def health_findings(latest: Mapping[str, Any], recent: Sequence[Mapping[str, Any]],
                    thresholds: Thresholds) -> list[Finding]:
    """Every rule's finding for the latest episode; ``recent`` are the episodes before
    it, oldest first (the latest may or may not be its last item)."""
    history = list(recent)
    if not history or history[-1] is not latest:
        history.append(latest)
    checks = (non_finite(latest), critical_loss(latest, thresholds),
              profit_floor(latest, thresholds), no_improvement(history, thresholds))
    return [finding for finding in checks if finding is not None]
