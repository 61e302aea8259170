"""The alert-stream adapter against a fake terminal on a real socket that
streams multipart/mixed behind digest authentication, as DS-K1T terminals do."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.devices.hikvision_stream import HikvisionStreamAdapter, HikvisionStreamConfig
from tests.gateway.helpers import wait_until
from tests.gateway.terminal_helpers import RecordingSink

PASSWORD = "Hik-secret-0451"
REALM = "DS-K1T671M"


def alert_xml(serial: int, *, person: str = "", card: str = "", minor: int = 75,
              when: str = "2024-03-01T10:15:30+08:00") -> bytes:
    ids = (f"<employeeNoString>{person}</employeeNoString>" if person else "") + \
          (f"<cardNo>{card}</cardNo>" if card else "")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<EventNotificationAlert version="2.0" '
            f'xmlns="http://www.isapi.org/ver20/XMLSchema"><ipAddress>192.168.1.64</ipAddress>'
            f"<macAddress>44:47:cc:10:20:30</macAddress><dateTime>{when}</dateTime>"
            f"<eventType>AccessControllerEvent</eventType><AccessControllerEvent><majorEventType>5</majorEventType>"
            f"<subEventType>{minor}</subEventType>{ids}<serialNo>{serial}</serialNo></AccessControllerEvent>"
            f"</EventNotificationAlert>").encode()


HEARTBEAT = (b'<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">'
             b"<ipAddress>192.168.1.64</ipAddress><eventType>videoloss</eventType><eventState>inactive</eventState>"
             b"</EventNotificationAlert>")


def part(body: bytes, media: str = "application/xml; charset=\"UTF-8\"") -> bytes:
    return b"--boundary\r\nContent-Type: " + media.encode() + b"\r\nContent-Length: " + \
        str(len(body)).encode() + b"\r\n\r\n" + body + b"\r\n"


def picture(size: int) -> bytes:
    return b"--boundary\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(size).encode() + \
        b"\r\n\r\n" + b"\xff" * size + b"\r\n"


class FakeTerminal:
    """Answers the alert stream behind digest auth; each connection writes
    what the test puts in ``feed`` (``None`` closes the connection)."""

    def __init__(self, password: str = PASSWORD) -> None:
        self.password = password
        self.feed: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.connections = 0
        self.refused = 0
        self.port = 0
        self._nonce = secrets.token_hex(8)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            self.refused += 1
            challenge = f'Digest realm="{REALM}", qop="auth", nonce="{self._nonce}", algorithm="MD5"'
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        self.connections += 1
        response = web.StreamResponse(headers={"Content-Type": "multipart/mixed; boundary=boundary"})
        await response.prepare(request)
        while (chunk := await self.feed.get()) is not None:
            await response.write(chunk)
        return response

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Digest "):
            return False
        fields = dict(item.strip().split("=", 1) for item in header[7:].split(","))
        f = {k: v.strip('"') for k, v in fields.items()}
        ha1 = md5(f"{f['username']}:{REALM}:{self.password}")
        ha2 = md5(f"GET:{f['uri']}")
        expected = md5(f"{ha1}:{f['nonce']}:{f['nc']}:{f['cnonce']}:{f['qop']}:{ha2}")
        return f["username"] == "admin" and f["response"] == expected


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - digest authentication's own hash


@asynccontextmanager
async def terminal_running(terminal: FakeTerminal) -> AsyncIterator[FakeTerminal]:
    app = web.Application()
    app.router.add_get("/ISAPI/Event/notification/alertStream", terminal.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    terminal.port = runner.addresses[0][1]
    try:
        yield terminal
    finally:
        for _ in range(terminal.connections + 1):
            terminal.feed.put_nowait(None)
        await runner.cleanup()


@asynccontextmanager
async def following(terminal: FakeTerminal | str, tmp_path: Path, password: str = PASSWORD, **extra: Any
                    ) -> AsyncIterator[tuple[HikvisionStreamAdapter, RecordingSink]]:
    password_file = tmp_path / "terminal-password"
    password_file.write_text(password + "\n")
    url = terminal if isinstance(terminal, str) else f"http://127.0.0.1:{terminal.port}"
    config = HikvisionStreamConfig.model_validate({
        "type": "hikvision_stream", "id": "lobby-face", "door": "front", "url": url,
        "password_file": str(password_file), "backoff_min_s": 0.05, "backoff_max_s": 0.2, **extra})
    sink = RecordingSink()
    adapter = HikvisionStreamAdapter(config, sink)
    task = asyncio.create_task(adapter.run(), name="hikvision-stream-under-test")
    try:
        yield adapter, sink
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_reads_and_door_events_arrive_from_the_stream_in_xml_and_json(tmp_path: Path,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with terminal_running(FakeTerminal()) as terminal, following(terminal, tmp_path) as (adapter, sink):
        await asyncio.wait_for(adapter.connected.wait(), 5)
        json_alert = json.dumps({"EventNotificationAlert": {
            "macAddress": "44:47:cc:10:20:30", "eventType": "AccessControllerEvent", "dateTime": "2024-03-01T10:16:00",
            "AccessControllerEvent": {"majorEventType": "5", "subEventType": "9", "cardNo": "3265421170",
                                      "serialNo": "2"}}}).encode()
        stream = part(HEARTBEAT) + part(alert_xml(1, person="1001")) + picture(200_000) \
            + part(json_alert, "application/json") + part(alert_xml(3, minor=0x15)) + part(HEARTBEAT)
        for i in range(0, len(stream), 1000):  # as TCP delivers it, in pieces
            terminal.feed.put_nowait(stream[i:i + 1000])
        await wait_until(lambda: sink.door_states == ["open"], what="the door event")
        assert sink.values() == [("terminal_person", "1001"), ("raw", "C2A25F72")]
        assert sink.verdicts == [True, False]
        assert adapter.stats.pictures_dropped == 1 and adapter.stats.rejected == 0
        assert sink.statuses[0] == (True, "alert stream open", None)
        assert terminal.refused >= 1  # the first request was challenged: digest, not basic
    assert PASSWORD not in caplog.text


async def test_a_dropped_stream_reconnects_and_replays_are_not_doubled_but_a_reboot_is_not_lost(
        tmp_path: Path) -> None:
    async with terminal_running(FakeTerminal()) as terminal, following(terminal, tmp_path) as (adapter, sink):
        await asyncio.wait_for(adapter.connected.wait(), 5)
        terminal.feed.put_nowait(part(alert_xml(41, person="1001")) + part(alert_xml(42, person="1002")))
        await wait_until(lambda: len(sink.reads) == 2, what="two reads")
        terminal.feed.put_nowait(None)  # the terminal drops the connection
        await wait_until(lambda: terminal.connections == 2, what="the reconnect")
        assert any(not online for online, _, _ in sink.statuses)
        # On the new connection the terminal repeats what it sent, then reboots:
        # its serials start again at 1, with the times of new events.
        terminal.feed.put_nowait(part(alert_xml(42, person="1002")) + part(alert_xml(
            1, person="1003", when="2024-03-01T11:00:00+08:00")) + part(HEARTBEAT))
        await wait_until(lambda: len(sink.reads) == 3, what="the read after the reboot")
        assert [v for _, v in sink.values()] == ["1001", "1002", "1003"]
        assert adapter.stats.duplicates == 1


async def test_silence_is_a_dead_stream_and_garbage_is_counted(tmp_path: Path) -> None:
    async with terminal_running(FakeTerminal()) as terminal, \
            following(terminal, tmp_path, silence_s=0.3) as (adapter, sink):
        await asyncio.wait_for(adapter.connected.wait(), 5)
        terminal.feed.put_nowait(part(b"<EventNotificationAlert><oops") + b"\x00\x01junk" * 10
                                 + part(alert_xml(7, card="12345678")) + part(HEARTBEAT))
        await wait_until(lambda: sink.values() == [("raw", "BC614E")], what="the read after the garbage")
        assert adapter.stats.rejected == 1
        assert (True, "rejected alert stream parts", 1) in sink.statuses
        # No heartbeat for silence_s: the adapter gives up on the connection and comes back.
        await wait_until(lambda: terminal.connections >= 2, what="a reconnect after the silence")
        assert any(not online and detail and "no data" in detail for online, detail, _ in sink.statuses)


async def test_a_wrong_password_is_reported_and_retried(tmp_path: Path) -> None:
    async with terminal_running(FakeTerminal(password="other")) as terminal, \
            following(terminal, tmp_path) as (adapter, sink):
        await wait_until(lambda: terminal.refused >= 3, what="repeated attempts")
        assert terminal.connections == 0 and not adapter.connected.is_set()
        assert any(not online and "refused the login" in (detail or "") for online, detail, _ in sink.statuses)


def test_the_config_refuses_a_login_in_the_url_and_foreign_environment_variables() -> None:
    base = {"type": "hikvision_stream", "id": "t", "url": "http://10.0.0.5"}
    HikvisionStreamConfig.model_validate({**base, "password_env": "RENTGATE_SECRET_LOBBY"})
    with pytest.raises(ValueError, match="without a login"):
        HikvisionStreamConfig.model_validate({**base, "url": "http://admin:x@10.0.0.5"})
    for foreign in ("AWS_SECRET_ACCESS_KEY", "RENTGATE_DATABASE_URL"):
        with pytest.raises(ValueError, match="RENTGATE_SECRET_"):
            HikvisionStreamConfig.model_validate({**base, "password_env": foreign})


@pytest.mark.parametrize("form", ["xml", "json"])
async def test_the_simulated_terminal_streams_and_its_replay_after_a_reboot_is_not_doubled(
        form: str, tmp_path: Path) -> None:
    from firmware_sim.isapi_terminal import IsapiTerminalSim

    async with IsapiTerminalSim(stream_format=form, heartbeat_s=0.1, stream_replay=5,  # type: ignore[arg-type]
                                reboot_s=0.05) as terminal, \
            following(terminal.url, tmp_path, password="Passw0rd!", silence_s=2) as (adapter, sink):
        await asyncio.wait_for(adapter.connected.wait(), 5)
        await terminal.present_card("3265421170")
        await terminal.present_card("12345678")
        await wait_until(lambda: len(sink.reads) == 2, what="two reads from the stream")
        # The reboot cuts the stream; the new one starts with the last events again.
        await terminal.reboot()
        await wait_until(lambda: adapter.stats.connects >= 2, what="the reconnect after the reboot")
        await terminal.present_card("42")
        await wait_until(lambda: len(sink.reads) == 3, what="the read after the reconnect")
        assert sink.values() == [("raw", "C2A25F72"), ("raw", "BC614E"), ("raw", "2A")]
        assert adapter.stats.duplicates >= 2 and adapter.stats.rejected == 0
