"""Password hashing with scrypt. The hash string carries its own parameters
and salt, so they can be raised later without invalidating stored hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

MIN_PASSWORD_LENGTH = 8
# n=2**14, r=8 costs 16 MiB and ~50 ms per check: slow for a guesser, fine for a login.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_DKLEN = 32
_SALT_BYTES = 16
_PREFIX = "scrypt"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem must cover 128*n*r bytes plus slack, or OpenSSL refuses larger n.
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_DKLEN,
                          maxmem=256 * n * r + 1024 * 1024)


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64). The caller checks the length."""
    salt = os.urandom(_SALT_BYTES)
    digest = _derive(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"{_PREFIX}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time comparison; a malformed stored hash never matches."""
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
        if prefix != _PREFIX:
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _derive(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# Checked when the username is unknown, so that a wrong username takes as long
# as a wrong password and response times do not reveal which accounts exist.
DUMMY_HASH = hash_password("not-a-real-password")
