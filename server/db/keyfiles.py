"""Key files kept beside a SQLite database: a demo or a single-box install
gets its signing keys generated once, in the database's folder, so that one
folder holds everything to back up. A PostgreSQL server is given its keys
(several servers share one database, and each generating its own would sign
with keys nobody else knows).

Used by every signing key of the server (allowlists, the audit log's
checkpoints, police webhooks); each turns ``NoFolderBeside`` into its own
words saying which variable to set."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

from rentgate import signing
from server.errors import ServerError


class NoFolderBeside(ServerError):
    """The database has no folder to keep a generated key in. ``reason``:
    "not_sqlite" or "in_memory"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def beside_database(database_url: str, name: str) -> Path:
    """Where a key called ``name`` lives beside this SQLite database."""
    url = make_url(database_url)
    database = url.database
    if url.get_backend_name() != "sqlite":
        raise NoFolderBeside("not_sqlite")
    if not database or database == ":memory:" or database.startswith("file:"):
        raise NoFolderBeside("in_memory")
    return Path(database).resolve().parent / name


def read_or_create_ed25519(path: Path) -> tuple[signing.Ed25519PrivateKey, bool]:
    """The Ed25519 key at ``path``, made first if there is none (and whether
    it was). The new key is written aside (mode 600) and linked into place:
    linking fails when the name exists, so two servers starting at once end
    up with one key, and neither reads a half-written file. Raises
    signing.SigningKeyError for a file that is not a key."""
    if path.exists():
        return signing.load_private_key_file(path), False
    path.parent.mkdir(parents=True, exist_ok=True)
    private = signing.generate_private_key()
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(signing.private_key_pem(private))
    try:
        os.link(draft, path)
    except FileExistsError:
        return signing.load_private_key_file(path), False
    finally:
        draft.unlink()
    return private, True
