"""A simulated Hikvision face/card terminal that pushes ISAPI event
notifications to an "HTTP listening" URL, as DS-K1T terminals do.

Each event gets the next ``serialNo``. Without a 200 the terminal posts the
same event again (same serial) after a pause; ``lose_response`` makes it post
once more even after a 200, as when the 200 is lost on the way back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

from firmware_sim.errors import SimError

log = logging.getLogger(__name__)

_CHINA = timezone(timedelta(hours=8))

# subEventType values under majorEventType 5 (HCNetSDK MINOR_*).
CARD_PASS, INVALID_CARD, FACE_PASS, FACE_FAIL, DOOR_OPEN, DOOR_CLOSED = 0x01, 0x09, 0x4B, 0x4C, 0x15, 0x16


class TerminalPostError(SimError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


def notification(*, serial_no: int, minor: int, card: str = "", person: str = "", mac: str = "44:47:cc:10:20:30",
                 ip: str = "192.168.1.64", device_name: str = "DS-K1T671M", when: datetime | None = None,
                 major: int = 5) -> dict[str, Any]:
    """An EventNotificationAlert as the terminal sends it."""
    when = when or datetime.now(_CHINA)
    ace: dict[str, Any] = {
        "deviceName": device_name, "majorEventType": major, "subEventType": minor, "cardReaderKind": 1,
        "cardReaderNo": 1, "verifyNo": serial_no % 256, "serialNo": serial_no, "currentVerifyMode": "cardOrFace",
        "frontSerialNo": max(serial_no - 1, 0), "attendanceStatus": "undefined", "label": "", "mask": "no",
        "purePwdVerifyEnable": True,
    }
    if person:
        ace.update(employeeNoString=person, name="", userType="normal")
    if card:
        ace.update(cardNo=card, cardType=1)
    return {
        "ipAddress": ip, "portNo": 80, "protocol": "HTTP", "macAddress": mac, "channelID": 1,
        "dateTime": when.isoformat(timespec="seconds"), "activePostCount": 1, "eventType": "AccessControllerEvent",
        "eventState": "active", "eventDescription": "Access Controller Event", "AccessControllerEvent": ace,
    }


def multipart_body(doc: dict[str, Any], *, part_name: str = "event_log",
                   picture: bytes | None = None) -> tuple[bytes, str]:
    """``(body, content_type)`` of a multipart post, as firmware that attaches
    the captured face sends it."""
    boundary = f"MIME_boundary_{uuid.uuid4().hex[:16]}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{part_name}"\r\n'
        f"Content-Type: application/json\r\n\r\n".encode() + json.dumps(doc, indent=1).encode() + b"\r\n",
    ]
    if picture is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="Picture"; filename="Picture.jpg"\r\n'
            f"Content-Type: image/jpeg\r\nContent-Length: {len(picture)}\r\n\r\n".encode() + picture + b"\r\n",
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# A few bytes that look like the start of a JPEG: the gateway must drop it unseen.
FAKE_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8 + b"\xff\xd9"


@dataclass
class HikvisionTerminalSim:
    url: str
    mac: str = "44:47:cc:10:20:30"
    ip: str = "192.168.1.64"
    multipart: bool = False
    picture: bool = False
    retry_s: float = 0.2
    max_attempts: int = 5
    next_serial: int = 1
    posts: int = 0
    statuses: list[int] = field(default_factory=list)

    async def swipe(self, card: str, *, minor: int = CARD_PASS, lose_response: bool = False) -> int:
        """Present a card; returns the event's serialNo."""
        return await self._event(minor=minor, card=card, lose_response=lose_response)

    async def face(self, person: str, *, minor: int = FACE_PASS, lose_response: bool = False) -> int:
        """A face (or fingerprint) match of an enrolled person number."""
        return await self._event(minor=minor, person=person, lose_response=lose_response)

    async def door(self, minor: int = DOOR_OPEN) -> int:
        return await self._event(minor=minor)

    async def _event(self, *, minor: int, card: str = "", person: str = "", lose_response: bool = False) -> int:
        serial, self.next_serial = self.next_serial, self.next_serial + 1
        doc = notification(serial_no=serial, minor=minor, card=card, person=person, mac=self.mac, ip=self.ip)
        if self.multipart:
            body, content_type = multipart_body(doc, picture=FAKE_JPEG if self.picture else None)
        else:
            body, content_type = json.dumps(doc).encode(), "application/json; charset=\"UTF-8\""
        await self.deliver(body, content_type)
        if lose_response:
            await self.post(body, content_type)
        return serial

    async def deliver(self, body: bytes, content_type: str) -> None:
        """Post until the gateway answers 200, like the terminal's upload queue."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                if await self.post(body, content_type) == 200:
                    return
            except aiohttp.ClientError as exc:
                log.info("hikvision sim: post failed (attempt %d): %s", attempt, exc)
            await asyncio.sleep(self.retry_s)
        raise TerminalPostError(self.url, f"no 200 after {self.max_attempts} attempts")

    async def post(self, body: bytes, content_type: str) -> int:
        """One post; the HTTP status the gateway answered."""
        self.posts += 1
        async with aiohttp.ClientSession() as session, session.post(
            self.url, data=body, headers={"Content-Type": content_type},
        ) as response:
            await response.read()
            self.statuses.append(response.status)
            return response.status
