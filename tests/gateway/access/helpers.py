"""Building signed allowlist messages the way the server will."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gateway.access.store import AllowlistStore
from rentgate import signing, wire
from rentgate.wire import AllowlistDelta, AllowlistEntry, AllowlistSnapshot, Credential

GW = "gw-1"
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
SERVER_KEY = signing.generate_private_key()
KEYS = {"k1": SERVER_KEY.public_key()}


def card(value: str) -> Credential:
    return Credential(format="em4100", value=value)


def entry(value: str, person: str = "", **fields: object) -> AllowlistEntry:
    return AllowlistEntry.model_validate({"credential": card(value), "person": person or f"p-{value}", **fields})


def signed(update: AllowlistSnapshot | AllowlistDelta, key: signing.Ed25519PrivateKey = SERVER_KEY,
           key_id: str = "k1") -> bytes:
    payload = wire.allowlist_payload(update)
    return wire.signed_allowlist_json(payload, key_id, signing.sign(payload.encode(), key))


def snapshot(version: int, *values: str, gw: str = GW, revoked: tuple[str, ...] = ()) -> bytes:
    return signed(AllowlistSnapshot(gw=gw, version=version, issued_at=T0, entries=[entry(v) for v in values],
                                    revoked=[card(v) for v in revoked]))


def delta(base: int, version: int, upserts: tuple[str, ...] = (), removals: tuple[str, ...] = (),
          gw: str = GW) -> bytes:
    return signed(AllowlistDelta(gw=gw, base_version=base, version=version, issued_at=T0,
                                 upserts=[entry(v) for v in upserts], removals=[card(v) for v in removals]))


def open_store(tmp_path: Path, **kwargs: object) -> AllowlistStore:
    return AllowlistStore(tmp_path / "allowlist.sqlite3", GW, KEYS, **kwargs)  # type: ignore[arg-type]
