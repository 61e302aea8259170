"""``rentgate sim isapi-terminal`` and ``rentgate sim zkteco-terminal``: the
simulated face/card terminals on the command line, for demos and manual
tests (see docs/terminal-sim.md). Progress on stderr; with ``--json`` one
JSON object as the last line of stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from rentgate.aio import wait_event
from rentgate.lang import tr

_PUSH_FORMATS = ("json", "json_alert", "xml", "multipart")


def add_parsers(sim_sub: Any) -> None:
    isapi = sim_sub.add_parser(
        "isapi-terminal", help="a Hikvision face/card terminal speaking ISAPI with digest authentication",
        description="Serves ISAPI (UserInfo, CardInfo, AcsEvent, alertStream, httpHosts, deviceInfo, reboot) "
                    "with its own user and card lists and a lock that decides from them; pushes each event to "
                    "--push-url until answered 200. Runs until Ctrl-C, SIGTERM or --duration.")
    isapi.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    isapi.add_argument("--port", type=int, default=8090, help="the port (0: a free one; the URL is printed)")
    isapi.add_argument("--user", default="admin", help="the digest user name")
    isapi.add_argument("--password-file", required=True, metavar="FILE",
                       help="a file whose first line is the digest password")
    isapi.add_argument("--push-url", default=None, metavar="URL",
                       help="where to post each event (also settable over PUT /ISAPI/Event/notification/httpHosts)")
    isapi.add_argument("--push-format", choices=_PUSH_FORMATS, default="json", help="the form of each push")
    isapi.add_argument("--stream-format", choices=("json", "xml"), default="json",
                       help="the form of each part of the alert stream")
    isapi.add_argument("--present", action="append", default=[], metavar="KIND:VALUE:AT",
                       help="present a card (card:NUMBER:SECONDS) or a face (face:EMPLOYEE_NO:SECONDS) at the "
                            "door AT seconds after the start; may be repeated")
    isapi.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    isapi.add_argument("--json", action="store_true", help="print the events as one JSON object at the end")
    isapi.set_defaults(func=_isapi)
    zk = sim_sub.add_parser(
        "zkteco-terminal", help="a ZKTeco terminal speaking ADMS (push) to a server",
        description="Registers with the server's /iclock/cdata, polls /iclock/getrequest, applies the user "
                    "commands to its own list and reports them on /iclock/devicecmd, and uploads its granted "
                    "punches. Runs until Ctrl-C, SIGTERM or --duration.")
    zk.add_argument("--server", required=True, metavar="URL", help="the ADMS server, such as http://127.0.0.1:8081")
    zk.add_argument("--serial", default="CKJS201260012", help="the terminal's serial number (SN)")
    zk.add_argument("--present", action="append", default=[], metavar="KIND:VALUE:AT",
                    help="present a card (card:NUMBER:SECONDS) or a face (face:PIN:SECONDS); may be repeated")
    zk.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    zk.add_argument("--json", action="store_true", help="print the users and punches as one JSON object at the end")
    zk.set_defaults(func=_zkteco)


def _fail(message: str, code: int = 2) -> int:
    print(tr("错误：", "error: ") + message, file=sys.stderr)
    return code


def _presentations(specs: list[str]) -> list[tuple[float, str, str]] | None:
    out = []
    for spec in specs:
        kind, _, rest = spec.partition(":")
        value, _, at = rest.rpartition(":")
        try:
            when = float(at)
        except ValueError:
            return None
        if kind not in ("card", "face") or not value or not 0 <= when <= 7 * 86400:
            return None
        out.append((when, kind, value))
    return sorted(out)


def _isapi(args: argparse.Namespace) -> int:
    from firmware_sim.isapi_terminal import IsapiTerminalSim

    plan = _presentations(args.present)
    if plan is None:
        return _fail(tr("--present 的格式是 card:卡号:秒 或 face:人员编号:秒", "--present is card:NUMBER:S or face:ID:S"))
    try:
        password = Path(args.password_file).read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        return _fail(tr(f"读不出密码文件：{exc}", f"cannot read the password file: {exc}"))
    terminal = IsapiTerminalSim(host=args.host, port=args.port, username=args.user, password=password,
                                push_url=args.push_url, push_format=args.push_format,
                                stream_format=args.stream_format)

    async def present(kind: str, value: str) -> None:
        await (terminal.present_card(value) if kind == "card" else terminal.present_face(value))

    async def run() -> dict[str, Any]:
        await terminal.start()
        print(tr(f"模拟海康终端：{terminal.url}", f"simulated Hikvision terminal: {terminal.url}"), file=sys.stderr)
        try:
            await _play(plan, present, args.duration)
        finally:
            await terminal.stop()
        return {"url": terminal.url, "users": len(terminal.store.users), "cards": len(terminal.store.cards),
                "events": [e.info() for e in terminal.store.events], "pushed": terminal.push.delivered}

    try:
        result = asyncio.run(run())
    except OSError as exc:
        return _fail(tr(f"无法监听 {args.host}:{args.port}：{exc}", f"cannot listen on {args.host}:{args.port}: {exc}"), 1)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    return 0


def _zkteco(args: argparse.Namespace) -> int:
    from firmware_sim.zkteco_terminal import ZktecoTerminalSim

    plan = _presentations(args.present)
    if plan is None:
        return _fail(tr("--present 的格式是 card:卡号:秒 或 face:工号:秒", "--present is card:NUMBER:S or face:PIN:S"))
    terminal = ZktecoTerminalSim(args.server, serial=args.serial)

    async def present(kind: str, value: str) -> None:
        await (terminal.present_card(value) if kind == "card" else terminal.present_face(value))

    async def run() -> dict[str, Any]:
        await terminal.start()
        print(tr(f"模拟中控终端 {args.serial} -> {args.server}", f"simulated ZKTeco terminal {args.serial} -> "
                 f"{args.server}"), file=sys.stderr)
        try:
            await _play(plan, present, args.duration)
        finally:
            await terminal.stop()
        return {"serial": args.serial, "registered": terminal.registered, "users": sorted(terminal.users),
                "punches": [r.line() for r in terminal.attlog], "refused": len(terminal.refused)}

    result = asyncio.run(run())
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    return 0


async def _play(plan: list[tuple[float, str, str]], present: Any, duration: float | None) -> None:
    """Present what the plan says when it says, then wait for the duration, Ctrl-C or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = loop.time()
    try:
        for at, kind, value in plan:
            if await _stopped(stop, started + at - loop.time()):
                return
            await present(kind, value)
        if duration is not None:
            await _stopped(stop, started + duration - loop.time())
        else:
            await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    return await wait_event(stop, max(seconds, 0))
