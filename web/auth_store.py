"""API tokens and dashboard logins, kept in the run store's database.

The tables (``api_tokens``, ``users``) are part of the run-store schema, so one
``DATABASE_URL`` (SQLite or PostgreSQL) holds them and every server process that uses
it accepts the same credentials. Nothing here knows Flask: the CLI, the dashboard and
the standalone model server share this module. Hashing is :mod:`web.credentials`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from Utilities.run_store import RunStore, StoreUnavailable
from Utilities.run_store_schema import ApiToken, User, iso_z, utcnow
from web.credentials import hash_password, new_token, token_digest, verify_password

log = logging.getLogger(__name__)

_TOKENS, _USERS = ApiToken.__table__, User.__table__
# "Last used" is rewritten at most this often per token: a busy client would otherwise
# turn every read into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)
# Names are shown on pages and typed in shells: printable, no surrounding blanks.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.@+-]{0,63}$")

P = ParamSpec("P")
R = TypeVar("R")


class CredentialError(ValueError):
    """A credential request the store refuses; the message says what to change."""


class NotFound(CredentialError, LookupError):
    """No token with that id, or no user with that name."""


@dataclass(frozen=True)
class TokenInfo:
    """What is shown of a token: never the token itself."""

    id: int
    name: str
    created_at: str
    last_used_at: str | None
    scope: str | None = None  # the one session (run id) it may reach; None: every route


def check_name(kind: str, name: str) -> str:
    """``name`` if it is a valid token or user name, else CredentialError."""
    if not _NAME.match(name or ""):
        raise CredentialError(f"a {kind} name has 1 to 64 characters: letters, digits, "
                              "space, _ . @ + - (starting with a letter or digit); "
                              f"got {name!r}")
    return name


def _guarded(method: Callable[P, R]) -> Callable[P, R]:
    """A database that cannot be reached is StoreUnavailable, as in the run store."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(f"the credential store is unavailable: {exc.orig}") from exc
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            raise StoreUnavailable("the credential store lost its connection") from exc

    return wrapper


class AuthStore:
    """Tokens and users over an engine whose database has the run-store schema."""

    def __init__(self, engine: sa.Engine, owner: RunStore | None = None) -> None:
        self.engine = engine
        self._owner = owner  # the RunStore that opened the engine, when we did

    @classmethod
    def open(cls, url: str | None = None) -> AuthStore:
        """Open the database at ``url`` (default: the run store's), creating the tables."""
        run_store = RunStore(url)
        return cls(run_store.engine, owner=run_store)

    def close(self) -> None:
        """Release the connections, if this store opened them."""
        if self._owner is not None:
            self._owner.close()

    # ------------------------------------------------------------------ tokens

    @_guarded
    def create_token(self, name: str, scope: str | None = None) -> tuple[TokenInfo, str]:
        """A new token named ``name``: its information and the token, which is not kept.
        ``scope``: the one session (run id) it may reach (web/sessions_api.py)."""
        check_name("token", name)
        token, now = new_token(), utcnow()
        try:
            with self.engine.begin() as conn:
                token_id = conn.execute(sa.insert(_TOKENS).values(
                    name=name, token_sha256=token_digest(token), created_at=now, scope=scope,
                ).returning(_TOKENS.c.id)).scalar_one()
        except IntegrityError:
            raise CredentialError(f"a token named {name!r} exists; choose another name or "
                                  "revoke that one first") from None
        log.info("API token %r created (id %d)", name, token_id)
        return TokenInfo(token_id, name, iso_z(now) or "", None, scope), token

    @_guarded
    def list_tokens(self) -> list[TokenInfo]:
        """Every token, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_TOKENS).order_by(_TOKENS.c.id)).all()
        return [_token_info(row) for row in rows]

    @_guarded
    def revoke_token(self, token_id: int) -> TokenInfo:
        """Delete the token (requests with it are refused at once); NotFound if none."""
        if not 0 < token_id < 2**63:  # beyond BIGINT the driver overflows; no such id
            raise NotFound(f"no API token has id {token_id}")
        with self.engine.begin() as conn:
            row = conn.execute(sa.delete(_TOKENS).where(_TOKENS.c.id == token_id)
                               .returning(*_TOKENS.c)).first()
        if row is None:
            raise NotFound(f"no API token has id {token_id}")
        log.info("API token %r revoked (id %d)", row.name, token_id)
        return _token_info(row)

    @_guarded
    def verify_token(self, token: str) -> TokenInfo | None:
        """The token's information if it is valid (and its "last used" refreshed)."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(_TOKENS).where(
                _TOKENS.c.token_sha256 == token_digest(token))).first()
            if row is None:
                return None
            if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
                conn.execute(sa.update(_TOKENS).where(_TOKENS.c.id == row.id)
                             .values(last_used_at=now))
        return _token_info(row)

    # ------------------------------------------------------------------- users

    @_guarded
    def set_password(self, username: str, password: str) -> bool:
        """Create the user or change its password; True when the user is new. Sessions
        signed in with the old password end (see :meth:`session_stamp`)."""
        check_name("user", username)
        password_hash, now = hash_password(password), utcnow()
        try:
            with self.engine.begin() as conn:
                changed = conn.execute(sa.update(_USERS).where(_USERS.c.username == username)
                                       .values(password_hash=password_hash, updated_at=now))
                if changed.rowcount:
                    return False
                conn.execute(sa.insert(_USERS).values(username=username, created_at=now,
                                                      password_hash=password_hash,
                                                      updated_at=now))
        except IntegrityError:
            raise CredentialError(f"the user {username!r} was created at the same moment "
                                  "elsewhere; run the command again") from None
        log.info("user %r created", username)
        return True

    @_guarded
    def delete_user(self, username: str) -> None:
        """Remove a login; NotFound if there is none with that name."""
        with self.engine.begin() as conn:
            deleted = conn.execute(sa.delete(_USERS).where(_USERS.c.username == username))
        if not deleted.rowcount:
            raise NotFound(f"no user is named {username!r}")

    @_guarded
    def list_users(self) -> list[dict[str, Any]]:
        """Every user's name and dates (no hashes)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_USERS.c.username, _USERS.c.created_at,
                                          _USERS.c.updated_at).order_by(_USERS.c.username))
            return [{"username": r.username, "created_at": iso_z(r.created_at),
                     "updated_at": iso_z(r.updated_at)} for r in rows]

    @_guarded
    def check_login(self, username: str, password: str) -> str | None:
        """The user's session stamp if the password is right, else None (same cost for
        an unknown name)."""
        stored = self._password_hash(username)
        matches = verify_password(password, stored)  # computed for unknown names too
        return _stamp(stored) if matches and stored is not None else None

    @_guarded
    def session_stamp(self, username: str) -> str | None:
        """A value that changes with the user's password; None once the user is gone. A
        session keeps it and is honoured only while it still matches."""
        stored = self._password_hash(username)
        return None if stored is None else _stamp(stored)

    # ---------------------------------------------------------------- overview

    @_guarded
    def has_credentials(self) -> bool:
        """Whether any token or user exists (a server beyond loopback needs one)."""
        with self.engine.connect() as conn:
            return any(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                       for table in (_TOKENS, _USERS))

    def _password_hash(self, username: str) -> str | None:
        if "\x00" in username:  # no stored name has one, and PostgreSQL refuses to compare
            return None
        with self.engine.connect() as conn:
            return conn.execute(sa.select(_USERS.c.password_hash)
                                .where(_USERS.c.username == username)).scalar_one_or_none()


def _token_info(row: Any) -> TokenInfo:
    return TokenInfo(row.id, row.name, iso_z(row.created_at) or "", iso_z(row.last_used_at),
                     row.scope)


def _stamp(password_hash: str) -> str:
    # A digest of the salted hash: it reveals nothing usable, and a new password (new
    # salt) changes it.
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]
