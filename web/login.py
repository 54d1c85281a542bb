"""Signing in to the pages: ``/login`` (user name + password) and ``/logout``.

A signed-in session is Flask's signed cookie holding the user name and a stamp of the
password hash (:meth:`web.auth_store.AuthStore.session_stamp`), so changing a password
or deleting the user ends its sessions everywhere. The cookie is HttpOnly, SameSite=Lax
and Secure with ``SESSION_COOKIE_SECURE=1``; it lasts 12 hours.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from Utilities.run_store import StoreUnavailable
from web import auth
from web.auth_store import AuthStore

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

# Failed sign-ins one client may make per window before it must wait: scrypt already
# makes each try slow; this stops a patient guesser.
MAX_FAILURES, FAILURE_WINDOW_S = 10, 300.0


class _Failures:
    """Recent failed sign-ins per client address (this app in this process)."""

    def __init__(self) -> None:
        self._times: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """Seconds the client must wait before trying again (0: it may try now)."""
        with self._lock:
            times = self._prune(client)
            if len(times) < MAX_FAILURES:
                return 0.0
            return max(0.0, times[0] + FAILURE_WINDOW_S - time.monotonic())

    def add(self, client: str) -> None:
        with self._lock:
            self._prune(client).append(time.monotonic())

    def clear(self, client: str) -> None:
        with self._lock:
            self._times.pop(client, None)

    def _prune(self, client: str) -> deque[float]:
        times = self._times[client]
        while times and times[0] + FAILURE_WINDOW_S <= time.monotonic():
            times.popleft()
        return times


def _failures() -> _Failures:
    return current_app.extensions.setdefault("login_failures", _Failures())


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The sign-in form; a right password signs in and goes to ``next`` (a local path)."""
    target = auth.safe_next(request.values.get("next"))
    if request.method == "GET":
        return _page(target)
    client = request.remote_addr or "?"
    wait = _failures().wait_s(client)
    if wait:
        return _page(target, f"too many failed sign-ins; try again in {int(wait) + 1} s"), 429
    username = request.form.get("username", "").strip()
    try:
        stamp = _store().check_login(username, request.form.get("password", ""))
    except StoreUnavailable as exc:
        log.error("sign-in impossible: %s", exc)
        return _page(target, "the credential store is unavailable; try again shortly"), 503
    if stamp is None:
        _failures().add(client)
        log.warning("failed sign-in for %r from %s", username, client)
        return _page(target, "wrong user name or password", username), 401
    _failures().clear(client)
    session.clear()  # nothing from before the sign-in carries over
    session.permanent = True
    session.update(user=username, stamp=stamp)
    log.info("%r signed in from %s", username, client)
    return redirect(target, 303)


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for(".login"), 303)


def _store() -> AuthStore:
    store = auth.credentials()
    if not isinstance(store, AuthStore):
        raise RuntimeError("page sign-in needs the database credential store")
    return store


def _page(target: str, error: str | None = None, username: str = "") -> str:
    return render_template("auth/login.html", next=target, error=error, username=username,
                           policy=auth.policy())
