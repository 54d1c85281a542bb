"""The training_dashboard section (Utilities/dashboard_settings.py) and the dashboard that
``auto_start`` serves beside a command-line training (run_training.served_dashboard)."""

from __future__ import annotations

import http.client
import socket
import time

import pytest

from Utilities.dashboard_settings import DashboardSettings, dashboard_settings
from Utilities.input_errors import InputError, InputErrors
from Utilities.run_store import RunStore
from Utilities.run_training import parse_args, served_dashboard
from Utilities.training_request import TrainingRequest


def test_the_section_is_checked_and_defaults_fill_it():
    assert dashboard_settings(None) == DashboardSettings()
    assert dashboard_settings({"port": 9000, "theme": "cyberpunk", "auto_start": True,
                               "update_interval_ms": 2000}) == DashboardSettings(
        9000, 2000.0, "cyberpunk", True)
    with pytest.raises(InputErrors) as caught:
        dashboard_settings({"port": "80", "update_interval_ms": 5, "colour": 1,
                            "auto_start": "yes"})
    assert set(caught.value.errors) == {"training_dashboard.port",
                                        "training_dashboard.update_interval_ms",
                                        "training_dashboard.colour",
                                        "training_dashboard.auto_start"}
    with pytest.raises(InputError, match="must be a mapping"):
        dashboard_settings([1])


def test_the_section_is_taken_out_of_the_models_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train_params: {seed: 4}\ntraining_dashboard: {port: 9001, theme: light}\n")
    request = TrainingRequest.from_args(parse_args(["--csv_path", "sample.csv",
                                                    "--config", str(config)]))
    assert request.dashboard == DashboardSettings(port=9001, theme="light")
    assert dict(request.overrides) == {"train_params": {"seed": 4}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_of(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


@pytest.mark.slow
def test_auto_start_serves_the_runs_page_while_training_and_stops_after(database_url, capsys):
    store = RunStore(database_url)
    run_id = store.create_run(name="cli", model_type="ppo")
    port = free_port()
    settings = DashboardSettings(port=port, theme="light", auto_start=True)
    with served_dashboard(settings, store, run_id):
        assert f"live dashboard: http://127.0.0.1:{port}/runs/{run_id}" in capsys.readouterr().err
        deadline = time.monotonic() + 120
        while status_of(port, f"/runs/{run_id}") != 200:  # the child process starting up
            assert time.monotonic() < deadline, "the dashboard did not answer in 120 s"
            time.sleep(0.1)  # between probes of the condition itself
    assert status_of(port, f"/runs/{run_id}") is None  # stopped with the training
    with served_dashboard(DashboardSettings(port=port), store, run_id):  # auto_start off
        assert status_of(port, "/") is None
