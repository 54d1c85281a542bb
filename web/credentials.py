"""How secrets are made and checked: API tokens and login passwords (no storage here).

* A token is 32 random bytes (``secrets``), shown once; the store keeps its sha256.
  A fast hash is enough because the token has 256 bits of entropy: no dictionary or
  brute force reaches a preimage, whatever the hash speed, while a slow KDF would cost
  every API request tens of milliseconds. An unsalted hash also lets a request's token
  be found by an index lookup instead of a KDF run against every stored token.
* A password is chosen by a person and can be guessed, so it gets a salted, slow,
  memory-hard KDF from the standard library (``hashlib.scrypt``, about 16 MiB per try).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

TOKEN_PREFIX = "gm_"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # scrypt takes any length; this only bounds the work per try
# scrypt cost: N=2**14, r=8 (16 MiB, about 50 ms a try); kept in each hash so a later,
# dearer setting still verifies the hashes made with this one.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 1 << 14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_SCHEME = "scrypt"


class WeakPassword(ValueError):
    """A password the store refuses (too short or too long)."""


def new_token() -> str:
    """A fresh API token: ``gm_`` and 43 URL-safe characters (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """The stored form of a token: its sha256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_password_rules(password: str) -> None:
    """Raise WeakPassword unless the password's length is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"the password may have at most {MAX_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64 parts) of a password that passes the rules."""
    check_password_rules(password)
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join((_SCHEME, str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P),
                     _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; with no stored hash (an unknown user) a
    hash is still computed, so the answer takes as long for a name that does not exist."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        scheme, n, r, p, salt, digest = (stored or "").split("$")
        if scheme != _SCHEME:
            raise ValueError(scheme)
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:  # no user, or a hash this module did not write
        _scrypt(password, b"\0" * 16, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r,
                          p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
