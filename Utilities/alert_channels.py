"""Where an alert goes: email over SMTP, a Slack incoming webhook, a generic JSON
webhook. Each channel's ``send`` delivers one alert or raises :class:`DeliveryError`
with the reason; it never retries and never waits longer than its timeout
(:mod:`Utilities.alert_system` runs them on its delivery thread, with retries).
Standard library only: smtplib, ssl, urllib.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from Utilities.serialization import to_plain

# Slack attachment colours by level: the seed's green / yellow / red.
LEVEL_COLOURS = {"info": "#2eb67d", "warning": "#ecb22e", "critical": "#e01e5a"}
SMTP_SECURITY = ("starttls", "ssl", "none")


class DeliveryError(Exception):
    """A channel could not deliver an alert (the message says why)."""


@dataclass(frozen=True)
class Alert:
    """One alert as it is recorded and delivered."""

    level: str
    title: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    rule: str = "custom"
    run_id: str | None = None
    run_name: str | None = None
    created: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (data through to_plain: NaN and numpy values are safe)."""
        return {**asdict(self), "data": to_plain(self.data)}


class Channel(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def subject_of(alert: Alert) -> str:
    run = f" [{alert.run_name}]" if alert.run_name else ""
    return f"[Galaxy Models] {alert.level.upper()}: {alert.title}{run}"


def body_of(alert: Alert) -> str:
    lines = [f"Level: {alert.level}", f"Rule: {alert.rule}", "", alert.message]
    if alert.run_id:
        lines[2:2] = [f"Run: {alert.run_name or ''} ({alert.run_id})"]
    if alert.data:
        lines += ["", json.dumps(to_plain(alert.data), indent=2, sort_keys=True)]
    return "\n".join(lines) + "\n"


def _mask(secret: str | None) -> str | None:
    """What a settings page may show of a secret."""
    if not secret:
        return None
    return secret[:4] + "…" if len(secret) > 12 else "…"


@dataclass
class EmailChannel:
    """SMTP with STARTTLS (port 587), implicit TLS (465) or neither (a local relay)."""

    host: str
    to_addrs: list[str]
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    password: str | None = None
    from_addr: str | None = None
    timeout: float = 10.0
    name: str = "email"

    def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = subject_of(alert)
        message["From"] = self.from_addr or self.username or "galaxy-models@localhost"
        message["To"] = ", ".join(self.to_addrs)
        message["X-Alert-Level"] = alert.level
        message.set_content(body_of(alert))
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {exc}") from exc

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                    context=context)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            smtp.starttls(context=context)
        return smtp

    def describe(self) -> dict[str, Any]:
        return {"channel": self.name, "host": self.host, "port": self.port,
                "security": self.security, "username": self.username,
                "password": _mask(self.password), "from": self.from_addr, "to": self.to_addrs}


def post_json(url: str, payload: dict[str, Any], timeout: float,
              headers: dict[str, str] | None = None) -> None:
    """POST ``payload`` as JSON; DeliveryError unless the answer is 2xx in time."""
    body = json.dumps(to_plain(payload), allow_nan=False).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "galaxy-models-alerts",
        **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"{_host(url)} answered HTTP {exc.code}") from exc
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{_host(url)}: {reason}") from exc


def _host(url: str) -> str:
    """The URL without its path: webhook paths are secrets (Slack's are the token)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class SlackChannel:
    """A Slack incoming webhook: one message with an attachment coloured by level."""

    webhook_url: str
    timeout: float = 10.0
    name: str = "slack"

    def send(self, alert: Alert) -> None:
        post_json(self.webhook_url, slack_payload(alert), self.timeout)

    def describe(self) -> dict[str, Any]:
        return {"channel": self.name, "webhook": _host(self.webhook_url) + "/…"}


def slack_payload(alert: Alert) -> dict[str, Any]:
    fields = [{"title": "Level", "value": alert.level, "short": True},
              {"title": "Rule", "value": alert.rule, "short": True}]
    if alert.run_name or alert.run_id:
        fields.append({"title": "Run", "value": alert.run_name or alert.run_id, "short": False})
    return {"text": subject_of(alert),
            "attachments": [{"color": LEVEL_COLOURS.get(alert.level, "#888888"),
                             "title": alert.title, "text": alert.message, "fields": fields,
                             "footer": "Galaxy Models", "ts": int(alert.created)}]}


@dataclass
class WebhookChannel:
    """Any HTTP endpoint: the alert's own JSON (:meth:`Alert.as_dict`)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    name: str = "webhook"

    def send(self, alert: Alert) -> None:
        post_json(self.url, alert.as_dict(), self.timeout, self.headers)

    def describe(self) -> dict[str, Any]:
        return {"channel": self.name, "url": _host(self.url) + "/…",
                "headers": sorted(self.headers)}
