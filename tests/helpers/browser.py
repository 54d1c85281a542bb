"""For tests/browser: screenshots saved as test artifacts, and what a page's charts and
requests are checked for."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.paths import ROOT

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags chromium keeps dialing out of a closed network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"


def screenshot(tab, name: str) -> Path:
    """Save a full-page screenshot as a test artifact (look at it)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path


# Non-transparent pixels of a canvas (Chart.js draws on its 2D context).
INKED_PIXELS = """(id) => {
  const canvas = document.getElementById(id);
  if (!canvas || !canvas.width || !canvas.height) return 0;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) inked += 1;
  return inked;
}"""
POINTS = """(id) => {
  const chart = Chart.getChart(document.getElementById(id));
  return chart ? chart.data.datasets.map((d) => d.data.length) : null;
}"""


def watch(page, base_url: str) -> dict[str, list[str]]:
    """Collect script errors and any request that leaves the test server."""
    seen: dict[str, list[str]] = {"errors": [], "outside": [], "failed": []}
    page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
    page.on("request", lambda r: r.url.startswith(base_url) or seen["outside"].append(r.url))
    page.on("requestfailed", lambda r: seen["failed"].append(r.url))

    def check(response) -> None:  # the browser asks for /favicon.ico on its own
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            seen["failed"].append(f"{response.status} {response.url}")

    page.on("response", check)
    return seen


def assert_chart_drawn(page, canvas_id: str) -> None:
    page.wait_for_function(f"({INKED_PIXELS})('{canvas_id}') > 2000", timeout=5000)
    assert all(n > 0 for n in page.evaluate(POINTS, canvas_id))
