"""The metrics server under its routes: a batch id written in the batch's transaction
(RunStore.write_batch(batch=...)) on both engines, concurrent retries, and the YAML +
environment settings (web/metrics_server_config.py)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from tests.helpers.apps import drop_all, make_app
from tests.helpers.paths import ROOT
from Utilities.input_errors import InputError
from Utilities.run_store import RunStore
from web import metrics_server_config as msc
from web.live_stream import close_streams
from web.store import close_store, get_store

WALL = 1.7e9


def rows(run_id: str, n: int) -> list[tuple]:
    return [(run_id, "episode/reward", e, float(e), WALL + e) for e in range(n)]


def test_a_batch_id_is_written_once_with_its_rows(any_store):
    run_id = any_store.create_run(name="x", model_type="external")
    events = [(run_id, "episode", {"episode": 0}, WALL)]
    assert any_store.write_batch(rows(run_id, 3), events, batch=(run_id, "b1")) is True
    assert any_store.write_batch(rows(run_id, 3), events, batch=(run_id, "b1")) is False
    assert any_store.write_batch(rows(run_id, 3), batch=(run_id, "b2")) is True
    stats = any_store.series_statistics([run_id])[run_id]
    assert stats["episode/reward"]["points"] == 6
    assert len(any_store.events_after(0, run_id=run_id, kinds=["episode"])) == 1
    with pytest.raises(ValueError, match="at most 64"):
        any_store.write_batch(rows(run_id, 1), batch=(run_id, "x" * 65))
    # A refused batch leaves its id free: all or nothing.
    with pytest.raises(ValueError):
        any_store.write_batch([(run_id, "k", "not a step", 1.0, WALL)], batch=(run_id, "b3"))
    assert any_store.write_batch(rows(run_id, 1), batch=(run_id, "b3")) is True
    any_store.set_status(run_id, "completed")
    any_store.delete_run(run_id)  # its batch ids go with it
    again = any_store.create_run(name="x", model_type="external", run_id=run_id)
    assert any_store.write_batch(rows(again, 1), batch=(again, "b1")) is True


def test_concurrent_retries_of_one_batch_write_it_once(any_store, engine_url):
    run_id = any_store.create_run(name="x", model_type="external")
    stores = [RunStore(engine_url) for _ in range(4)]
    answers: list[bool] = []
    start = threading.Barrier(len(stores))

    def post(store: RunStore) -> None:
        start.wait()
        answers.append(store.write_batch(rows(run_id, 50), batch=(run_id, "same")))

    threads = [threading.Thread(target=post, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert sorted(answers) == [False, False, False, True]
    assert any_store.series_statistics([run_id])[run_id]["episode/reward"]["points"] == 50


# ----------------------------------------------------------------------- config


def test_the_environment_wins_over_the_file(tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_text("port: 6000\ncors_origins: [http://a.example]\nrate_limit:\n"
                    "  requests_per_second: 5\nsession_retention_days: 0\n")
    env = {"TRAINING_METRICS_CONFIG": str(path), "TRAINING_METRICS_PORT": "7000",
           "CORS_ORIGINS": "http://b.example, http://c.example:8080"}
    values = msc.load(env)
    assert values["port"] == 7000 and values["host"] == "127.0.0.1"
    assert values["cors_origins"] == ("http://b.example", "http://c.example:8080")
    assert values["rate_limit.requests_per_second"] == 5.0
    settings = msc.app_settings(env)
    assert settings["METRICS_RETENTION_DAYS"] == 0.0 and "LIVE_MAX_VIEWERS_PER_RUN" not in settings
    assert msc.serving({"TRAINING_METRICS_DEBUG": "yes"}) == ("127.0.0.1", 5000, True)


@pytest.mark.parametrize(("text", "env", "field"), [
    ("colour: red\n", {}, "colour"),
    ("port: 70000\n", {}, "port"),
    ("cors_origins: [localhost:3000]\n", {}, "cors_origins"),
    ("", {"MAX_CONNECTIONS_PER_SESSION": "0"}, "MAX_CONNECTIONS_PER_SESSION"),
    ("", {"CLEANUP_INTERVAL_SECONDS": "soon"}, "CLEANUP_INTERVAL_SECONDS"),
    ("- a list\n", {}, "TRAINING_METRICS_CONFIG"),
])
def test_a_bad_setting_is_named(tmp_path: Path, text, env, field):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        msc.load({"TRAINING_METRICS_CONFIG": str(path), **env})
    assert caught.value.field == field


def test_the_example_file_documents_every_key_and_loads(tmp_path: Path):
    text = (ROOT / "metrics_server.example.yaml").read_text()
    # Every setting, uncommented, is a file that loads (the last database_url wins).
    lines = [line[2:] for line in text.splitlines()
             if re.match(r"^# ( *[a-z_]+:| +- )", line)]
    path = tmp_path / "m.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert set(msc.read_file(path)) == msc.KNOWN_KEYS
    values = msc.load({"TRAINING_METRICS_CONFIG": str(path)})
    assert values["cors_origins"] == ("http://localhost:3000",)
    assert values["max_connections_per_session"] == 50
    for setting in msc.SETTINGS:  # every variable is in the module's table and the file
        assert setting.env in msc.__doc__ and setting.env in text


def test_the_app_takes_the_settings(monkeypatch, models_dir, tmp_path):
    monkeypatch.setenv("MAX_CONNECTIONS_PER_SESSION", "7")
    monkeypatch.setenv("METRICS_HISTORY_SIZE", "123")
    monkeypatch.setenv("CORS_ORIGINS", "http://localhost:3000")
    app = make_app(f"sqlite:///{tmp_path}/r.db", models_dir, tmp_path)
    try:
        hub = app.extensions["live_hub"]
        assert (hub.per_run, hub.backlog) == (7, 123)
        assert app.extensions["sessions_api"].cors_origins == {"http://localhost:3000"}
    finally:
        close_streams(app)
        with app.app_context():
            drop_all(get_store())
        close_store(app)


# -------------------------------------------------------------------- Main.py


def test_main_takes_host_and_port_from_the_settings_and_makes_scoped_tokens(
        monkeypatch, capsys, tmp_path: Path, database_url: str):
    import waitress

    import Main
    from web.auth_store import AuthStore

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "Models"))
    monkeypatch.setenv("TRAINING_METRICS_PORT", "6123")
    monkeypatch.setattr(Main, "configure_logging", lambda *level: None)
    served: list = []
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: served.append((app, kw)))
    try:
        assert Main.main(["--no-demo"]) == 0
        app, options = served[0]
        assert (options["host"], options["port"]) == ("127.0.0.1", 6123)
        # The schedules started beside the server stop with it.
        assert app.extensions["sessions_api"].cleaner._stop.is_set()
        assert app.extensions["lost_run_sweeper"]._stop.is_set()
        store = RunStore(database_url)
        sid = store.create_run(name="x", model_type="external")
        capsys.readouterr()
        assert Main.main(["tokens", "create", "one", "--session", sid]) == 0
        token = capsys.readouterr().out.strip()
        assert AuthStore(store.engine).verify_token(token).scope == sid
        assert Main.main(["tokens", "create", "two", "--session", "nope"]) == 2
        assert "--session must be a session id" in capsys.readouterr().err
        monkeypatch.setenv("TRAINING_METRICS_PORT", "port")
        assert Main.main([]) == 2
        assert "TRAINING_METRICS_PORT must be a whole number" in capsys.readouterr().err
    finally:
        drop_all(RunStore(database_url))


def test_the_token_commands_use_the_files_database(monkeypatch, capsys, tmp_path: Path):
    import Main
    from web.auth_store import AuthStore

    url = f"sqlite:///{tmp_path}/from-file.db"
    config = tmp_path / "m.yaml"
    config.write_text(f"database_url: {url}\n")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("TRAINING_METRICS_CONFIG", str(config))
    assert Main.main(["tokens", "create", "filed"]) == 0
    store = RunStore(url)
    try:
        assert [t.name for t in AuthStore(store.engine).list_tokens()] == ["filed"]
    finally:
        drop_all(store)
    config.write_text("database_url: 3\n")
    assert Main.main(["tokens", "list"]) == 2
    assert "database_url must be a non-empty string" in capsys.readouterr().err
