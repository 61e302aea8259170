"""The decision: each reason a tenant at a door can be given."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.access.decide import Decision, PassbackCheck, decide
from tests.gateway.access.helpers import T0, entry

FULL = entry("AA", person="p-1")


@pytest.mark.parametrize(
    "credential_entry, kwargs, expected",
    [
        (FULL, {}, Decision(True, "granted", "p-1")),
        (None, {}, Decision(False, "unknown")),
        (None, {"revoked": True}, Decision(False, "revoked")),
        (entry("AA", person="p-1", valid_from=T0 + timedelta(seconds=1)), {}, Decision(False, "not_yet_valid", "p-1")),
        (entry("AA", person="p-1", valid_from=T0), {}, Decision(True, "granted", "p-1")),
        (entry("AA", person="p-1", valid_until=T0), {}, Decision(False, "expired", "p-1")),
        (entry("AA", person="p-1", valid_until=T0 + timedelta(seconds=1)), {}, Decision(True, "granted", "p-1")),
        (entry("AA", person="p-1", doors=["door-b"]), {}, Decision(False, "wrong_door", "p-1")),
        (entry("AA", person="p-1", doors=["door-a", "door-b"]), {}, Decision(True, "granted", "p-1")),
        (FULL, {"passback_state": PassbackCheck("entry", "entry")}, Decision(False, "anti_passback", "p-1")),
        (FULL, {"passback_state": PassbackCheck("entry", "exit")}, Decision(True, "granted", "p-1")),
        (FULL, {"passback_state": PassbackCheck("exit", None)}, Decision(True, "granted", "p-1")),
    ],
)
def test_each_reason(credential_entry: object, kwargs: dict[str, object], expected: Decision) -> None:
    decision = decide(credential_entry, door="door-a", now=T0, **kwargs)  # type: ignore[arg-type]
    assert decision == expected
    assert decision.outcome == ("granted" if expected.granted else "denied")


def test_a_reader_without_a_door_admits_only_all_door_entries() -> None:
    assert decide(FULL, door=None, now=T0).granted
    assert decide(entry("AA", doors=["door-a"]), door=None, now=T0).reason == "wrong_door"


def test_expiry_is_checked_before_the_door() -> None:
    late = entry("AA", valid_until=T0, doors=["door-b"])
    assert decide(late, door="door-a", now=T0).reason == "expired"
