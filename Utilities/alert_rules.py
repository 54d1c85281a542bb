"""Training-health rules: the thresholds (the seed's presets or custom values) and what
they say about one episode and the episodes before it. Pure functions: no I/O, no
clock; :mod:`Utilities.alert_system` throttles, records and delivers what they find.

An episode is a dict of the seed's shape (``{"episode": 12, "profit": -40.0, "loss":
3.2, "sharpe": 0.4, ...}``); our trainers' ``episode/*`` metrics are the same dicts with
``reward`` where the seed says ``profit`` (:data:`PROFIT_KEYS` reads either).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from Utilities.input_errors import InputError
from Utilities.run_store_schema import ALERT_LEVELS

LEVELS = ALERT_LEVELS
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


def _where(values: Mapping[str, Any], where: str | None) -> str:
    return where or f"episode {values.get('episode', '?')}"


def non_finite(episode: Mapping[str, Any], where: str | None = None) -> Finding | None:
    """Critical: a NaN or infinite number anywhere in the episode (nested dicts too)."""
    bad = sorted(_non_finite_keys(episode))
    if not bad:
        return None
    return Finding("non_finite", "critical", "Non-finite metric",
                   f"{', '.join(bad)} is NaN or infinite at {_where(episode, where)}: "
                   "training has probably diverged",
                   {"keys": bad, "episode": episode.get("episode")})


def _non_finite_keys(values: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from _non_finite_keys(value, f"{prefix}{key}.")
        elif isinstance(value, float) and not math.isfinite(value):
            yield f"{prefix}{key}"


def critical_loss(episode: Mapping[str, Any], thresholds: Thresholds,
                  where: str | None = None) -> Finding | None:
    """Critical: the episode's (or update's) loss above ``critical_loss_threshold``."""
    found = first_number(episode, LOSS_KEYS)
    if found is None or not found[1] > thresholds.critical_loss_threshold:
        return None
    key, loss = found
    return Finding("critical_loss", "critical", "Loss above the critical threshold",
                   f"{key} {loss:g} > {thresholds.critical_loss_threshold:g} at "
                   f"{_where(episode, where)}",
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


@dataclass
class Plateau:
    """The run's best P/L so far and how many episodes came since: what the
    no-improvement rule reads. Tracked across calls, so the best is the run's, not the
    best inside whatever window of recent episodes a caller keeps. Episodes that carry
    their number (``episode``) count by it, so a caller that checks every 10th episode
    still measures the plateau in episodes; unnumbered ones count one each."""

    best: float | None = None
    best_episode: Any = None
    since: int = 0
    told: bool = False  # a warning named this plateau already
    last: int | None = None  # the newest numbered episode observed

    def is_new(self, episode: Mapping[str, Any]) -> bool:
        """Whether a numbered episode is newer than every one observed (unnumbered: yes)."""
        number = _number_of(episode)
        return number is None or self.last is None or number > self.last

    def observe(self, episode: Mapping[str, Any]) -> None:
        number = _number_of(episode)
        if number is not None:
            self.last = number if self.last is None else max(self.last, number)
        found = first_number(episode, PROFIT_KEYS)
        if found is not None and math.isfinite(found[1]) and (
                self.best is None or found[1] > self.best):
            self.best, self.best_episode, self.since, self.told = (
                found[1], episode.get("episode"), 0, False)
        elif self.best is not None:
            best_number = (self.best_episode if isinstance(self.best_episode, int)
                           and not isinstance(self.best_episode, bool) else None)
            self.since = (number - best_number if number is not None and best_number
                          is not None else self.since + 1)

    def finding(self, thresholds: Thresholds) -> Finding | None:
        """Warning: no new best P/L in ``no_improvement_episodes`` episodes (once per
        plateau: ``told`` is set by whoever sends it)."""
        if self.told or self.best is None or self.since < thresholds.no_improvement_episodes:
            return None
        return Finding("no_improvement", "warning", "No improvement",
                       f"no new best P/L in {self.since} episodes (best {self.best:g} at "
                       f"episode {self.best_episode})",
                       {"episodes_since_best": self.since, "best": self.best,
                        "best_episode": self.best_episode,
                        "threshold": thresholds.no_improvement_episodes})


def _number_of(episode: Mapping[str, Any]) -> int | None:
    number = episode.get("episode")
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def episode_findings(latest: Mapping[str, Any], thresholds: Thresholds) -> list[Finding]:
    """The rules that read one episode alone: NaN, critical loss, the P/L floor."""
    checks = (non_finite(latest), critical_loss(latest, thresholds),
              profit_floor(latest, thresholds))
    return [finding for finding in checks if finding is not None]


def update_findings(metrics: Mapping[str, Any], step: int | None,
                    thresholds: Thresholds) -> list[Finding]:
    """The rules that apply to one optimisation update's metrics (loss, entropy, …):
    non-finite values and the critical loss."""
    where = f"update {step if step is not None else '?'}"
    checks = (non_finite(metrics, where), critical_loss(metrics, thresholds, where))
    return [finding for finding in checks if finding is not None]
