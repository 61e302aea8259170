"""The Hikvision push adapter over a real socket, fed by the simulated terminal;
and one terminal's read through a whole gateway to the (fake) server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.hikvision_terminal import DOOR_OPEN, FACE_FAIL, INVALID_CARD, HikvisionTerminalSim, TerminalPostError

DOOR_FORCED = 0x17  # HCNetSDK MINOR_DOOR_OPEN_ABNORMAL
from gateway.config import GatewayConfig
from gateway.devices.hikvision import HikvisionAdapter, HikvisionConfig
from rentgate import wire
from tests.gateway.fake_server import FakeServer
from tests.gateway.helpers import GW, wait_until
from tests.gateway.terminal_helpers import RecordingSink
from tests.gateway.test_app import running
from tests.services import Mosquitto, free_port


def _config(**extra: Any) -> HikvisionConfig:
    return HikvisionConfig.model_validate({"type": "hikvision_isapi", "id": "lobby-face", "door": "front",
                                           "host": "127.0.0.1", "port": 0, **extra})


@asynccontextmanager
async def serving(config: HikvisionConfig) -> AsyncIterator[tuple[HikvisionAdapter, RecordingSink, str]]:
    sink = RecordingSink()
    adapter = HikvisionAdapter(config, sink)
    task = asyncio.create_task(adapter.run(), name="hikvision-under-test")
    await asyncio.wait_for(adapter.listening.wait(), 5)
    try:
        yield adapter, sink, f"http://127.0.0.1:{adapter.port}{config.path}"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("multipart", [False, True])
async def test_swipes_and_faces_become_reads_and_retries_are_deduped(multipart: bool) -> None:
    async with serving(_config()) as (adapter, sink, url):
        terminal = HikvisionTerminalSim(url, multipart=multipart, picture=multipart)
        await terminal.swipe("3265421170")
        await terminal.face("1001", lose_response=True)  # the terminal posts it twice
        await terminal.door(DOOR_OPEN)
        await terminal.door(DOOR_FORCED)
        assert sink.values() == [("raw", "C2A25F72"), ("terminal_person", "1001")]
        assert terminal.statuses == [200, 200, 200, 200, 200]
        assert (adapter.stats.duplicates, adapter.stats.door_events) == (1, 2)
        assert sink.door_states == ["open", "forced"]
        assert sink.statuses[0][0] is True


async def test_the_terminal_verdict_goes_with_the_read() -> None:
    # A terminal opens its own lock: its verdict is the grant door cameras match people with.
    async with serving(_config()) as (_adapter, sink, url):
        terminal = HikvisionTerminalSim(url)
        await terminal.face("1001")
        await terminal.face("1002", minor=FACE_FAIL)
        await terminal.swipe("3265421170", minor=INVALID_CARD)
        assert sink.verdicts == [True, False, False]


async def test_garbage_is_answered_400_and_counted_and_the_server_keeps_serving() -> None:
    async with serving(_config(noise_report_s=0.05)) as (adapter, sink, url):
        terminal = HikvisionTerminalSim(url)
        assert await terminal.post(b"\x00\xffnot json", "application/json") == 400
        assert await terminal.post(b"<xml/>", "application/xml") == 400
        await terminal.swipe("12345678")
        assert sink.values() == [("raw", "BC614E")]
        assert adapter.stats.rejected == 2
        await wait_until(lambda: any(bad == 2 for _, _, bad in sink.statuses), what="the bad-post count reported")


async def test_the_terminal_retries_until_the_gateway_answers() -> None:
    port = free_port()
    config = _config(port=port)
    terminal = HikvisionTerminalSim(f"http://127.0.0.1:{port}{config.path}", retry_s=0.05, max_attempts=100)
    posting = asyncio.create_task(terminal.swipe("42"), name="terminal-swipe")
    await wait_until(lambda: terminal.posts >= 2, what="failed attempts while the gateway is down")
    async with serving(config) as (_, sink, _url):
        await asyncio.wait_for(posting, 10)
        assert sink.values() == [("raw", "2A")]


async def test_unknown_sources_and_terminals_are_refused() -> None:
    async with serving(_config(allowed_ips=["10.0.0.0/8"])) as (adapter, sink, url):
        assert await HikvisionTerminalSim(url).post(b"{}", "application/json") == 403
    config = _config(terminals={"44:47:cc:00:00:01": {"device": "lobby-face"}})
    async with serving(config) as (adapter, sink, url):
        stranger = HikvisionTerminalSim(url, mac="44:47:cc:99:99:99", max_attempts=1, retry_s=0)
        with pytest.raises(TerminalPostError):
            await stranger.swipe("1")
        await HikvisionTerminalSim(url, mac="44:47:cc:00:00:01").swipe("1")
        assert sink.values() == [("raw", "1")] and adapter.stats.forbidden == 1


async def test_an_oversized_post_is_refused() -> None:
    async with serving(_config(max_body_kb=16)) as (_, sink, url):
        assert await HikvisionTerminalSim(url).post(b"{" + b" " * 40_000 + b"}", "application/json") == 413
        await HikvisionTerminalSim(url).swipe("7")
        assert sink.values() == [("raw", "7")]


async def test_a_terminal_read_reaches_the_server_as_its_own_device(tmp_path: Path, mosquitto: Mosquitto, server: FakeServer) -> None:
    port = free_port()
    config = GatewayConfig.model_validate({
        "gateway_id": GW, "mqtt_url": mosquitto.url, "data_dir": str(tmp_path / "data"), "heartbeat_s": 0.5,
        "devices": [{"type": "hikvision_isapi", "id": "lobby-face", "door": "front", "host": "127.0.0.1",
                     "port": port, "terminals": {"44:47:cc:10:20:30": {"device": "side-face", "door": "side"}}}],
    })
    async with running(config):
        terminal = HikvisionTerminalSim(f"http://127.0.0.1:{port}/isapi/events", multipart=True, picture=True,
                                        retry_s=0.05, max_attempts=100)
        await terminal.face("1001")
        await wait_until(lambda: server.seqs("card_read") != [], what="the read at the server")
        read = next(e for e in server.received if isinstance(e, wire.CardRead))
        assert (read.device, read.door, read.credential.format, read.credential.value) == (
            "side-face", "side", "terminal_person", "1001")
        assert read.decision == "granted"  # the terminal's own verdict



def _xml_alert(serial: int, person: str, when: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><EventNotificationAlert version="2.0" '
            f'xmlns="http://www.hikvision.com/ver20/XMLSchema"><macAddress>44:47:cc:10:20:30</macAddress>'
            f"<dateTime>{when}</dateTime><eventType>AccessControllerEvent</eventType><AccessControllerEvent>"
            f"<majorEventType>5</majorEventType><subEventType>75</subEventType>"
            f"<employeeNoString>{person}</employeeNoString><serialNo>{serial}</serialNo>"
            f"</AccessControllerEvent></EventNotificationAlert>").encode()


def _form(event: bytes, picture: bytes) -> tuple[bytes, str]:
    body = (b'--b0undary\r\nContent-Disposition: form-data; name="AccessControllerEvent"\r\n\r\n' + event
            + b'\r\n--b0undary\r\nContent-Disposition: form-data; name="Picture"; filename="face.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + picture + b"\r\n--b0undary--\r\n")
    return body, "multipart/form-data; boundary=b0undary"


async def test_xml_posts_and_a_big_picture_do_not_lose_the_read_and_a_reboot_is_not_a_replay() -> None:
    async with serving(_config(max_body_kb=16, max_upload_kb=4096)) as (adapter, sink, url):
        terminal = HikvisionTerminalSim(url)
        first = _xml_alert(500, "1001", "2024-03-01T10:15:30+08:00")
        assert await terminal.post(first, "application/xml") == 200
        assert await terminal.post(first, "text/xml") == 200  # the 200 was lost: the same event again
        # A 3 MB face picture, far over max_body_kb: dropped as it streams past, the read kept.
        assert await terminal.post(*_form(_xml_alert(501, "1002", "2024-03-01T10:16:00+08:00"),
                                          b"\xff" * 3_000_000)) == 200
        # The terminal rebooted: its serials start again at 1, on new events.
        assert await terminal.post(_xml_alert(1, "1003", "2024-03-01T11:00:00+08:00"), "application/xml") == 200
        assert [v for _, v in sink.values()] == ["1001", "1002", "1003"]
        assert adapter.stats.duplicates == 1
        # Past the whole-upload bound: refused, and the listener keeps serving.
        assert await terminal.post(*_form(_xml_alert(2, "1004", "x"), b"\xff" * 5_000_000)) == 413
        assert await terminal.post(b"<EventNotificationAlert><oops", "application/xml") == 400
        assert await terminal.post(_xml_alert(3, "1005", "1970-01-01T08:00:09+08:00"), "application/xml") == 200
        # A terminal whose clock was never set: the read is reported all the same.
        assert [v for _, v in sink.values()][-1] == "1005"
        # Where an AcsEvent catch-up would start: the last serial, not the highest.
        assert adapter.last_serials == {"44:47:cc:10:20:30": 3}


@pytest.mark.parametrize("form", ["json", "json_alert", "xml", "multipart"])
async def test_the_simulated_terminal_pushes_in_each_form_and_a_wiping_reboot_loses_nothing(form: str) -> None:
    from firmware_sim.isapi_terminal import IsapiTerminalSim

    async with serving(_config()) as (adapter, sink, url), \
            IsapiTerminalSim(push_url=url, push_format=form, reboot_s=0.05) as terminal:  # type: ignore[arg-type]
        first = await terminal.present_card("3265421170")
        await terminal.wait_for(lambda: len(terminal.push.delivered) == 1)
        # A firmware upgrade wipes the log: numbering starts at 1 again. A real
        # one takes minutes, so the next event's time differs.
        await terminal.reboot(lose_events=True)
        terminal.clock_offset_s = 120
        second = await terminal.present_card("3265421170")
        assert second.serial_no == first.serial_no == 1
        await terminal.wait_for(lambda: len(terminal.push.delivered) == 2)
        assert sink.values() == [("raw", "C2A25F72")] * 2 and sink.verdicts == [False, False]
        assert adapter.stats.duplicates == 0 and adapter.stats.rejected == 0
