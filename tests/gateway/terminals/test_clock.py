"""Which time a terminal's event is reported at (gateway/terminals/clock.py),
and how the terminal's clock is read (devices/hikvision_isapi.parse_status)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devices.hikvision_isapi import parse_status
from gateway.terminals.clock import event_time, offset_s

CHINA = timezone(timedelta(hours=8))
ARRIVED = datetime(2026, 12, 6, 7, 0, 0, tzinfo=UTC)
DAY = 86400.0


def _at(stamped: datetime | None, offset: float | None = None) -> tuple[datetime, str]:
    stamp = event_time(stamped, ARRIVED, offset_s=offset, tolerance_s=120, max_age_s=30 * DAY)
    return stamp.at, stamp.source


def test_a_right_clock_keeps_when_the_event_happened() -> None:
    an_hour_ago = (ARRIVED - timedelta(hours=1)).astimezone(CHINA)  # re-posted after a cut
    assert _at(an_hour_ago) == (an_hour_ago, "terminal")
    assert _at(an_hour_ago, offset=3.0) == (an_hour_ago, "terminal")


@pytest.mark.parametrize("stamped", [
    datetime(2000, 1, 1, tzinfo=CHINA),  # unset after a power cut
    ARRIVED + timedelta(minutes=10),  # ahead, not measured
    datetime(2026, 12, 6, 15, 0, 0),  # no zone: cannot be placed
    None,
])
def test_a_time_that_cannot_be_believed_gives_the_arrival(stamped: datetime | None) -> None:
    assert _at(stamped) == (ARRIVED, "arrival")


def test_a_clock_measured_wrong_is_corrected_by_its_offset() -> None:
    offset = -3 * 3600.0  # three hours behind
    happened = ARRIVED - timedelta(minutes=20)  # during an outage
    stamped = happened + timedelta(seconds=offset)
    assert _at(stamped, offset) == (happened, "corrected")
    # A live event: about its arrival, never after it.
    assert _at(ARRIVED + timedelta(seconds=offset + 2), offset) == (ARRIVED, "corrected")
    # A clock that also jumped since it was measured: nothing sensible left.
    assert _at(datetime(2000, 1, 1, tzinfo=CHINA), offset) == (ARRIVED, "arrival")


def test_the_offset_is_taken_at_the_middle_of_the_round_trip() -> None:
    sent = ARRIVED
    answered = ARRIVED + timedelta(seconds=2)
    assert offset_s(ARRIVED + timedelta(seconds=61), sent, answered) == 60.0


def test_the_status_gives_uptime_and_the_terminals_clock_in_xml_and_json() -> None:
    xml = (b'<?xml version="1.0" encoding="UTF-8"?><DeviceStatus version="2.0" '
           b'xmlns="http://www.isapi.org/ver20/XMLSchema"><currentDeviceTime>2026-12-06T15:00:01+08:00'
           b"</currentDeviceTime><deviceUpTime>3600</deviceUpTime></DeviceStatus>")
    status = parse_status(xml)
    assert status.uptime_s == 3600
    assert status.device_time == datetime(2026, 12, 6, 7, 0, 1, tzinfo=UTC)
    doc = b'{"DeviceStatus": {"currentDeviceTime": "2026-12-06T15:00:01+08:00", "deviceUpTime": 5}}'
    assert parse_status(doc).device_time == datetime(2026, 12, 6, 7, 0, 1, tzinfo=UTC)
    # No zone, garbage, absent: the clock is not measured (never an error).
    for body in (b'{"DeviceStatus": {"currentDeviceTime": "2026-12-06T15:00:01"}}',
                 b'{"DeviceStatus": {"currentDeviceTime": "soon"}}', b'{"DeviceStatus": {}}',
                 b"<DeviceStatus><currentDeviceTime>" + b"9" * 30 + b"</currentDeviceTime></DeviceStatus>"):
        assert parse_status(body).device_time is None


def test_a_stamp_at_the_edge_of_the_calendar_is_no_crash() -> None:
    from devices.hikvision import TerminalEvent

    for stamped in (datetime(1, 1, 1, tzinfo=CHINA), datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=8)))):
        assert _at(stamped) == (ARRIVED, "arrival")
        assert _at(stamped, offset=-3 * 3600.0) == (ARRIVED, "arrival")
        event = TerminalEvent(kind="access", major=5, minor=1, serial_no=7, mac=None, ip=None, device_id=None,
                              device_name=None, person=None, card="1", verified=True, time=stamped)
        assert event.identity is not None and event.identity.startswith("7/")
