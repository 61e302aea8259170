"""The key that signs checkpoints: ``audit_key_file``, or one generated
once next to a SQLite database (demos, single-box installs). PostgreSQL
servers must be given one: a key that lives beside nothing could be lost
with a container and every later checkpoint would name a new key."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rentgate import signing
from server.audit.chain import CHECKPOINT_TITLE
from server.audit.errors import AuditKeyUnavailable
from server.db.keyfiles import NoFolderBeside, beside_database, read_or_create_ed25519
from server.settings import ServerSettings

log = logging.getLogger(__name__)

GENERATED_KEY_NAME = "audit-key.pem"
KEY_VARIABLE = "RENTGATE_AUDIT_KEY_FILE"


@dataclass(frozen=True)
class AuditKey:
    key_id: str
    private_key: signing.Ed25519PrivateKey
    public_b64: str

    def sign(self, message: bytes) -> str:
        return signing.sign(message, self.private_key)

    @property
    def public_key(self) -> signing.Ed25519PublicKey:
        return self.private_key.public_key()


def key_id_of(public_b64: str) -> str:
    """``k-`` and the first 12 hex digits of SHA-256 over the base64 text of
    the raw public key: the allowlist keys' rule, so a new key gets a new id."""
    return "k-" + hashlib.sha256(public_b64.encode("ascii")).hexdigest()[:12]


def from_private(private: signing.Ed25519PrivateKey) -> AuditKey:
    public_b64 = signing.public_key_b64(private.public_key())
    return AuditKey(key_id_of(public_b64), private, public_b64)


def public_key_info(key: AuditKey) -> dict[str, Any]:
    """What a public route or an oversight body needs to check checkpoints."""
    return {"algorithm": "Ed25519", "key_id": key.key_id, "public_key": key.public_b64,
            "public_key_pem": signing.public_key_pem(key.public_key), "statement": CHECKPOINT_TITLE,
            "format": "docs/audit.md"}


def public_keys(texts: Iterable[str]) -> dict[str, signing.Ed25519PublicKey]:
    """Public keys by key id, each given as base64, PEM text or a file
    holding either. Raises signing.SigningKeyError naming the bad one."""
    found: dict[str, signing.Ed25519PublicKey] = {}
    for text in texts:
        key = _public_key(text)
        found[key_id_of(signing.public_key_b64(key))] = key
    return found


def keyring(key: AuditKey | None, extra: Mapping[str, signing.Ed25519PublicKey]) -> dict[str, signing.Ed25519PublicKey]:
    ring = dict(extra)
    if key is not None:
        ring[key.key_id] = key.public_key
    return ring


def _public_key(text: str) -> signing.Ed25519PublicKey:
    path = Path(text)
    if "-----BEGIN" not in text and len(text) < 4096 and path.is_file():
        try:
            data = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise signing.SigningKeyError(text, str(exc)) from exc
        # A private key file also names its public key: handy for the operator.
        if "PRIVATE KEY" in data:
            return signing.load_private_key(data, source=text).public_key()
        return signing.load_public_key(data, source=text)
    return signing.load_public_key(text, source="--public-key")


def load_key(settings: ServerSettings, *, create: bool) -> AuditKey:
    """The configured key, or the one beside a SQLite database (generated
    when ``create``). Raises AuditKeyUnavailable saying what to set."""
    if settings.audit_key_file:
        try:
            return from_private(signing.load_private_key_file(settings.audit_key_file))
        except signing.SigningKeyError as exc:
            raise AuditKeyUnavailable(f"{KEY_VARIABLE}: {exc}") from exc
    path = generated_key_path(settings.database_url)
    if path.exists() or not create:
        return _read_generated(path)
    return _generate(path)


def generated_key_path(database_url: str) -> Path:
    try:
        return beside_database(database_url, GENERATED_KEY_NAME)
    except NoFolderBeside as exc:
        if exc.reason == "not_sqlite":
            raise AuditKeyUnavailable(
                f"no audit signing key: set {KEY_VARIABLE} to an Ed25519 private key (PEM or base64); keys are "
                "only generated beside SQLite databases. Records are still appended, but no checkpoint is signed "
                "until then") from None
        raise AuditKeyUnavailable(f"no audit signing key: an in-memory database has no folder to keep a generated "
                                  f"key in; set {KEY_VARIABLE}") from None


def _read_generated(path: Path) -> AuditKey:
    try:
        return from_private(signing.load_private_key_file(path))
    except signing.SigningKeyError as exc:
        raise AuditKeyUnavailable(f"audit signing key {path}: {exc.reason}") from exc


def _generate(path: Path) -> AuditKey:
    try:
        private, created = read_or_create_ed25519(path)
    except signing.SigningKeyError as exc:
        raise AuditKeyUnavailable(f"audit signing key {path}: {exc.reason}") from exc
    key = from_private(private)
    if created:
        log.warning("generated audit signing key %s; key id %s, public key %s: publish the public key to whoever "
                    "oversees the audit log, and back the file up", path, key.key_id, key.public_b64)
    return key
