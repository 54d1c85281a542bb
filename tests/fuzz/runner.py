"""Send the planned cases to one app, check each reply, count the statuses."""

from __future__ import annotations

import itertools
import logging
import random
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule

from tests.fuzz.cases import make_case, plan, systematic, unrouted_case
from tests.fuzz.catalog import Case, Catalog
from tests.fuzz.checks import Findings, LogTrap, Reply, check, ours, where

STREAM_CHUNKS = 2  # of an event stream: its retry line and first message


@dataclass
class Target:
    """An app under fuzz: which replies must be JSON, and how to undo what a request
    destroyed (a deleted fixture model) so later requests still reach real data."""

    label: str
    app: Flask
    json_required: Callable[[str, str | None], bool]  # (path, matched endpoint)
    restore: Callable[[], None] = lambda: None
    guards_writes: bool = True  # refuses cross-site and rebound-Host writes


@dataclass
class Tally:
    requests: int = 0
    unsendable: int = 0   # cases the test client itself cannot encode (never reach the app)
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    route_seconds: Counter[str] = field(default_factory=Counter)
    route_requests: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        slowest = {route: f"{seconds:.2f} s / {self.route_requests[route]}" for route, seconds
                   in self.route_seconds.most_common(8)}
        return {"requests": self.requests, "unsendable": self.unsendable,
                "seconds": round(self.seconds, 1),
                "status": dict(sorted(self.statuses.items())), "slowest_routes": slowest}


def fuzz(target: Target, catalog: Catalog, budget: int, rng: random.Random,
         findings: Findings) -> Tally:
    """Systematic requests (every input, every class of value), then ``budget`` random
    ones, to every rule and method of ``target.app``."""
    rules = list(target.app.url_map.iter_rules())
    tally = Tally()
    trap = LogTrap()
    root = logging.getLogger()
    root.addHandler(trap)
    started = time.perf_counter()
    try:
        client = target.app.test_client()
        for case in _cases(target.app, rules, catalog, budget, rng):
            began = time.perf_counter()
            _send(target, client, case, catalog, trap, tally, findings)
            target.restore()
            route = f"{case.method} {case.rule}"
            tally.route_seconds[route] += time.perf_counter() - began
            tally.route_requests[route] += 1
    finally:
        root.removeHandler(trap)
        tally.seconds = time.perf_counter() - started
    return tally


def _cases(app: Flask, rules: list[Rule], catalog: Catalog, budget: int,
           rng: random.Random) -> Iterator[Case]:
    """The systematic cases, then ``budget`` random ones (generated as they are sent: a
    random case may use an id an earlier reply revealed)."""
    views = app.view_functions
    yield from systematic(rules, views, catalog, rng)
    for rule, method in plan(rules, budget, rng, views):
        yield unrouted_case(rules, catalog, rng) if rule is None else \
            make_case(rule, method, catalog, rng, views.get(rule.endpoint))


def _send(target: Target, client: Any, case: Case, catalog: Catalog, trap: LogTrap,
          tally: Tally, findings: Findings) -> None:
    try:
        environ = case.builder().get_environ()
    except (ValueError, TypeError, UnicodeError):
        tally.unsendable += 1
        return
    endpoint, allowed = _route(target.app, environ)
    trap.records.clear()
    tally.requests += 1
    # Warnings are recorded, not raised (pytest's "error" filter would turn them into
    # 500s no production server gives); each is reported with the request.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            response = client.open(case.builder(), buffered=False)
        except Exception as exc:  # no handler caught it: a 500 from a real server
            tally.statuses["exception"] += 1
            findings.add("exception escaped the app", target.label, case, where(exc))
            return
        try:
            body = _body(response)
        finally:
            response.close()
    tally.statuses[str(response.status_code)] += 1
    catalog.learn(response.headers.get("Location", ""))
    reply = Reply(response.status_code, response.mimetype or "", body, allowed,
                  target.json_required(environ.get("PATH_INFO", ""), endpoint),
                  list(trap.records), [_warning(w) for w in caught if _reported(w)])
    check(case, reply, target.label, findings, target.guards_writes)


def _body(response: Any) -> bytes:
    """The reply's body; of an event stream (it ends only with its run) the opening
    messages, enough to check their JSON, then the stream is closed."""
    if response.mimetype == "text/event-stream":
        return b"".join(itertools.islice(response.response, STREAM_CHUNKS))
    return response.get_data()


def _reported(caught: warnings.WarningMessage) -> bool:
    """Not a file werkzeug left to the garbage collector (it drops the spooled upload of a
    multipart body cut short, which CPython then closes: nothing leaks)."""
    return not (issubclass(caught.category, ResourceWarning) and not ours(caught.filename))


def _warning(caught: warnings.WarningMessage) -> str:
    return f"{caught.category.__name__}: {str(caught.message)[:90]} ({Path(caught.filename).name}" \
           f":{caught.lineno})"


def _route(app: Flask, environ: dict[str, Any]) -> tuple[str | None, bool]:
    """The endpoint the app's routing gives this request, and whether it takes the method."""
    try:
        rule, _ = app.url_map.bind_to_environ(environ).match(return_rule=True)
    except HTTPException:  # 404, 405, or a redirect (a trailing slash, merged slashes)
        return None, False
    except Exception:  # a URL routing cannot even read is not routed
        return None, False
    return rule.endpoint, True
