"""The run page as a live monitor (issue 14), in Debian's chromium: one snapshot, then
the run's event stream. A writer logs synthetic PPO data through MetricsLogger (the
trainer's contract) while the page is open; the page's cards, plots, trades and decision
change with no polling request; pause / resume / stop follow the state machine; the page
carries on with no gap after the server restarts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.browser import POINTS, assert_chart_drawn, screenshot, watch
from tests.helpers.live_writer import SyntheticRun
from Utilities.metrics_logger import MetricsLogger
from web.live_stream import hub
from web.store import get_store

pytestmark = pytest.mark.browser

SHOTS = Path("/work/helpers/shots/livepage")
PPO_CONFIG = {"train_params": {"total_timesteps": 1_000_000}}


def keep(page, name: str) -> None:
    """A full-page screenshot as a test artifact, and where the reviewer looks."""
    shot = screenshot(page, f"live_monitor_{name}")
    if SHOTS.parent.is_dir():
        SHOTS.mkdir(exist_ok=True)
        (SHOTS / f"{name}.png").write_bytes(shot.read_bytes())


def new_run(app) -> str:
    """A running PPO run (a new run starts as running)."""
    with app.app_context():
        return get_store().create_run(name="ppo-live", model_type="ppo", algorithm="PPO",
                                      config=PPO_CONFIG)


@pytest.fixture()
def writer(app) -> Iterator:
    """A factory: a SyntheticRun logging to a run through a real MetricsLogger."""
    loggers = []

    def make(run_id: str) -> SyntheticRun:
        with app.app_context():
            metrics = MetricsLogger(get_store(), run_id, flush_interval=3600)
        loggers.append(metrics)
        return SyntheticRun(metrics)

    yield make
    for metrics in loggers:
        metrics.close()


def requests_log(page) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    return seen


def data_requests(urls: list[str]) -> list[str]:
    """What a page asked the server for beyond its own static files."""
    return [u for u in urls if "/static/" not in u and not u.endswith("/favicon.ico")]


def kpi(page, key: str):
    return page.locator(f'.kpi[data-kpi="{key}"] .kpi-value')


def test_the_page_follows_a_live_run_by_push_alone(live_server: str, page, app,
                                                  writer) -> None:
    from playwright.sync_api import expect

    run_id = new_run(app)
    fake = writer(run_id)
    fake.write(episodes=30, updates=5, trades=3)  # before the page opens: the snapshot
    seen = watch(page, live_server)
    urls = requests_log(page)
    page.goto(f"{live_server}/runs/{run_id}")
    root = page.locator("#run-page")
    expect(root).to_have_attribute("data-stream", "live")
    expect(kpi(page, "episode")).to_have_text("30")
    for canvas in ("chart-reward", "chart-loss", "chart-entropy", "chart-lr", "chart-winrate",
                   "chart-sharpe", "chart-drawdown", "chart-value", "chart-equity"):
        assert_chart_drawn(page, canvas)
    assert page.evaluate(POINTS, "chart-reward") == [30, 30]
    assert page.evaluate(POINTS, "chart-value") == [5, 5, 5]  # mean, mean + std, mean - std
    expect(page.locator("#agent-grid .agent")).to_have_count(4)
    expect(page.locator("#trade-rows tr")).to_have_count(12)
    assert page.locator("#decision-body").is_visible()
    assert page.locator("#decision-where").inner_text().endswith("bar 1")
    assert page.locator("#decision-bars .prob-row").count() == 3
    first_trade = page.locator("#trade-rows tr").first.get_attribute("data-seq")

    # The trainer goes on: everything arrives over the stream.
    for _ in range(3):
        fake.write(episodes=10, updates=2, trades=5)
    expect(kpi(page, "episode")).to_have_text("60")
    expect(page.locator("#trade-rows tr")).to_have_count(12 + 3 * 20)
    page.wait_for_function("""() => Chart.getChart(document.getElementById('chart-reward'))
        .data.datasets[0].data.length === 60""")
    steps = page.evaluate("""() => Chart.getChart(document.getElementById('chart-reward'))
        .data.datasets[0].data.map(p => p.x)""")
    assert steps == list(range(1, 61))  # no gap, no repeat across snapshot and stream
    assert page.evaluate(POINTS, "chart-loss") == [11, 11]
    expect(kpi(page, "env_steps")).to_have_text(f"{11 * 2048:,}")
    expect(page.locator("#decision-where")).to_contain_text("bar 4")  # the latest decision
    expect(page.locator('#agent-grid .agent[data-agent="3"] .agent-head')).to_contain_text(
        "bar 4")
    newest = page.locator("#trade-rows tr").first
    assert int(newest.get_attribute("data-seq")) > int(first_trade)  # newest first
    assert page.locator('#agent-grid .agent[data-agent="0"] [data-field="trades"]').inner_text(
        ).startswith("18 ")  # 3 + 3 * 5 trades
    for key in ("reward", "mean50", "sharpe", "policy_loss", "steps_per_second"):
        state = page.locator(f'.kpi[data-kpi="{key}"]').get_attribute("data-state")
        assert state in ("ok", "warn", "bad"), key
    page.select_option("#trade-agent", "2")
    expect(page.locator("#trade-rows tr")).to_have_count(18)
    assert set(page.locator("#trade-rows tr").evaluate_all(
        "rows => rows.map(r => r.dataset.agent)")) == {"2"}
    page.select_option("#trade-agent", "")

    # One snapshot and one stream: no request was repeated while the data flowed.
    asked = data_requests(urls)
    assert [u for u in asked if "/live.json" in u] and len(
        [u for u in asked if "/live.json" in u]) == 1, asked
    streams = [u for u in asked if "/events" in u]
    assert len(streams) == 1 and "last_event_id=" in streams[0], asked
    assert len(asked) == 3, asked  # the page, its snapshot, its stream

    page.locator("#kpi-rules summary").click()
    keep(page, "dark")
    page.click("#theme-toggle")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert_chart_drawn(page, "chart-reward")
    keep(page, "light")
    page.click("#theme-toggle")
    assert page.evaluate("document.documentElement.dataset.theme") == "cyberpunk"
    assert_chart_drawn(page, "chart-reward")
    keep(page, "cyberpunk")
    page.click("#theme-toggle")  # back to dark for the tests after this one

    with app.app_context():
        get_store().set_status(run_id, "completed")
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(root).to_have_attribute("data-stream", "ended")
    expect(root).to_have_attribute("data-finished", "true")
    assert page.locator("#live-note").is_hidden()
    assert seen == {"errors": [], "outside": [], "failed": []}


def test_controls_follow_the_state_machine(live_server: str, page, app, writer) -> None:
    from playwright.sync_api import expect

    run_id = new_run(app)
    writer(run_id).write(episodes=5)
    seen = watch(page, live_server)
    page.goto(f"{live_server}/runs/{run_id}")
    root = page.locator("#run-page")
    expect(root).to_have_attribute("data-stream", "live")
    pause, resume, stop = (page.locator(f'#run-controls [data-action="{a}"]')
                           for a in ("pause", "resume", "stop"))
    again = page.locator("#train-again")
    expect(pause).to_be_enabled()
    expect(resume).to_be_disabled()
    expect(stop).to_be_enabled()
    expect(again).to_have_attribute("aria-disabled", "true")

    pause.click()
    expect(page.locator("#control-note")).to_contain_text("pause requested")
    expect(pause).to_be_disabled()  # asked once; the trainer has not obeyed yet
    with app.app_context():
        store = get_store()
        assert store.get_control(run_id) == "pause"
        store.set_status(run_id, "paused")  # the trainer obeys between iterations
    expect(page.locator("#run-status")).to_have_text("paused")
    expect(page.locator('#state-machine li.current')).to_have_text("paused")
    expect(resume).to_be_enabled()
    expect(pause).to_be_disabled()

    resume.click()
    expect(page.locator("#control-note")).to_contain_text("resume requested")
    with app.app_context():
        assert get_store().get_control(run_id) == "resume"
        get_store().set_status(run_id, "running")
    expect(page.locator("#run-status")).to_have_text("running")
    expect(pause).to_be_enabled()

    page.once("dialog", lambda dialog: dialog.accept())
    stop.click()
    expect(page.locator('#state-machine li.current')).to_have_text("stopping")
    expect(stop).to_be_disabled()
    keep(page, "stopping")
    with app.app_context():
        assert get_store().get_control(run_id) == "stop"
        get_store().set_status(run_id, "stopped")
    expect(page.locator("#run-status")).to_have_text("stopped")
    expect(page.locator('#state-machine li.current')).to_have_text("stopped")
    for button in (pause, resume, stop):
        expect(button).to_be_disabled()
    expect(again).to_have_attribute("aria-disabled", "false")
    expect(root).to_have_attribute("data-stream", "ended")
    assert seen == {"errors": [], "outside": [], "failed": []}


@pytest.fixture()
def restartable(app) -> Iterator[dict]:
    """A waitress server that a test can stop and start again on the same port."""
    from waitress.server import create_server

    state: dict = {}

    def start(port: int = 0) -> None:
        server = create_server(app, host="127.0.0.1", port=port, threads=4)

        def serve() -> None:
            try:
                server.run()
            except OSError:  # its sockets closed under its select(): the kill in stop()
                if state.get("server") is server:
                    raise

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        state.update(server=server, thread=thread, port=server.effective_port)

    def stop() -> None:
        """Down as a killed server goes: every connection dropped, nothing listening."""
        from waitress import wasyncore

        server = state.pop("server", None)
        if server is None:
            return
        wasyncore.close_all(server._map)  # the listener and every open connection
        with app.app_context():
            hub().close()  # the streams' threads end (their sockets are gone)
        server.task_dispatcher.shutdown()
        state["thread"].join(timeout=10)

    start()
    state.update(start=start, stop=stop, url=f"http://127.0.0.1:{state['port']}")
    yield state
    stop()


def test_the_page_reconnects_after_a_server_restart_with_no_gap(restartable: dict, page,
                                                                app, writer) -> None:
    from playwright.sync_api import expect

    run_id = new_run(app)
    fake = writer(run_id)
    fake.write(episodes=20, trades=1)
    urls = requests_log(page)
    page.goto(f"{restartable['url']}/runs/{run_id}")
    root = page.locator("#run-page")
    expect(root).to_have_attribute("data-stream", "live")
    fake.write(episodes=10, trades=1)
    expect(kpi(page, "episode")).to_have_text("30")

    restartable["stop"]()
    expect(root).to_have_attribute("data-stream", "reconnecting")
    fake.write(episodes=15, trades=2)  # written while the dashboard is down
    restartable["start"](restartable["port"])
    expect(kpi(page, "episode")).to_have_text("45", timeout=20_000)
    expect(root).to_have_attribute("data-stream", "live")
    fake.write(episodes=5, trades=1)
    expect(kpi(page, "episode")).to_have_text("50")
    steps = page.evaluate("""() => Chart.getChart(document.getElementById('chart-reward'))
        .data.datasets[0].data.map(p => p.x)""")
    assert steps == list(range(1, 51))  # no gap, no repeat
    expect(page.locator("#trade-rows tr")).to_have_count(4 * (1 + 1 + 2 + 1))
    asked = data_requests(urls)
    assert len([u for u in asked if "/live.json" in u]) == 1, asked  # no new snapshot
    keep(page, "after_restart")


def test_a_finished_run_needs_no_stream(live_server: str, page, app, writer) -> None:
    from playwright.sync_api import expect

    run_id = new_run(app)
    writer(run_id).write(episodes=12, updates=3)
    with app.app_context():
        get_store().set_status(run_id, "completed")
    seen = watch(page, live_server)
    urls = requests_log(page)
    page.goto(f"{live_server}/runs/{run_id}")
    root = page.locator("#run-page")
    expect(root).to_have_attribute("data-finished", "true")
    assert root.get_attribute("data-stream") == "ended"
    expect(kpi(page, "episode")).to_have_text("12")
    assert kpi(page, "elapsed").inner_text() != "—"  # the run's duration
    assert_chart_drawn(page, "chart-reward")
    asked = data_requests(urls)
    assert len(asked) == 2 and "/live.json" in asked[1], asked  # the page and its snapshot
    assert not any("/events" in u for u in asked)
    expect(page.locator('#state-machine li.current')).to_have_text("completed")
    assert seen == {"errors": [], "outside": [], "failed": []}
