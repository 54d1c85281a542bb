"""What every reply must satisfy, and the failures found, grouped by class.

Rules (issue 11, "Proof"): no 5xx but 503, the documented "no model loaded" / "run
store unavailable" state (a 503 that logs a traceback still fails, by the next rule);
no traceback in the log (a record at ERROR or above with exc_info); valid JSON on API
paths (strict: no NaN/Infinity tokens, no duplicate keys, no lone surrogates, UTF-8);
where the app guards writes (the dashboard), a write from another site's page refused
with 403 and one through a rebound host name (DNS rebinding) with a 4xx. Warnings a
request raises are reported too (pytest would have made them errors).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fuzz.catalog import WRITES, Case

ROOT = Path(__file__).resolve().parents[2]


class InvalidJson(ValueError):
    pass


def strict_json(raw: bytes) -> Any:
    """``raw`` parsed as JSON that every client can read, else InvalidJson."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"not UTF-8: {exc}") from None

    def refuse_constant(name: str) -> Any:
        raise InvalidJson(f"a {name} token (JSON has no NaN or Infinity)")

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise InvalidJson(f"duplicate keys in an object: {sorted(keys)[:5]}")
        return dict(pairs)

    try:
        value = json.loads(text, parse_constant=refuse_constant, object_pairs_hook=unique_keys)
    except InvalidJson:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"not JSON: {exc}") from None
    _refuse_lone_surrogates(value)
    return value


def _refuse_lone_surrogates(value: Any) -> None:
    """A ``\\ud800`` escape parses in Python but not in strict clients (I-JSON)."""
    stack = [value]
    while stack:
        node = stack.pop()
        texts = [node] if isinstance(node, str) else \
            [k for k in node if isinstance(k, str)] if isinstance(node, dict) else []
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidJson(f"a lone surrogate in the string {text[:60]!r}") from None
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


class LogTrap(logging.Handler):
    """Every record at ERROR or above that carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


def where(exc: BaseException) -> str:
    """``Type at file:line`` of the innermost frame in this repository's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if ours(f.filename)]
    frame = (inside or frames or [None])[-1]
    if frame is None:
        return type(exc).__name__
    path = Path(frame.filename)
    shown = path.relative_to(ROOT) if ours(frame.filename) else path.name
    return f"{type(exc).__name__} at {shown}:{frame.lineno}"


def ours(filename: str) -> bool:
    return filename.startswith(f"{ROOT}/") and "/.venv/" not in filename


# ------------------------------------------------------------------------ findings


@dataclass
class Finding:
    kind: str
    app: str
    route: str
    detail: str
    example: dict[str, Any]
    count: int = 1


@dataclass
class Findings:
    """Failures by class: (kind, app, method + rule, detail); the first example kept."""

    classes: dict[tuple[str, ...], Finding] = field(default_factory=dict)

    def add(self, kind: str, app: str, case: Case, detail: str, reply: str = "") -> None:
        route = f"{case.method} {case.rule}"
        key = (kind, app, route, detail)
        if key in self.classes:
            self.classes[key].count += 1
            return
        example = {**case.describe(), "profile": case.profile}
        if reply:
            example["reply"] = reply[:300]
        self.classes[key] = Finding(kind, app, route, detail, example)

    def __bool__(self) -> bool:
        return bool(self.classes)

    def report(self, limit: int = 60) -> str:
        lines = [f"{len(self.classes)} failure classes "
                 f"({sum(f.count for f in self.classes.values())} requests):"]
        for finding in sorted(self.classes.values(), key=lambda f: (f.kind, f.route))[:limit]:
            example = finding.example
            lines.append(f"- [{finding.kind}] {finding.app} {finding.route}: {finding.detail} "
                         f"(x{finding.count}); e.g. {example['method']} {example['url'][:120]!r}"
                         f" body={str(example['body'])[:120]}")
        if len(self.classes) > limit:
            lines.append(f"... and {len(self.classes) - limit} more (see the JSON file)")
        return "\n".join(lines)

    def to_json(self) -> list[dict[str, Any]]:
        return [vars(f) for f in sorted(self.classes.values(), key=lambda f: (f.kind, f.route))]


# ---------------------------------------------------------------------- the checks


@dataclass
class Reply:
    """What came back for one case, and what the app's routing made of its URL."""

    status: int
    mimetype: str
    body: bytes
    allowed: bool          # the URL matched a rule that takes this method
    json_required: bool    # an API path, or a path a program calls
    trapped: list[logging.LogRecord]
    warned: list[str] = field(default_factory=list)


def check(case: Case, reply: Reply, app: str, findings: Findings,
          guards_writes: bool = True) -> None:
    text = reply.body[:300].decode("utf-8", "replace")
    causes = [_cause(record) for record in reply.trapped]
    if reply.status >= 500 and reply.status != 503:  # its traceback is the cause
        cause = causes[0] if causes else _error_text(reply)
        findings.add("5xx", app, case, f"{reply.status}: {cause}", text)
    else:
        for cause in causes:
            findings.add("traceback logged", app, case, cause, text)
    for warning in reply.warned:
        findings.add("warning", app, case, warning, text)
    if reply.json_required and _has_json_body(case, reply):
        problem = _json_problem(reply)
        if problem:
            findings.add("invalid JSON", app, case, problem, text)
    if guards_writes and case.method in WRITES and reply.allowed:
        _check_write_guard(case, reply, app, findings, text)


def _cause(record: logging.LogRecord) -> str:
    exc = record.exc_info[1] if record.exc_info else None
    return f"{where(exc) if exc else record.getMessage()[:100]} (logger {record.name})"


def _check_write_guard(case: Case, reply: Reply, app: str, findings: Findings,
                       text: str) -> None:
    if case.profile == "cross-site" and reply.status != 403:
        findings.add("cross-site write not refused", app, case,
                     f"{reply.status} (expected 403)", text)
    if case.profile == "rebinding" and not 400 <= reply.status < 500:
        findings.add("rebound Host write not refused", app, case,
                     f"{reply.status} (expected a 4xx)", text)


def _has_json_body(case: Case, reply: Reply) -> bool:
    if case.method == "HEAD" or reply.status in (204, 304) or 300 <= reply.status < 400:
        return False
    return not (case.method == "OPTIONS" and not reply.body)


def _json_problem(reply: Reply) -> str | None:
    if reply.mimetype == "text/event-stream" and reply.status == 200:
        return _stream_problem(reply)
    if reply.mimetype != "application/json" and not reply.mimetype.endswith("+json"):
        return f"{reply.status} answered as {reply.mimetype or 'no content type'}"
    try:
        strict_json(reply.body)
    except InvalidJson as exc:
        return f"{reply.status}: {str(exc)[:120]}"
    return None


def _stream_problem(reply: Reply) -> str | None:
    """Every ``data:`` line of a server-sent-event stream's opening messages is JSON."""
    for line in reply.body.split(b"\n"):
        if line.startswith(b"data: "):
            try:
                strict_json(line[6:])
            except InvalidJson as exc:
                return f"event stream: {str(exc)[:120]}"
    return None


def _error_text(reply: Reply) -> str:
    try:
        return str(json.loads(reply.body).get("error", ""))[:100]
    except (ValueError, AttributeError):
        return reply.mimetype


def status_counts(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items()))
