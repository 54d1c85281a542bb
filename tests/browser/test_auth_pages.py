"""Signing in and managing API tokens as a person does, in Debian's chromium: the login
page (a wrong password, then the right one), a token made on /settings and shown once,
used by a program, then revoked."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import expect

from tests.helpers.apps import PASSWORD, make_auth_app
from tests.helpers.browser import screenshot

pytestmark = pytest.mark.browser


@pytest.fixture()
def app(database_url: str, models_dir: Path, tmp_path: Path) -> Iterator[Flask]:
    """The dashboard with sign-in required (AUTH=required) and one login, alice."""
    from Utilities.run_store_schema import metadata
    from web.auth_store import AuthStore
    from web.store import close_store, get_store

    flask_app = make_auth_app(database_url, models_dir, tmp_path)
    with flask_app.app_context():
        AuthStore(get_store().engine).set_password("alice", PASSWORD)
    yield flask_app
    with flask_app.app_context():
        metadata.drop_all(get_store().engine)
    close_store(flask_app)


def api_status(base: str, token: str) -> int:
    """What a program gets for GET /api/models with this bearer token."""
    request = urllib.request.Request(f"{base}/api/models",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_sign_in_then_make_see_once_and_revoke_a_token(live_server: str, page) -> None:
    page.goto(f"{live_server}/settings")
    expect(page).to_have_url(f"{live_server}/login?next=/settings")
    expect(page.locator("#login-link")).to_be_visible()  # navbar: not signed in

    page.fill("#username", "alice")
    page.fill("#password", "not the password")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("wrong user name or password")
    screenshot(page, "auth_login_refused")

    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url(f"{live_server}/settings")
    expect(page.locator("#auth-who")).to_contain_text("alice")
    expect(page.locator("#auth-status")).to_contain_text("AUTH=required")
    expect(page.locator("#no-tokens")).to_be_visible()

    page.fill("#token-name", "trading-bot")
    page.click("#create-token")
    token = page.locator("#new-token-value").inner_text().strip()
    assert token.startswith("gm_") and len(token) > 40
    expect(page.locator("#token-table .token-name")).to_have_text(["trading-bot"])
    screenshot(page, "auth_token_created")
    assert api_status(live_server, token) == 200

    page.goto(f"{live_server}/settings")  # shown once: not on the next visit
    expect(page.locator("#new-token")).to_have_count(0)
    assert token not in page.content()
    expect(page.locator("#token-table tbody tr td").nth(3)).not_to_have_text("never")

    page.click("#token-table .revoke")
    expect(page.locator("#settings-notice")).to_contain_text("Revoked the token 'trading-bot'")
    expect(page.locator("#no-tokens")).to_be_visible()
    screenshot(page, "auth_token_revoked")
    assert api_status(live_server, token) == 401

    page.click("#logout")
    expect(page).to_have_url(f"{live_server}/login")
    page.goto(f"{live_server}/runs")
    expect(page).to_have_url(f"{live_server}/login?next=/runs")
