"""Plates in the database: issue one per unit, turn a scanned token back
into its unit (signature, expiry, then revocation), revoke, and log every
refused token. Shared by ``rentgate plates``, the scan pages and the API."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from server.db.models import history, plates, scan_rejections
from server.plates.errors import TokenRejected
from server.plates.keys import Keyring
from server.plates.tokens import MAX_TOKEN_CHARS, sign, verify
from server.registry import history as trail

log = logging.getLogger(__name__)
SCAN_PATH = "/p/"
# Printing a plate that expires within this many days issues a new one instead.
RENEW_WITHIN_DAYS = 30
_CHUNK = 500


@dataclass(frozen=True)
class ResolvedPlate:
    plate_id: int
    unit_id: int


def plate_url(public_url: str, token: str) -> str:
    return public_url.rstrip("/") + SCAN_PATH + token


def token_for(keyring: Keyring, plate_id: int, key_id: str, expires_at: datetime | None) -> str:
    """The token printed on a plate row: deterministic, so a reprint of the
    same plate carries the same code."""
    key = keyring.keys.get(key_id)
    if key is None:
        raise TokenRejected("unknown_key", f"plate {plate_id} was signed with retired key {key_id!r}: reissue it",
                            plate_id=plate_id)
    return sign(key_id, key, plate_id, None if expires_at is None else expires_at.date())


def _needs_new_plate(key_id: str, expires_at: datetime | None, keyring: Keyring, now: datetime,
                     valid_days: int) -> str | None:
    """Why an active plate cannot be printed again (its key was retired, it
    expired or is about to), or None. "About to": within RENEW_WITHIN_DAYS,
    or a quarter of the validity if that is shorter (so that a reprint
    right after issuing always gives the same plate)."""
    if key_id not in keyring.keys:
        return "key_retired"
    window = min(RENEW_WITHIN_DAYS, valid_days // 4)
    if expires_at is not None and expires_at.date() < (now + timedelta(days=window)).date():
        return "expired" if expires_at.date() < now.date() else "renewed"
    return None


def ensure_plates(conn: sa.Connection, now: datetime, keyring: Keyring, unit_ids: Iterable[int], *,
                  valid_days: int, actor: str) -> dict[int, str]:
    """Each unit's active plate token, issuing plates for units with none
    (or whose plate's key was retired, or that expired or is about to:
    those are revoked and replaced). Statements are batched: a street of
    10,000 units is a few dozen round trips."""
    wanted = sorted(set(unit_ids))
    tokens: dict[int, str] = {}
    replaced: dict[int, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start:start + _CHUNK]
        rows = conn.execute(sa.select(plates.c.id, plates.c.unit_id, plates.c.key_id, plates.c.expires_at)
                            .where(plates.c.unit_id.in_(chunk), plates.c.revoked_at.is_(None))).all()
        for plate_id, unit_id, key_id, expires_at in rows:
            why = _needs_new_plate(key_id, expires_at, keyring, now, valid_days)
            if why is None:
                tokens[unit_id] = token_for(keyring, plate_id, key_id, expires_at)
            else:
                replaced[plate_id] = why
    for why in sorted(set(replaced.values())):
        _revoke_many(conn, now, [p for p, w in replaced.items() if w == why], actor=actor, reason=why)
    expires_at = now + timedelta(days=valid_days) if valid_days else None
    missing = [u for u in wanted if u not in tokens]
    for start in range(0, len(missing), _CHUNK):
        chunk = missing[start:start + _CHUNK]
        issued = conn.execute(
            sa.insert(plates).returning(plates.c.id, plates.c.unit_id, sort_by_parameter_order=True),
            [{"unit_id": u, "key_id": keyring.current_id, "issued_at": now, "expires_at": expires_at} for u in chunk],
        ).all()
        # history.record's row shape, written in one statement per chunk.
        conn.execute(sa.insert(history), [
            {"at": now, "actor": actor[:64], "entity": "plate", "entity_id": plate_id, "action": "issued",
             "changes": {"unit_id": unit_id, "key_id": keyring.current_id}} for plate_id, unit_id in issued])
        for plate_id, unit_id in issued:
            tokens[unit_id] = token_for(keyring, plate_id, keyring.current_id, expires_at)
    return tokens


def revoke(conn: sa.Connection, now: datetime, plate_id: int, *, actor: str, reason: str) -> bool:
    """False if the plate was already revoked (or does not exist)."""
    done = conn.execute(sa.update(plates).where(plates.c.id == plate_id, plates.c.revoked_at.is_(None))
                        .values(revoked_at=now, revoked_reason=reason[:32], revoked_by=actor[:64])).rowcount
    if done:
        trail.record(conn, now, actor, "plate", plate_id, "revoked", {"reason": reason})
    return bool(done)


def _revoke_many(conn: sa.Connection, now: datetime, plate_ids: list[int], *, actor: str, reason: str) -> None:
    for start in range(0, len(plate_ids), _CHUNK):
        chunk = plate_ids[start:start + _CHUNK]
        conn.execute(sa.update(plates).where(plates.c.id.in_(chunk), plates.c.revoked_at.is_(None))
                     .values(revoked_at=now, revoked_reason=reason[:32], revoked_by=actor[:64]))
        conn.execute(sa.insert(history), [
            {"at": now, "actor": actor[:64], "entity": "plate", "entity_id": plate_id, "action": "revoked",
             "changes": {"reason": reason}} for plate_id in chunk])


def revoke_units(conn: sa.Connection, now: datetime, unit_ids: Iterable[int], *, actor: str, reason: str) -> list[int]:
    """Revoke the active plates of these units; the plate ids revoked."""
    wanted = sorted(set(unit_ids))
    revoked: list[int] = []
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start:start + _CHUNK]
        revoked += conn.execute(sa.select(plates.c.id).where(plates.c.unit_id.in_(chunk),
                                                             plates.c.revoked_at.is_(None))).scalars().all()
    _revoke_many(conn, now, revoked, actor=actor, reason=reason)
    return revoked


def reissue(conn: sa.Connection, now: datetime, keyring: Keyring, unit_id: int, *, valid_days: int, actor: str,
            reason: str = "reissued") -> str:
    """Revoke the unit's plate (a stolen or damaged one) and issue a new one."""
    revoke_units(conn, now, [unit_id], actor=actor, reason=reason)
    return ensure_plates(conn, now, keyring, [unit_id], valid_days=valid_days, actor=actor)[unit_id]


def resolve(conn: sa.Connection, keyring: Keyring, token: str, now: datetime) -> ResolvedPlate:
    """The unit a scanned token stands for, or TokenRejected with the reason."""
    claim = verify(token, keyring.keys, now.date())
    row = conn.execute(sa.select(plates.c.unit_id, plates.c.revoked_at, plates.c.key_id)
                       .where(plates.c.id == claim.plate_id)).first()
    if row is None or row.key_id != claim.key_id:
        raise TokenRejected("unknown_plate", "no such plate", plate_id=claim.plate_id)
    if row.revoked_at is not None:
        raise TokenRejected("revoked", "this plate was withdrawn", plate_id=claim.plate_id)
    return ResolvedPlate(plate_id=claim.plate_id, unit_id=row.unit_id)


def log_rejection(conn: sa.Connection, now: datetime, rejected: TokenRejected, token: str, *,
                  client: str | None, user_agent: str | None) -> None:
    """The logged attempt: the reason, the token's first characters (never
    more, the table is not a store of tokens), who asked."""
    excerpt = token[:24] + ("…" if len(token) > 24 else "")
    conn.execute(sa.insert(scan_rejections).values(
        at=now, reason=rejected.reason, token_excerpt=excerpt, plate_id=rejected.plate_id,
        client=(client or "")[:64] or None, user_agent=(user_agent or "")[:200] or None))
    log.warning("plate scan refused (%s): token %r from %s", rejected.reason, excerpt, client or "?")


__all__ = ["MAX_TOKEN_CHARS", "ResolvedPlate", "ensure_plates", "log_rejection", "plate_url", "reissue",
           "resolve", "revoke", "revoke_units", "token_for"]
