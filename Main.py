"""Galaxy Models web app: ``create_app()`` (Flask app factory) and ``python Main.py``.

Nothing happens at import; ``main()`` configures logging and serves with waitress.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from flask import Flask

from NetworkConfigs import DEFAULT_MODEL_TYPE
from NetworkConfigs.artifacts import clean_staging, default_models_dir, list_models
from Utilities.logging_setup import configure_logging
from Utilities.run_store import default_database_url
from web import auth, auth_cli, serving
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

    app = _serving_app(args)
    if app is None:
        return 2
    prepare_to_serve(app, demo=not args.no_demo)
    print(f"Galaxy Models dashboard on http://{args.host}:{args.port}  (Ctrl+C stops)",
          flush=True)
    serving.serve(app, args.threads, host=args.host, port=args.port)
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
