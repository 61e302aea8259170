"""HTTP digest authentication as a device checks it (RFC 7616 / 2617, MD5,
``qop=auth``), with the illegal-login lock Hikvision devices ship enabled
(``/ISAPI/Security/illegalLoginLock``: 5 failures lock the account for
1800 s). Pure: the caller passes the clock and the request's method and URI.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

_MAX_HEADER = 2048
_MAX_NONCES = 256
_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    username: str = ""
    locked_s: float = 0.0  # > 0: the account is locked for this long yet
    stale: bool = False


class DigestGuard:
    """Issues challenges and checks ``Authorization: Digest`` headers."""

    def __init__(self, users: dict[str, str], *, realm: str = "DS-K1T671M", max_failures: int = 5,
                 lock_s: float = 1800.0, nonce_uses: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.users = dict(users)
        self.realm = realm
        self.max_failures = max_failures
        self.lock_s = lock_s
        # Some terminals expire a nonce after a few uses (about 8 were seen in the field);
        # None keeps it for as long as the guard remembers it.
        self.nonce_uses = nonce_uses
        self._clock = clock
        self._nonces: OrderedDict[str, int] = OrderedDict()  # nonce -> highest nc seen
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}

    def challenge(self, *, stale: bool = False) -> str:
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = 0
        while len(self._nonces) > _MAX_NONCES:
            self._nonces.popitem(last=False)
        extra = ", stale=TRUE" if stale else ""
        return f'Digest qop="auth", realm="{self.realm}", nonce="{nonce}"{extra}'

    def check(self, method: str, uris: tuple[str, ...], header: str | None) -> AuthResult:
        """``uris``: the forms of the request URI a client may have signed."""
        fields = parse_authorization(header)
        if fields is None:
            return AuthResult(False)
        username = fields.get("username", "")
        locked = self._locked_for(username)
        if locked > 0:
            return AuthResult(False, username, locked_s=locked)
        if fields.get("uri") not in uris or fields.get("realm") != self.realm:
            return AuthResult(False, username)
        nonce = fields.get("nonce", "")
        if nonce not in self._nonces:
            return AuthResult(False, username, stale=True)
        if not self._response_matches(method, fields):
            return self._failed(username)
        self._failures.pop(username, None)
        return self._use_nonce(nonce, fields, username)

    def _response_matches(self, method: str, f: dict[str, str]) -> bool:
        password = self.users.get(f.get("username", ""))
        if password is None or f.get("algorithm", "MD5").upper() != "MD5":
            return False
        ha1 = _md5(f"{f['username']}:{self.realm}:{password}")
        ha2 = _md5(f"{method}:{f.get('uri', '')}")
        if f.get("qop") == "auth":
            expected = _md5(f"{ha1}:{f.get('nonce', '')}:{f.get('nc', '')}:{f.get('cnonce', '')}:auth:{ha2}")
        else:
            expected = _md5(f"{ha1}:{f.get('nonce', '')}:{ha2}")
        return secrets.compare_digest(expected, f.get("response", ""))

    def _use_nonce(self, nonce: str, f: dict[str, str], username: str) -> AuthResult:
        try:
            nc = int(f.get("nc", "0"), 16)
        except ValueError:
            return AuthResult(False, username)
        if self.nonce_uses is not None and nc > self.nonce_uses:
            del self._nonces[nonce]
            return AuthResult(False, username, stale=True)
        self._nonces[nonce] = max(self._nonces[nonce], nc)
        return AuthResult(True, username)

    def _failed(self, username: str) -> AuthResult:
        count = self._failures.get(username, 0) + 1
        self._failures[username] = count
        if count >= self.max_failures and username in self.users:
            self._locked_until[username] = self._clock() + self.lock_s
            self._failures.pop(username, None)
            return AuthResult(False, username, locked_s=self.lock_s)
        return AuthResult(False, username)

    def _locked_for(self, username: str) -> float:
        until = self._locked_until.get(username)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._locked_until[username]
            return 0.0
        return left

    def unlock_all(self) -> None:
        """A reboot clears the lock, as the device keeps it in memory only (assumed)."""
        self._locked_until.clear()
        self._failures.clear()


def parse_authorization(header: str | None) -> dict[str, str] | None:
    """The fields of a ``Digest`` Authorization header, or None if it is none."""
    if not header or len(header) > _MAX_HEADER:
        return None
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "digest":
        return None
    return {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
            for m in _FIELD.finditer(rest)}
