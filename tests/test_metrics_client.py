"""Utilities/metrics_client.py against a scripted stand-in of the metrics server: batching,
the bounded buffer, backoff on 500 and 429 (Retry-After), a server away then back, the
same batch id on a retry, a refused item, and a client that never raises. The real
server is exercised end to end in tests/test_sb3_live.py."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from Utilities.metrics_client import MetricsClient, item_index, plain, retry_after

Reply = tuple[int, dict[str, Any], dict[str, str]]


class FakeServer:
    """Records every request; ``script`` answers it (default: the contract's 201/200)."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.batch_ids: set[str] = set()
        self.script: Callable[[dict[str, Any]], Reply | None] = lambda _request: None
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake.handle(self)

            do_PUT = do_POST  # noqa: N815

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        request = {"method": handler.command, "path": handler.path, "at": time.monotonic(),
                   "auth": handler.headers.get("Authorization"),
                   "body": json.loads(handler.rfile.read(length) or b"{}")}
        with self.lock:
            self.requests.append(request)
            status, body, headers = self.script(request) or self.default(request)
        data = json.dumps(body).encode()
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def default(self, request: dict[str, Any]) -> Reply:
        if request["path"] == "/api/training/sessions":
            return 201, {"session_id": "s1", "run_id": "s1", "status": "running"}, {}
        body = request["body"]
        if request["method"] == "PUT":
            return 200, {"session_id": "s1", **body}, {}
        if body["batch_id"] in self.batch_ids:
            return 200, {"accepted": 0, "duplicate": True}, {}
        self.batch_ids.add(body["batch_id"])
        return 200, {"accepted": len(body["items"]), "duplicate": False}, {}

    def items(self, route: str = "metrics") -> list[dict[str, Any]]:
        """Items the server accepted (answered 200, not duplicate) on one route."""
        seen, out = set(), []
        for request in self.requests:
            body = request["body"]
            if request["path"].endswith("/" + route) and body["batch_id"] in self.batch_ids \
                    and body["batch_id"] not in seen and request.get("ok", True):
                seen.add(body["batch_id"])
                out += body["items"]
        return out

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_for(port: int, **options: Any) -> MetricsClient:
    settings = {"flush_interval": 0.05, "backoff_base": 0.01, "backoff_max": 0.05,
                "close_timeout": 5.0, **options}
    return MetricsClient(f"http://127.0.0.1:{port}", **settings)


def test_items_arrive_in_batches_in_order_with_the_token(server: FakeServer) -> None:
    with client_for(server.port, token="tok-1", batch_size=100, flush_interval=30) as client:
        session = client.register_training_session("run-a", algorithm="PPO",
                                                   total_episodes=10, tags=["x"])
        for episode in range(1, 251):
            session.update_training_metrics(episode, episode / 2)
        # 250 items, batch_size 100: two full batches go at once, the rest on flush()
        assert session.wait_registered(5) == "s1"
        assert client.flush(10)
        session.end("completed")
        assert client.flush(10)
    create, *posts, put = server.requests
    assert create["body"] == {"name": "run-a", "algorithm": "PPO", "total_episodes": 10,
                              "tags": ["x"]}
    assert [len(r["body"]["items"]) for r in posts] == [100, 100, 50]
    assert all(r["auth"] == "Bearer tok-1" for r in server.requests)
    items = server.items()
    assert [i["episode"] for i in items] == list(range(1, 251))
    assert items[0]["current_reward"] == 0.5 and items[0]["timestamp"].endswith("Z")
    assert put["method"] == "PUT" and put["path"] == "/api/training/sessions/s1"
    assert put["body"] == {"status": "completed"}
    assert client.stats()["sent_items"] == 250 and client.stats()["sent_batches"] == 3


def test_a_small_batch_goes_after_flush_interval(server: FakeServer) -> None:
    with client_for(server.port, batch_size=1000, flush_interval=0.1) as client:
        session = client.register_training_session("run-t")
        session.update_training_metrics(1, 0.0, loss_value=0.5)
        deadline = time.monotonic() + 5
        while not server.items() and time.monotonic() < deadline:
            time.sleep(0.02)  # polls for the time trigger (no flush() call: that wakes it)
        assert [i["loss_value"] for i in server.items()] == [0.5]


def test_record_episode_end_keeps_the_seed_collectors_figures(server: FakeServer) -> None:
    with client_for(server.port, average_window=2) as client:
        client.register_training_session("seed-shape", model_generation=2, algorithm="DQN")
        for reward, won in ((10.0, True), (20.0, False), (6.0, True)):
            client.record_episode_end("seed-shape", reward, episode_length=200, won=won)
        client.update_training_metrics("seed-shape", episode=3, current_reward=6.0,
                                       loss_value=0.05, epsilon=None)
        client.record_decision("seed-shape", "left", action_probabilities={"left": 0.25},
                               q_values=np.array([1.5, 2.0]))
        assert client.flush(10)
    first, second, third, update = server.items()
    assert (first["episode"], first["average_reward"], first["win_rate"]) == (1, 10.0, 100.0)
    assert (second["best_reward"], second["win_rate"]) == (20.0, 50.0)
    assert third["average_reward"] == 13.0 and third["best_reward"] == 20.0
    assert third["win_rate"] == pytest.approx(200 / 3) and third["episode_length"] == 200
    assert update == {"episode": 3, "current_reward": 6.0, "loss_value": 0.05,
                      "timestamp": update["timestamp"]}
    [decision] = server.items("bot_decision")
    assert decision["q_values"] == [1.5, 2.0] and decision["selected_action"] == "left"


def test_500_is_retried_with_the_same_batch_id(server: FakeServer) -> None:
    failures = iter([500, 503])

    def script(request: dict[str, Any]) -> Reply | None:
        if request["path"].endswith("/metrics"):
            status = next(failures, None)
            if status:
                request["ok"] = False
                return status, {"error": "store busy"}, {}
        return None
    server.script = script
    with client_for(server.port) as client:
        session = client.register_training_session("retry")
        session.update_training_metrics(1, 1.0)
        assert client.flush(10)
    posts = [r for r in server.requests if r["path"].endswith("/metrics")]
    assert len(posts) == 3 and len({r["body"]["batch_id"] for r in posts}) == 1
    assert [i["episode"] for i in server.items()] == [1]
    assert client.stats()["retries"] == 2


def test_the_dashboards_stop_request_reaches_the_session(server: FakeServer) -> None:
    def script(request: dict[str, Any]) -> Reply | None:
        if request["path"].endswith("/metrics"):
            return 200, {"accepted": 1, "duplicate": False, "control": "stop"}, {}
        if request["method"] == "PUT":
            return 200, {"session_id": "s1", "status": "stopped", "control": None}, {}
        return None
    server.script = script
    with client_for(server.port) as client:
        session = client.register_training_session("stop-me")
        assert session.control is None
        session.update_training_metrics(1, 1.0)
        assert client.flush(10)
        assert session.control == "stop"
        session.end("stopped")
        assert client.flush(10)
        assert session.control is None


def test_a_lost_reply_is_sent_again_and_not_written_twice(server: FakeServer) -> None:
    """The server wrote the batch but the client saw a 502 (the reply lost on the way):
    the retry carries the same batch id and the server answers duplicate."""
    lost = iter([True])

    def script(request: dict[str, Any]) -> Reply | None:
        if request["path"].endswith("/metrics") and next(lost, False):
            server.batch_ids.add(request["body"]["batch_id"])  # written...
            return 502, {"error": "bad gateway"}, {}          # ...reply lost
        return None
    server.script = script
    with client_for(server.port) as client:
        client.register_training_session("dup").update_training_metrics(1, 1.0)
        assert client.flush(10)
    assert client.stats()["duplicates"] == 1 and client.stats()["sent_items"] == 1


def test_429_waits_for_retry_after(server: FakeServer) -> None:
    limited = iter([True])

    def script(request: dict[str, Any]) -> Reply | None:
        if request["path"].endswith("/metrics") and next(limited, False):
            return 429, {"error": "rate limited"}, {"Retry-After": "1"}
        return None
    server.script = script
    with client_for(server.port) as client:  # its own backoff is 10-50 ms
        client.register_training_session("rate").update_training_metrics(1, 1.0)
        assert client.flush(10)
    first, second = [r["at"] for r in server.requests if r["path"].endswith("/metrics")]
    assert second - first >= 0.95
    assert [i["episode"] for i in server.items()] == [1]


def test_backoff_grows_and_is_capped() -> None:
    client = MetricsClient("http://127.0.0.1:9", backoff_base=0.5, backoff_max=4.0)
    try:
        waits = [client._backoff(attempt, None) for attempt in range(8)]
        assert 0.25 <= waits[0] <= 0.5 and 2.0 <= waits[7] <= 4.0
        assert all(w <= 4.0 for w in waits)
        assert client._backoff(0, 7.0) == 7.0  # Retry-After wins over a shorter backoff
    finally:
        client.close(0)
    assert retry_after("3") == 3.0 and retry_after(None) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert retry_after("soon") is None


def test_server_away_then_back_loses_nothing_within_the_buffer() -> None:
    port = free_port()  # nothing listens yet: connection refused
    client = client_for(port, max_buffer=1000)
    try:
        session = client.register_training_session("away")
        for episode in range(1, 301):
            session.update_training_metrics(episode, 0.0)
        assert not client.flush(0.3)
        assert client.stats()["server_up"] is False and client.stats()["retries"] >= 1
        fake = FakeServer(port)
        try:
            assert client.flush(10)
            assert [i["episode"] for i in fake.items()] == list(range(1, 301))
        finally:
            fake.close()
    finally:
        client.close(1)
    assert client.stats()["dropped"] == 0


def test_a_full_buffer_drops_the_oldest_and_counts_them(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    port = free_port()
    client = client_for(port, max_buffer=10)
    try:
        session = client.register_training_session("full")
        for episode in range(1, 26):
            session.update_training_metrics(episode, 0.0)
        assert client.stats()["dropped"] == 15 and client.stats()["buffered"] <= 11
        assert "metrics buffer full (10 items): dropping the oldest" in caplog.text
        fake = FakeServer(port)
        try:
            assert client.flush(10)
            assert [i["episode"] for i in fake.items()] == list(range(16, 26))
            assert fake.requests[0]["path"] == "/api/training/sessions"  # create kept
        finally:
            fake.close()
    finally:
        client.close(1)


def test_a_refused_item_is_dropped_and_the_rest_sent(server: FakeServer) -> None:
    def script(request: dict[str, Any]) -> Reply | None:
        body = request["body"]
        if request["path"].endswith("/metrics"):
            bad = [n for n, item in enumerate(body["items"]) if item["episode"] < 0]
            if bad:
                return 422, {"error": "episode must be >= 0",
                             "field": f"items[{bad[0]}].episode"}, {}
        return None
    server.script = script
    with client_for(server.port) as client:
        session = client.register_training_session("bad")
        for episode in (1, -1, 2, -5, 3):
            session.update_training_metrics(episode, 0.0)
        assert client.flush(10)
    assert [i["episode"] for i in server.items()] == [1, 2, 3]
    assert client.stats()["rejected"] == 2 and client.stats()["sent_items"] == 3


def test_a_batch_of_bad_items_costs_a_few_requests_not_one_per_item(
        server: FakeServer) -> None:
    server.script = lambda request: ((422, {"error": "bad", "field": "items[0].episode"}, {})
                                     if request["path"].endswith("/metrics") else None)
    with client_for(server.port) as client:
        session = client.register_training_session("all-bad")
        for episode in range(50):
            session.update_training_metrics(episode, 0.0)
        assert client.flush(10)
    posts = [r for r in server.requests if r["path"].endswith("/metrics")]
    assert [len(r["body"]["items"]) for r in posts] == [50, 49, 48, 47]
    assert client.stats()["rejected"] == 50


def test_a_refused_session_drops_its_items_once(server: FakeServer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    server.script = lambda request: ((401, {"error": "a token is required"}, {})
                                     if request["path"] == "/api/training/sessions" else None)
    with client_for(server.port) as client:
        session = client.register_training_session("no-token")
        session.update_training_metrics(1, 0.0)
        assert session.wait_registered(5) is None
        assert "HTTP 401: a token is required" in (session.failed or "")
        assert client.flush(10)
    assert client.stats()["rejected"] == 2  # the create and the item
    assert caplog.text.count("a token is required") == 1
    assert len(server.requests) == 1


def test_the_training_loop_never_sees_an_exception(caplog: pytest.LogCaptureFixture) -> None:
    client = client_for(free_port(), close_timeout=0.2, max_buffer=5)
    session = client.register_training_session("odd")
    started = time.perf_counter()
    session.update_training_metrics(1, float("nan"), weird=object(),
                                     loss_value=np.float32(0.5), memory_usage_mb=math.inf)
    session.record_episode_end("not a number")
    session.record_decision(np.int64(1), q_values=np.arange(3))
    session.update_graph("g", {"a": 1.0}, step=3)
    client.record_episode_end("never-registered", 1.0)
    for episode in range(10_000):
        session.update_training_metrics(episode, 1.0)
    per_call = (time.perf_counter() - started) / 10_000
    client.close()
    client.close()
    session.update_training_metrics(2, 1.0)  # after close: ignored
    assert per_call < 1e-3  # never waits on the (absent) server
    assert client.stats()["unsent_at_close"] >= 1
    assert "not a number" in caplog.text and "'never-registered'" in caplog.text


def test_plain_makes_anything_json_safe() -> None:
    value = {"a": np.float64(1.5), "b": [float("nan"), np.int64(2)], 3: (1, object)}
    out = plain(value)
    json.dumps(out, allow_nan=False)
    assert out["a"] == 1.5 and out["b"] == [None, 2] and out["3"][0] == 1


def test_item_index_reads_the_field_path() -> None:
    assert item_index("items[12].episode") == 12
    assert item_index("items[x]") is None and item_index("name") is None
    assert item_index(None) is None


def test_a_bad_base_url_is_said_at_once() -> None:
    with pytest.raises(ValueError, match="base_url must be http"):
        MetricsClient("localhost:5000")
