"""libosdp's event dicts as our events; malformed ones never raise."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from devices import wiegand
from devices.osdp import CardEvent, InputEvent, StatusEvent, TamperEvent, translate


def test_card_read_is_decoded_as_wiegand() -> None:
    event = translate(7, {"event": 1, "reader_no": 0, "format": 1, "direction": 0, "length": 26,
                          "data": wiegand.pack(wiegand.encode(90, 324), 26)})
    assert isinstance(event, CardEvent) and event.address == 7
    assert event.credential is not None and event.credential.value == "90:324"


def test_bad_parity_is_an_unreadable_card_not_an_exception() -> None:
    event = translate(7, {"event": 1, "format": 1, "length": 26, "data": b"\xff\xff\xff\xc0"})
    assert isinstance(event, CardEvent) and event.credential is None and "parity" in (event.error or "")


def test_notifications_and_status_reports() -> None:
    assert translate(1, {"event": 5, "type": 2, "arg0": 0, "arg1": 0}) == StatusEvent(1, False)
    assert translate(1, {"event": 5, "type": 1, "arg0": 1, "arg1": 0}) is None  # secure channel status
    assert translate(1, {"event": 4, "type": 0, "report": b"\x01\x00"}) == InputEvent(1, (True, False))
    assert translate(1, {"event": 4, "type": 2, "report": b"\x01\x00"}) == TamperEvent(1, True, True)


values = st.one_of(st.none(), st.integers(-2, 600), st.binary(max_size=80), st.text(max_size=5), st.booleans())


@given(st.dictionaries(st.sampled_from(["event", "type", "format", "length", "data", "report", "arg0"]), values))
def test_malformed_events_never_raise(event: dict[str, object]) -> None:
    translate(3, event)
