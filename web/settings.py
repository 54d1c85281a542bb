"""``/settings``: API tokens (create, shown once; revoke), whether sign-in is required and
why, and the host names the server answers to."""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    flash,
    get_flashed_messages,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from Utilities.run_store import StoreUnavailable
from web import auth
from web.auth_store import AuthStore, CredentialError, NotFound

log = logging.getLogger(__name__)
bp = Blueprint("settings", __name__)


@bp.get("/settings")
def index() -> Any:
    return _page()


@bp.post("/settings/tokens")
def create_token() -> Any:
    """Create a token and show it on this reply only: it is not kept, and the reply is
    not cached."""
    name = request.form.get("name", "").strip()
    try:
        info, token = _store().create_token(name)
    except CredentialError as exc:
        return _page(error=str(exc), name=name), 422
    except StoreUnavailable as exc:
        return _page(error=str(exc), name=name), 503
    response = make_response(_page(new_token=token, new_info=info), 201)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/settings/tokens/<int:token_id>/revoke")
def revoke_token(token_id: int) -> Any:
    try:
        info = _store().revoke_token(token_id)
    except NotFound as exc:
        return _page(error=str(exc)), 404
    except StoreUnavailable as exc:
        return _page(error=str(exc)), 503
    flash(f"Revoked the token {info.name!r}: requests with it are refused from now on.")
    return redirect(url_for(".index"), 303)


def _store() -> AuthStore:
    store = auth.credentials()
    if not isinstance(store, AuthStore):
        raise RuntimeError("the settings page needs the database credential store")
    return store


def _page(error: str | None = None, **extra: Any) -> str:
    tokens, users, store_error = [], [], None
    try:
        tokens, users = _store().list_tokens(), _store().list_users()
    except StoreUnavailable as exc:
        log.error("credential store unavailable: %s", exc)
        store_error = str(exc)
    return render_template("settings/index.html", policy=auth.policy(), tokens=tokens,
                           users=users, error=error, store_error=store_error,
                           messages=get_flashed_messages(), **extra)
