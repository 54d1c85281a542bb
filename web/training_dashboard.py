"""The dashboard served from a training script's own process (the seed's in-process API),
for people who train from a notebook or a script::

    metrics = MetricsLogger(store, run_id)
    dashboard = TrainingDashboard(metrics, port=8050, update_interval=500, theme="dark")
    dashboard.start()            # background thread; start(blocking=True) serves until stop()
    print(dashboard.url)         # the run's live page
    ...                          # train, logging through metrics
    dashboard.stop()

It is the same app as ``python Main.py`` (``Main.create_app``) on the logger's store, so
every page works, not only the run's: the run page follows the training over its stream,
the overview lists it, and its buttons pause, resume and stop it through the store like
any other run. It binds to loopback unless told otherwise, where the app's usual rules
(a credential beyond loopback, the Host check) apply as they do for ``Main.py``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from Utilities.metrics_logger import MetricsLogger

log = logging.getLogger(__name__)

THEMES = ("dark", "light", "cyberpunk")


def check_settings(port: Any, update_interval: Any, theme: Any) -> None:
    """ValueError naming the first setting a dashboard cannot use (``update_interval``
    in milliseconds, as the seed's)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"dashboard port must be a whole number from 0 to 65535, not {port!r}")
    if (isinstance(update_interval, bool) or not isinstance(update_interval, int | float)
            or not 10 <= update_interval <= 60_000):
        raise ValueError("dashboard update_interval must be a number of milliseconds from 10 "
                         f"to 60000, not {update_interval!r}")
    if theme not in THEMES:
        raise ValueError(f"dashboard theme must be one of {', '.join(THEMES)}, not {theme!r}")


class TrainingDashboard:
    """Serve the dashboard for ``metrics_logger``'s run from this process.

    ``update_interval`` (milliseconds, as in the seed) is how often the server looks in
    the store for what the logger wrote; pages get it pushed at once (the logger itself
    writes every 200 ms)."""

    def __init__(self, metrics_logger: MetricsLogger, port: int = 8050,
                 update_interval: float = 500, theme: str = "dark", *,
                 host: str = "127.0.0.1", threads: int = 8) -> None:
        if metrics_logger.store is None:
            raise ValueError("the metrics logger has no run store to show (MetricsLogger "
                             "was created without one)")
        check_settings(port, update_interval, theme)
        self.metrics, self.host, self.threads = metrics_logger, host, threads
        self.port, self.update_interval, self.theme = port, float(update_interval), theme
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The run's live page (the port is the real one once started with port 0)."""
        return f"http://{self.host}:{self.port}/runs/{self.metrics.run_id}"

    def start(self, blocking: bool = False) -> str:
        """Start serving; with ``blocking`` serve in this thread until :meth:`stop` (from
        another thread) or Ctrl+C. Returns :attr:`url`."""
        if self.is_running():
            return self.url
        from waitress.server import create_server

        from Main import create_app

        # The store's own URL (its .url hides a password, for messages).
        url = self.metrics.store.engine.url.render_as_string(hide_password=False)
        app = create_app({"DATABASE_URL": url, "THEME": self.theme,
                          "LIVE_POLL_SECONDS": self.update_interval / 1000})
        self._app = app
        viewers = app.extensions["live_hub"].total
        self._server = create_server(app, host=self.host, port=self.port,
                                     threads=self.threads + viewers,
                                     connection_limit=2 * (self.threads + viewers))
        self.port = self._server.effective_port
        log.info("training dashboard on %s", self.url)
        if blocking:
            try:
                self._server.run()
            except KeyboardInterrupt:
                pass
            finally:
                self._close()
            return self.url
        self._thread = threading.Thread(target=self._server.run, name="training-dashboard",
                                        daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving (open pages lose their stream and show it reconnecting)."""
        self._close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def is_running(self) -> bool:
        return self._server is not None

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._app.extensions["live_hub"].close()
        self._app.extensions["live_overview"].close()
        server.close()
