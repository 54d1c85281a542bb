"""Alert configuration: the seed's dict (``AlertSystem({...})``) or a YAML file, turned
into validated settings and channels.

Two sources, one shape (``alerts.example.yaml`` shows every key):

* the Python dict a script hands to ``AlertSystem`` may carry secrets inline, as the
  seed's examples do (``password``, ``webhook_url``): it is the user's own code;
* the YAML file (``ALERTS_CONFIG`` names it; default ``alerts.yaml`` beside Main.py)
  may not: a file is copied, committed and shown, so secrets come only from
  environment variables it names (``password_env: SMTP_PASSWORD``,
  ``webhook_url_env: SLACK_WEBHOOK_URL``). A literal secret there is refused, naming
  the key.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from Utilities.alert_channels import (
    SMTP_SECURITY,
    Channel,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
)
from Utilities.alert_rules import Thresholds
from Utilities.input_errors import InputError

CONFIG_ENV = "ALERTS_CONFIG"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "alerts.yaml"
# The same rule on the same run fires at most once per window (send_alert's force=True
# bypasses it). W&B's default wait between two alerts of one title is 5 minutes...
# training rules repeat far more often than that, so 10 minutes.
DEFAULT_THROTTLE_SECONDS = 600.0
SECRETS = {"email": "password", "slack": "webhook_url", "webhook": "url"}


@dataclass(frozen=True)
class Delivery:
    """How hard a channel is tried: per-attempt timeout, retries, first backoff."""

    timeout_seconds: float = 10.0
    retries: int = 3
    backoff_seconds: float = 1.0


@dataclass(frozen=True)
class AlertSettings:
    enabled: bool
    thresholds: Thresholds
    throttle_seconds: float
    delivery: Delivery
    channels: tuple[Channel, ...]
    source: str  # "dict", "defaults" or the YAML file's path


def settings_from(config: Mapping[str, Any] | None, *, inline_secrets: bool = True,
                  source: str = "dict") -> AlertSettings:
    """Validated settings; InputError naming the key that is wrong."""
    config = dict(config or {})
    if "alerts" in config and isinstance(config["alerts"], Mapping):
        config = dict(config["alerts"])  # a whole dashboard config, as the seed loads it
    enabled = config.get("enabled", config.get("enable_alerts", True))
    if not isinstance(enabled, bool):
        raise InputError("enabled must be true or false", field="enabled")
    delivery = _delivery(config.get("delivery") or {})
    channels = tuple(channel for name in ("email", "slack", "webhook")
                     if (channel := _channel(name, config.get(name), delivery,
                                             inline_secrets)) is not None)
    return AlertSettings(enabled=enabled, thresholds=Thresholds.of(config.get("thresholds")),
                         throttle_seconds=_number(config, "throttle_seconds",
                                                  DEFAULT_THROTTLE_SECONDS, low=0.0),
                         delivery=delivery, channels=channels, source=source)


# What a run may choose (--alerts, the config's alerts: section, the Train form): the
# configured thresholds, a preset, or no alerts for this run.
RUN_CHOICES = ("default", "CONSERVATIVE", "MODERATE", "AGGRESSIVE", "off")


def run_choice(value: Any) -> str | dict[str, Any] | None:
    """A run's alert choice, checked: None or "default" (the configured thresholds), a
    preset (any case), "off", or a mapping of threshold values. InputError naming
    ``alerts``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "default")):
        return None
    if isinstance(value, str) and value.strip().lower() == "off":
        return "off"
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InputError(f"alerts: not a JSON object ({exc.msg})", field="alerts") from None
    try:
        Thresholds.of(value)
    except InputError as exc:
        raise InputError(f"alerts: {exc}; choose {', '.join(RUN_CHOICES)}",
                         field="alerts") from None
    return value.strip().upper() if isinstance(value, str) else dict(value)


def for_run(settings: AlertSettings, choice: str | Mapping[str, Any] | None) -> AlertSettings:
    """The settings of one run: its thresholds (or alerts off) over the configured ones."""
    if choice is None:
        return settings
    if choice == "off":
        return replace(settings, enabled=False)
    return replace(settings, thresholds=Thresholds.of(choice))


def load_settings(path: str | Path | None = None) -> AlertSettings:
    """Settings from the YAML file (``path``, else $ALERTS_CONFIG, else alerts.yaml
    when it exists); the defaults (no channel but the dashboard) when there is none."""
    named = path or os.environ.get(CONFIG_ENV)
    file = Path(named) if named else DEFAULT_CONFIG
    if not file.is_file():
        if named:
            raise InputError(f"{CONFIG_ENV}: no alert config file at {file}", field=CONFIG_ENV)
        return settings_from({}, source="defaults")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: not valid YAML ({exc})", field=CONFIG_ENV) from exc
    if not isinstance(data, Mapping):
        raise InputError(f"{file}: expected a mapping of alert settings", field=CONFIG_ENV)
    return settings_from(data, inline_secrets=False, source=str(file))


def _section(name: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InputError(f"{name} must be a mapping of settings", field=name)
    section = dict(value)
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InputError(f"{name}.enabled must be true or false", field=f"{name}.enabled")
    return section if enabled else None


def _secret(name: str, section: Mapping[str, Any], inline: bool) -> str | None:
    """A channel's secret: from the environment variable ``<key>_env`` names, or
    inline where allowed."""
    key = SECRETS[name]
    env_key = f"{key}_env"
    if key in section and section[key] not in (None, ""):
        if not inline:
            raise InputError(f"{name}.{key}: secrets may not be written in the config file; "
                             f"set an environment variable and name it in {name}.{env_key}",
                             field=f"{name}.{key}")
        return _text(name, section, key)
    variable = section.get(env_key)
    if variable is None:
        return None
    if not isinstance(variable, str) or not variable:
        raise InputError(f"{name}.{env_key} must name an environment variable",
                         field=f"{name}.{env_key}")
    value = os.environ.get(variable)
    if not value:
        raise InputError(f"{name}.{env_key}: environment variable {variable} is not set",
                         field=f"{name}.{env_key}")
    return value


def _channel(name: str, value: Any, delivery: Delivery, inline: bool) -> Channel | None:
    section = _section(name, value)
    if section is None:
        return None
    secret = _secret(name, section, inline)
    timeout = delivery.timeout_seconds
    if name == "email":
        return _email(section, secret, timeout)
    if not secret:
        key = SECRETS[name]
        raise InputError(f"{name}: set {key}_env (or {key}) to enable it", field=f"{name}.{key}")
    if name == "slack":
        return SlackChannel(webhook_url=secret, timeout=timeout)
    headers = section.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise InputError("webhook.headers must map header names to strings",
                         field="webhook.headers")
    return WebhookChannel(url=secret, headers=dict(headers), timeout=timeout)


def _email(section: Mapping[str, Any], password: str | None, timeout: float) -> EmailChannel:
    host = _text("email", section, "smtp_host", required=True)
    port = _number(section, "smtp_port", 587, low=1, high=65535, integer=True, prefix="email.")
    security = section.get("security", {465: "ssl", 587: "starttls"}.get(port, "none"))
    if security not in SMTP_SECURITY:
        raise InputError(f"email.security must be one of {', '.join(SMTP_SECURITY)}",
                         field="email.security")
    to_addrs = section.get("to_addrs")
    if isinstance(to_addrs, str):
        to_addrs = [to_addrs]
    if not to_addrs or not all(isinstance(a, str) and "@" in a for a in to_addrs):
        raise InputError("email.to_addrs must list at least one address",
                         field="email.to_addrs")
    return EmailChannel(host=host, port=int(port), security=security, to_addrs=list(to_addrs),
                        username=_text("email", section, "username"), password=password,
                        from_addr=_text("email", section, "from_addr"), timeout=timeout)


def _delivery(value: Any) -> Delivery:
    if not isinstance(value, Mapping):
        raise InputError("delivery must be a mapping", field="delivery")
    return Delivery(
        timeout_seconds=_number(value, "timeout_seconds", 10.0, low=0.1, prefix="delivery."),
        retries=int(_number(value, "retries", 3, low=0, high=10, integer=True,
                            prefix="delivery.")),
        backoff_seconds=_number(value, "backoff_seconds", 1.0, low=0.0, prefix="delivery."))


def _text(name: str, section: Mapping[str, Any], key: str, *,
          required: bool = False) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        if required:
            raise InputError(f"{name}.{key} is required", field=f"{name}.{key}")
        return None
    if not isinstance(value, str):
        raise InputError(f"{name}.{key} must be text", field=f"{name}.{key}")
    return value


def _number(section: Mapping[str, Any], key: str, default: float, *, low: float,
            high: float = math.inf, integer: bool = False, prefix: str = "") -> float:
    value = section.get(key, default)
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) \
            or not low <= value <= high:
        what = "an integer" if integer else "a number"
        bounds = f" from {low:g}" + (f" to {high:g}" if math.isfinite(high) else "")
        raise InputError(f"{prefix}{key} must be {what}{bounds}", field=f"{prefix}{key}")
    return value
