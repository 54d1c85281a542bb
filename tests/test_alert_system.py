"""Issue 16's AlertSystem: rules, throttling, and delivery to real local servers (an
SMTP server and HTTP servers the tests start), recorded in the run store."""

from __future__ import annotations

import json
import math
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from Utilities.alert_config import load_settings, settings_from
from Utilities.alert_rules import AlertThresholds, Thresholds
from Utilities.alert_system import AlertSystem
from Utilities.input_errors import InputError
from Utilities.run_store import RunStore

FAST = {"timeout_seconds": 2.0, "retries": 1, "backoff_seconds": 0.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture()
def smtp_server() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


class Hooks:
    """An HTTP server recording JSON posts; ``status`` answers, ``gate`` holds replies."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.status = 200
        self.gate: threading.Event | None = None
        self.arrived = threading.Event()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.posts.append((self.path, json.loads(body)))
                hooks.arrived.set()
                if hooks.gate is not None:
                    hooks.gate.wait(10)
                self.send_response(hooks.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hooks() -> Iterator[Hooks]:
    server = Hooks()
    yield server
    server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- rules and throttling ------------------------------------------------------------------

def test_presets_and_custom_thresholds() -> None:
    assert Thresholds.of("conservative") == Thresholds(**AlertThresholds.CONSERVATIVE)
    assert Thresholds.of(AlertThresholds.AGGRESSIVE).no_improvement_episodes == 200
    assert Thresholds.of({"no_improvement_episodes": 75}).critical_loss_threshold == 1000.0
    for bad, field in (("reckless", "thresholds"), ({"typo": 1}, "thresholds.typo"),
                       ({"no_improvement_episodes": 0}, "thresholds.no_improvement_episodes"),
                       ({"critical_loss_threshold": math.inf},
                        "thresholds.critical_loss_threshold")):
        with pytest.raises(InputError) as caught:
            Thresholds.of(bad)
        assert caught.value.field == field


def test_a_planted_nan_raises_a_critical_alert() -> None:
    alerts = AlertSystem({"thresholds": "MODERATE"})
    sent = alerts.check_training_health({"episode": 7, "profit": 1.0, "loss": math.nan}, [])
    assert [(a.rule, a.level) for a in sent] == [("non_finite", "critical")]
    assert "loss" in sent[0].message and sent[0].data["keys"] == ["loss"]


def test_loss_and_profit_thresholds() -> None:
    alerts = AlertSystem({"thresholds": AlertThresholds.CONSERVATIVE})
    sent = alerts.check_training_health({"episode": 3, "profit": -250.0, "loss": 600.0}, [])
    assert sorted((a.rule, a.level) for a in sent) == [("critical_loss", "critical"),
                                                       ("profit_floor", "warning")]
    assert alerts.check_training_health({"episode": 4, "profit": -10.0, "loss": 1.0}, []) == []


def test_no_improvement_is_told_once_per_plateau_not_every_episode() -> None:
    clock = Clock()
    alerts = AlertSystem({"thresholds": {"no_improvement_episodes": 5},
                          "throttle_seconds": 0}, clock=clock)
    history = [{"episode": i, "profit": float(i)} for i in range(1, 4)]  # improving
    told = []
    for episode in range(4, 30):  # flat from episode 4 on: the best stays episode 3
        latest = {"episode": episode, "profit": 0.0}
        told += alerts.check_training_health(latest, history)
        history.append(latest)
        clock.now += 60
    assert [(a.rule, a.data["best_episode"], a.data["episodes_since_best"]) for a in told] == [
        ("no_improvement", 3, 5)]
    for episode in range(30, 37):  # a new best, then a new plateau
        latest = {"episode": episode, "profit": 9.0 if episode == 30 else 0.0}
        told += alerts.check_training_health(latest, history)
        history.append(latest)
    assert [a.data["best_episode"] for a in told] == [3, 30]


def test_throttle_window_and_force() -> None:
    clock = Clock()
    alerts = AlertSystem({"throttle_seconds": 300}, clock=clock)
    assert alerts.send_alert("warning", "Slow", "x")
    assert not alerts.send_alert("warning", "Slow", "again")  # same title, same run
    assert alerts.send_alert("warning", "Other", "x")  # another rule is its own
    assert alerts.send_alert("warning", "Slow", "forced", force=True)
    clock.now += 301
    assert alerts.send_alert("warning", "Slow", "later")
    assert alerts.throttled == 1
    with pytest.raises(ValueError, match="level"):
        alerts.send_alert("fatal", "x", "y")
    assert not AlertSystem({"enabled": False}).send_alert("info", "x", "y")


# ---- channels ----------------------------------------------------------------------------

def test_email_slack_and_webhook_receive_the_alert(smtp_server, hooks) -> None:
    port, inbox = smtp_server
    config = {"email": {"smtp_host": "127.0.0.1", "smtp_port": port, "security": "none",
                        "from_addr": "bot@example.org", "to_addrs": ["ops@example.org"]},
              "slack": {"webhook_url": hooks.url + "/slack"},
              "webhook": {"url": hooks.url + "/hook", "headers": {"X-Token": "t"}},
              "delivery": FAST}
    with AlertSystem(config, run_name="ppo_demo") as alerts:
        assert alerts.send_alert("critical", "NaN loss", "loss is NaN", {"episode": 12})
        assert alerts.flush(10)
    (rcpts, email), = inbox.messages
    assert rcpts == ["ops@example.org"]
    assert email["Subject"] == "[Galaxy Models] CRITICAL: NaN loss [ppo_demo]"
    assert email["X-Alert-Level"] == "critical"
    assert "loss is NaN" in email.get_payload() and '"episode": 12' in email.get_payload()
    posts = dict(hooks.posts)
    attachment = posts["/slack"]["attachments"][0]
    assert (attachment["color"], attachment["title"]) == ("#e01e5a", "NaN loss")
    assert posts["/hook"]["level"] == "critical" and posts["/hook"]["data"] == {"episode": 12}
    assert [d["ok"] for d in alerts.deliveries] == [True, True, True]


def test_failed_deliveries_are_recorded_never_raised(tmp_path: Path, hooks) -> None:
    store = RunStore(f"sqlite:///{tmp_path}/runs.db")
    run_id = store.create_run(name="a", model_type="ppo")
    hooks.status = 500
    config = {"email": {"smtp_host": "127.0.0.1", "smtp_port": free_port(),  # nobody there
                        "security": "none", "to_addrs": ["ops@example.org"]},
              "webhook": {"url": hooks.url + "/hook"}, "delivery": FAST}
    with AlertSystem(config, store=store, run_id=run_id) as alerts:
        assert alerts.send_alert("warning", "Slow learning", "no improvement")
        assert alerts.flush(20)
    failed = {d["channel"]: d for d in alerts.deliveries}
    assert not failed["email"]["ok"] and "Connection refused" in failed["email"]["error"]
    assert failed["webhook"]["error"].endswith("answered HTTP 500")
    assert failed["webhook"]["attempts"] == 2  # one retry
    events = store.events_after(0, run_id=run_id)
    alert, = [e["payload"] for e in events if e["kind"] == "alert"]
    assert (alert["level"], alert["title"], alert["run_id"]) == ("warning", "Slow learning",
                                                                 run_id)
    recorded = [e["payload"] for e in events if e["kind"] == "delivery"]
    assert sorted((d["channel"], d["ok"]) for d in recorded) == [("email", False),
                                                                 ("webhook", False)]


def test_a_hanging_webhook_does_not_block_the_caller(hooks) -> None:
    hooks.gate = threading.Event()  # the server holds every reply until the test lets go
    alerts = AlertSystem({"webhook": {"url": hooks.url + "/hang"},
                          "delivery": {"timeout_seconds": 30, "retries": 0}})
    for episode in range(100):  # a training loop sending while the channel hangs
        alerts.send_alert("info", f"episode {episode}", "x")
    assert hooks.arrived.wait(10)  # the first delivery is inside the hung server...
    assert len(hooks.posts) == 1 and not hooks.gate.is_set()  # ...and the loop went on
    hooks.gate.set()
    assert alerts.flush(30)
    assert len(hooks.posts) == 100


# ---- configuration -----------------------------------------------------------------------

def test_the_config_file_takes_secrets_only_from_the_environment(tmp_path: Path,
                                                                  monkeypatch) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text("slack:\n  webhook_url: https://hooks.slack.com/services/T/B/x\n")
    with pytest.raises(InputError, match="environment variable") as caught:
        load_settings(path)
    assert caught.value.field == "slack.webhook_url"
    path.write_text("slack:\n  webhook_url_env: TEST_SLACK_URL\nthresholds: aggressive\n")
    with pytest.raises(InputError, match="TEST_SLACK_URL is not set"):
        load_settings(path)
    monkeypatch.setenv("TEST_SLACK_URL", "https://hooks.slack.com/services/T/B/secret")
    settings = load_settings(path)
    assert settings.thresholds.no_improvement_episodes == 200
    (slack,) = settings.channels
    assert "secret" not in json.dumps(slack.describe())
    monkeypatch.setenv("ALERTS_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(InputError, match="no alert config file"):
        load_settings()


def test_the_example_config_file_is_valid(monkeypatch) -> None:
    example = Path(__file__).resolve().parent.parent / "alerts.example.yaml"
    for name in ("SMTP_PASSWORD", "SLACK_WEBHOOK_URL", "ALERT_WEBHOOK_URL"):
        monkeypatch.setenv(name, "https://example.org/x")
    settings = load_settings(example)
    assert settings.enabled and settings.throttle_seconds > 0


@pytest.mark.parametrize(("config", "field"), [
    ({"email": {"smtp_host": "h"}}, "email.to_addrs"),
    ({"email": {"smtp_host": "h", "to_addrs": ["a@b"], "security": "tls"}}, "email.security"),
    ({"email": {"to_addrs": ["a@b"]}}, "email.smtp_host"),
    ({"slack": {"enabled": True}}, "slack.webhook_url"),
    ({"delivery": {"retries": -1}}, "delivery.retries"),
    ({"throttle_seconds": "soon"}, "throttle_seconds"),
    ({"enabled": "yes"}, "enabled"),
])
def test_bad_settings_name_the_key(config: dict, field: str) -> None:
    with pytest.raises(InputError) as caught:
        settings_from(config)
    assert caught.value.field == field


def test_completion_and_new_best_messages_read_as_a_person_writes_them() -> None:
    alerts = AlertSystem({})
    alerts.send_training_complete(total_episodes=1000, best_profit=5000.0,
                                  training_time=3725.0)
    alerts.send_new_best_model(metric="val_loss", value=0.25, step=7, previous=0.5)
    complete, best = alerts.alerts
    assert complete.message == ("total episodes 1000; best profit 5000; "
                                "training time 1 h 02 min")
    assert best.message == "val_loss 0.25 at step 7 (was 0.5)"
