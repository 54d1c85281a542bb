"""Host allow-list and authentication (web/auth.py): DNS rebinding refused, tokens and
logins, when credentials are required, start-up refusal, the CLI, the model server."""

from __future__ import annotations

import io
import logging
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

import Api_Loader
import Main
from NetworkConfigs import register_model_type, unregister_model_type
from tests.helpers.apps import PASSWORD, make_auth_app
from tests.helpers.fake_model_type import FREQUENCY_TYPE, FrequencyTrainer
from Utilities.run_store_schema import metadata
from web import auth
from web.auth_store import AuthStore
from web.login import MAX_FAILURES


@pytest.fixture()
def secured(database_url: str, models_dir: Path, tmp_path: Path) -> Iterator[Flask]:
    flask_app = make_auth_app(database_url, models_dir, tmp_path)
    yield flask_app
    from web.store import close_store, get_store

    with flask_app.app_context():
        metadata.drop_all(get_store().engine)
    close_store(flask_app)


@pytest.fixture()
def creds(secured: Flask) -> AuthStore:
    from web.store import get_store

    with secured.app_context():
        return AuthStore(get_store().engine)


@pytest.fixture()
def user(creds: AuthStore) -> str:
    creds.set_password("alice", PASSWORD)
    return "alice"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(client, username: str = "alice", password: str = PASSWORD, next_url: str = "/"):
    return client.post("/login", data={"username": username, "password": password,
                                       "next": next_url})


# ------------------------------------------------------------------ Host check


def test_a_dns_rebinding_delete_is_refused_and_the_model_kept(client, models_dir) -> None:
    (models_dir / "X").mkdir()
    (models_dir / "X" / "weights.bin").write_bytes(b"model")
    evil = {"Host": "evil.example:5000", "Origin": "http://evil.example:5000"}
    response = client.delete("/api/models/X", headers=evil)
    assert response.status_code == 400
    assert "evil.example" in response.get_json()["error"]
    assert (models_dir / "X" / "weights.bin").is_file()
    # The same request under the server's own name does delete: the route was reachable.
    same_site = {"Host": "localhost:5000", "Origin": "http://localhost:5000"}
    assert client.delete("/api/models/X", headers=same_site).get_json() == {"deleted": "X"}
    assert not (models_dir / "X").exists()


@pytest.mark.parametrize("host", ["localhost", "localhost:5000", "127.0.0.1:8080", "[::1]:5000",
                                  "LOCALHOST:1"])
def test_loopback_names_with_any_port_are_served(client, host: str) -> None:
    assert client.get("/api/models", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "localhost.evil",
                                  "10.0.0.5:5000", "[::2]:5000", ""])
def test_other_names_are_400(client, host: str) -> None:
    response = client.get("/api/models", headers={"Host": host})
    assert response.status_code == 400
    assert "ALLOWED_HOSTS" in response.get_json()["error"]


def test_a_refused_host_on_a_page_is_a_short_escaped_page(client) -> None:
    response = client.get("/models", headers={"Host": "<b>x</b>.example"})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert b"<b>x</b>" not in response.data and b"ALLOWED_HOSTS" in response.data


def test_configured_names_and_the_bind_address_are_served(database_url, models_dir,
                                                          tmp_path, user) -> None:
    app = make_auth_app(database_url, models_dir, tmp_path, BIND_HOST="10.1.2.3",
                        ALLOWED_HOSTS="models.lan, Box.Example.")
    client = app.test_client()
    for host in ("models.lan:5000", "box.example", "10.1.2.3:5000", "localhost"):
        assert client.get("/login", headers={"Host": host}).status_code == 200, host
    assert client.get("/login", headers={"Host": "other.lan"}).status_code == 400


def test_a_cross_site_write_under_an_allowed_host_is_still_403(client) -> None:
    response = client.delete("/api/models/X", headers={"Origin": "http://evil.example"})
    assert response.status_code == 403


# ------------------------------------------------------------------ the policy


@pytest.mark.parametrize(("config", "required", "reason"), [
    ({}, False, None),
    ({"BIND_HOST": "localhost"}, False, None),
    ({"BIND_HOST": "127.0.0.2"}, False, None),
    ({"BIND_HOST": "::1"}, False, None),
    ({"ALLOWED_HOSTS": "localhost,127.0.0.1"}, False, None),
    ({"AUTH": "required"}, True, "AUTH=required"),
    ({"BIND_HOST": "0.0.0.0"}, True, "listens on 0.0.0.0"),
    ({"BIND_HOST": "::"}, True, "listens on ::"),
    ({"BIND_HOST": "192.168.1.20"}, True, "listens on 192.168.1.20"),
    ({"BIND_HOST": "myhost"}, True, "listens on myhost"),
    ({"ALLOWED_HOSTS": "models.example.com"}, True, "ALLOWED_HOSTS names models.example.com"),
])
def test_when_credentials_are_required(config, required: bool, reason) -> None:
    policy = auth.Policy.from_config(config)
    assert policy.required is required
    if reason:
        assert any(reason in r for r in policy.reasons), policy.reasons


@pytest.mark.parametrize("config", [{"AUTH": "maybe"}, {"ALLOWED_HOSTS": "*"},
                                    {"ALLOWED_HOSTS": "http://x.example/"}])
def test_unusable_settings_are_refused(config) -> None:
    with pytest.raises(auth.AuthConfigError):
        auth.Policy.from_config(config)


def test_loopback_without_configuration_asks_for_nothing(client) -> None:
    assert client.get("/runs").status_code == 200
    assert client.get("/api/models").status_code == 200
    assert client.get("/settings").status_code == 200
    # No credential is checked there, not even a bogus one a client sends.
    assert client.get("/api/models", headers=bearer("not-a-token")).status_code == 200
    assert b"auth-who" not in client.get("/").data  # no Log in link in the navbar


# ----------------------------------------------------------------------- tokens


def test_a_token_opens_the_api_and_a_wrong_or_revoked_one_is_401(secured, creds) -> None:
    client = secured.test_client()
    info, token = creds.create_token("bot")
    assert client.get("/api/models", headers=bearer(token)).status_code == 200
    assert client.get("/api/training-runs", headers=bearer(token)).status_code == 200
    for header in (bearer(token + "x"), bearer(""), {"Authorization": f"Basic {token}"}):
        response = client.get("/api/models", headers=header)
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    creds.revoke_token(info.id)
    response = client.get("/api/models", headers=bearer(token))
    assert response.status_code == 401 and "not valid" in response.get_json()["error"]


def test_a_token_is_stored_only_as_its_hash(secured, creds) -> None:
    _, token = creds.create_token("bot")
    with creds.engine.connect() as conn:
        dumped = " ".join(str(row) for table in metadata.sorted_tables
                          for row in conn.execute(sa.select(table)))
    assert token not in dumped and token[3:20] not in dumped
    assert re.search(r"'[0-9a-f]{64}'", dumped)  # the sha256 is there


def test_a_token_records_when_it_was_last_used(secured, creds) -> None:
    _, token = creds.create_token("bot")
    assert creds.list_tokens()[0].last_used_at is None
    secured.test_client().get("/api/models", headers=bearer(token))
    assert creds.list_tokens()[0].last_used_at is not None


def test_token_names_are_checked_and_unique(creds) -> None:
    from web.auth_store import CredentialError

    creds.create_token("bot")
    for name in ("bot", "", " spaced", "x" * 65, "new\nline"):
        with pytest.raises(CredentialError):
            creds.create_token(name)


def test_unauthenticated_requests_get_401_or_the_login_page(secured, user) -> None:
    client = secured.test_client()
    for path in ("/api/models", "/api/training-runs", "/predict", "/health", "/openapi.json"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="Galaxy Models"'
        assert "Authorization: Bearer" in response.get_json()["error"]
    for path in ("/", "/runs", "/models", "/backtest", "/hosting", "/train", "/settings",
                 "/runs?status=failed"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["Location"].startswith("/login?next=")
    assert client.post("/api/backtest", json={}).status_code == 401
    assert client.delete("/api/models/X").status_code == 401
    assert client.post("/settings/tokens", data={"name": "x"}).status_code == 303
    with client.get("/static/css/app.css") as static:
        assert static.status_code == 200
    assert client.get("/login").status_code == 200


# ----------------------------------------------------------------------- logins


def test_signing_in_opens_the_pages_and_signing_out_closes_them(secured, user) -> None:
    client = secured.test_client()
    response = sign_in(client, next_url="/runs?status=failed")
    assert response.status_code == 303 and response.headers["Location"] == "/runs?status=failed"
    page = client.get("/runs")
    assert page.status_code == 200 and b"alice" in page.data and b'id="logout"' in page.data
    assert client.get("/api/models").status_code == 200  # the pages' own fetches
    client.post("/logout")
    assert client.get("/runs").status_code == 303


@pytest.mark.parametrize(("username", "password"), [("alice", "wrong password"),
                                                    ("bob", PASSWORD), ("", ""),
                                                    ("a\x00lice", PASSWORD)])
def test_a_wrong_sign_in_is_refused(secured, user, username: str, password: str) -> None:
    client = secured.test_client()
    response = sign_in(client, username, password)
    assert response.status_code == 401 and b"wrong user name or password" in response.data
    assert "session=" not in response.headers.get("Set-Cookie", "")
    assert client.get("/runs").status_code == 303


def test_repeated_failures_are_throttled(secured, user) -> None:
    client = secured.test_client()
    for _ in range(MAX_FAILURES):
        assert sign_in(client, password="wrong password").status_code == 401
    assert sign_in(client).status_code == 429  # even the right password must wait


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/",
                                    "/\\evil.example", "javascript:alert(1)", "evil",
                                    "/\x00x", ""])
def test_next_only_goes_to_local_paths(secured, user, target: str) -> None:
    response = sign_in(secured.test_client(), next_url=target)
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_changing_the_password_ends_existing_sessions(secured, creds, user) -> None:
    client = secured.test_client()
    sign_in(client)
    assert client.get("/runs").status_code == 200
    creds.set_password("alice", "another long password")
    assert client.get("/runs").status_code == 303
    creds.delete_user("alice")
    assert sign_in(client, password="another long password").status_code == 401


def test_the_session_cookie_is_httponly_lax_and_secure_when_asked(
        database_url, models_dir, tmp_path, user) -> None:
    cookie = sign_in(make_auth_app(database_url, models_dir, tmp_path).test_client())
    flags = cookie.headers["Set-Cookie"]
    assert "HttpOnly" in flags and "SameSite=Lax" in flags and "Secure" not in flags
    secure_app = make_auth_app(database_url, models_dir, tmp_path, SESSION_COOKIE_SECURE=True)
    assert "Secure" in sign_in(secure_app.test_client()).headers["Set-Cookie"]


def test_the_signing_key_is_kept_0600_and_shared_by_processes(database_url, models_dir,
                                                               tmp_path, user) -> None:
    first = make_auth_app(database_url, models_dir, tmp_path)
    key_file = tmp_path / "instance" / "key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = make_auth_app(database_url, models_dir, tmp_path)  # a restart, or a 2nd process
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    client = first.test_client()
    sign_in(client)
    cookie = client.get_cookie("session")
    other = second.test_client()
    other.set_cookie("session", cookie.value)
    assert other.get("/runs").status_code == 200


def test_loopback_keeps_a_fresh_key_and_no_key_file(client, app) -> None:
    assert app.config["SECRET_KEY"]
    assert not Path(app.instance_path, "secret_key").exists()


# ------------------------------------------------------------------- settings


def test_the_settings_page_makes_a_token_shows_it_once_and_revokes_it(secured, user,
                                                                      creds) -> None:
    client = secured.test_client()
    sign_in(client)
    page = client.get("/settings").get_data(as_text=True)
    assert "sign-in required" in page and "AUTH=required" in page and "alice" in page
    created = client.post("/settings/tokens", data={"name": "trader"})
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    token = re.search(r'id="new-token-value">([^<]+)<', created.get_data(as_text=True))[1]
    assert secured.test_client().get("/api/models", headers=bearer(token)).status_code == 200
    again = client.get("/settings").get_data(as_text=True)
    assert "trader" in again and token not in again  # shown once
    token_id = creds.list_tokens()[0].id
    revoked = client.post(f"/settings/tokens/{token_id}/revoke", follow_redirects=True)
    assert "Revoked the token" in revoked.get_data(as_text=True)
    assert secured.test_client().get("/api/models", headers=bearer(token)).status_code == 401
    assert client.post(f"/settings/tokens/{token_id}/revoke").status_code == 404
    assert client.post("/settings/tokens", data={"name": "bad/name"}).status_code == 422


def test_the_settings_page_on_open_loopback_says_why(client) -> None:
    page = client.get("/settings").get_data(as_text=True)
    assert "open on loopback" in page and "<code>localhost</code>" in page
    assert 'href="/settings"' in page  # in the navigation


def test_the_hosting_page_s_curl_sends_a_token_only_where_one_is_needed(
        secured, user, client, bars, models_dir: Path) -> None:
    register_model_type(FREQUENCY_TYPE)
    try:
        FrequencyTrainer({"lookback": 10}).fit(bars, model_name="demo", models_dir=models_dir)
        assert '-d \'{"window"' in client.get("/hosting").get_data(as_text=True)
        assert "Authorization: Bearer" not in client.get("/hosting").get_data(as_text=True)
        signed_in = secured.test_client()
        sign_in(signed_in)
        page = signed_in.get("/hosting").get_data(as_text=True)
    finally:
        unregister_model_type(FREQUENCY_TYPE.name)
    assert 'Authorization: Bearer $GALAXY_TOKEN' in page


# --------------------------------------------------------------------- start-up


@pytest.fixture()
def serving_env(monkeypatch, tmp_path: Path, database_url: str) -> list:
    """Main.main's environment, with waitress.serve recorded instead of serving."""
    import waitress

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "Models"))
    monkeypatch.setenv("SECRET_KEY", "k" * 32)  # no key file in the repository's instance/
    monkeypatch.setattr(Main, "configure_logging", lambda: None)  # keep caplog's handler
    served: list = []
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: served.append(kw))
    yield served
    store = AuthStore.open(database_url)
    metadata.drop_all(store.engine)
    store.close()


def test_main_refuses_to_serve_beyond_loopback_without_credentials(serving_env, capsys,
                                                                   caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert Main.main(["--host", "0.0.0.0", "--no-demo"]) == 2
    assert serving_env == []
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and "no credential is configured" in err
    assert "every interface" in caplog.text


def test_main_serves_beyond_loopback_once_a_token_exists(serving_env, database_url) -> None:
    AuthStore.open(database_url).create_token("bot")
    assert Main.main(["--host", "0.0.0.0", "--no-demo"]) == 0
    assert serving_env[0]["host"] == "0.0.0.0"


def test_main_on_loopback_serves_as_before(serving_env) -> None:
    assert Main.main(["--no-demo"]) == 0 and serving_env[0]["host"] == "127.0.0.1"


def test_main_refuses_a_bad_auth_setting_in_one_line(serving_env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ALLOWED_HOSTS", "*")
    assert Main.main(["--no-demo"]) == 2
    assert "ALLOWED_HOSTS" in capsys.readouterr().err


# -------------------------------------------------------------------------- CLI


def cli(monkeypatch, capsys, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = Main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_creates_lists_and_revokes_tokens(serving_env, monkeypatch, capsys,
                                                  database_url) -> None:
    code, out, err = cli(monkeypatch, capsys, "tokens", "create", "ci bot")
    token = out.strip()
    assert code == 0 and token.startswith("gm_") and "shown only now" in err
    assert AuthStore.open(database_url).verify_token(token).name == "ci bot"
    code, out, _ = cli(monkeypatch, capsys, "tokens", "list")
    assert code == 0 and "ci bot" in out and token not in out
    token_id = out.split("\t")[0]
    assert cli(monkeypatch, capsys, "tokens", "revoke", token_id)[0] == 0
    assert AuthStore.open(database_url).verify_token(token) is None
    code, _, err = cli(monkeypatch, capsys, "tokens", "revoke", token_id)
    assert code == 2 and err.startswith("error: no API token")
    assert cli(monkeypatch, capsys, "tokens", "create", "bad/name")[0] == 2


def test_the_cli_sets_a_password_from_stdin_never_argv(serving_env, monkeypatch, capsys,
                                                       database_url) -> None:
    code, out, _ = cli(monkeypatch, capsys, "users", "set-password", "alice",
                       stdin=PASSWORD + "\n")
    assert code == 0 and "created login 'alice'" in out
    assert AuthStore.open(database_url).check_login("alice", PASSWORD)
    code, _, err = cli(monkeypatch, capsys, "users", "set-password", "alice", stdin="short\n")
    assert code == 2 and "at least 8 characters" in err
    with pytest.raises(SystemExit):  # there is no argument to put a password in
        Main.main(["users", "set-password", "alice", PASSWORD])
    code, out, _ = cli(monkeypatch, capsys, "users", "list")
    assert "alice" in out and PASSWORD not in out


# ------------------------------------------------------------- the model server


def test_the_model_server_needs_a_token_beyond_loopback(tmp_path: Path) -> None:
    token = "t" * 32
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(f"# CI\n\n{token}\n")
    token_file.chmod(0o600)
    api = create_model_server(BIND_HOST="0.0.0.0", TOKEN_FILE=str(token_file))
    client = api.test_client()
    response = client.get("/health")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith(
        "Bearer")
    assert client.get("/health", headers=bearer(token)).status_code == 503  # in: no model
    assert client.get("/health", headers=bearer("u" * 32)).status_code == 401
    refused = client.get("/health", headers={"Host": "evil.example", **bearer(token)})
    assert refused.status_code == 400 and "evil.example" in refused.get_json()["error"]


def test_the_model_server_reads_the_stores_tokens(database_url: str) -> None:
    store = AuthStore.open(database_url)
    try:
        _, token = store.create_token("bot")
        client = create_model_server(BIND_HOST="10.0.0.7", DATABASE_URL=database_url)
        client = client.test_client()
        assert client.get("/info", headers={"Host": "10.0.0.7:8001"}).status_code == 401
        assert client.get("/info", headers={"Host": "10.0.0.7:8001",
                                            **bearer(token)}).status_code == 503
    finally:
        metadata.drop_all(store.engine)
        store.close()


def test_the_model_server_on_loopback_is_open(tmp_path: Path) -> None:
    client = create_model_server(DATABASE_URL=f"sqlite:///{tmp_path}/never.db").test_client()
    assert client.get("/health").status_code == 503
    assert not (tmp_path / "never.db").exists()  # no store opened when nothing is checked


def create_model_server(**config) -> Flask:
    return Api_Loader.create_api_app(None, {"TESTING": True, **config})


@pytest.mark.parametrize("content", ["short\n", "two words here-and-more-chars\n"])
def test_a_bad_token_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match="line 1"):
        create_model_server(TOKEN_FILE=str(path))


def test_api_loader_main_refuses_beyond_loopback_without_a_token(monkeypatch, capsys,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/runs.db")
    monkeypatch.setattr(Api_Loader, "load_model", lambda model_dir: None)
    assert Api_Loader.main(["--model-dir", "x", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and "no credential is configured" in err
    assert "--token-file" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    assert Api_Loader.main(["--model-dir", "x", "--host", "0.0.0.0", "--port", "0",
                            "--token-file", str(empty)]) == 2
