"""The ZKTeco ADMS adapter over a real socket, talked to as a terminal does:
options at start, ATTLOG posts, command polls and results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devices.zkteco_adms import user_delete, user_update
from gateway.devices.zkteco import CommandError, ZktecoAdapter, ZktecoConfig
from tests.gateway.helpers import wait_until
from tests.gateway.terminal_helpers import RecordingSink

SN = "CJDE193560303"


def _config(**extra: Any) -> ZktecoConfig:
    return ZktecoConfig.model_validate({"type": "zkteco_adms", "id": "lobby-zk", "door": "front",
                                        "host": "127.0.0.1", "port": 0, **extra})


@asynccontextmanager
async def serving(config: ZktecoConfig) -> AsyncIterator[tuple[ZktecoAdapter, RecordingSink, ZkTerminal]]:
    sink = RecordingSink()
    adapter = ZktecoAdapter(config, sink)
    task = asyncio.create_task(adapter.run(), name="zkteco-under-test")
    await asyncio.wait_for(adapter.listening.wait(), 5)
    try:
        async with aiohttp.ClientSession() as session:
            yield adapter, sink, ZkTerminal(session, f"http://127.0.0.1:{adapter.port}")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class ZkTerminal:
    """What a ZKTeco terminal sends in ADMS mode, request by request."""

    def __init__(self, session: aiohttp.ClientSession, base: str, sn: str = SN) -> None:
        self.session, self.base, self.sn = session, base, sn

    async def start(self) -> tuple[int, dict[str, str]]:
        status, text = await self._call("GET", "/iclock/cdata", options="all", pushver="2.4.1", language="83")
        options = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        return status, options

    async def upload(self, table: str, body: bytes, stamp: str) -> tuple[int, str]:
        return await self._call("POST", "/iclock/cdata", body, table=table, Stamp=stamp)

    async def poll(self) -> str:
        return (await self._call("GET", "/iclock/getrequest", INFO="Ver 8.0.4.2-20210428,2,0,125,192.168.1.201"))[1]

    async def report(self, body: bytes) -> str:
        return (await self._call("POST", "/iclock/devicecmd", body))[1]

    async def _call(self, method: str, path: str, body: bytes | None = None, **query: str) -> tuple[int, str]:
        async with self.session.request(method, self.base + path, params={"SN": self.sn, **query}, data=body,
                                        headers={"Content-Type": "text/plain"}) as response:
            return response.status, await response.text()


ATTLOG = b"1001\t2024-03-01 10:15:30\t0\t15\t0\t0\t0\n1002\t2024-03-01 10:16:02\t0\t2\t0\t0\t0\n"


async def test_records_become_reads_once_and_stamps_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "zkteco-stamps.json"
    async with serving(_config(state_file=str(state))) as (adapter, sink, terminal):
        status, options = await terminal.start()
        assert status == 200 and options["ATTLOGStamp"] == "None" and options["Realtime"] == "1"
        assert await terminal.upload("ATTLOG", ATTLOG, "9001") == (200, "OK: 2")
        # Our OK was lost: the terminal posts the batch again, with one new record.
        again = ATTLOG + b"1003\t2024-03-01 10:20:00\t0\t15\t0\t0\t0\n"
        assert await terminal.upload("ATTLOG", again, "9002") == (200, "OK: 3")
        assert [v for _, v in sink.values()] == ["1001", "1002", "1003"]
        assert sink.verdicts == [True, True, True] and adapter.stats.duplicates == 2
        assert await terminal.upload("OPERLOG", b"OPLOG 4\t0\t2024-03-01 10:21:00\t0\t0\t0\t0\n", "77") == (200, "OK: 1")
        assert (True, f"terminal {SN} connected", None) in sink.statuses
    # A restarted gateway tells the terminal what it already has.
    async with serving(_config(state_file=str(state))) as (_adapter, _sink, terminal):
        _, options = await terminal.start()
        assert (options["ATTLOGStamp"], options["OPERLOGStamp"]) == ("9002", "77")


async def test_bad_lines_are_acknowledged_so_the_batch_is_not_resent_for_ever() -> None:
    async with serving(_config()) as (adapter, sink, terminal):
        body = b"1001\t2024-03-01 10:15:30\t0\t15\nthis is not a record\n1002\t\xff\xfe\t0\t1\n"
        assert await terminal.upload("ATTLOG", body, "5") == (200, "OK: 3")
        assert [v for _, v in sink.values()] == ["1001", "1002"]
        assert adapter.stats.bad_lines == 1 and any(bad == 1 for _, _, bad in sink.statuses)
        card = b"time=2024-03-01 10:17:00\tpin=0\tcardno=3265421170\tevent=0\tverifytype=4\n"
        assert await terminal.upload("rtlog", card, "6") == (200, "OK: 1")
        assert sink.values()[-1] == ("raw", "C2A25F72")


async def test_commands_reach_the_terminal_and_their_results_come_back() -> None:
    async with serving(_config(commands_per_poll=2)) as (adapter, _sink, terminal):
        assert await terminal.poll() == "OK"
        heard: list[tuple[str, int, int]] = []
        adapter.add_result_listener(lambda sn, result: heard.append((sn, result.id, result.code)))
        ids = adapter.queue_commands(SN, [user_update("1001", name="Wang", card="C2A25F72"),
                                          user_update("1002"), user_delete("1003")])
        first = (await terminal.poll()).splitlines()
        assert first == [f"C:{ids[0]}:DATA UPDATE USERINFO PIN=1001\tName=Wang\tPri=0\tPasswd=\tCard=3265421170\tGrp=1",
                         f"C:{ids[1]}:DATA UPDATE USERINFO PIN=1002\tName=\tPri=0\tPasswd=\tCard=\tGrp=1"]
        assert (await terminal.poll()).splitlines() == [f"C:{ids[2]}:DATA DELETE USERINFO PIN=1003"]
        assert adapter.pending(SN) == 3
        waiting = asyncio.create_task(adapter.wait_result(SN, ids[2], timeout=5), name="wait-result")
        report = f"ID={ids[0]}&Return=0&CMD=DATA\nID={ids[1]}&Return=-1002&CMD=DATA\nID={ids[2]}&Return=0&CMD=DATA\n"
        assert await terminal.report(report.encode()) == "OK"
        assert (await waiting).ok
        assert heard == [(SN, ids[0], 0), (SN, ids[1], -1002), (SN, ids[2], 0)]
        assert adapter.pending(SN) == 0 and adapter.result(SN, ids[1]) is not None
        with pytest.raises(CommandError):
            adapter.queue_commands(SN, ["A\nC:1:CLEAR DATA"])


async def test_unknown_terminals_and_addresses_are_refused_and_silence_is_reported() -> None:
    config = _config(terminals={SN: {"device": "side-zk", "door": "side"}}, poll_delay_s=1, error_delay_s=1)
    async with serving(config) as (adapter, sink, terminal):
        stranger = ZkTerminal(terminal.session, terminal.base, sn="OTHER0001")
        assert (await stranger.start())[0] == 403
        assert (await ZkTerminal(terminal.session, terminal.base, sn="../x").start())[0] == 400
        assert await terminal.poll() == "OK"
        with pytest.raises(CommandError, match="not configured"):
            adapter.queue_commands("OTHER0001", ["INFO"])
        await wait_until(lambda: any(not online for online, _, _ in sink.statuses), timeout=10,
                         what="the silent terminal reported offline")
    async with serving(_config(allowed_ips=["10.0.0.0/8"])) as (adapter, _sink, terminal):
        assert (await terminal.start())[0] == 403 and adapter.stats.forbidden == 1


async def test_users_queued_for_the_simulated_terminal_open_its_lock_and_its_reads_arrive() -> None:
    from firmware_sim.zkteco_terminal import ZktecoTerminalSim

    async with serving(_config(poll_delay_s=1)) as (adapter, sink, _), \
            ZktecoTerminalSim(f"http://127.0.0.1:{adapter.port}", serial=SN, poll_s=0.05) as terminal:
        await terminal.wait_for(lambda: terminal.registered)
        assert terminal.options["ATTLOGStamp"] == "None" and terminal.options["Realtime"] == "1"
        [add] = adapter.queue_commands(SN, [user_update("1001", name="Wang", card="C2A25F72")])
        assert (await adapter.wait_result(SN, add, timeout=5)).ok
        assert (await terminal.present_card("3265421170")).granted
        assert not (await terminal.present_card("999")).granted  # not on the terminal: no ATTLOG row
        await terminal.present_face("1001")
        await wait_until(lambda: len(sink.reads) == 2, what="the two granted reads")
        assert sink.values() == [("terminal_person", "1001")] * 2 and sink.verdicts == [True, True]
        [delete] = adapter.queue_commands(SN, [user_delete("1001")])
        assert (await adapter.wait_result(SN, delete, timeout=5)).ok
        assert not (await terminal.present_card("3265421170")).granted
