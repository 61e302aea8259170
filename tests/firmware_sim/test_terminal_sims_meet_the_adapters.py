"""The simulated terminals against the gateway's other two terminal
adapters, each written from the vendors' documents by someone else: the
alert-stream reader (Hikvision) and the ADMS server (ZKTeco)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from firmware_sim.isapi_terminal import IsapiTerminalSim, StreamFormat
from firmware_sim.zkteco_terminal import ZktecoTerminalSim
from gateway.devices.hikvision_stream import HikvisionStreamAdapter, HikvisionStreamConfig
from gateway.devices.zkteco import ZktecoAdapter, ZktecoConfig
from tests.gateway.helpers import wait_until
from tests.gateway.terminal_helpers import RecordingSink


@asynccontextmanager
async def running(adapter: HikvisionStreamAdapter | ZktecoAdapter, name: str) -> AsyncIterator[None]:
    task = asyncio.create_task(adapter.run(), name=name)
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("form", ["json", "xml"])
async def test_the_stream_reader_hears_the_terminals_decisions(tmp_path: Path, form: StreamFormat) -> None:
    password = tmp_path / "password"
    password.write_text("Passw0rd!")
    async with IsapiTerminalSim(password="Passw0rd!", stream_format=form, heartbeat_s=0.2) as terminal:
        terminal.store.add_user({"UserInfo": {"employeeNo": "1001", "name": "租户"}})
        terminal.store.add_card({"CardInfo": {"employeeNo": "1001", "cardNo": "3265421170"}})
        config = HikvisionStreamConfig.model_validate({
            "type": "hikvision_stream", "id": "lobby-face", "door": "front", "url": terminal.url,
            "password_file": str(password), "backoff_min_s": 0.05, "backoff_max_s": 0.2})
        sink = RecordingSink()
        adapter = HikvisionStreamAdapter(config, sink)
        async with running(adapter, "hikvision-stream-under-test"):
            await terminal.wait_for(lambda: terminal.subscribers == 1)
            await terminal.present_card("3265421170")
            await terminal.present_card("12345678")
            await wait_until(lambda: len(sink.reads) == 2, what="two reads from the stream")
        assert sink.verdicts == [True, False]


async def test_the_adms_server_and_the_terminal_agree_on_commands_and_punches() -> None:
    config = ZktecoConfig.model_validate({"type": "zkteco_adms", "id": "gate-zk", "door": "front",
                                          "host": "127.0.0.1", "port": 0, "poll_delay_s": 1, "error_delay_s": 1})
    sink = RecordingSink()
    adapter = ZktecoAdapter(config, sink)
    async with running(adapter, "zkteco-under-test"):
        await asyncio.wait_for(adapter.listening.wait(), 5)
        async with ZktecoTerminalSim(f"http://127.0.0.1:{adapter.port}", serial="CKJS201260012",
                                     poll_s=0.05) as terminal:
            await terminal.wait_for(lambda: terminal.registered)
            add, = adapter.queue_commands("CKJS201260012",
                                          ["DATA UPDATE USERINFO PIN=1001\tName=Zhang\tPri=0\tCard=3265421170"])
            assert (await adapter.wait_result("CKJS201260012", add, 5)).ok
            assert (await terminal.present_card("3265421170")).granted
            await wait_until(lambda: len(sink.reads) == 1, what="the punch reported")
            remove, = adapter.queue_commands("CKJS201260012", ["DATA DELETE USERINFO PIN=1001"])
            assert (await adapter.wait_result("CKJS201260012", remove, 5)).ok
            assert not (await terminal.present_card("3265421170")).granted
        assert sink.verdicts == [True]
