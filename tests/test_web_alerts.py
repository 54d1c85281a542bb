"""The dashboard's alerts: the page, its JSON API (filters, acknowledgement, bad input),
the unread badge, and the channels page with its test button (a real local webhook)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from Utilities import alert_records
from Utilities.alert_system import AlertSystem
from web.store import get_store


@pytest.fixture(autouse=True)
def no_alert_file(tmp_path: Path, monkeypatch) -> Path:
    """Every test names its own alert config (never a developer's alerts.yaml)."""
    path = tmp_path / "alerts.yaml"
    path.write_text("enabled: true\n")
    monkeypatch.setenv("ALERTS_CONFIG", str(path))
    return path


def seed(app) -> dict[str, str]:
    with app.app_context():
        store = get_store()
        run_id = store.create_run(name="agent", model_type="ppo")
        with AlertSystem({"throttle_seconds": 0}, store=store, run_id=run_id) as alerts:
            alerts.send_alert("critical", "NaN loss", "loss is NaN", rule="non_finite")
            alerts.send_alert("warning", "No improvement", "flat", rule="no_improvement")
        with AlertSystem({}, store=store) as script:
            script.send_alert("info", "Hello", "from a script")
        ids = {a["title"]: a["alert_id"] for a in alert_records.list_alerts(store)[0]}
    return {"run_id": run_id, **ids}


def test_the_api_lists_newest_first_with_filters(app, client) -> None:
    ids = seed(app)
    body = client.get("/api/alerts").get_json()
    assert [a["title"] for a in body["alerts"]] == ["Hello", "No improvement", "NaN loss"]
    assert (body["total"], body["unread"]) == (3, 3)
    critical = client.get(f"/api/alerts?level=critical&run={ids['run_id']}").get_json()
    assert [a["title"] for a in critical["alerts"]] == ["NaN loss"]
    assert client.get("/api/alerts?rule=no_improvement").get_json()["total"] == 1
    assert client.get("/api/alerts?limit=1&offset=1").get_json()["alerts"][0]["title"] == (
        "No improvement")


@pytest.mark.parametrize(("query", "status", "field"), [
    ("level=fatal", 422, "level"), ("run=nope", 422, "run"), ("state=maybe", 422, "state"),
    ("limit=ten", 400, "limit"), ("limit=0", 422, "limit"), ("rule=%00", 400, "rule"),
])
def test_bad_filters_are_named(client, query: str, status: int, field: str) -> None:
    reply = client.get(f"/api/alerts?{query}")
    assert reply.status_code == status
    assert reply.get_json()["field"] == field


def test_acknowledge_by_id_and_all(app, client) -> None:
    ids = seed(app)
    reply = client.post("/api/alerts/ack", json={"alert_ids": [ids["NaN loss"]]})
    assert reply.get_json() == {"acknowledged": 1, "unread": 2}
    assert client.get("/api/alerts?state=read").get_json()["alerts"][0]["title"] == "NaN loss"
    assert client.post("/api/alerts/ack", json={"all": True}).get_json() == {
        "acknowledged": 2, "unread": 0}
    assert client.get("/api/alerts/unread").get_json() == {"unread": 0}


@pytest.mark.parametrize("body", [{"alert_ids": []}, {"alert_ids": "x"}, {"all": False},
                                  {"alert_ids": [1]}, {"other": 1}])
def test_bad_acknowledgements_are_422(client, body) -> None:
    reply = client.post("/api/alerts/ack", json=body)
    assert reply.status_code == 422 and reply.get_json()["field"] == "alert_ids"
    assert client.post("/api/alerts/ack", json=[]).status_code == 400  # not an object


def test_the_page_shows_alerts_and_the_nav_badge_and_acks(app, client) -> None:
    ids = seed(app)
    page = client.get("/alerts").get_data(as_text=True)
    assert 'id="nav-alerts-unread"' in page and ">3</span>" in page
    assert "NaN loss" in page and "from a script" in page
    assert client.get("/alerts?level=critical").get_data(as_text=True).count("data-alert-id") == 1
    reply = client.post("/alerts/ack", data={"alert_id": ids["Hello"]})
    assert reply.status_code == 303
    assert client.get("/api/alerts/unread").get_json()["unread"] == 2
    client.post("/alerts/ack", data={"all": "1"})
    assert 'id="nav-alerts-unread"' not in client.get("/alerts").get_data(as_text=True)
    bad = client.get("/alerts?level=fatal")
    assert bad.status_code == 422 and "level must be one of" in bad.get_data(as_text=True)


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list] = []

    def do_POST(self) -> None:
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_channels_page_masks_secrets_and_the_test_button_delivers(client, no_alert_file,
                                                                  monkeypatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/very-secret-token"
        monkeypatch.setenv("TEST_HOOK_URL", url)
        no_alert_file.write_text("webhook:\n  url_env: TEST_HOOK_URL\nthrottle_seconds: 60\n")
        page = client.get("/alerts/settings").get_data(as_text=True)
        assert 'data-channel="webhook"' in page and "very-secret-token" not in page
        reply = client.post("/alerts/test").get_data(as_text=True)
        assert "delivered in" in reply and "very-secret-token" not in reply
        assert Hook.received[-1]["title"] == "Test alert"
        assert client.get("/api/alerts?rule=test").get_json()["alerts"][0]["deliveries"][0][
            "ok"] is True
    finally:
        server.shutdown()
        server.server_close()


def test_an_unusable_config_is_named_on_the_channels_page(client, no_alert_file) -> None:
    no_alert_file.write_text("slack:\n  webhook_url: https://hooks.slack.com/x\n")
    page = client.get("/alerts/settings").get_data(as_text=True)
    assert "secrets may not be written in the config file" in page
    assert client.post("/alerts/test").status_code == 422
