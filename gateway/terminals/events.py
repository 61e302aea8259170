"""Events a terminal kept while the gateway could not hear it, turned into
what its push would have made: the same parser reads them
(devices.hikvision.parse_notification), so a caught-up read is exactly the
read the push listener would have reported."""

from __future__ import annotations

import json
import logging

from devices.hikvision import DOOR_STATES, TerminalEvent, VendorPayloadError, parse_notification
from devices.hikvision_isapi import AcsEventRecord
from gateway.devices.base import DoorStateName

log = logging.getLogger(__name__)


def as_terminal_event(record: AcsEventRecord) -> TerminalEvent | None:
    ace: dict[str, object] = {"majorEventType": record.major, "subEventType": record.minor,
                              "serialNo": record.serial_no}
    if record.employee_no:
        ace["employeeNoString"] = record.employee_no
    if record.card_no:
        ace["cardNo"] = record.card_no
    doc: dict[str, object] = {"eventType": "AccessControllerEvent", "AccessControllerEvent": ace}
    if record.time is not None:
        doc["dateTime"] = record.time.isoformat()
    try:
        events = parse_notification(json.dumps(doc).encode(), "application/json")
    except VendorPayloadError as exc:
        log.warning("caught-up event %s not usable: %s", record.serial_no, exc.reason)
        return None
    return events[0] if events else None


def door_state(event: TerminalEvent) -> DoorStateName | None:
    return DOOR_STATES.get(event.minor) if event.kind == "door" else None
