"""The allowlist signing key: from ``allowlist_key_file``, or generated once
next to a SQLite database for demos and single-box installs."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from rentgate import signing
from server.access.errors import SigningKeyUnavailable
from server.db.keyfiles import NoFolderBeside, beside_database, read_or_create_ed25519
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
    try:
        path = beside_database(database_url, GENERATED_KEY_NAME)
    except NoFolderBeside as exc:
        if exc.reason == "not_sqlite":
            raise SigningKeyUnavailable(
                "no allowlist signing key: set RENTGATE_ALLOWLIST_KEY_FILE to an Ed25519 PEM private key "
                "(keys are only generated for SQLite databases); allowlists are not published until then") from None
        raise SigningKeyUnavailable("no allowlist signing key: an in-memory database has no folder to keep "
                                    "a generated key in; set RENTGATE_ALLOWLIST_KEY_FILE") from None
    try:
        key, created = read_or_create_ed25519(path)
    except signing.SigningKeyError as exc:
        raise SigningKeyUnavailable(f"generated allowlist key unreadable: {exc}") from exc
    if created:
        public_b64 = signing.public_key_b64(key.public_key())
        log.warning("generated allowlist signing key %s; key id %s, public key %s: put it into each gateway's "
                    "[access] public_keys", path, derived_key_id(public_b64), public_b64)
    return key
