"""The simulated ISAPI terminal, written from the vendor's documents, pushes
to the gateway's Hikvision listener, written from the same documents by
someone else: both must agree on every push form, and on the terminal's
verdict."""

from __future__ import annotations

import asyncio

import pytest

from firmware_sim.isapi_terminal import IsapiTerminalSim, PushFormat
from gateway.devices.hikvision import HikvisionAdapter, HikvisionConfig
from tests.gateway.helpers import wait_until
from tests.gateway.terminal_helpers import RecordingSink


@pytest.mark.parametrize("form", ["json", "json_alert", "xml", "multipart"])
async def test_every_push_form_becomes_a_read_with_the_terminals_verdict(form: PushFormat) -> None:
    config = HikvisionConfig.model_validate({"type": "hikvision_isapi", "id": "lobby-face", "door": "front",
                                             "host": "127.0.0.1", "port": 0})
    sink = RecordingSink()
    adapter = HikvisionAdapter(config, sink)
    task = asyncio.create_task(adapter.run(), name="hikvision-under-test")
    try:
        await asyncio.wait_for(adapter.listening.wait(), 5)
        push_url = f"http://127.0.0.1:{adapter.port}{config.path}"
        async with IsapiTerminalSim(push_url=push_url, push_format=form, push_retry_s=0.05) as terminal:
            terminal.store.add_user({"UserInfo": {"employeeNo": "1001", "name": "租户"}})
            terminal.store.add_card({"CardInfo": {"employeeNo": "1001", "cardNo": "3265421170"}})
            terminal.enrol_face("1001")
            granted = await terminal.present_card("3265421170")
            refused = await terminal.present_card("12345678")
            face = await terminal.present_face("1001")
            for event in (granted, refused, face):
                await terminal.delivered(event.serial_no)
        await wait_until(lambda: len(sink.reads) == 3, what="three reads")
        assert sink.verdicts == [True, False, True]
        assert sink.values()[2] == ("terminal_person", "1001")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
