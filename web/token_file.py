"""API tokens from a file, for a model server that has no run-store database.

``python Api_Loader.py --token-file tokens.txt``: one token per line (blank lines and
``#`` comments ignored), e.g. a token printed by ``python Main.py tokens create NAME``
or ``python -c "import secrets; print(secrets.token_urlsafe(32))"``. The file is read
once at start and only the tokens' sha256 are kept in memory; keep it mode 0600.
"""

from __future__ import annotations

import hmac
import logging
import stat
from pathlib import Path

from web.auth_store import TokenInfo
from web.credentials import token_digest

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 20


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file and the line."""


class TokenFile:
    """The tokens listed in one file; each is named after its line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._digests = self._read()

    def _read(self) -> list[tuple[str, str]]:
        try:
            mode = self.path.stat().st_mode
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenFileError(f"cannot read the token file {self.path}: {exc}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("token file %s can be read by other users (mode %o): chmod 600 it",
                        self.path, stat.S_IMODE(mode))
        digests = []
        for number, line in enumerate(lines, start=1):
            token = line.strip()
            if not token or token.startswith("#"):
                continue
            if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
                raise TokenFileError(f"{self.path} line {number}: a token is one word of at "
                                     f"least {MIN_TOKEN_LENGTH} characters")
            digests.append((f"{self.path.name}:{number}", token_digest(token)))
        return digests

    def verify_token(self, token: str) -> TokenInfo | None:
        digest = token_digest(token)
        for name, known in self._digests:
            if hmac.compare_digest(known, digest):
                return TokenInfo(0, name, "", None)
        return None

    def session_stamp(self, username: str) -> str | None:
        return None  # the model server has no logins

    def has_credentials(self) -> bool:
        return bool(self._digests)
