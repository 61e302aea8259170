"""The Hikvision ISAPI notification parser, from byte fixtures written after
the documented format, and fuzzed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.hikvision import VendorPayloadError, parse_notification

FACE_PASS_JSON = b"""{
 "ipAddress": "192.168.1.64", "portNo": 80, "protocol": "HTTP", "macAddress": "44:47:cc:10:20:30",
 "channelID": 1, "dateTime": "2024-03-01T10:15:30+08:00", "activePostCount": 1,
 "eventType": "AccessControllerEvent", "eventState": "active", "eventDescription": "Access Controller Event",
 "AccessControllerEvent": {"deviceName": "DS-K1T671M", "majorEventType": 5, "subEventType": 75,
  "name": "", "cardReaderKind": 1, "cardReaderNo": 1, "verifyNo": 133, "employeeNoString": "1001",
  "serialNo": 1234, "userType": "normal", "currentVerifyMode": "cardOrFace", "frontSerialNo": 1233,
  "attendanceStatus": "undefined", "label": "", "mask": "no", "purePwdVerifyEnable": true}
}"""

CARD_MULTIPART = (
    b"--MIME_boundary\r\n"
    b'Content-Disposition: form-data; name="event_log"\r\n'
    b"Content-Type: application/json\r\n\r\n"
    b'{"ipAddress": "192.168.1.65", "macAddress": "44:47:cc:10:20:31", "dateTime": "2024-03-01T10:16:00+08:00",'
    b' "eventType": "AccessControllerEvent", "AccessControllerEvent": {"deviceName": "Door 2",'
    b' "majorEventType": 5, "subEventType": 9, "cardNo": "3265421170", "cardType": 1, "serialNo": 77}}\r\n'
    b"--MIME_boundary\r\n"
    b'Content-Disposition: form-data; name="Picture"; filename="Picture.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n"
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x02--not-a-boundary\xff\xd9\r\n"
    b"--MIME_boundary--\r\n"
)
MULTIPART_TYPE = "multipart/form-data; boundary=MIME_boundary"

HEARTBEAT = b'{"ipAddress": "192.168.1.64", "dateTime": "2024-03-01T10:15:30+08:00", "eventType": "heartBeat",' \
            b' "eventState": "active"}'

DOOR_OPEN = b'{"macAddress": "44:47:cc:10:20:30", "eventType": "AccessControllerEvent",' \
            b' "AccessControllerEvent": {"majorEventType": 5, "subEventType": 21, "serialNo": 1235}}'


def test_a_face_match_is_a_read_of_the_person_number() -> None:
    [event] = parse_notification(FACE_PASS_JSON, 'application/json; charset="UTF-8"')
    assert event.kind == "access" and event.verified is True
    assert event.credential is not None
    assert (event.credential.format, event.credential.value) == ("terminal_person", "1001")
    assert event.serial_no == 1234 and event.terminal_keys == ("44:47:cc:10:20:30", "192.168.1.64")
    assert event.time is not None and event.time.utcoffset() == timedelta(hours=8)


def test_a_card_in_a_multipart_post_is_read_and_the_picture_ignored() -> None:
    [event] = parse_notification(CARD_MULTIPART, MULTIPART_TYPE)
    assert event.kind == "access" and event.verified is False  # the terminal did not know the card
    assert event.credential is not None
    assert (event.credential.format, event.credential.value) == ("raw", "C2A25F72")
    assert event.serial_no == 77 and event.device_name == "Door 2"
    assert not any(isinstance(v, bytes) for v in vars(event).values())


def test_heartbeats_carry_no_events_and_door_events_are_told_apart() -> None:
    assert parse_notification(HEARTBEAT, "application/json") == []
    [door] = parse_notification(DOOR_OPEN, "application/json")
    assert door.kind == "door" and door.credential is None


@pytest.mark.parametrize(("body", "content_type", "reason"), [
    (b"<EventNotificationAlert/>", "application/xml", "unsupported content type"),
    (b"{not json", "application/json", "not JSON"),
    (b"[1, 2]", "application/json", "expected a JSON object"),
    (b'{"eventType": "AccessControllerEvent"}', "application/json", "no AccessControllerEvent"),
    (b'{"AccessControllerEvent": {"subEventType": 1}}', "application/json", "majorEventType"),
    (b'{"AccessControllerEvent": {"majorEventType": 5, "cardNo": "12 34"}}', "application/json", "cardNo"),
    (b'{"AccessControllerEvent": {"majorEventType": 5, "employeeNoString": {}}}', "application/json",
     "employeeNoString"),
    (CARD_MULTIPART.replace(b"event_log", b"other").replace(b"application/json", b"text/plain"), MULTIPART_TYPE,
     "no JSON part"),
    (CARD_MULTIPART, "multipart/form-data; boundary=wrong", "bad boundary"),
])
def test_garbage_is_rejected_with_a_reason(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(VendorPayloadError, match=reason):
        parse_notification(body, content_type)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=400), content_type=st.sampled_from(["application/json", MULTIPART_TYPE, "", "x/y"]))
def test_random_bytes_never_raise_anything_else(body: bytes, content_type: str) -> None:
    try:
        parse_notification(body, content_type)
    except VendorPayloadError:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_keys = st.sampled_from(["majorEventType", "subEventType", "employeeNoString", "cardNo", "serialNo", "deviceName"])


@settings(max_examples=300, deadline=None)
@given(ace=st.dictionaries(_keys, _json, max_size=6), date=_json)
def test_mangled_events_never_raise_anything_else(ace: dict[str, object], date: object) -> None:
    import json

    body = json.dumps({"eventType": "AccessControllerEvent", "dateTime": date, "AccessControllerEvent": ace})
    try:
        parse_notification(body.encode(), "application/json")
    except VendorPayloadError:
        pass
