"""Two dashboard processes on one PostgreSQL act as one metrics server (issue 17): a
batch posted to server A is seen live by a stream viewer of server B, and a retry of
it sent to B is recognised as the batch A stored."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.apps import drop_all
from tests.helpers.paths import ROOT

API = "/api/training/sessions"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read() or b"{}")
    finally:
        conn.close()


def wait_until_up(port: int, server: subprocess.Popen, deadline: float = 120.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if server.poll() is not None:
            raise AssertionError(f"server on {port} exited: {server.stdout.read()[-2000:]}")
        try:
            if call(port, "GET", "/api/training/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server on {port} did not answer in {deadline} s")


@pytest.fixture()
def two_servers(postgres_server: str | None, tmp_path: Path) -> Iterator[tuple[int, int]]:
    if postgres_server is None:
        pytest.skip("no PostgreSQL on this machine (set DATABASE_URL or install postgresql)")
    env = {**os.environ, "DATABASE_URL": postgres_server, "MODELS_DIR": str(tmp_path / "M"),
           "DATA_DIR": str(tmp_path / "data"), "LIVE_POLL_SECONDS": "0.05"}
    (tmp_path / "M").mkdir()
    ports = [free_port(), free_port()]
    servers = [subprocess.Popen([sys.executable, str(ROOT / "Main.py"), "--port", str(port),
                                 "--no-demo"], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for port in ports]
    try:
        for port, server in zip(ports, servers, strict=True):
            wait_until_up(port, server)
        yield ports[0], ports[1]
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            server.stdout.close()
        from Utilities.run_store import RunStore

        drop_all(RunStore(postgres_server))


def sse_events(conn: http.client.HTTPConnection) -> Iterator[dict]:
    """The stream's messages as they come (keep-alive comments skipped)."""
    reply = conn.getresponse()
    assert reply.status == 200
    with reply:
        yield from _messages(reply)


def _messages(reply: http.client.HTTPResponse) -> Iterator[dict]:
    message: dict = {}
    while True:
        line = reply.fp.readline().decode()
        if not line:
            return
        line = line.rstrip("\n")
        if not line:
            if "event" in message:
                yield message
            message = {}
        elif line.startswith("event: "):
            message["event"] = line[7:]
        elif line.startswith("data: "):
            message["data"] = json.loads(line[6:])


def test_a_batch_posted_to_one_server_is_streamed_by_another(two_servers):
    port_a, port_b = two_servers
    status, session = call(port_a, "POST", API, {"name": "two servers", "algorithm": "PPO"})
    assert status == 201
    sid = session["session_id"]
    viewer = http.client.HTTPConnection("127.0.0.1", port_b, timeout=30)
    viewer.request("GET", f"{API}/{sid}/stream?types=training_metrics")
    messages = sse_events(viewer)
    assert next(messages)["event"] == "connection_status"
    batch = {"batch_id": "a-1", "items": [
        {"episode": e, "current_reward": float(e), "episode_length": 5} for e in range(20)]}
    assert call(port_a, "POST", f"{API}/{sid}/metrics", batch)[1]["accepted"] == 20
    posted = time.monotonic()
    steps: list[int] = []
    for message in messages:
        steps += [p["step"] for p in message["data"]["points"].get("episode/reward", [])]
        if len(steps) >= 20:
            break
    latency = time.monotonic() - posted
    messages.close()
    viewer.close()
    assert steps == list(range(20))
    assert latency < 5.0, latency  # the goal (p95 <= 0.5 s) is measured by bench/ingest.py
    # The client's retry of that batch, sent to the other server, writes nothing.
    assert call(port_b, "POST", f"{API}/{sid}/metrics", batch)[1] == {
        "accepted": 0, "duplicate": True, "status": "running", "control": None,
        "batch_id": "a-1"}
    status, body = call(port_b, "GET", f"{API}/{sid}")
    assert body["latest"]["episode/reward"]["step"] == 19
