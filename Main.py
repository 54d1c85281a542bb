"""Galaxy Models web app: ``create_app()`` (Flask app factory) and ``python Main.py``.

Nothing happens at import; ``main()`` configures logging and serves with waitress.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from NetworkConfigs import DEFAULT_MODEL_TYPE
from NetworkConfigs.artifacts import clean_staging, default_models_dir, list_models
from Utilities.logging_setup import configure_logging
from Utilities.run_store import default_database_url
from web import auth, auth_cli
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
        # Signs the session cookie; unset, web.auth picks one (see _install_auth).
        SECRET_KEY=os.environ.get("SECRET_KEY"),
        **auth.env_config(),  # AUTH, ALLOWED_HOSTS, BIND_HOST, the cookie's flags
    )
    if config:
        app.config.update(config)
    _install_auth(app)  # first: the Host check and sign-in run before any other hook

    from web import (
        backtests,
        csrf,
        formatting,
        history,
        hosting,
        library,
        login,
        navigation,
        pages,
        settings,
        store,
        train,
    )

    store.init_app(app)
    formatting.init_app(app)
    navigation.init_app(app)
    csrf.init_app(app)
    for area in (pages, train, history, library, backtests, hosting, settings, login):
        app.register_blueprint(area.bp)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _install_auth(app: Flask) -> None:
    """Host allow-list and authentication (web/auth.py); credentials live in the run
    store's database, so every dashboard process on one DATABASE_URL shares them."""
    from web.auth_store import AuthStore
    from web.store import get_store

    auth.init_app(app, lambda: AuthStore(get_store().engine), is_json_path=is_json_path,
                  sessions=True)


# Paths whose clients are programs: routing errors there (unknown URL, wrong method,
# too large) and uncaught exceptions (a logged 500) are JSON like every other API error;
# pages keep Flask's HTML error pages.
JSON_PATHS = ("/api/", "/predict", "/info", "/health", "/streams/", "/openapi.json")
# JSON routes among the pages' paths: a run page's live data and its control buttons.
JSON_ROUTES = re.compile(r"/runs/[^/]+/(control|live\.json)")


def is_json_path(path: str) -> bool:
    return path.startswith(JSON_PATHS) or JSON_ROUTES.fullmatch(path) is not None


def _http_error(exc: HTTPException) -> Any:
    if is_json_path(request.path):
        from Api_Loader import json_http_error

        return json_http_error(exc)
    return exc


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the Galaxy Models dashboard.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--no-demo", action="store_true",
                        help="do not train the demo model when Models/ is empty")
    auth.add_arguments(parser)
    auth_cli.add_commands(parser)
    args = parser.parse_args(argv)
    if args.command:  # python Main.py tokens … / users …
        return auth_cli.run(args)
    configure_logging()

    import waitress

    app = _serving_app(args)
    if app is None:
        return 2
    clean_staging(Path(app.config["MODELS_DIR"]))  # what model writes killed mid-way left
    from web.training_jobs import sweep_lost_runs  # runs whose trainer died while we were down

    sweep_lost_runs(app)
    if not args.no_demo:
        ensure_demo_model(Path(app.config["MODELS_DIR"]))
    print(f"Galaxy Models dashboard on http://{args.host}:{args.port}  (Ctrl+C stops)",
          flush=True)
    waitress.serve(app, host=args.host, port=args.port, threads=args.threads)
    return 0


def _serving_app(args: argparse.Namespace) -> Flask | None:
    """The app to serve as ``args`` ask, or None after a one-line error when it must not
    start (beyond loopback with no credential, a bad AUTH or ALLOWED_HOSTS)."""
    try:
        app = create_app(auth.config_from_args(args))
    except (ValueError, OSError) as exc:  # AuthConfigError, an unusable secret key file
        print(f"error: {exc}", file=sys.stderr)
        return None
    problem = auth.startup_problem(app)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return None
    return app


if __name__ == "__main__":
    sys.exit(main())
