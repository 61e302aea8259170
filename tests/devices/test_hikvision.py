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
    (b"<EventNotificationAlert/>", "application/xml", "no AccessControllerEvent"),
    (b"<EventNotificationAlert><eventType>AccessControllerEvent", "text/xml", "not usable XML"),
    (b"<ResponseStatus><statusCode>1</statusCode></ResponseStatus>", "application/xml", "not EventNotificationAlert"),
    (b"{}", "image/jpeg", "unsupported content type"),
    (b"{not json", "application/json", "not JSON"),
    (b"[1, 2]", "application/json", "expected a JSON object"),
    (b'{"eventType": "AccessControllerEvent"}', "application/json", "no AccessControllerEvent"),
    (b'{"AccessControllerEvent": {"subEventType": 1}}', "application/json", "majorEventType"),
    (b'{"AccessControllerEvent": {"majorEventType": 5, "cardNo": "12 34"}}', "application/json", "cardNo"),
    (b'{"AccessControllerEvent": {"majorEventType": 5, "employeeNoString": {}}}', "application/json",
     "employeeNoString"),
    (CARD_MULTIPART.replace(b"event_log", b"other").replace(b"application/json", b"text/plain"), MULTIPART_TYPE,
     "no event part"),
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


FACE_PASS_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<EventNotificationAlert version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema">
<ipAddress>192.168.1.64</ipAddress>
<portNo>80</portNo>
<protocol>HTTP</protocol>
<macAddress>44:47:cc:10:20:30</macAddress>
<channelID>1</channelID>
<dateTime>2024-03-01T10:15:30+08:00</dateTime>
<activePostCount>1</activePostCount>
<eventType>AccessControllerEvent</eventType>
<eventState>active</eventState>
<eventDescription>Access Controller Event</eventDescription>
<AccessControllerEvent>
<deviceName>\xe5\x8d\x95\xe5\x85\x83\xe9\x97\xa8</deviceName>
<majorEventType>5</majorEventType>
<subEventType>75</subEventType>
<employeeNoString>1001</employeeNoString>
<serialNo> 1234 </serialNo>
<currentVerifyMode>cardOrFace</currentVerifyMode>
</AccessControllerEvent>
</EventNotificationAlert>
"""

HEARTBEAT_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<ipAddress>192.168.1.64</ipAddress><dateTime>2024-03-01T10:15:35+08:00</dateTime>
<activePostCount>0</activePostCount><eventType>videoloss</eventType><eventState>inactive</eventState>
</EventNotificationAlert>"""


def _form(event: bytes, *, name: str | None = "event_log", media: str | None = "application/json",
          picture: bytes | None = None, close: bool = True) -> bytes:
    headers = b""
    if name is not None:
        headers += b'Content-Disposition: form-data; name="' + name.encode() + b'"\r\n'
    if media is not None:
        headers += b"Content-Type: " + media.encode() + b"\r\n"
    body = b"--MIME_boundary\r\n" + headers + b"\r\n" + event + b"\r\n"
    if picture is not None:
        body += (b'--MIME_boundary\r\nContent-Disposition: form-data; name="Picture"; filename="Picture.jpg"\r\n'
                 b"Content-Type: image/jpeg\r\n\r\n" + picture + b"\r\n")
    return body + (b"--MIME_boundary--\r\n" if close else b"")


def test_an_xml_alert_is_read_like_its_json_twin() -> None:
    [event] = parse_notification(FACE_PASS_XML, "application/xml; charset=UTF-8")
    [twin] = parse_notification(FACE_PASS_JSON, "application/json")
    assert event == twin.__class__(**{**vars(twin), "device_name": "单元门"})
    assert event.serial_no == 1234  # text with spaces, as XML carries every number


def test_the_hikvision_namespace_and_text_xml_and_heartbeats() -> None:
    body = FACE_PASS_XML.replace(b"www.isapi.org", b"www.hikvision.com")
    assert parse_notification(body, "text/xml")[0].person == "1001"
    assert parse_notification(HEARTBEAT_XML, "application/xml") == []


def test_json_wrapped_in_event_notification_alert_and_string_serials() -> None:
    import json

    doc = json.loads(FACE_PASS_JSON)
    doc["AccessControllerEvent"]["serialNo"] = "1234"
    doc["AccessControllerEvent"]["majorEventType"] = "5"
    [event] = parse_notification(json.dumps({"EventNotificationAlert": doc}).encode(), "application/json")
    assert (event.serial_no, event.major, event.person) == (1234, 5, "1001")


@pytest.mark.parametrize(("name", "media"), [
    ("event_log", "application/xml"), ("EventNotificationAlert", "text/xml"), ("AccessControllerEvent", None),
    ("MoveDetection", None), (None, None), ("anything", "application/xml"),
])
def test_multipart_event_parts_in_xml_under_any_name_or_type(name: str | None, media: str | None) -> None:
    body = _form(FACE_PASS_XML, name=name, media=media, picture=b"\xff\xd8" + b"\x00" * 5000)
    [event] = parse_notification(body, MULTIPART_TYPE)
    assert event.person == "1001" and event.serial_no == 1234


def test_a_picture_of_any_size_is_dropped_but_an_oversize_event_part_is_refused() -> None:
    body = _form(FACE_PASS_JSON, picture=b"\xff" * 3_000_000)
    assert [e.person for e in parse_notification(body, MULTIPART_TYPE)] == ["1001"]
    with pytest.raises(VendorPayloadError, match="larger than the limit"):
        parse_notification(_form(FACE_PASS_JSON), MULTIPART_TYPE, max_document=100)
    with pytest.raises(VendorPayloadError, match="over the limit"):
        parse_notification(FACE_PASS_JSON, "application/json", max_document=100)


def test_a_truncated_multipart_keeps_a_complete_event_part_and_refuses_a_cut_one() -> None:
    # The picture was cut off; the event part before it had ended: the read is not lost.
    cut_picture = _form(FACE_PASS_JSON, picture=b"\xff" * 100, close=False)[:-40]
    assert [e.person for e in parse_notification(cut_picture, MULTIPART_TYPE)] == ["1001"]
    cut_event = _form(FACE_PASS_JSON)[:200]
    with pytest.raises(VendorPayloadError, match="cut off"):
        parse_notification(cut_event, MULTIPART_TYPE)


@pytest.mark.parametrize("attack", [
    # Billion laughs: entity expansion.
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    b"<EventNotificationAlert><eventType>&lol2;</eventType></EventNotificationAlert>",
    # External entity: a file of the gateway.
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<EventNotificationAlert><eventType>&xxe;</eventType></EventNotificationAlert>",
    b'<!DOCTYPE EventNotificationAlert SYSTEM "http://127.0.0.1:9/x.dtd"><EventNotificationAlert/>',
])
def test_xml_with_a_dtd_is_refused_before_anything_is_expanded_or_fetched(attack: bytes) -> None:
    with pytest.raises(VendorPayloadError, match="not usable XML"):
        parse_notification(attack, "application/xml")


def test_deeply_nested_xml_is_refused_or_read_without_recursion() -> None:
    deep = b"<EventNotificationAlert>" + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</EventNotificationAlert>"
    with pytest.raises(VendorPayloadError):
        parse_notification(deep, "application/xml")


def _mutations(doc: bytes) -> st.SearchStrategy[bytes]:
    """A valid document with a few bytes replaced, inserted or cut."""
    def mutate(edits: list[tuple[int, int, bytes]]) -> bytes:
        out = bytearray(doc)
        for position, cut, insert in edits:
            at = position % (len(out) + 1)
            out[at:at + cut] = insert
        return bytes(out)
    edit = st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.binary(max_size=6))
    return st.lists(edit, min_size=1, max_size=4).map(mutate)


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(_mutations(FACE_PASS_XML), _mutations(HEARTBEAT_XML)),
       content_type=st.sampled_from(["application/xml", "text/xml", "", "text/plain"]))
def test_mutated_xml_never_raises_anything_else(body: bytes, content_type: str) -> None:
    try:
        parse_notification(body, content_type)
    except VendorPayloadError:
        pass


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(_mutations(_form(FACE_PASS_XML, media=None, picture=b"\xff\xd8\x00")),
                      _mutations(CARD_MULTIPART)))
def test_mutated_multipart_never_raises_anything_else(body: bytes) -> None:
    try:
        parse_notification(body, MULTIPART_TYPE)
    except VendorPayloadError:
        pass


@pytest.mark.parametrize("encoding", [b"TF-8", b"GB2312", b"x-mac-japanese", b"rot13"])
def test_xml_in_an_encoding_terminals_do_not_use_is_refused_with_a_reason(encoding: bytes) -> None:
    # Found by the fuzzer: a mangled encoding name made expat raise LookupError.
    body = FACE_PASS_XML.replace(b"UTF-8", encoding)
    with pytest.raises(VendorPayloadError, match="encoding"):
        parse_notification(body, "application/xml")
    assert parse_notification(FACE_PASS_XML.replace(b"UTF-8", b"utf-8"), "application/xml")[0].person == "1001"
