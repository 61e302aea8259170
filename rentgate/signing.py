"""Ed25519 signatures for what the server tells gateways (allowlists).

The server holds private keys and signs; a gateway holds only public keys,
several at once, named by ``key_id``, so a key can be rotated by adding the new
public key to every gateway before the server starts signing with it.

Keys are read from PEM (PKCS#8 private, SubjectPublicKeyInfo public) or from
the raw 32 bytes in base64, which fits on one line of a config file.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "SigningKeyError",
    "SigningError",
    "generate_private_key",
    "load_private_key",
    "load_private_key_file",
    "load_public_key",
    "private_key_pem",
    "public_key_b64",
    "public_key_pem",
    "sign",
    "verify",
]

_RAW_KEY_LEN = 32
# Ed25519 signatures are 64 bytes: 88 base64 characters. Anything much longer
# is not worth decoding.
_MAX_SIGNATURE_B64 = 200


class SigningError(Exception):
    """Root of this module's errors."""


class SigningKeyError(SigningError):
    """A key that cannot be loaded; ``source`` says where it came from."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def public_key_b64(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_private_key(text: str | bytes, *, source: str = "private key") -> Ed25519PrivateKey:
    """A private key from PEM text or base64 of the raw 32-byte seed."""
    data = text.encode() if isinstance(text, str) else text
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise SigningKeyError(source, f"not a readable PEM private key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(source, f"is a {type(key).__name__}, not Ed25519")
        return key
    try:
        return Ed25519PrivateKey.from_private_bytes(_raw(data, source))
    except ValueError as exc:
        raise SigningKeyError(source, str(exc)) from exc


def load_public_key(text: str | bytes, *, source: str = "public key") -> Ed25519PublicKey:
    """A public key from PEM text or base64 of the raw 32 bytes."""
    data = text.encode() if isinstance(text, str) else text
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise SigningKeyError(source, f"not a readable PEM public key ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError(source, f"is a {type(key).__name__}, not Ed25519")
        return key
    try:
        return Ed25519PublicKey.from_public_bytes(_raw(data, source))
    except ValueError as exc:
        raise SigningKeyError(source, str(exc)) from exc


def load_private_key_file(path: str | Path) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        return load_private_key(path.read_bytes(), source=str(path))
    except OSError as exc:
        raise SigningKeyError(str(path), exc.strerror or str(exc)) from exc


def _raw(data: bytes, source: str) -> bytes:
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SigningKeyError(source, "neither PEM nor base64") from exc
    if len(raw) != _RAW_KEY_LEN:
        raise SigningKeyError(source, f"raw Ed25519 keys are {_RAW_KEY_LEN} bytes, this one is {len(raw)}")
    return raw


def sign(payload: bytes, private_key: Ed25519PrivateKey) -> str:
    """Base64 Ed25519 signature over ``payload``."""
    return base64.b64encode(private_key.sign(payload)).decode()


def verify(
    payload: bytes,
    signature: str,
    public_keys: Mapping[str, Ed25519PublicKey],
    key_id: str | None = None,
) -> bool:
    """True only if ``signature`` is a valid signature over ``payload`` by the
    key named ``key_id`` (by any of ``public_keys`` when no id is given).
    Never raises for bad input: a forged message is an ordinary event for a
    gateway, not an error."""
    if key_id is not None:
        key = public_keys.get(key_id)
        candidates = [key] if key is not None else []
    else:
        candidates = list(public_keys.values())
    if not candidates or len(signature) > _MAX_SIGNATURE_B64:
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    for key in candidates:
        try:
            key.verify(raw, payload)
        except InvalidSignature:
            continue
        return True
    return False
