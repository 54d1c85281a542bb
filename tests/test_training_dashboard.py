"""The in-process dashboard (web/training_dashboard.py): the seed's TrainingDashboard API
serving the real app for a logger's run, from the training's own process."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest

from Main import TrainingDashboard
from tests.helpers.sse import parse
from Utilities.metrics_logger import MetricsLogger
from Utilities.run_store import RunStore


def get(url: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", parts.path)
    response = conn.getresponse()
    try:
        return response.status, response.read()
    finally:
        conn.close()


def test_the_dashboard_serves_the_runs_page_and_stream_until_stopped(database_url):
    store = RunStore(database_url)
    run_id = store.create_run(name="notebook", model_type="ppo")
    with MetricsLogger(store, run_id) as metrics:
        dashboard = TrainingDashboard(metrics, port=0, update_interval=50, theme="light")
        assert not dashboard.is_running()
        url = dashboard.start()
        try:
            assert dashboard.is_running() and url.endswith(f"/runs/{run_id}")
            status, page = get(url)
            assert status == 200 and b'data-theme="light"' in page and b"notebook" in page
            metrics.log_episode(1, reward=2.5)
            parts = urlsplit(url)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            conn.request("GET", f"/api/training-runs/{run_id}/events?last_event_id=0-0"
                                "&types=episode")
            stream = conn.getresponse()
            while stream.fp.readline() != b"event: episode\n":
                pass
            message = parse(stream.fp.readline().rstrip(b"\n"))  # its data line
            assert message["data"]["data"]["reward"] == 2.5
            conn.close()
        finally:
            dashboard.stop()
    assert not dashboard.is_running()
    with pytest.raises(OSError):
        get(url)


@pytest.mark.parametrize(("settings", "named"), [
    ({"port": 70000}, "port"), ({"port": "80"}, "port"),
    ({"update_interval": 5}, "update_interval"), ({"update_interval": "1"}, "update_interval"),
    ({"theme": "neon"}, "theme"),
])
def test_bad_settings_are_refused_by_name(database_url, settings, named):
    store = RunStore(database_url)
    run_id = store.create_run(name="bad", model_type="ppo")
    with MetricsLogger(store, run_id) as metrics, pytest.raises(ValueError, match=named):
        TrainingDashboard(metrics, **settings)
