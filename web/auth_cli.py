"""``python Main.py tokens …`` and ``python Main.py users …``: credentials from a shell.

    python Main.py tokens create NAME     # prints the token once, on stdout
    python Main.py tokens create NAME --session ID   # a token for one session only
    python Main.py tokens list            # id, name, created, last used
    python Main.py tokens revoke ID
    python Main.py users set-password NAME   # asks twice on a terminal, else reads stdin
    python Main.py users list
    python Main.py users delete NAME

The store is the run store's database (``DATABASE_URL``, default instance/runs.db), so
a token made here works on every server that uses that database. A password is never
taken from the command line (other users see it in ``ps``, shells keep it in history).
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from typing import IO, Any

from Utilities.input_errors import InputError
from Utilities.logging_setup import one_line
from Utilities.run_store import StoreUnavailable
from web import metrics_server_config
from web.auth_store import AuthStore, CredentialError
from web.credentials import WeakPassword, check_password_rules

COMMANDS = ("tokens", "users")
_RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add the ``tokens`` and ``users`` sub-commands (none given: the server runs)."""
    commands = parser.add_subparsers(dest="command", metavar="{tokens,users}",
                                     help="manage credentials instead of serving")
    tokens = commands.add_parser("tokens", help="API tokens: create, list, revoke")
    actions = tokens.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token (shown once)")
    create.add_argument("name")
    create.add_argument("--session", default=None, metavar="ID",
                        help="scope it to one outside trainer's session (its routes only)")
    actions.add_parser("list", help="every token (never the token itself)")
    actions.add_parser("revoke", help="delete a token").add_argument("id", type=int)
    users = commands.add_parser("users", help="page logins: set-password, list, delete")
    actions = users.add_subparsers(dest="action", required=True)
    actions.add_parser("set-password", help="create a login or change its password "
                       "(prompted, or one line on stdin)").add_argument("name")
    actions.add_parser("list", help="every login")
    actions.add_parser("delete", help="remove a login").add_argument("name")


def run(args: argparse.Namespace, stdin: IO[str] | None = None,
        out: IO[str] | None = None) -> int:
    """Carry out a parsed command: 0 done, 1 the store failed, 2 refused input."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    try:  # DATABASE_URL, else the metrics server's YAML file's database_url, else the default
        store = AuthStore.open(metrics_server_config.app_settings().get("DATABASE_URL"))
    except StoreUnavailable as exc:
        return _fail(str(exc), 1)
    except InputError as exc:  # a bad setting in that file
        return _fail(str(exc), 2)
    try:
        handler = _HANDLERS[(args.command, args.action)]
        return handler(store, args, stdin, out)
    except (CredentialError, WeakPassword) as exc:
        return _fail(str(exc), 2)
    except StoreUnavailable as exc:
        return _fail(str(exc), 1)
    finally:
        store.close()


def _token_create(store: AuthStore, args: Any, _stdin: IO[str], out: IO[str]) -> int:
    scope = getattr(args, "session", None)
    if scope is not None and not _RUN_ID.fullmatch(scope):
        raise CredentialError(f"--session must be a session id (a UUID); got {scope!r}")
    info, token = store.create_token(args.name, scope=scope)
    where = f" for session {scope} only" if scope else ""
    _say(f"created API token {info.name!r} (id {info.id}){where}; it is shown only now. Send "
         "it as 'Authorization: Bearer <token>'.", sys.stderr)
    _say(token, out)  # alone on stdout, for scripts: TOKEN=$(python Main.py tokens create x)
    return 0


def _token_list(store: AuthStore, _args: Any, _stdin: IO[str], out: IO[str]) -> int:
    tokens = store.list_tokens()
    if not tokens:
        _say("no API tokens", sys.stderr)
    for t in tokens:
        scope = f"\tsession {t.scope}" if t.scope else ""
        _say(f"{t.id}\t{t.name}\tcreated {t.created_at}\tlast used {t.last_used_at or 'never'}"
             f"{scope}", out)
    return 0


def _token_revoke(store: AuthStore, args: Any, _stdin: IO[str], out: IO[str]) -> int:
    info = store.revoke_token(args.id)
    _say(f"revoked API token {info.name!r} (id {info.id})", out)
    return 0


def _user_set_password(store: AuthStore, args: Any, stdin: IO[str], out: IO[str]) -> int:
    password = _read_password(stdin)
    created = store.set_password(args.name, password)
    _say(f"{'created login' if created else 'changed the password of'} {args.name!r}", out)
    return 0


def _user_list(store: AuthStore, _args: Any, _stdin: IO[str], out: IO[str]) -> int:
    users = store.list_users()
    if not users:
        _say("no logins", sys.stderr)
    for user in users:
        _say(f"{user['username']}\tcreated {user['created_at']}\tpassword set "
             f"{user['updated_at']}", out)
    return 0


def _user_delete(store: AuthStore, args: Any, _stdin: IO[str], out: IO[str]) -> int:
    store.delete_user(args.name)
    _say(f"deleted login {args.name!r}", out)
    return 0


_HANDLERS = {("tokens", "create"): _token_create, ("tokens", "list"): _token_list,
             ("tokens", "revoke"): _token_revoke, ("users", "set-password"): _user_set_password,
             ("users", "list"): _user_list, ("users", "delete"): _user_delete}


def _read_password(stdin: IO[str]) -> str:
    """Twice at a terminal prompt (without echo), else the first line of stdin."""
    if stdin.isatty():
        password = getpass.getpass("New password: ")
        check_password_rules(password)
        if getpass.getpass("Repeat it: ") != password:
            raise CredentialError("the two passwords differ; nothing was changed")
        return password
    return stdin.readline().rstrip("\r\n")


def _say(line: str, stream: IO[str]) -> None:
    # A command's output is its interface (not a debug print): written, not logged.
    stream.write(line + "\n")
    stream.flush()


def _fail(message: str, code: int) -> int:
    _say(f"error: {one_line(message)}", sys.stderr)
    return code
