"""Galaxy Models web app: ``create_app()`` (Flask app factory) and ``python Main.py``.

Nothing happens at import; ``main()`` configures logging and serves with waitress.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from flask import Flask

from NetworkConfigs import DEFAULT_MODEL_TYPE
from NetworkConfigs.artifacts import clean_staging, default_models_dir, list_models
from Utilities.dashboard_settings import THEMES, check_interval, check_port, check_theme
from Utilities.logging_setup import configure_logging
from Utilities.metrics_logger import MetricsLogger
from Utilities.run_store import default_database_url
from web import auth, auth_cli
from web.errors import install_error_handlers, is_json_path
from web.json_io import StrictJSONProvider

log = logging.getLogger(__name__)

# Uploaded CSVs beyond this are refused with 413 (the bundled sample is ~250 KB).
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
SAMPLE_CSV = Path(__file__).resolve().parent / "sample.csv"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; ``config`` overrides defaults (tests pass DATABASE_URL, MODELS_DIR)."""
    app = Flask(__name__, template_folder="templates", static_folder="static")
    app.json = StrictJSONProvider(app)
    app.config.from_mapping(
        DATABASE_URL=default_database_url(),
        MODELS_DIR=str(default_models_dir()),
        # CSVs the pages offer beside sample.csv; uploads are kept in its uploads/.
        DATA_DIR=os.environ.get("DATA_DIR") or str(Path(__file__).resolve().parent / "data"),
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
        THEME="dark",  # the theme a browser starts with (it remembers its own choice)
        # Signs the session cookie; unset, web.auth picks one (see _install_auth).
        SECRET_KEY=os.environ.get("SECRET_KEY"),
        **auth.env_config(),  # AUTH, ALLOWED_HOSTS, BIND_HOST, the cookie's flags
    )
    from web import metrics_server_config

    # The metrics server's YAML file and environment (web/metrics_server_config.py).
    app.config.update(metrics_server_config.app_settings())
    if config:
        app.config.update(config)
    _install_auth(app)  # first: the Host check and sign-in run before any other hook

    from web import (
        alerts,
        backtests,
        csrf,
        formatting,
        history,
        hosting,
        library,
        live_overview,
        live_stream,
        login,
        navigation,
        pages,
        run_api,
        sessions_api,
        settings,
        store,
        train,
    )

    store.init_app(app)
    formatting.init_app(app)
    navigation.init_app(app)
    csrf.init_app(app)
    live_stream.init_app(app)
    live_overview.init_app(app)
    sessions_api.init_app(app)  # outside trainers' sessions (issue 17)
    for area in (pages, train, history, run_api, library, backtests, hosting, alerts, settings,
                 login):
        app.register_blueprint(area.bp)
    install_error_handlers(app)  # JSON on is_json_path's paths, a styled page elsewhere
    return app


def _install_auth(app: Flask) -> None:
    """Host allow-list and authentication (web/auth.py); credentials live in the run
    store's database, so every dashboard process on one DATABASE_URL shares them."""
    from web.auth_store import AuthStore
    from web.store import get_store

    auth.init_app(app, lambda: AuthStore(get_store().engine), is_json_path=is_json_path,
                  sessions=True)


def ensure_demo_model(models_dir: Path) -> None:
    """A first start with an empty library trains a small PPO demo on sample.csv, so
    every page has something to show (smoke budget: well under a minute)."""
    if any(not m["error"] for m in list_models(models_dir)):
        return
    from Utilities import run_training

    print("Models/ is empty: training a small demo PPO model on sample.csv ...", flush=True)
    code = run_training.main(["--csv_path", str(SAMPLE_CSV), "--model", DEFAULT_MODEL_TYPE,
                              "--mode", "smoke", "--model_name", "demo",
                              "--models-dir", str(models_dir)])
    if code != 0:
        log.error("demo model training failed (exit %d); serving without it", code)


def prepare_to_serve(app: Flask, *, demo: bool = True) -> None:
    """What a start does before the first request: tidy what a crash left, train the
    demo model into an empty library (``demo``), then host a model so ``POST /predict``
    answers without a visit to the API page (web/hosting.py: the remembered choice, else
    the newest model that loads)."""
    models_dir = Path(app.config["MODELS_DIR"])
    clean_staging(models_dir)  # what model writes killed mid-way left
    from web.training_jobs import sweep_lost_runs  # runs whose trainer died while we were down

    sweep_lost_runs(app)
    if demo:
        ensure_demo_model(models_dir)
    app.extensions["hosting"].host_at_start(models_dir)


def main(argv: list[str] | None = None) -> int:
    from web import metrics_server_config

    parser = argparse.ArgumentParser(description="Serve the Galaxy Models dashboard.")
    try:  # TRAINING_METRICS_HOST/_PORT/_DEBUG, or the metrics server's YAML file
        host, port, debug = metrics_server_config.serving()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser.add_argument("--host", default=host)
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--threads", type=int, default=8,
                        help="request threads, besides one per live-stream viewer allowed")
    parser.add_argument("--theme", choices=THEMES, default="dark",
                        help="the theme a browser starts with (it remembers its own choice)")
    parser.add_argument("--no-demo", action="store_true",
                        help="do not train the demo model when Models/ is empty")
    auth.add_arguments(parser)
    auth_cli.add_commands(parser)
    args = parser.parse_args(argv)
    if args.command:  # python Main.py tokens … / users …
        return auth_cli.run(args)
    if debug:  # TRAINING_METRICS_DEBUG
        configure_logging(logging.DEBUG)
    else:
        configure_logging()

    import waitress

    app = _serving_app(args)
    if app is None:
        return 2
    prepare_to_serve(app, demo=not args.no_demo)
    from web.alerts import start_sweeper  # from now on a killed run is marked lost and alerted

    sweeper = start_sweeper(app)
    from web.sessions_api import start_cleaner  # expired sessions deleted on a schedule

    cleaner = start_cleaner(app)
    print(f"Galaxy Models dashboard on http://{args.host}:{args.port}  (Ctrl+C stops)",
          flush=True)
    # Each live-stream viewer holds a thread for as long as it watches: add one per
    # allowed viewer, so a full house of streams leaves --threads for everything else.
    viewers = app.extensions["live_hub"].total
    try:
        waitress.serve(app, host=args.host, port=args.port, threads=args.threads + viewers,
                       connection_limit=max(100, 2 * (args.threads + viewers)))
    finally:  # the server is done: so are its schedules (a test's main() leaves none behind)
        sweeper.stop()
        cleaner.stop()
    return 0


def _serving_app(args: argparse.Namespace) -> Flask | None:
    """The app to serve as ``args`` ask, or None after a one-line error when it must not
    start (beyond loopback with no credential, a bad AUTH or ALLOWED_HOSTS)."""
    try:
        app = create_app({**auth.config_from_args(args), "THEME": args.theme})
    except (ValueError, OSError) as exc:  # AuthConfigError, an unusable secret key file
        print(f"error: {exc}", file=sys.stderr)
        return None
    problem = auth.startup_problem(app)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return None
    return app


# ---- the in-process dashboard (the seed's TrainingDashboard) ---------------------------
# For people who train from a notebook or a script::
#
#     metrics = MetricsLogger(store, run_id)
#     dashboard = TrainingDashboard(metrics, port=8050, update_interval=500, theme="dark")
#     dashboard.start()            # background thread; start(blocking=True) serves until stop()
#     print(dashboard.url)         # the run's live page
#     dashboard.stop()
#
# The same app as ``python Main.py`` (create_app) on the logger's store, so every page
# works: the run page follows the training over its stream, the overview lists it, its
# buttons pause, resume and stop it through the store. Loopback unless told otherwise;
# the app's usual rules (a credential beyond loopback, the Host check) apply. It lives
# here, beside the app factory it serves, because web/ may not import this entry file.



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
        check_port(port), check_interval(update_interval), check_theme(theme)  # the YAML's rule
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
        from web.live_stream import close_streams

        close_streams(self._app)
        server.close()


if __name__ == "__main__":
    sys.exit(main())
