"""Browser fixtures: the real app served by waitress on a free loopback port, and
Debian's chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs it with apt-get")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture()
def live_server(app) -> Iterator[str]:
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        from web.live_stream import close_streams

        close_streams(app)  # a stream still open would write to the closed server
        server.close()
        thread.join(timeout=10)


@pytest.fixture()
def page(chromium_path: str) -> Iterator:
    # Request live_server BEFORE page in a test: fixtures tear down in reverse, so the
    # browser (and its keep-alive connections) is gone before the server stops.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        tab = context.new_page()
        yield tab
        context.close()
        browser.close()
