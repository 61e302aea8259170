"""Identity numbers at rest: encrypted with AES-256-GCM for the rare reader
who may see them (a police look-up, with its purpose audited), and a keyed
HMAC-SHA256 digest that finds a person by number without decrypting anything.
A copy of the database alone reveals neither.

The key file holds 32 random bytes in base64 (``rentgate`` writes one next to a
SQLite database on first use; PostgreSQL installs set ``RENTGATE_PII_KEY_FILE``).
Two keys are derived from it with HKDF, so the cipher and the digest never share
a key. Ciphertexts start with the key id, so a new key can be introduced
without rewriting old rows; the digest cannot change without re-hashing every
person, which docs/registry.md describes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import make_url

from server.errors import ServerError

log = logging.getLogger(__name__)

GENERATED_KEY_NAME = "pii.key"
_NONCE_BYTES = 12


class PiiKeyUnavailable(ServerError):
    """No usable key for identity numbers; the registry cannot store persons."""


class PiiDecryptError(ServerError):
    """A stored identity number could not be decrypted with the keys held."""


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


@dataclass(frozen=True)
class PiiVault:
    key_id: str
    _cipher_key: bytes
    _digest_key: bytes

    @classmethod
    def from_master(cls, master: bytes) -> PiiVault:
        if len(master) != 32:
            raise PiiKeyUnavailable(f"the identity-number key must be 32 bytes, got {len(master)}")
        key_id = hashlib.sha256(b"rentgate-pii-id" + master).hexdigest()[:8]
        return cls(key_id, _derive(master, b"rentgate pii aes-gcm v1"), _derive(master, b"rentgate pii hmac v1"))

    def digest(self, number: str) -> str:
        """Keyed digest of a normalised number: equal numbers, equal digests."""
        _require_normalised(number)
        return hmac.new(self._digest_key, number.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, number: str) -> str:
        _require_normalised(number)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(self._cipher_key).encrypt(nonce, number.encode(), self.key_id.encode())
        return f"{self.key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str) -> str:
        key_id, _, body = token.partition(":")
        if key_id != self.key_id:
            raise PiiDecryptError(f"identity number sealed with key {key_id!r}, this server holds {self.key_id!r}")
        try:
            raw = base64.b64decode(body, validate=True)
            return AESGCM(self._cipher_key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], key_id.encode()).decode()
        except (binascii.Error, InvalidTag, ValueError) as exc:
            raise PiiDecryptError("stored identity number is damaged or was sealed with another key") from exc


def read_key_file(path: str | Path) -> PiiVault:
    try:
        text = Path(path).read_text(encoding="ascii").strip()
        master = base64.b64decode(text, validate=True)
    except (OSError, UnicodeDecodeError, binascii.Error) as exc:
        raise PiiKeyUnavailable(f"identity-number key {path}: {exc}") from exc
    return PiiVault.from_master(master)


def load_vault(key_file: str | None, database_url: str) -> PiiVault:
    """The configured key, or one generated next to a SQLite database."""
    found = find_vault(key_file, database_url)
    if found is not None:
        return found
    path = generated_key_path(database_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_key_file(path)
    log.warning("generated identity-number key %s: back it up, without it stored numbers cannot be read", path)
    return read_key_file(path)


def find_vault(key_file: str | None, database_url: str) -> PiiVault | None:
    """The configured key, or the one next to a SQLite database; None when
    that one is not generated yet. Creates nothing (an import that only
    checks must leave no key file behind)."""
    if key_file:
        return read_key_file(key_file)
    path = generated_key_path(database_url)
    return read_key_file(path) if path.exists() else None


def generated_key_path(database_url: str) -> Path:
    """Where the key of a SQLite database is kept; raises PiiKeyUnavailable
    when the database cannot have one (PostgreSQL, in-memory)."""
    url = make_url(database_url)
    database = url.database
    if url.get_backend_name() != "sqlite":
        raise PiiKeyUnavailable("no identity-number key: set RENTGATE_PII_KEY_FILE to a file holding 32 random "
                                "bytes in base64 (`rentgate keys pii` writes one); keys are only generated for "
                                "SQLite databases")
    if not database or database == ":memory:" or database.startswith("file:"):
        raise PiiKeyUnavailable("no identity-number key: an in-memory database has no folder to keep a "
                                "generated key in; set RENTGATE_PII_KEY_FILE")
    return Path(database).resolve().parent / GENERATED_KEY_NAME


def write_key_file(path: str | Path) -> bool:
    """Write a new key with mode 600; False if the file already exists (two
    servers starting at once must not end up with two keys)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return True


# The one form server/registry/idnumber.parse_id_number produces. A number
# in any other spelling (full-width, lower-case x, spaces) would get a digest
# of its own and so a second person: a caller that skipped the parser is a
# bug, refused here rather than stored.
_NORMALISED = re.compile(r"[0-9]{17}[0-9X]")


def _require_normalised(number: str) -> None:
    if not _NORMALISED.fullmatch(number):
        raise ValueError("not a normalised identity number: pass it through parse_id_number first")
