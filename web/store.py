"""The run store as a Flask extension: one RunStore per app, opened on first use.

``Utilities.run_store`` knows nothing of Flask (the CLI trainer uses it directly);
views reach it only through :func:`get_store`.
"""

from __future__ import annotations

import threading

from flask import Flask, current_app

from Utilities.run_store import RunStore

_KEY = "run_store"
# waitress serves requests on several threads; the first ones must not open two stores.
_OPEN_LOCK = threading.Lock()


def init_app(app: Flask) -> None:
    """Register the extension; the database is opened lazily, not at start-up."""
    app.extensions[_KEY] = None


def get_store() -> RunStore:
    """The app's RunStore (raises StoreUnavailable if the database cannot be opened)."""
    store = current_app.extensions.get(_KEY)
    if store is None:
        with _OPEN_LOCK:
            store = current_app.extensions.get(_KEY)
            if store is None:
                store = RunStore(current_app.config["DATABASE_URL"])
                current_app.extensions[_KEY] = store
    return store


def close_store(app: Flask) -> None:
    """Dispose the app's engine (tests and shutdown)."""
    store = app.extensions.get(_KEY)
    if store is not None:
        store.close()
        app.extensions[_KEY] = None
