"""The key that signs session cookies, kept across restarts when logins matter.

A random key per start would sign everyone out at each restart, and two processes
serving one database would refuse each other's cookies. ``SECRET_KEY`` in the
environment wins (set it when processes run on several machines); otherwise the key is
read from a file in ``instance/``, created once with mode 0600.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

MIN_SECRET_KEY_LENGTH = 16


def load_or_create(path: Path) -> str:
    """The key stored at ``path``, written first (0600, atomically) if it is missing."""
    if not path.exists():
        _create(path)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s can be read by other users (mode %o): chmod 600 it, since anyone "
                    "who reads it can forge sign-ins", path, stat.S_IMODE(mode))
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise ValueError(f"{path} holds no usable key (fewer than {MIN_SECRET_KEY_LENGTH} "
                         "characters): delete it and a new one is made at the next start")
    return key


def _create(path: Path) -> None:
    """Write a fresh key beside ``path`` and link it into place: a concurrent start that
    lost the race reads the winner's key instead of overwriting it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(staging, path)
            log.info("created the session signing key %s (mode 600)", path)
        except FileExistsError:
            pass
    finally:
        staging.unlink(missing_ok=True)
