"""One logging configuration for every entry point (CLI, web app, benchmarks).

Library modules only call ``logging.getLogger(__name__)``; entry points call
:func:`configure_logging` once. ``DEBUG=1`` in the environment turns on debug output.
"""

from __future__ import annotations

import logging
import os

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_TRUE = {"1", "true", "yes", "on"}


def debug_enabled() -> bool:
    """True when the DEBUG environment variable asks for debug output."""
    return os.environ.get("DEBUG", "").strip().lower() in _TRUE


def configure_logging(level: int | None = None) -> None:
    """Configure the root logger: INFO by default, DEBUG when ``DEBUG=1``."""
    if level is None:
        level = logging.DEBUG if debug_enabled() else logging.INFO
    logging.basicConfig(level=level, format=_FORMAT, force=True)
    # Third-party chatter stays at WARNING unless we are debugging.
    noisy_level = logging.DEBUG if level <= logging.DEBUG else logging.WARNING
    for name in ("waitress", "werkzeug", "matplotlib", "urllib3"):
        logging.getLogger(name).setLevel(noisy_level)


def one_line(message: object) -> str:
    """A CLI error as one line: messages may quote multi-line library errors
    (xgboost's stack dumps, torch's load advice), and the CLIs promise one line."""
    return " ".join(str(message).split())
