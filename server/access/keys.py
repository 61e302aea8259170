"""The allowlist signing key: from ``allowlist_key_file``, or generated once
next to a SQLite database for demos and single-box installs."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from rentgate import signing
from server.access.errors import SigningKeyUnavailable
from server.settings import ServerSettings

log = logging.getLogger(__name__)

GENERATED_KEY_NAME = "allowlist-key.pem"


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private_key: signing.Ed25519PrivateKey
    public_b64: str

    def sign(self, payload: str) -> bytes:
        """The ``SignedAllowlist`` message for ``payload``."""
        from rentgate import wire

        return wire.signed_allowlist_json(payload, self.key_id, signing.sign(payload.encode(), self.private_key))


def derived_key_id(public_b64: str) -> str:
    return "k-" + hashlib.sha256(public_b64.encode()).hexdigest()[:12]


def load_signing_key(settings: ServerSettings) -> SigningKey:
    """The configured key, or the generated one for SQLite. Raises
    SigningKeyUnavailable saying what to set."""
    if settings.allowlist_key_file:
        try:
            private = signing.load_private_key_file(settings.allowlist_key_file)
        except signing.SigningKeyError as exc:
            raise SigningKeyUnavailable(f"RENTGATE_ALLOWLIST_KEY_FILE: {exc}") from exc
    else:
        private = _generated_key(settings.database_url)
    public_b64 = signing.public_key_b64(private.public_key())
    return SigningKey(settings.allowlist_key_id or derived_key_id(public_b64), private, public_b64)


def _generated_key(database_url: str) -> signing.Ed25519PrivateKey:
    url = make_url(database_url)
    database = url.database
    if url.get_backend_name() != "sqlite":
        raise SigningKeyUnavailable(
            "no allowlist signing key: set RENTGATE_ALLOWLIST_KEY_FILE to an Ed25519 PEM private key "
            "(keys are only generated for SQLite databases); allowlists are not published until then")
    if not database or database == ":memory:" or database.startswith("file:"):
        raise SigningKeyUnavailable("no allowlist signing key: an in-memory database has no folder to keep "
                                    "a generated key in; set RENTGATE_ALLOWLIST_KEY_FILE")
    path = Path(database).resolve().parent / GENERATED_KEY_NAME
    if path.exists():
        try:
            return signing.load_private_key_file(path)
        except signing.SigningKeyError as exc:
            raise SigningKeyUnavailable(f"generated allowlist key unreadable: {exc}") from exc
    key = signing.generate_private_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Exclusive create: two servers starting at once must not end up with two keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return signing.load_private_key_file(path)
    with os.fdopen(fd, "w") as out:
        out.write(signing.private_key_pem(key))
    public_b64 = signing.public_key_b64(key.public_key())
    log.warning("generated allowlist signing key %s; key id %s, public key %s: put it into each gateway's "
                "[access] public_keys", path, derived_key_id(public_b64), public_b64)
    return key
