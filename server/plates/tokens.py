"""Plate tokens: opaque, signed, short enough for a 40 mm QR code.

    <key id> "." base64url( version:u8 | plate id:u64 | expiry day:u32 | mac:16 bytes )

The payload names a row of the ``plates`` table and nothing else: no unit,
no address, no person, so a photographed plate leaks nothing and a token
cannot be edited to point elsewhere without breaking the MAC. The MAC is
HMAC-SHA256 over the key id and the payload, cut to 128 bits. Key ids let
keys rotate: new plates are signed with the newest key, old plates keep
verifying until their key is retired. Revocation lives in the database (a
revoked plate row), checked by server/plates/service.py.

Pure: no I/O, no clock (callers pass ``today``)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from datetime import date

from server.plates.errors import TokenRejected

VERSION = 1
MAC_BYTES = 16
_PAYLOAD = struct.Struct(">BQI")
_BODY_LEN = _PAYLOAD.size + MAC_BYTES
# \Z, not $: "$" also matches before a final newline ("k1\n").
KEY_ID_PATTERN = re.compile(r"^[a-z0-9]{1,12}\Z")
_EPOCH = date(1970, 1, 1)
# Longer input is refused before any decoding: a scan URL is public.
MAX_TOKEN_CHARS = 64


@dataclass(frozen=True)
class PlateClaim:
    plate_id: int
    key_id: str
    # None: the plate does not expire.
    expires_on: date | None


def _mac(key: bytes, key_id: str, payload: bytes) -> bytes:
    return hmac.new(key, key_id.encode("ascii") + b"." + payload, hashlib.sha256).digest()[:MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(key_id: str, key: bytes, plate_id: int, expires_on: date | None) -> str:
    if not KEY_ID_PATTERN.match(key_id):
        raise ValueError(f"key id {key_id!r} must be 1-12 lowercase letters or digits")
    day = 0 if expires_on is None else (expires_on - _EPOCH).days
    if not 0 < plate_id < 2**63 or not 0 <= day < 2**32:
        raise ValueError("plate id or expiry out of range")
    payload = _PAYLOAD.pack(VERSION, plate_id, day)
    return f"{key_id}.{_b64(payload + _mac(key, key_id, payload))}"


def verify(token: str, keys: dict[str, bytes], today: date) -> PlateClaim:
    """The claim a genuine, unexpired token makes; TokenRejected otherwise.
    Revocation is the caller's check (it needs the database)."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise TokenRejected("malformed", "not a plate token")
    key_id, body = token.split(".")
    if not KEY_ID_PATTERN.match(key_id):
        raise TokenRejected("malformed", "not a plate token")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise TokenRejected("malformed", "not a plate token") from None
    if len(raw) != _BODY_LEN or _b64(raw) != body:
        # The second test refuses non-canonical encodings of the same bytes,
        # so one plate has exactly one valid token text.
        raise TokenRejected("malformed", "not a plate token")
    key = keys.get(key_id)
    if key is None:
        raise TokenRejected("unknown_key", f"signed with key {key_id!r}, which this server does not hold")
    payload, mac = raw[:_PAYLOAD.size], raw[_PAYLOAD.size:]
    if not hmac.compare_digest(mac, _mac(key, key_id, payload)):
        raise TokenRejected("bad_signature", "the signature does not match: altered or forged")
    version, plate_id, day = _PAYLOAD.unpack(payload)
    if version != VERSION or plate_id == 0:
        raise TokenRejected("malformed", f"token version {version} is not understood")
    expires_on = None if day == 0 else date.fromordinal(_EPOCH.toordinal() + day)
    if expires_on is not None and today > expires_on:
        raise TokenRejected("expired", f"the plate expired on {expires_on.isoformat()}", plate_id=plate_id)
    return PlateClaim(plate_id=plate_id, key_id=key_id, expires_on=expires_on)
