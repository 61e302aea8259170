"""The MQTT terminal parser: topic templates, field maps, garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.face_terminal import FieldMap, TopicTemplate, VendorPayloadError, parse_message

SLASHES = TopicTemplate("face/{sn}/event")
DOTS = TopicTemplate("face.{sn}.request")


def test_templates_subscribe_by_level_and_find_the_serial() -> None:
    assert SLASHES.subscription == "face/+/event" and SLASHES.serial("face/SN123/event") == "SN123"
    assert DOTS.subscription == "+" and DOTS.serial("face.SN9.request") == "SN9"
    assert DOTS.serial("lock.SN9.request") is None and SLASHES.serial("face/a/b/event") is None
    with pytest.raises(ValueError, match="exactly once"):
        TopicTemplate("face/event")


def test_a_face_match_and_a_card_with_the_default_field_map() -> None:
    face = parse_message("face/SN1/event", b'{"id": "m1", "type": "face_pass", "personId": "1001"}', SLASHES,
                         FieldMap())
    assert face is not None and face.serial == "SN1" and face.message_id == "m1"
    assert (face.credential.format, face.credential.value) == ("terminal_person", "1001")
    card = parse_message("face/SN1/event", b'{"cardNo": 3265421170}', SLASHES, FieldMap())
    assert card is not None and (card.credential.format, card.credential.value) == ("raw", "C2A25F72")


def test_a_vendor_shape_through_a_configured_field_map() -> None:
    fields = FieldMap(person="data.userId", card="data.card", event_type="cmd", message_id="msgId",
                      read_types=("unlock_record",))
    payload = b'{"cmd": "unlock_record", "msgId": 7, "data": {"userId": "T-42", "card": ""}}'
    read = parse_message("face.L1.request", payload, DOTS, fields)
    assert read is not None and read.credential.value == "T-42" and read.message_id == "7"
    assert parse_message("face.L1.request", b'{"cmd": "heartbeat"}', DOTS, fields) is None
    with pytest.raises(VendorPayloadError, match="without a person or card"):
        parse_message("face.L1.request", b'{"cmd": "unlock_record"}', DOTS, fields)


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("other/SN1/event", b"{}", "does not match"),
    ("face/SN1/event", b"\xff\xfe", "not JSON"),
    ("face/SN1/event", b'"text"', "expected a JSON object"),
    ("face/SN1/event", b'{"personId": ["a"]}', "personId must be"),
    ("face/SN1/event", b'{"cardNo": "zz"}', "not a card number"),
])
def test_garbage_is_rejected_with_a_reason(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(VendorPayloadError, match=reason):
        parse_message(topic, payload, SLASHES, FieldMap())


@settings(max_examples=300, deadline=None)
@given(topic=st.just("face/SN1/event") | st.text(max_size=30), payload=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_input_never_raises_anything_else(topic: str, payload: bytes) -> None:
    try:
        parse_message(topic, payload, SLASHES, FieldMap())
    except VendorPayloadError:
        pass
