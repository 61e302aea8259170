"""The key that signs watch alerts to police webhooks (docs/police-watches.md).

An Ed25519 private key from ``police_signing_key_file``, or one generated
once next to a SQLite database (demos, single-box installs) the way the
allowlist key is (server/access/keys.py). A PostgreSQL server must be given
one: several servers share a database, and each generating its own would
sign with keys the receivers do not all know.

What is signed, exactly: the ASCII decimal Unix time ``t``, one ``.``, then
the request body's bytes as sent. The receiver gets ``t``, the key id and the
base64 signature in ``X-Rentgate-Signature: t=<t>,kid=<key id>,sig=<base64>``
and the public key from ``GET /api/v1/police/signing-key``."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rentgate import signing
from server.db.keyfiles import NoFolderBeside, beside_database, read_or_create_ed25519
from server.errors import ServerError
from server.settings import ServerSettings

log = logging.getLogger(__name__)

GENERATED_KEY_NAME = "police-webhook-key.pem"
ALGORITHM = "Ed25519"
SIGNATURE_HEADER = "X-Rentgate-Signature"
# A receiver should refuse a signature older (or newer) than this: a copied
# request cannot be replayed later. Documented with the rule.
MAX_AGE_S = 300
SIGNED_BYTES_RULE = ('ASCII decimal t, then ".", then the request body exactly as received; '
                     "Ed25519 over those bytes; sig is the standard base64 of the 64-byte signature")


class WebhookKeyUnavailable(ServerError):
    """No key to sign alerts with; the text says what to set."""


@dataclass(frozen=True)
class WebhookKey:
    key_id: str
    private_key: signing.Ed25519PrivateKey
    public_b64: str
    public_pem: str

    def signed_bytes(self, timestamp: int, body: bytes) -> bytes:
        return str(timestamp).encode("ascii") + b"." + body

    def signature_header(self, timestamp: int, body: bytes) -> str:
        """The ``X-Rentgate-Signature`` value for ``body`` sent at ``timestamp``."""
        sig = signing.sign(self.signed_bytes(timestamp, body), self.private_key)
        return f"t={timestamp},kid={self.key_id},sig={sig}"

    def public_info(self) -> dict[str, Any]:
        """What ``GET /api/v1/police/signing-key`` answers."""
        return {
            "algorithm": ALGORITHM,
            "key_id": self.key_id,
            "public_key": self.public_b64,
            "public_key_pem": self.public_pem,
            "header": SIGNATURE_HEADER,
            "header_format": "t=<unix seconds>,kid=<key id>,sig=<base64 signature>",
            "signed_bytes": SIGNED_BYTES_RULE,
            "max_age_s": MAX_AGE_S,
        }


def key_id_of(public_b64: str) -> str:
    """Derived from the public key: a new key gets a new id by itself."""
    return "pw-" + hashlib.sha256(public_b64.encode("ascii")).hexdigest()[:12]


def webhook_key(private: signing.Ed25519PrivateKey) -> WebhookKey:
    public = private.public_key()
    public_b64 = signing.public_key_b64(public)
    return WebhookKey(key_id_of(public_b64), private, public_b64, signing.public_key_pem(public))


def load_webhook_key(settings: ServerSettings) -> WebhookKey:
    """The configured key, or the generated one for SQLite. Raises
    WebhookKeyUnavailable saying what to set."""
    if settings.police_signing_key_file:
        try:
            return webhook_key(signing.load_private_key_file(settings.police_signing_key_file))
        except signing.SigningKeyError as exc:
            raise WebhookKeyUnavailable(f"RENTGATE_POLICE_SIGNING_KEY_FILE: {exc}") from exc
    return webhook_key(_generated_key(settings.database_url))


def _generated_key(database_url: str) -> signing.Ed25519PrivateKey:
    try:
        path = beside_database(database_url, GENERATED_KEY_NAME)
    except NoFolderBeside as exc:
        if exc.reason == "not_sqlite":
            raise WebhookKeyUnavailable(
                "no police webhook signing key: set RENTGATE_POLICE_SIGNING_KEY_FILE to an Ed25519 PEM private "
                "key (keys are only generated for SQLite databases); watches cannot be set until then") from None
        raise WebhookKeyUnavailable("no police webhook signing key: an in-memory database has no folder to keep "
                                    "a generated key in; set RENTGATE_POLICE_SIGNING_KEY_FILE") from None
    try:
        key, created = read_or_create_ed25519(path)
    except signing.SigningKeyError as exc:
        raise WebhookKeyUnavailable(f"generated police webhook key unreadable: {exc}") from exc
    if created:
        log.warning("generated police webhook signing key %s (key id %s); receivers read its public half from "
                    "GET /api/v1/police/signing-key", path, key_id_of(signing.public_key_b64(key.public_key())))
    return key


# Application state: the key, or why there is none (watch routes answer 503 with it).
WEBHOOK_KEY = web.AppKey("rentgate_police_webhook_key", WebhookKey)
WEBHOOK_KEY_PROBLEM = web.AppKey("rentgate_police_webhook_key_problem", str)
