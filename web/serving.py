"""The waitress settings of the model server (``python Api_Loader.py``) and of the
do-nothing server that ``bench/predict_latency.py`` measures the ceiling with (so that
ceiling is measured on the same set-up). Imports nothing heavy: the bench's do-nothing
server uses it as it is.

``send_bytes``: replies up to this size are sent by waitress's I/O thread once their
request is done. With waitress's default (1 byte), the request's own thread sends each
reply while it holds the connection's output lock, and the I/O thread, finding output
pending, polls that lock in a tight loop, each turn a fight for the GIL with the
request threads that are busy predicting: measured ~0.3 ms of server CPU per
``POST /predict`` with four concurrent clients (0.39 ms of I/O-thread CPU per request
against 0.11 ms with this setting). Larger replies (big batches) are still sent from
the request's thread as they are written. waitress 3.0 marks the setting deprecated
but keeps it; requirements.txt pins waitress, so a release that drops it is a
deliberate upgrade (it would refuse the keyword at start, not misbehave).

The dashboard (``python Main.py``) keeps waitress's default: its live pages stream
server-sent events, and with this setting a small event would wait in the buffer until
64 KiB had piled up or the stream ended.
"""

from __future__ import annotations

import warnings
from typing import Any

SEND_BYTES = 64 * 1024
# Request threads of the model server. Predictions are CPU work under the GIL, so more
# worker threads add only GIL hand-offs between them: with 4 clients on 2 cores a
# window request cost 1.47 ms of server CPU with 8 threads and 1.0 ms with one (720
# against 1,073 requests/s; 2 threads: 795), session 8. Requests still never wait on a
# slow client: waitress's I/O thread reads whole bodies and sends replies (SEND_BYTES).
DEFAULT_THREADS = 1


def waitress_settings(threads: int) -> dict[str, Any]:
    """Keyword settings for ``waitress.create_server`` / ``waitress.serve``."""
    return {"threads": threads, "send_bytes": SEND_BYTES}


def create_server(app: Any, threads: int, **where: Any) -> Any:
    """``waitress.create_server(app, **where)`` (``sockets=[...]`` or ``host``/``port``)
    with :func:`waitress_settings`."""
    import waitress

    _accept_send_bytes()
    return waitress.create_server(app, **where, **waitress_settings(threads))


def _accept_send_bytes() -> None:
    """Silence waitress's deprecation warning for ``send_bytes`` (see above), only it."""
    warnings.filterwarnings("ignore", "send_bytes will be removed", DeprecationWarning)
