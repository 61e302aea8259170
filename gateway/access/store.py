"""The allowlist on disk: signed snapshots and deltas from the server, kept in
SQLite (its own file, apart from the outbox) and held in a dict for lookups.

On disk the list is the last snapshot's payload as one text value plus the
deltas applied since, replayed at start and folded into a new base every
``COMPACT_AFTER`` deltas. Writing 100,000 rows would double the time a full
sync takes, and nothing reads the file but this class at start.

``apply`` takes a message exactly as it came off MQTT. Whatever is wrong with it
(forged, for another gateway, older than what we have, a delta that does not
follow our version, garbage) comes back as an :class:`ApplyResult` with a reason
and bumps a counter; nothing raises. A message is first committed to SQLite,
then the in-memory dict is replaced in one assignment, so a reader on any
thread sees either the old list or the new one, never half of each.

Removed credentials leave a tombstone (a delta's removals, entries a newer
snapshot dropped, and a snapshot's ``revoked`` list) so the decision can say
"revoked" rather than "unknown". Tombstones are capped; the newest are kept.
"""

from __future__ import annotations

import gc
import logging
import sqlite3
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from gateway.access.errors import AllowlistStoreError
from rentgate import signing, wire
from rentgate.wire import AllowlistDelta, AllowlistEntry, AllowlistSnapshot, Credential

log = logging.getLogger(__name__)

CredKey = tuple[str, str]  # (format, value)

ApplyReason = Literal[
    "applied",
    "malformed_envelope",
    "unknown_key",
    "bad_signature",
    "malformed_payload",
    "wrong_gateway",
    "stale",
    "need_snapshot",
    "store_error",
]

COMPACT_AFTER = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS base (id INTEGER PRIMARY KEY CHECK (id = 1), payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deltas (version INTEGER PRIMARY KEY, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (
    format TEXT NOT NULL, value TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (format, value)) WITHOUT ROWID;
"""
_INSERT_TOMBSTONE = "INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?)"
_TABLES = ("meta", "base", "deltas", "tombstones")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    reason: ApplyReason
    # The store's version after the message (unchanged unless applied).
    version: int | None
    kind: Literal["snapshot", "delta"] | None = None
    detail: str = ""

    @property
    def applied(self) -> bool:
        return self.reason == "applied"

    @property
    def need_snapshot(self) -> bool:
        """Ask the server for a snapshot (``wire.AllowlistRequest``)."""
        return self.reason == "need_snapshot"


def cred_key(credential: Credential) -> CredKey:
    return (credential.format, credential.value)


class AllowlistStore:
    def __init__(
        self,
        path: str | Path,
        gateway_id: str,
        public_keys: Mapping[str, signing.Ed25519PublicKey],
        *,
        max_tombstones: int = 100_000,
    ) -> None:
        self.path = Path(path)
        self.gateway_id = gateway_id
        self.public_keys = dict(public_keys)
        self.max_tombstones = max_tombstones
        self.counters: Counter[str] = Counter()
        self.version: int | None = None
        self.issued_at: datetime | None = None
        self._entries: dict[CredKey, AllowlistEntry] = {}
        self._tombstones: dict[CredKey, int] = {}
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # A lost last commit after a power cut only makes the next delta
            # ask for a snapshot; the server holds the truth.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            with _gc_paused():
                self._load()
        except sqlite3.Error as exc:
            raise AllowlistStoreError(str(self.path), str(exc)) from exc

    # ------------------------------------------------------------------ reading

    def lookup(self, credential: Credential) -> AllowlistEntry | None:
        return self._entries.get((credential.format, credential.value))

    def is_revoked(self, credential: Credential) -> bool:
        """True for a credential that was removed and is not back."""
        key = (credential.format, credential.value)
        return key in self._tombstones and key not in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def current(self) -> tuple[int | None, list[AllowlistEntry]]:
        """The entries and a version no newer than them (``_swap`` replaces the
        entries first), from any thread: a terminal told it holds this version
        holds at least that."""
        entries, version = self._entries, self.version
        while entries is not self._entries:  # an apply swapped in between the two reads
            entries, version = self._entries, self.version
        return version, list(entries.values())

    @property
    def tombstone_count(self) -> int:
        return len(self._tombstones)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ applying

    def apply(self, message: bytes | str) -> ApplyResult:
        """Verify and apply one ``allowlist`` or ``allowlist_delta`` message."""
        try:
            with _gc_paused():
                result = self._apply(message)
        except sqlite3.Error as exc:
            self._rollback()
            result = ApplyResult("store_error", self.version, detail=str(exc))
        self.counters[result.reason] += 1
        if result.applied:
            log.info("allowlist %s version %s applied (%s entries)", result.kind, result.version, len(self))
        elif result.reason == "stale":
            # Every reconnect redelivers the retained snapshot we already have.
            log.debug("allowlist message ignored: %s", result.detail)
        else:
            log.warning("allowlist message rejected: %s: %s", result.reason, result.detail)
        return result

    def _apply(self, message: bytes | str) -> ApplyResult:
        try:
            envelope = wire.decode_signed_allowlist(message)
        except wire.WireError as exc:
            return ApplyResult("malformed_envelope", self.version, detail=exc.reason)
        if envelope.key_id not in self.public_keys:
            return ApplyResult("unknown_key", self.version, detail=f"key id {envelope.key_id!r}")
        payload = envelope.payload.encode()
        if not signing.verify(payload, envelope.signature, self.public_keys, envelope.key_id):
            return ApplyResult("bad_signature", self.version, detail=f"key id {envelope.key_id!r}")
        try:
            update = wire.decode_allowlist_update(payload)
        except wire.WireError as exc:
            return ApplyResult("malformed_payload", self.version, detail=exc.reason)
        if update.gw != self.gateway_id:
            return ApplyResult("wrong_gateway", self.version, detail=f"for gateway {update.gw!r}")
        if self.version is not None and update.version <= self.version:
            return ApplyResult("stale", self.version, detail=f"version {update.version}, have {self.version}")
        if isinstance(update, AllowlistSnapshot):
            self._apply_snapshot(update, payload.decode())
            return ApplyResult("applied", self.version, "snapshot")
        if update.version <= update.base_version:
            return ApplyResult("malformed_payload", self.version,
                               detail=f"delta version {update.version} not above base {update.base_version}")
        if update.base_version != self.version:
            return ApplyResult("need_snapshot", self.version,
                               detail=f"delta on version {update.base_version}, have {self.version}")
        self._apply_delta(update, payload.decode())
        return ApplyResult("applied", self.version, "delta")

    def _apply_snapshot(self, snapshot: AllowlistSnapshot, payload: str) -> None:
        entries = {cred_key(e.credential): e for e in snapshot.entries}
        tombstones = dict(self._tombstones)
        for key in self._entries.keys() - entries.keys():
            tombstones[key] = snapshot.version
        for credential in snapshot.revoked:
            tombstones.setdefault(cred_key(credential), snapshot.version)
        for key in entries.keys() & tombstones.keys():
            del tombstones[key]
        tombstones = self._capped(tombstones)
        with self._transaction():
            self._write_base(payload)
            self._rewrite_tombstones(tombstones)
            self._write_meta(snapshot.version, snapshot.issued_at)
        self._swap(entries, tombstones, snapshot.version, snapshot.issued_at)

    def _apply_delta(self, delta: AllowlistDelta, payload: str) -> None:
        entries = dict(self._entries)
        tombstones = dict(self._tombstones)
        removed = _apply_delta_to(delta, entries, tombstones)
        capped = self._capped(tombstones)
        with self._transaction():
            self._db.execute("INSERT INTO deltas VALUES (?, ?)", (delta.version, payload))
            if len(capped) < len(tombstones):
                self._rewrite_tombstones(capped)
            else:
                self._db.executemany("DELETE FROM tombstones WHERE format = ? AND value = ?",
                                     (cred_key(e.credential) for e in delta.upserts))
                self._db.executemany(_INSERT_TOMBSTONE, ((f, v, capped[f, v]) for f, v in removed
                                                         if (f, v) in capped))
            self._write_meta(delta.version, delta.issued_at)
            if self._db.execute("SELECT count(*) FROM deltas").fetchone()[0] >= COMPACT_AFTER:
                self._compact(entries, delta)
        self._swap(entries, capped, delta.version, delta.issued_at)

    def _compact(self, entries: dict[CredKey, AllowlistEntry], delta: AllowlistDelta) -> None:
        base = AllowlistSnapshot(gw=self.gateway_id, version=delta.version, issued_at=delta.issued_at,
                                 entries=list(entries.values()))
        self._write_base(wire.allowlist_payload(base))

    def _write_base(self, payload: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO base VALUES (1, ?)", (payload,))
        self._db.execute("DELETE FROM deltas")

    def _capped(self, tombstones: dict[CredKey, int]) -> dict[CredKey, int]:
        if len(tombstones) <= self.max_tombstones:
            return tombstones
        newest = sorted(tombstones.items(), key=lambda kv: kv[1], reverse=True)[: self.max_tombstones]
        return dict(newest)

    def _rewrite_tombstones(self, tombstones: dict[CredKey, int]) -> None:
        self._db.execute("DELETE FROM tombstones")
        self._db.executemany(_INSERT_TOMBSTONE, ((f, v, ver) for (f, v), ver in tombstones.items()))

    def _swap(self, entries: dict[CredKey, AllowlistEntry], tombstones: dict[CredKey, int],
              version: int, issued_at: datetime) -> None:
        # Tombstones first: a reader between the two assignments may see a
        # removed credential still present, never a present one as revoked.
        self._tombstones = tombstones
        self._entries = entries
        self.version = version
        self.issued_at = issued_at

    # ------------------------------------------------------------------ SQLite

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _write_meta(self, version: int, issued_at: datetime) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [("gw", self.gateway_id), ("version", str(version)), ("issued_at", issued_at.isoformat())],
        )

    def _load(self) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            return
        if meta.get("gw") != self.gateway_id:
            # The data dir was moved to another gateway: this list is not ours.
            log.warning("allowlist %s belongs to gateway %s, not %s: discarding it",
                        self.path, meta.get("gw"), self.gateway_id)
            self._wipe()
            return
        try:
            self._load_lists(meta)
        except (wire.WireError, AllowlistStoreError, KeyError, ValueError) as exc:
            # The server holds the truth: an unreadable copy is dropped and the
            # next snapshot replaces it. Until then every card is unknown.
            log.error("allowlist %s unreadable, starting empty: %s", self.path, exc)
            self._entries, self._tombstones, self.version, self.issued_at = {}, {}, None, None
            self._wipe()

    def _wipe(self) -> None:
        with self._transaction():
            for table in _TABLES:
                self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names

    def _load_lists(self, meta: dict[str, str]) -> None:
        base = self._db.execute("SELECT payload FROM base").fetchone()
        if base is None:
            raise AllowlistStoreError(str(self.path), "no base snapshot")
        snapshot = wire.decode_allowlist_update(base[0])
        if not isinstance(snapshot, AllowlistSnapshot):
            raise AllowlistStoreError(str(self.path), "base is not a snapshot")
        entries = {cred_key(e.credential): e for e in snapshot.entries}
        scratch: dict[CredKey, int] = {}
        for (text,) in self._db.execute("SELECT payload FROM deltas ORDER BY version"):
            delta = wire.decode_allowlist_update(text)
            if not isinstance(delta, AllowlistDelta):
                raise AllowlistStoreError(str(self.path), "a snapshot in the delta log")
            _apply_delta_to(delta, entries, scratch)
        self._entries = entries
        self._tombstones = {(f, v): ver for f, v, ver in self._db.execute("SELECT * FROM tombstones")}
        self.version = int(meta["version"])
        self.issued_at = datetime.fromisoformat(meta["issued_at"])
        log.info("allowlist version %s loaded from %s (%s entries)", self.version, self.path, len(self._entries))


def _apply_delta_to(delta: AllowlistDelta, entries: dict[CredKey, AllowlistEntry],
                    tombstones: dict[CredKey, int]) -> list[CredKey]:
    """Apply in place; the removed keys. Removals go first, so a credential
    in both lists ends up present."""
    removed = [cred_key(c) for c in delta.removals]
    for key in removed:
        entries.pop(key, None)
        tombstones[key] = delta.version
    for entry in delta.upserts:
        key = cred_key(entry.credential)
        entries[key] = entry
        tombstones.pop(key, None)
    return removed


@contextmanager
def _gc_paused() -> Iterator[None]:
    # A snapshot makes a few hundred thousand objects, none of them in
    # cycles; the collector's passes over them took a third of the apply.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
