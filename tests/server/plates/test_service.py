"""Plates in the database, on SQLite and PostgreSQL: issuing is idempotent,
reissuing withdraws the old plate, and a scanned token resolves to its unit
or is refused with the reason a page can show."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.db.models import history, plates, scan_rejections
from server.plates import service
from server.plates.errors import TokenRejected
from server.plates.keys import Keyring
from server.plates.tokens import sign
from tests.server.plates.world import NOW, build

KEYRING = Keyring(keys={"k1": bytes(32)}, current_id="k1")
ROTATED = Keyring(keys={"k1": bytes(32), "k2": bytes(range(32))}, current_id="k2")
RETIRED = Keyring(keys={"k2": bytes(range(32))}, current_id="k2")
DAYS = 1826


def rejected(conn: sa.Connection, keyring: Keyring, token: str, when: object = NOW) -> str:
    with pytest.raises(TokenRejected) as caught:
        service.resolve(conn, keyring, token, when)  # type: ignore[arg-type]
    return caught.value.reason


def test_ensure_is_idempotent_and_tokens_resolve(engine: sa.Engine) -> None:
    world = build(engine)
    ids = list(world.units.values())
    with engine.begin() as conn:
        first = service.ensure_plates(conn, NOW, KEYRING, ids, valid_days=DAYS, actor="t")
    with engine.begin() as conn:
        again = service.ensure_plates(conn, NOW + timedelta(days=3), KEYRING, ids + ids[:2], valid_days=DAYS,
                                      actor="t")
        assert again == first
        assert conn.execute(sa.select(sa.func.count()).select_from(plates)).scalar_one() == len(ids)
        issued = conn.execute(sa.select(sa.func.count()).select_from(history)
                              .where(history.c.entity == "plate", history.c.action == "issued")).scalar_one()
        assert issued == len(ids)
        for unit_id, token in first.items():
            assert service.resolve(conn, KEYRING, token, NOW).unit_id == unit_id


def test_reissue_revokes_the_old_plate(engine: sa.Engine) -> None:
    world = build(engine)
    unit = world.unit("B2", "10")
    with engine.begin() as conn:
        old = service.ensure_plates(conn, NOW, KEYRING, [unit], valid_days=DAYS, actor="t")[unit]
        new = service.reissue(conn, NOW, KEYRING, unit, valid_days=DAYS, actor="t", reason="stolen")
        assert new != old
        assert service.resolve(conn, KEYRING, new, NOW).unit_id == unit
        assert rejected(conn, KEYRING, old) == "revoked"
        row = conn.execute(sa.select(plates).where(plates.c.revoked_at.is_not(None))).mappings().one()
        assert (row["unit_id"], row["revoked_reason"], row["revoked_by"]) == (unit, "stolen", "t")
        # Revoking the units' plates again finds nothing more to revoke.
        assert len(service.revoke_units(conn, NOW, [unit], actor="t", reason="x")) == 1
        assert service.revoke_units(conn, NOW, [unit], actor="t", reason="x") == []
        assert rejected(conn, KEYRING, new) == "revoked"


def test_unknown_plates_wrong_key_ids_and_the_logged_attempt(engine: sa.Engine) -> None:
    world = build(engine)
    unit = world.unit("B1", "301")
    with engine.begin() as conn:
        token = service.ensure_plates(conn, NOW, KEYRING, [unit], valid_days=DAYS, actor="t")[unit]
        plate_id = service.resolve(conn, KEYRING, token, NOW).plate_id
        # Genuinely signed, but no such row (a restored backup, a test server's plate).
        assert rejected(conn, KEYRING, sign("k1", bytes(32), plate_id + 1000, None)) == "unknown_plate"
        # The row exists but was issued under k1: a k2 token for it is not that plate.
        assert rejected(conn, ROTATED, sign("k2", bytes(range(32)), plate_id, None)) == "unknown_plate"
        assert rejected(conn, KEYRING, "k1.garbage") == "malformed"
        assert rejected(conn, KEYRING, token, NOW + timedelta(days=DAYS + 1)) == "expired"

        # The logged attempt: the reason and the token's first characters only.
        forged = sign("k1", bytes(range(32)), plate_id, None)
        with pytest.raises(TokenRejected) as caught:
            service.resolve(conn, KEYRING, forged, NOW)
        service.log_rejection(conn, NOW, caught.value, forged, client="203.0.113.9", user_agent="phone " * 100)
        row = conn.execute(sa.select(scan_rejections)).mappings().one()
    assert row["reason"] == "bad_signature"
    assert forged not in row["token_excerpt"] and len(row["token_excerpt"]) <= 25
    assert row["client"] == "203.0.113.9" and len(row["user_agent"]) == 200


def test_reprints_after_rotation_retirement_and_expiry(engine: sa.Engine) -> None:
    world = build(engine)
    unit = world.unit("B2", "2")
    with engine.begin() as conn:
        old = service.ensure_plates(conn, NOW, KEYRING, [unit], valid_days=DAYS, actor="t")[unit]
        assert service.ensure_plates(conn, NOW, ROTATED, [unit], valid_days=DAYS, actor="t")[unit] == old
        other = world.unit("B2", "201")
        assert service.ensure_plates(conn, NOW, ROTATED, [other], valid_days=DAYS, actor="t")[other].startswith("k2.")
        new = service.ensure_plates(conn, NOW, RETIRED, [unit], valid_days=DAYS, actor="t")[unit]
        assert new.startswith("k2.") and service.resolve(conn, RETIRED, new, NOW).unit_id == unit
        assert conn.execute(sa.select(plates.c.revoked_reason).where(plates.c.key_id == "k1")).scalar_one() \
            == "key_retired"

    # Expired and nearly expired plates are replaced when printed again.
    unit = world.unit("B3", "A-1203")
    with engine.begin() as conn:
        first = service.ensure_plates(conn, NOW, KEYRING, [unit], valid_days=DAYS, actor="t")[unit]
        later = NOW + timedelta(days=DAYS - 10)
        renewed = service.ensure_plates(conn, later, KEYRING, [unit], valid_days=DAYS, actor="t")[unit]
        assert renewed != first
        assert service.resolve(conn, KEYRING, renewed, later).unit_id == unit
        reasons = conn.execute(sa.select(plates.c.revoked_reason).where(plates.c.unit_id == unit,
                                                                        plates.c.revoked_at.is_not(None))).scalars()
        assert list(reasons) == ["renewed"]
        # A short validity still gives the same plate when printed again soon.
        short = world.unit("B9", "1")
        a = service.ensure_plates(conn, NOW, KEYRING, [short], valid_days=8, actor="t")[short]
        assert service.ensure_plates(conn, NOW + timedelta(days=1), KEYRING, [short], valid_days=8,
                                     actor="t")[short] == a
        b = service.ensure_plates(conn, NOW + timedelta(days=9), KEYRING, [short], valid_days=8, actor="t")[short]
        assert b != a
        assert conn.execute(sa.select(plates.c.revoked_reason).where(plates.c.unit_id == short,
                                                                     plates.c.revoked_at.is_not(None))
                            ).scalar_one() == "expired"
