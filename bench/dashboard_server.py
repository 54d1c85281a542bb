"""The dashboard as the benches run it: ``create_app`` under waitress in a process of its
own (as ``make run`` serves it), on a free port, with the threads ``Main.py`` gives it
(one per allowed stream viewer besides 8)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = """
import sys, waitress
sys.path.insert(0, {root!r})
from Main import create_app
app = create_app({{"DATABASE_URL": {url!r}, "MODELS_DIR": {models!r}}})
waitress.serve(app, host="127.0.0.1", port={port}, threads=8 + app.extensions["live_hub"].total,
               connection_limit=400, _quiet=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, models: str, port: int, env: dict[str, str],
                 ready_path: str = "/api/training/health") -> subprocess.Popen:
    """The server process, once ``ready_path`` answers 200 (RuntimeError with its last
    words if it does not within a minute). ``env`` is added to this process's."""
    code = SERVER.format(root=str(ROOT), url=url, models=models, port=port)
    server = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", ready_path)
            if conn.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.1)  # not listening yet
    server.kill()
    raise RuntimeError(f"server did not start: {server.stderr.read().decode()[-2000:]}")
