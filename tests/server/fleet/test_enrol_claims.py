"""The database half of redeeming a code, on SQLite and PostgreSQL: a claim
released after a failure makes the code usable again (and only that claim's
mark is removed); a used, cancelled or expired code is told apart for the
counters only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from server.db.models import gateway_enrolments
from server.fleet import enrol
from server.web.transactions import write_transaction
from tests.server.fleet.enrol_helpers import seed_landlords


def test_a_released_claim_makes_the_code_usable_again(engine: sa.Engine) -> None:
    people = seed_landlords(engine)
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        made = enrol.create_code(conn, now, building_id=people.building_a, user_id=people.a.id, ttl_s=600)
    digest = enrol.code_digest(made.code)
    with write_transaction(engine) as conn:
        won = enrol.claim(conn, now + timedelta(seconds=1), digest)
    assert isinstance(won, enrol.Claim) and won.building_id == people.building_a and won.created_by == people.a.id
    with write_transaction(engine) as conn:
        assert enrol.claim(conn, now + timedelta(seconds=2), digest) == "used"
        enrol.release(conn, won)
    with engine.connect() as conn:
        assert conn.execute(sa.select(gateway_enrolments.c.used_at)).scalar() is None
    with write_transaction(engine) as conn:
        again = enrol.claim(conn, now + timedelta(seconds=3), digest)
        assert isinstance(again, enrol.Claim)
        # The first claim's release no longer matches the new claim's mark.
        enrol.release(conn, won)
    with engine.connect() as conn:
        assert conn.execute(sa.select(gateway_enrolments.c.used_at)).scalar() is not None


def test_refusals_are_told_apart_for_the_counters(engine: sa.Engine) -> None:
    people = seed_landlords(engine)
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        codes = [enrol.create_code(conn, now, building_id=people.building_a, user_id=people.a.id, ttl_s=600)
                 for _ in range(3)]
        enrol.cancel_code(conn, now, codes[1].enrolment_id)
    later = now + timedelta(seconds=601)
    with write_transaction(engine) as conn:
        assert enrol.claim(conn, later, enrol.code_digest(codes[0].code)) == "expired"
        assert enrol.claim(conn, now, enrol.code_digest(codes[1].code)) == "cancelled"
        assert enrol.claim(conn, now, enrol.code_digest("77777777777Z")) == "unknown"
        assert isinstance(enrol.claim(conn, now, enrol.code_digest(codes[2].code)), enrol.Claim)
        assert [c["id"] for c in enrol.live_codes(conn, now, people.building_a)] == [codes[0].enrolment_id]
        state = enrol.enrolment_state(conn, later, codes[0].enrolment_id)
        assert state is not None and state["state"] == "expired"
