"""From allowlist entries to one terminal's users and cards, and the plan of
writes that makes the terminal hold them."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from devices.hikvision import card_credential
from devices.hikvision_isapi import CardRecord, UserRecord, is_employee_no
from gateway.terminals.mapping import card_no, employee_no, for_terminal
from gateway.terminals.sync import plan
from rentgate.wire import AllowlistEntry, Credential

ZONE = ZoneInfo("Asia/Shanghai")


def _entry(value: str, person: str, fmt: str = "raw", **fields: object) -> AllowlistEntry:
    doc = {"credential": {"format": fmt, "value": value}, "person": person, **fields}
    return AllowlistEntry.model_validate_json(json.dumps(doc))


@given(number=st.integers(min_value=1, max_value=10**32 - 1))
def test_every_card_number_round_trips_through_the_push_parser(number: int) -> None:
    raw = Credential(format="raw", value=format(number, "X"))
    assert card_no(raw) == str(number)
    assert card_credential(str(number)) == raw


@given(person=st.text(min_size=1, max_size=64))
def test_every_person_reference_makes_a_number_the_terminal_takes(person: str) -> None:
    number = employee_no(person)
    assert is_employee_no(number) and employee_no(person) == number


def test_doors_formats_and_validity() -> None:
    entries = [
        _entry("AB", "p-1", valid_from="2026-12-01T00:00:00Z", valid_until="2027-01-01T00:00:00Z"),
        _entry("CD", "p-1", valid_from="2026-11-01T00:00:00Z", valid_until="2026-12-15T00:00:00Z"),
        _entry("EF", "p-2", doors=["back"]),
        _entry("0012345678", "p-3", fmt="em4100"),
        _entry("90:324", "p-4", fmt="wiegand26"),
        _entry("p77", "p-5", fmt="terminal_person"),
    ]
    desired = for_terminal(entries, ["front"], ZONE, "rentgate")
    assert set(desired.cards) == {"171", "205", str(0x0012345678)} and desired.skipped == 1
    user = desired.users[employee_no("p-1")]
    # The widest window of the person's cards, in Beijing time, endTime inclusive.
    assert (user.valid, user.begin, user.end) == (True, "2026-11-01T08:00:00", "2027-01-01T07:59:59")
    assert desired.users["p77"] == UserRecord(employee_no="p77", name="rentgate", valid=True)
    assert employee_no("p-2") not in desired.users
    everywhere = for_terminal([_entry("AB", "p-1")], ["any-door"], ZONE, "rentgate")
    assert set(everywhere.cards) == {"171"}, "an entry naming no door is for every door"


def test_the_plan_removes_first_keeps_foreign_users_and_moves_a_card() -> None:
    desired = for_terminal([_entry("AB", "p-1")], ["front"], ZONE, "rentgate")
    mine = employee_no("p-1")
    users = {"gone": UserRecord("gone", name="rentgate"), "9001": UserRecord("9001", name="landlord")}
    cards = {"171": CardRecord("171", "9001"), "5": CardRecord("5", "9001"), "6": CardRecord("6", "gone")}
    kept = plan(desired, users, cards, label="rentgate", remove_foreign=False)
    assert kept.delete_users == ["gone"] and kept.foreign_users == 1
    assert kept.delete_cards == ["171"], "the landlord's card 5 stays; 171 moves to its allowlist holder"
    assert [u.employee_no for u in kept.put_users] == [mine] and [c.card_no for c in kept.put_cards] == ["171"]
    wiped = plan(desired, users, cards, label="rentgate", remove_foreign=True)
    assert sorted(wiped.delete_users) == ["9001", "gone"] and wiped.foreign_users == 0
    held = plan(desired, {mine: desired.users[mine]}, {"171": CardRecord("171", mine)}, label="rentgate",
                remove_foreign=False)
    assert len(held) == 0
