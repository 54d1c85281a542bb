"""The dashboard app over a test's own folders, the signed-in variant, and JSON errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask import Flask

PASSWORD = "correct horse battery"


def make_app(database_url: str, models_dir: Path, tmp_path: Path) -> Flask:
    """The dashboard app with everything it writes kept in the test's folder (uploads,
    training logs, backtest results)."""
    from Main import create_app

    flask_app = create_app({"TESTING": True, "DATABASE_URL": database_url,
                            "MODELS_DIR": str(models_dir), "DATA_DIR": str(tmp_path / "data"),
                            "BACKTESTS_DIR": str(tmp_path / "backtests")})
    flask_app.instance_path = str(tmp_path / "instance")
    return flask_app


def field_errors(response: Any) -> dict[str, str]:
    """The message shown beside each input of a form page, by the input's name."""
    from html import unescape

    html = response.get_data(as_text=True)
    return {name: unescape(message) for name, message in
            re.findall(r'class="field-error" id="([^"]+)-error">([^<]*)</small>', html)}


def make_auth_app(database_url: str, models_dir: Path, tmp_path: Path, **config: Any) -> Flask:
    """The dashboard with sign-in required (unless ``config`` says otherwise)."""
    from Main import create_app

    settings = {"TESTING": True, "DATABASE_URL": database_url, "MODELS_DIR": str(models_dir),
                "DATA_DIR": str(tmp_path / "data"), "BACKTESTS_DIR": str(tmp_path / "bt"),
                "AUTH": "required", "SECRET_KEY_FILE": str(tmp_path / "instance" / "key"),
                **config}
    return create_app(settings)


def drop_all(run_store: Any) -> None:
    """Drop every table of a RunStore and close it (a test's store leaves nothing behind)."""
    from Utilities.run_store import metadata

    metadata.drop_all(run_store.engine)
    run_store.close()


def error_of(response: Any, status: int) -> dict:
    """The JSON error body of a response that must have ``status``."""
    assert response.status_code == status, (response.status_code, response.get_data(True))
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    return body
