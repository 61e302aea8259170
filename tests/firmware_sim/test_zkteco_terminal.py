"""The simulated ZKTeco ADMS terminal against a small ADMS server of the
test's own: it registers, applies the user commands it is given to its own
list, reports each result, uploads its granted punches and retries an upload
the server did not take."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from firmware_sim.zkteco_terminal import RETURN_UNKNOWN, VERIFY_CARD, ZktecoTerminalSim, parse_results


class AdmsServer:
    def __init__(self) -> None:
        self.commands: list[str] = []
        self.results: list[dict[str, str]] = []
        self.attlog: list[list[str]] = []
        self.stamps: list[str] = []
        self.upload_answers: list[int] = []
        self.url = ""

    async def cdata(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            sn = request.query["SN"]
            assert request.query["options"] == "all"
            return web.Response(text=f"GET OPTION FROM: {sn}\nATTLOGStamp=None\nOPERLOGStamp=9999\n"
                                     "ErrorDelay=0.05\nDelay=0.05\nTransFlag=TransData AttLog\nRealtime=1\n"
                                     "TimeZone=8\n")
        assert request.query["table"] == "ATTLOG"
        body = await request.text()
        if self.upload_answers and self.upload_answers[0] != 200:
            return web.Response(status=self.upload_answers.pop(0), text="error")
        self.stamps.append(request.query["Stamp"])
        rows = [line.split("\t") for line in body.splitlines() if line]
        self.attlog += rows
        return web.Response(text=f"OK: {len(rows)}")

    async def getrequest(self, request: web.Request) -> web.Response:
        if not self.commands:
            return web.Response(text="OK")
        text, self.commands = "\n".join(self.commands) + "\n", []
        return web.Response(text=text)

    async def devicecmd(self, request: web.Request) -> web.Response:
        self.results += parse_results(await request.text())
        return web.Response(text="OK")


@asynccontextmanager
async def adms() -> AsyncIterator[AdmsServer]:
    server = AdmsServer()
    app = web.Application()
    app.router.add_route("*", "/iclock/cdata", server.cdata)
    app.router.add_get("/iclock/getrequest", server.getrequest)
    app.router.add_post("/iclock/devicecmd", server.devicecmd)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


async def test_commands_are_applied_reported_and_the_lock_follows_the_list() -> None:
    async with adms() as server, ZktecoTerminalSim(server.url, poll_s=0.02) as terminal:
        await terminal.wait_for(lambda: terminal.registered)
        assert terminal.options["Delay"] == "0.05"
        server.commands = ["C:11:DATA UPDATE USERINFO PIN=1001\tName=Zhang San\tPri=0\tPasswd=\tCard=3265421170\tGrp=1",
                           "C:12:DATA UPDATE USERINFO PIN=1002\tName=Li Si\tCard=555",
                           "C:13:UNLOCK DOOR"]
        await terminal.wait_for(lambda: len(server.results) == 3)
        assert server.results == [{"ID": "11", "Return": "0", "CMD": "DATA"}, {"ID": "12", "Return": "0", "CMD": "DATA"},
                                  {"ID": "13", "Return": str(RETURN_UNKNOWN), "CMD": "UNLOCK"}]
        assert (await terminal.present_card("3265421170")).granted

        server.commands = ["C:14:DATA DELETE USERINFO PIN=1001"]
        await terminal.wait_for(lambda: len(server.results) == 4)
        assert server.results[-1] == {"ID": "14", "Return": "0", "CMD": "DATA"}
        assert not (await terminal.present_card("3265421170")).granted  # refused by the terminal itself
        assert (await terminal.present_face("1002")).granted
        await terminal.wait_for(lambda: len(server.attlog) == 2)
        assert [(row[0], row[3]) for row in server.attlog] == [("1001", str(VERIFY_CARD)), ("1002", "15")]
        assert len(terminal.refused) == 1


async def test_an_upload_the_server_refuses_is_sent_again() -> None:
    async with adms() as server, ZktecoTerminalSim(server.url, poll_s=0.02, error_delay_s=0.02) as terminal:
        server.commands = ["C:1:DATA UPDATE USERINFO PIN=7\tName=Wang\tCard=77"]
        await terminal.wait_for(lambda: len(server.results) == 1)
        server.upload_answers = [500, 503]
        await terminal.present_card("77")
        await terminal.wait_for(lambda: len(server.attlog) == 1)
        assert terminal.stats.upload_failures == 2
        assert server.attlog[0][0] == "7"


async def test_bad_commands_are_answered_not_crashed_on() -> None:
    async with adms() as server, ZktecoTerminalSim(server.url, poll_s=0.02, max_users=1) as terminal:
        server.commands = ["C:1:DATA UPDATE USERINFO PIN=" + "9" * 40,
                           "C:2:DATA UPDATE USERINFO PIN=1\tName=A",
                           "C:3:DATA UPDATE USERINFO PIN=2\tName=B",
                           "DATA DELETE USERINFO PIN=1"]  # no C:<id>: prefix: ignored, as real units do
        await terminal.wait_for(lambda: len(server.results) == 3)
        assert [r["Return"] for r in server.results] == ["-1", "0", "-12"]
        assert list(terminal.users) == ["1"]
