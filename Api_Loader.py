"""``python Api_Loader.py --model-dir Models/PPO_x``: one saved model served over HTTP.

:func:`create_api_app` is the one-model app; :func:`main` serves it with waitress. The
routes themselves (``POST /predict``, ``/info``, ``/health``, ``/streams/<id>``,
``/openapi.json``) live in :mod:`web.predict`, the same blueprint the dashboard mounts
for the model it hosts; every error is the JSON body of :mod:`web.errors`. Nothing is
loaded at import.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from NetworkConfigs import load_model
from Utilities.logging_setup import configure_logging, one_line
from web import auth, csrf, serving
from web.errors import every_path, install_error_handlers
from web.json_io import StrictJSONProvider
from web.predict import MAX_BODY_BYTES, MAX_STREAMS, prediction_blueprint


def create_api_app(model_dir: str | Path | None, config: dict[str, Any] | None = None) -> Flask:
    """A one-model app serving :func:`web.predict.prediction_blueprint` at ``/``; JSON
    errors everywhere.

    Loads the model now (from ``main()`` or a test, never at import); ``None`` serves
    no model (503). ``config`` overrides ``MAX_CONTENT_LENGTH``, ``MAX_STREAMS`` and the
    access settings of :mod:`web.auth` (``BIND_HOST``, ``AUTH``, ``ALLOWED_HOSTS``,
    ``TOKEN_FILE``, ``DATABASE_URL``): beyond loopback every route needs a bearer token.
    """
    loader = load_model(model_dir) if model_dir is not None else None
    app = Flask(__name__, static_folder=None)
    app.json = StrictJSONProvider(app)
    app.config.from_mapping(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, MAX_STREAMS=MAX_STREAMS,
                            **auth.env_config())
    app.config.update(config or {})
    auth.init_token_server(app)  # the Host check and tokens come before everything
    csrf.init_app(app)
    app.register_blueprint(prediction_blueprint(lambda: loader,
                                                max_streams=app.config["MAX_STREAMS"]))
    install_error_handlers(app, every_path)  # no pages: every error is JSON
    return app


def _int_in(low: int, high: int = sys.maxsize) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (waitress wraps a port above 65535)."""
    def integer(text: str) -> int:  # argparse names the type by this function's name
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low}"
                                             + (f" to {high}" if high < sys.maxsize else "")
                                             + f"; got {value}")
        return value
    return integer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="Api_Loader.py",
                                     description="Serve one trained model over HTTP (JSON).")
    parser.add_argument("--model-dir", required=True, help="a model folder, e.g. Models/PPO_x")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_int_in(0, 65535), default=8001,
                        help="0 picks a free port")
    parser.add_argument("--threads", type=_int_in(1), default=serving.DEFAULT_THREADS,
                        help=f"request threads (default {serving.DEFAULT_THREADS}: predictions are "
                             "CPU work under one GIL; see web/serving.py)")
    parser.add_argument("--max-streams", type=_int_in(1), default=MAX_STREAMS)
    return parser


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket for waitress. Bound here, so a failure leaves nothing open
    (waitress binding itself leaks its wake-up pipe when the port is taken)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


def _usage_error(message: str) -> int:
    """One line on stderr (messages may quote multi-line errors), exit status 2."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Load the model, then serve it with waitress until Ctrl+C. Bad input: exit 2."""
    parser = _parser()
    auth.add_arguments(parser, token_file=True)
    args = parser.parse_args(argv)
    import torch

    # One intra-op thread: a request's tensors are tiny, and waitress already runs
    # requests on their own threads; torch's second thread only added contention.
    torch.set_num_threads(1)

    try:
        app = create_api_app(args.model_dir, {"MAX_STREAMS": args.max_streams,
                                              **auth.config_from_args(args)})
    except (ValueError, OSError) as exc:  # ArtifactError, ModelNotFound, UnknownModelType,
        return _usage_error(str(exc))     # AuthConfigError, TokenFileError
    problem = auth.startup_problem(app)  # beyond loopback with no token: refused
    if problem:
        return _usage_error(problem)
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        return _usage_error(f"cannot listen on {args.host}:{args.port}: "
                            f"{exc.strerror or exc}")
    server = serving.create_server(app, args.threads, sockets=[sock])
    configure_logging()
    print(f"Serving {args.model_dir} on http://{args.host}:{server.effective_port}  "
          "(Ctrl+C stops)", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
