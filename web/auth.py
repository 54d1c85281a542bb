"""Who may reach a server, and as whom: the Host allow-list and authentication.

One mechanism for every server process (the dashboard, ``python Api_Loader.py``, and
later ones): :func:`init_app` installs, before any other request hook,

1. the **Host check**: a request is served only under a loopback name (``localhost``,
   ``127.0.0.1``, ``[::1]``, any port), a name listed in ``ALLOWED_HOSTS`` (comma-
   separated) or the specific address the server binds to; anything else is 400. This
   stops DNS rebinding (a page of evil.example whose name now points to 127.0.0.1), and
   makes the Origin check of :mod:`web.csrf` sound, since it compares Origin with Host;
2. the **authentication gate**, when the policy requires it: a request carries a valid
   ``Authorization: Bearer <token>`` or a signed-in session cookie (pages), else 401
   JSON with ``WWW-Authenticate: Bearer`` on API paths, or a redirect to the login page.
   Every route is covered except the login page and static files (deny by default, so a
   new route is protected without anyone remembering to).

When authentication is required (:class:`Policy`): the server binds beyond loopback
(``--host 0.0.0.0``, a LAN address or a name), or ``ALLOWED_HOSTS`` names a host beyond
loopback (a reverse proxy forwards to it), or ``AUTH=required`` (forces it on loopback
too, e.g. behind a proxy that sends ``Host: 127.0.0.1``). Otherwise, on loopback, no
credential is asked for or checked, exactly as before; tokens and logins can still be
made there, ready for when the server moves.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from flask import Flask, Request, Response, current_app, g, redirect, request, session, url_for
from markupsafe import escape

from Utilities.run_store import StoreUnavailable
from web import secret_key
from web.auth_store import TokenInfo
from web.json_io import error_reply

log = logging.getLogger(__name__)

AUTH_MODES = ("auto", "required")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ALL_INTERFACES = frozenset({"", "0.0.0.0", "::"})
# Reachable without credentials even when they are required.
# The metrics server's health check is a load balancer's (web/sessions_api.py): it tells
# only whether the server and its store answer.
PUBLIC_ENDPOINTS = frozenset({"static", "auth.login", "sessions_api.health"})
LOGIN_ENDPOINT = "auth.login"
SESSION_LIFETIME = timedelta(hours=12)
REALM = "Galaxy Models"
_TRUE = {"1", "true", "yes", "on"}
_KEY = "auth"


class AuthConfigError(ValueError):
    """A setting that cannot work (an unknown AUTH mode, a malformed host name)."""


class Credentials(Protocol):
    """Where a server checks tokens (and, for pages, sessions)."""

    def verify_token(self, token: str) -> TokenInfo | None: ...

    def session_stamp(self, username: str) -> str | None: ...

    def has_credentials(self) -> bool: ...


@dataclass(frozen=True)
class Principal:
    """Who a request is: a signed-in user (``kind="user"``) or an API token's name."""

    kind: str
    name: str
    scope: str | None = None  # a scoped token's session: no other route is open to it


# ----------------------------------------------------------------------- policy


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a Host name, without port) is loopback."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a name other than localhost: never assumed to be loopback
        return False


def request_hostname(host: str) -> str:
    """The name of a Host header without its port: ``[::1]:5000`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.rstrip(".")


def parse_hosts(value: str | Iterable[str]) -> frozenset[str]:
    """``ALLOWED_HOSTS`` (a comma-separated string or a list) as bare lower-case names."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = set()
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        if "/" in item or any(c.isspace() for c in item) or "*" in item:
            raise AuthConfigError(f"ALLOWED_HOSTS entry {item!r} is not a host name: list "
                                  "names or addresses, e.g. ALLOWED_HOSTS=models.lan,10.0.0.5")
        names.add(item.strip("[]").lower().rstrip("."))
    return frozenset(names)


@dataclass(frozen=True)
class Policy:
    """The Host allow-list and whether credentials are required, with the reasons."""

    bind_host: str
    allowed_hosts: frozenset[str]  # besides the loopback names
    required: bool
    reasons: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Policy:
        """From ``BIND_HOST``, ``ALLOWED_HOSTS`` and ``AUTH`` (auto | required)."""
        bind = str(config.get("BIND_HOST") or "127.0.0.1").strip()
        mode = str(config.get("AUTH") or "auto").strip().lower()
        if mode not in AUTH_MODES:
            raise AuthConfigError(f"AUTH must be one of {', '.join(AUTH_MODES)}; got {mode!r}")
        configured = parse_hosts(config.get("ALLOWED_HOSTS") or "")
        allowed = set(configured)
        if bind.strip("[]") not in ALL_INTERFACES:
            allowed.add(bind.strip("[]").lower())
        reasons = []
        if mode == "required":
            reasons.append("AUTH=required")
        if not is_loopback(bind):
            reasons.append(f"the server listens on {bind or 'every interface'}, beyond "
                           "loopback")
        beyond = sorted(h for h in configured if not is_loopback(h))
        if beyond:
            reasons.append(f"ALLOWED_HOSTS names {', '.join(beyond)}, beyond loopback")
        return cls(bind, frozenset(allowed - LOOPBACK_NAMES), bool(reasons), tuple(reasons))

    def host_allowed(self, host: str) -> bool:
        """Whether a request's Host header names this server."""
        name = request_hostname(host)
        return bool(name) and (name in LOOPBACK_NAMES or name in self.allowed_hosts)

    @property
    def shown_hosts(self) -> list[str]:
        """Every accepted name, as a person writes it in a URL."""
        names = ["localhost", "127.0.0.1", "::1", *sorted(self.allowed_hosts)]
        return [f"[{n}]" if ":" in n else n for n in names]


def env_config() -> dict[str, Any]:
    """The settings read from the environment, as app config defaults."""
    return {"AUTH": os.environ.get("AUTH") or "auto",
            "ALLOWED_HOSTS": os.environ.get("ALLOWED_HOSTS", ""),
            "BIND_HOST": "127.0.0.1",
            "SESSION_COOKIE_SAMESITE": "Lax", "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SECURE":
                os.environ.get("SESSION_COOKIE_SECURE", "").strip().lower() in _TRUE,
            "PERMANENT_SESSION_LIFETIME": SESSION_LIFETIME}


def add_arguments(parser: Any, *, token_file: bool = False) -> None:
    """The serving flags every server shares (their defaults come from the environment);
    ``token_file`` adds ``--token-file`` for servers of programs."""
    parser.add_argument("--auth", choices=AUTH_MODES, default=None,
                        help="'required' asks for credentials on loopback too (env AUTH)")
    parser.add_argument("--allowed-hosts", default=None, metavar="NAMES",
                        help="comma-separated host names this server answers to besides "
                             "loopback (env ALLOWED_HOSTS)")
    if token_file:
        parser.add_argument("--token-file", default=None, metavar="PATH",
                            help="accept the API tokens listed in PATH (one a line) instead "
                                 "of those in the run store's database (DATABASE_URL)")


def config_from_args(args: Any) -> dict[str, Any]:
    """App config from the parsed serving flags (flags left out keep the environment's)."""
    config: dict[str, Any] = {"BIND_HOST": args.host}
    if args.auth is not None:
        config["AUTH"] = args.auth
    if args.allowed_hosts is not None:
        config["ALLOWED_HOSTS"] = args.allowed_hosts
    if getattr(args, "token_file", None):
        config["TOKEN_FILE"] = args.token_file
    return config


# ------------------------------------------------------------------ the app hook


class _State:
    """Per app: the policy and where credentials are checked (opened on first use)."""

    def __init__(self, policy: Policy, open_credentials: Callable[[], Credentials],
                 is_json_path: Callable[[str], bool], cache: bool, setup_hint: str) -> None:
        self.policy, self.is_json_path, self.setup_hint = policy, is_json_path, setup_hint
        self._open, self._cache = open_credentials, cache
        self._credentials: Credentials | None = None
        self._lock = threading.Lock()

    def credentials(self) -> Credentials:
        if not self._cache:
            return self._open()
        with self._lock:
            if self._credentials is None:
                self._credentials = self._open()
            return self._credentials


DASHBOARD_HINT = ("create a token (.venv/bin/python Main.py tokens create NAME) or a login "
                  "(.venv/bin/python Main.py users set-password NAME) first")
TOKEN_SERVER_HINT = ("create a token (.venv/bin/python Main.py tokens create NAME, with the same "
                     "DATABASE_URL) or list one in a --token-file first")


def init_app(app: Flask, open_credentials: Callable[[], Credentials], *,
             is_json_path: Callable[[str], bool], cache_credentials: bool = False,
             sessions: bool = False, setup_hint: str = DASHBOARD_HINT) -> Policy:
    """Install the Host check and the authentication gate (call before other hooks).

    ``open_credentials`` gives the credential source (called per request unless
    ``cache_credentials``); ``is_json_path`` tells which paths are answered in JSON;
    ``sessions`` turns on page logins (the app must register :mod:`web.login`);
    ``setup_hint`` tells how to make a first credential when start-up is refused."""
    policy = Policy.from_config(app.config)
    app.extensions[_KEY] = _State(policy, open_credentials, is_json_path, cache_credentials,
                                  setup_hint)
    if sessions:
        _ensure_secret_key(app, policy)
    app.before_request(gate)
    app.context_processor(_template_values)
    return policy


def init_token_server(app: Flask, *, json_paths: tuple[str, ...] = ("/",)) -> Policy:
    """:func:`init_app` for a server of programs (no pages, bearer tokens only): tokens
    from ``TOKEN_FILE`` when set (read now, so a bad file fails at start), else from the
    run store's database at ``DATABASE_URL`` (default instance/runs.db), opened on the
    first request that needs it."""
    from web.auth_store import AuthStore
    from web.token_file import TokenFile

    def is_json(path: str) -> bool:
        return path.startswith(json_paths)

    token_file = app.config.get("TOKEN_FILE")
    if token_file:
        tokens = TokenFile(token_file)
        return init_app(app, lambda: tokens, is_json_path=is_json,
                        setup_hint=TOKEN_SERVER_HINT)
    url = app.config.get("DATABASE_URL")
    return init_app(app, lambda: AuthStore.open(url), is_json_path=is_json,
                    cache_credentials=True, setup_hint=TOKEN_SERVER_HINT)


def policy() -> Policy:
    """The current app's policy."""
    return _state().policy


def credentials() -> Credentials:
    """The current app's credential source."""
    return _state().credentials()


def current_principal() -> Principal | None:
    """Who the current request is, when authentication is required and it passed."""
    return g.get("principal")


def startup_problem(app: Flask) -> str | None:
    """Why ``app`` must not start as configured (one line), else None. Warns when it
    listens on every interface."""
    state: _State = app.extensions[_KEY]
    current = state.policy
    if current.bind_host.strip("[]") in ALL_INTERFACES:
        log.warning("listening on every interface (%s): every network this machine is on "
                    "can reach it; credentials are required, and only %s are answered (list "
                    "the names clients use in ALLOWED_HOSTS)", current.bind_host or "''",
                    ", ".join(current.shown_hosts))
    if not current.required:
        return None
    try:
        with app.app_context():  # the dashboard's store is the app's
            configured = state.credentials().has_credentials()
    except StoreUnavailable as exc:
        return f"cannot check the credentials: {exc}"
    if not configured:
        return (f"authentication is required ({'; '.join(current.reasons)}) but no credential "
                f"is configured: {state.setup_hint}")
    key = app.config.get("SECRET_KEY")
    if isinstance(key, str) and len(key) < secret_key.MIN_SECRET_KEY_LENGTH:
        return (f"SECRET_KEY has {len(key)} characters; use at least 32 random ones, or "
                "unset it to keep a generated key in instance/secret_key")
    return None


def _state() -> _State:
    return current_app.extensions[_KEY]


def _ensure_secret_key(app: Flask, current: Policy) -> None:
    """Sessions need a key that outlives the process when logins matter."""
    if app.config.get("SECRET_KEY"):
        return
    if not current.required:  # loopback: the key only signs flash messages
        app.config["SECRET_KEY"] = os.urandom(16).hex()
        return
    path = app.config.get("SECRET_KEY_FILE") or Path(app.instance_path) / "secret_key"
    app.config["SECRET_KEY"] = secret_key.load_or_create(Path(path))


def gate() -> Response | tuple[Response, int] | None:
    """The before-request hook: the Host check, then the credential check (a reply
    refuses the request; None lets it through)."""
    state = _state()
    if not state.policy.host_allowed(request.host):
        return _refuse_host(state)
    if not state.policy.required or _is_preflight():
        return None
    try:
        principal, bad_token = _authenticate(state.credentials())
    except StoreUnavailable as exc:
        log.error("cannot check credentials: %s", exc)
        return _reply(state, 503, "the credential store is unavailable; try again shortly")
    g.principal = principal
    if principal is None and request.endpoint not in PUBLIC_ENDPOINTS:
        return _challenge(state, bad_token)
    if principal is not None and principal.scope is not None and not _in_scope(principal):
        return _reply(state, 403, f"this token is scoped to session {principal.scope}: it "
                                  "opens that session's routes only")
    return None


def _is_preflight() -> bool:
    """A browser's CORS preflight: it never carries credentials, and its answer (which
    methods and headers an origin may use, web/sessions_api.py) holds no data."""
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def _in_scope(principal: Principal) -> bool:
    """Whether a scoped token may have this request: the app's ``token_scopes`` rule
    (web/sessions_api.py installs it) says; without one, nothing (deny by default)."""
    rule = current_app.extensions.get("token_scopes")
    return rule is not None and rule(principal.scope, request.path)


def _authenticate(creds: Credentials) -> tuple[Principal | None, bool]:
    """(who, whether a bearer token was sent and refused)."""
    header = request.headers.get("Authorization")
    if header is not None:
        return bearer_principal(creds, header)
    username, stamp = session.get("user"), session.get("stamp")
    if isinstance(username, str) and stamp and creds.session_stamp(username) == stamp:
        return Principal("user", username), False
    return None, False


def bearer_principal(creds: Credentials, header: str) -> tuple[Principal | None, bool]:
    """(who, whether refused) for an ``Authorization`` header: a valid bearer token is
    its token's name; anything else is refused."""
    scheme, _, token = header.strip().partition(" ")
    info = creds.verify_token(token.strip()) if scheme.lower() == "bearer" else None
    return (Principal("token", info.name, info.scope), False) if info else (None, True)


def admits(app: Flask, req: Request) -> bool:
    """Whether :func:`gate` would let ``req`` through without a word and without
    reading a session: its Host is one of the server's names and, where credentials
    are required, it carries a valid bearer token. For a caller outside Flask's request
    handling (``POST /predict``'s fast path, :mod:`web.predict_wsgi`), which hands
    every other request to Flask, so that the gate answers it."""
    state: _State = app.extensions[_KEY]
    if not state.policy.host_allowed(req.host):
        return False
    if not state.policy.required:
        return True
    header = req.headers.get("Authorization")
    if header is None:
        return False
    try:
        with app.app_context():  # the dashboard's credentials live in the app's store
            principal, _ = bearer_principal(state.credentials(), header)
    except StoreUnavailable:
        return False
    return principal is not None and principal.scope is None


def _is_json_path(state: _State) -> bool:
    return state.is_json_path(request.path)


def _challenge(state: _State, bad_token: bool) -> Response | tuple[Response, int]:
    """401 for programs (with how to authenticate), the login page for people."""
    if not bad_token and not _is_json_path(state) and LOGIN_ENDPOINT in \
            current_app.view_functions:
        target = request.full_path if request.query_string else request.path
        return redirect(url_for(LOGIN_ENDPOINT, next=target), 303)
    if bad_token:
        message = ("the bearer token is not valid (revoked, mistyped, or not of this "
                   "server); send Authorization: Bearer <token>")
        challenge = f'Bearer realm="{REALM}", error="invalid_token"'
    else:
        message = ("authentication required: send Authorization: Bearer <token> (create a "
                   "token on the settings page or with: .venv/bin/python Main.py tokens "
                   "create NAME)")
        challenge = f'Bearer realm="{REALM}"'
    reply = _reply(state, 401, message)
    reply[0].headers["WWW-Authenticate"] = challenge
    return reply


def _refuse_host(state: _State) -> tuple[Response, int]:
    name = request_hostname(request.host) or "(none)"
    log.warning("refused a request for Host %r (%s %s)", name, request.method, request.path)
    return _reply(state, 400, f"this server does not answer to the host name {name!r}; "
                              "open it as localhost, or add the name to ALLOWED_HOSTS")


def _reply(state: _State, code: int, message: str) -> tuple[Response, int]:
    """JSON on API paths; a short page otherwise."""
    if _is_json_path(state):
        return error_reply(code, message)
    page = (f"<!doctype html><title>{code}</title><h1>{code}</h1>"
            f"<p>{escape(message)}</p>")
    return Response(page, mimetype="text/html"), code


def _template_values() -> dict[str, Any]:
    state = current_app.extensions.get(_KEY)
    return {"auth_required": bool(state and state.policy.required),
            "auth_principal": g.get("principal")}


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this server, else ``default`` (no open redirect:
    ``//evil.example``, ``/\\evil.example`` and absolute URLs are refused)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(ord(c) < 0x20 or c == "\\" for c in target):
        return default
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else default
