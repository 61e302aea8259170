"""Run the whole system on this machine: a simulated district, an MQTT broker,
the server, a simulated rental building with two doors and a gateway.

First three months of a district of rental buildings are simulated in a
minute, ending today: tenants arrive, register or not, move and leave, and the
reconciliation cases open and close as they would have. Then the broker, the
server (SQLite), a building whose two doors have OSDP card readers, locks and
door contacts on one RS-485 line, and the gateway that decides at those doors
start as separate processes, exactly as an operator would run them. The demo
prints the addresses of the pages and the logins to use; Ctrl-C stops it.

With --duration S --json it runs headless for S seconds and prints one JSON
object comparing what happened at the doors with what the server stored.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rentgate import demo_dir, demo_osdp, demo_stop, demo_terminal
from rentgate.lang import cli_lang, tr
from server.pages.i18n import in_cli_language

log = logging.getLogger(__name__)

GATEWAY_ID = "demo-bldg-0001"
# The simulated district and its first street (firmware_sim/district/world.py).
DISTRICT_CODE = "440699"
DEMO_STREET = "440699001"


def say(text: str) -> None:
    """A line of the demo's story, for the person watching (stderr: the last
    line of stdout is the JSON result)."""
    print(text, file=sys.stderr, flush=True)


def _percent(ratio: dict[str, Any]) -> str:
    value = ratio.get("value")
    shown = "—" if value is None else f"{value * 100:.1f}%"
    return f"{shown} ({ratio.get('numerator', 0)}/{ratio.get('denominator', 0)})"


def _describe_now(now: dict[str, Any]) -> str:
    """The district today in one line, with the same figures as /overview."""
    rates = tr("，", ", ").join(
        f"{in_cli_language(f'rate.{name}')} {_percent(ratio)}" for name, ratio in now["rates"].items())
    open_cases = tr("，", ", ").join(
        tr(f"{in_cli_language(f'case.{kind}')} {n} 件", f"{in_cli_language(f'case.{kind}')}: {n}")
        for kind, n in sorted(now["open_cases"].items()) if n) or tr("无", "none")
    return tr(f"辖区今天：{rates}；待处理案件：{open_cases}",
              f"the district today: {rates}; open cases: {open_cases}")


class DemoError(Exception):
    """A part of the demo did not come up, or died."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run a simulated district, the broker, the server, a building and its gateway on this machine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="run the building for S seconds, wait until every event is stored, report and exit "
                        "(default: run until Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the results as the last line")
    p.add_argument("--data-dir", default="var/demo", metavar="DIR",
                   help="where the database, logs and plates go: a new or empty folder, or one an earlier demo "
                        "made (which is emptied first); the demo never deletes a folder it did not make")
    p.add_argument("--http-port", type=int, default=8080, help="the server's port (a free one if it is taken)")
    p.add_argument("--rate-per-min", type=float, default=None, metavar="N",
                   help="how many tenants come through the building's doors per minute (default: "
                        f"{demo_osdp.MAX_RATE_PER_MIN:g} with OSDP doors, which is also their most; 60 with EM4100 "
                        "readers)")
    p.add_argument("--tenants", type=int, default=24,
                   help="how many tenants carry cards in the EM4100 building (--readers em4100 only)")
    p.add_argument("--quiet-line", action="store_true",
                   help="no noise on the serial lines (--readers em4100 only)")
    p.add_argument("--district-buildings", type=int, default=8, metavar="N",
                   help="first simulate a district of N rental buildings in accelerated time, printing the "
                        "reconciliation cases as tenants come and go (0: skip it)")
    p.add_argument("--district-days", type=int, default=90, metavar="D",
                   help="how many days of the district to simulate; the simulation ends today")
    p.add_argument("--no-camera", action="store_true",
                   help="no synthetic camera at the building's first door (by default one walks people in after "
                        "the swipes there, sometimes a tailgater, and the gateway counts them)")
    p.add_argument("--readers", choices=("osdp", "em4100"), default="osdp",
                   help="osdp: card readers on RS-485 with locks, door contacts and decisions at the door; "
                        "em4100: read-only 125 kHz readers on serial lines")
    p.set_defaults(func=_run)


def _bad_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the numbers given, in words, before anything starts."""
    checks = (
        (args.duration is not None and not 0 < args.duration <= 86400, "--duration", "1 到 86400 秒", "1 to 86400 s"),
        (not 0 <= args.http_port <= 65535, "--http-port", "0 到 65535", "0 to 65535"),
        (args.rate_per_min is not None and not 0 < args.rate_per_min <= 6000, "--rate-per-min", "大于 0、最多 6000",
         "above 0, at most 6000"),
        (not 1 <= args.tenants <= 100_000, "--tenants", "1 到 100000", "1 to 100000"),
        (not 0 <= args.district_buildings <= 2000, "--district-buildings", "0 到 2000", "0 to 2000"),
        (not 1 <= args.district_days <= 3650, "--district-days", "1 到 3650", "1 to 3650"),
    )
    for bad, flag, zh, en in checks:
        if bad:
            return tr(f"{flag} 应在 {zh} 之间", f"{flag} must be {en}")
    return None


def _run(args: argparse.Namespace) -> int:
    if problem := _bad_arguments(args):
        say(tr("演示没有开始：", "the demo did not start: ") + problem)
        if args.json:
            print(json.dumps({"error": problem}, ensure_ascii=False))
        return 2
    # SIGTERM must stop the children too, as Ctrl-C does; they run in their own
    # sessions so that a terminal's Ctrl-C reaches only the demo (demo_stop.py).
    demo_stop.install()
    demo = Demo(
        data_dir=Path(args.data_dir).absolute(),  # a link is refused, not followed
        http_port=args.http_port,
        rate_per_min=args.rate_per_min if args.rate_per_min is not None else (
            demo_osdp.MAX_RATE_PER_MIN if args.readers == "osdp" else 60.0),
        tenants=args.tenants,
        noise=not args.quiet_line,
        duration_s=args.duration,
        readers=args.readers,
        district_buildings=args.district_buildings,
        district_days=args.district_days,
        camera=not args.no_camera,
    )
    try:
        result = demo.run()
    except KeyboardInterrupt:
        return 130
    except DemoError as exc:
        say(tr("演示没有运行完：", "the demo did not finish: ") + str(exc))
        if args.json:
            print(json.dumps({"error": str(exc)}))
        return 1
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    return 0 if result.get("lost", 0) == 0 and result.get("duplicates", 0) == 0 else 1


def free_port(preferred: int = 0) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# How long each part may take to stop after SIGTERM (the server's graceful
# exit is bounded at 10 s by run_app's shutdown_timeout); all four together
# stay under the 40 s a service manager or a test waits.
_STOP_WITHIN_S = {"sim": 6, "gateway": 8, "terminal": 4, "camera": 4, "server": 13, "broker": 4}

_PART_NAMES = {"broker": "消息服务器", "server": "服务器", "sim": "模拟楼栋", "gateway": "网关", "camera": "模拟摄像头",
               "terminal": "模拟门禁终端"}
# The synthetic camera (firmware_sim/camera): its frame rate, and the door
# line of its 640x480 picture (firmware_sim/camera/layout.py).
CAMERA_FPS = 10
CAMERA_LINE = (160, 240, 480, 240)


def _wait(predicate: Any, timeout: float, what: str, procs: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if demo_stop.exited(proc, 0):
                raise DemoError(tr(f"{_PART_NAMES.get(name, name)}在等待{what}时退出（退出码 {proc.returncode}）；"
                                   "日志在数据文件夹的 logs 里",
                                   f"{name} exited with code {proc.returncode} while waiting for {what}; its log is "
                                   "in the data folder's logs"))
        if predicate():
            return
        demo_stop.pause(0.05)
    raise DemoError(tr(f"等待{what}超过 {timeout:.0f} 秒；日志在数据文件夹的 logs 里",
                       f"timed out after {timeout:.0f} s waiting for {what}; the logs are in the data folder's logs"))


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    token: str


def _create_admin(database_url: str) -> DemoLogin:
    """Migrates the fresh demo database and creates an administrator: the demo
    drives the API with its token, a human logs in to the pages with its password."""
    import secrets
    from datetime import UTC, datetime

    from server.auth.sessions import start_session
    from server.auth.users import create_user
    from server.db import migrate
    from server.db.engine import create_engine

    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine)
        password = secrets.token_urlsafe(12)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            user_id = create_user(conn, now, username="admin", password=password, role="admin",
                                  display_name="demo admin")
            token = start_session(conn, now, user_id, kind="token", ttl=None, label="demo")
    finally:
        engine.dispose()
    return DemoLogin(username="admin", password=password, token=token)


def _create_coordinator(database_url: str) -> DemoLogin:
    """A grid coordinator assigned to every grid of the simulated district."""
    import secrets
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from server.auth.users import create_user
    from server.db.engine import create_engine
    from server.db.models import areas
    from server.grid import grids

    engine = create_engine(database_url)
    try:
        password = secrets.token_urlsafe(12)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            user_id = create_user(conn, now, username="grid1", password=password, role="coordinator",
                                  display_name="网格员 一号")
            for (grid_id,) in conn.execute(sa.select(areas.c.id).where(areas.c.level == "grid")):
                grids.assign(conn, now, "demo", grid_id, user_id)
    finally:
        engine.dispose()
    return DemoLogin(username="grid1", password=password, token="")


def _snapshots_stored(engine: Any, event_ids: list[int]) -> int:
    """How many of these events' snapshots the server has stored."""
    if not event_ids:
        return 0
    import sqlalchemy as sa

    from server.db.models import event_snapshots

    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(event_snapshots)
                                .where(event_snapshots.c.event_id.in_(event_ids))).scalar_one())


def _sample_plate_url(database_url: str, public_url: str) -> str:
    """One printed plate's URL (its token is the one on the sheet)."""
    import sqlalchemy as sa

    from server.db.engine import create_engine
    from server.db.models import plates
    from server.plates.keys import load_keyring
    from server.plates.service import plate_url, token_for

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.select(plates.c.id, plates.c.key_id, plates.c.expires_at)
                               .where(plates.c.revoked_at.is_(None)).order_by(plates.c.id).limit(1)).one()
    finally:
        engine.dispose()
    keyring = load_keyring(None, database_url)
    return plate_url(public_url, token_for(keyring, row.id, row.key_id, row.expires_at))


@dataclass
class Demo:
    data_dir: Path
    http_port: int
    rate_per_min: float
    tenants: int
    noise: bool
    duration_s: float | None
    readers: str = "osdp"
    district_buildings: int = 8
    district_days: int = 90
    camera: bool = True
    camera_port: int | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    district: dict[str, Any] | None = None
    plates: dict[str, Any] | None = None
    token: str = ""
    unit_ids: dict[str, int] = field(default_factory=dict)
    terminal_port: int | None = None
    terminal_password: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def run(self) -> dict[str, Any]:
        try:
            demo_dir.prepare(self.data_dir)
        except (demo_dir.DataDirRefused, OSError) as exc:
            raise DemoError(str(exc)) from exc
        (self.data_dir / "logs").mkdir()
        database_url = f"sqlite:///{self.data_dir / 'rentgate.db'}"
        if self.district_buildings > 0:
            self.district = self._run_district(database_url)
        # Picked only now, just before the broker and server bind them: the
        # district's own processes above take ports of their own meanwhile.
        broker_port = free_port()
        self.http_port = free_port(self.http_port)
        mqtt_url = f"mqtt://127.0.0.1:{broker_port}"
        login = _create_admin(database_url)
        self.token = login.token
        coordinator = _create_coordinator(database_url)
        with ExitStack() as stack:
            stack.callback(self._stop_all)
            self._spawn("broker", ["broker", "--host", "127.0.0.1", "--port", str(broker_port)])
            _wait(lambda: _port_open(broker_port), 20, tr("消息服务器", "the broker"), self.procs)
            self._spawn("server", [
                "server", "--upgrade",
                "--database-url", database_url,
                "--mqtt-url", mqtt_url, "--host", "127.0.0.1", "--port", str(self.http_port),
            ])
            _wait(lambda: self._get("/healthz") is not None, 30, tr("服务器", "the server"), self.procs)
            # The server sweeps once as it starts, today: the cases, grades and
            # rates it leaves are what the pages show and the plates print.
            _wait(self._swept, 120, tr("服务器的首次核查", "the server's first reconciliation sweep"), self.procs)
            if self.readers == "osdp":
                grid = demo_osdp.DEMO_GRID if self.district_buildings > 0 else None
                public_keys, self.unit_ids = demo_osdp.register_building(self.url, GATEWAY_ID, self.token, grid)
            if self.district_buildings > 0:
                self.plates = self._print_plates(database_url)
            if self.readers == "osdp":
                sim_cfg = self._write("building.toml",
                                      demo_osdp.sim_config(self.data_dir, self.duration_s,
                                                           min(self.rate_per_min, demo_osdp.MAX_RATE_PER_MIN)))
                sim_args = ["sim", "osdp-building", "--config", str(sim_cfg), "--json"]
                links = [self.data_dir / demo_osdp.LINK]
                devices = demo_osdp.gateway_devices(self.data_dir, public_keys)
            else:
                sim_cfg = self._write_sim_config()
                sim_args = ["sim", "building", "--config", str(sim_cfg), "--json"]
                links = [self.data_dir / "door-a", self.data_dir / "door-b"]
                devices = self._em4100_devices()
            if self.duration_s is not None:
                sim_args += ["--duration", str(self.duration_s)]
            if self.camera:
                # The camera follows the swipes the building logs, and is
                # up before the first of them.
                swipe_log = self.data_dir / "swipes.jsonl"
                sim_args += ["--swipe-log", str(swipe_log)]
                door = demo_osdp.DOORS[0][0] if self.readers == "osdp" else "door-a"
                devices += self._start_camera(swipe_log, door)
            self._spawn("sim", sim_args, stdout=subprocess.PIPE)
            _wait(lambda: all(p.exists() for p in links), 20, tr("模拟读卡器", "the simulated readers"), self.procs)
            if self.readers == "osdp":
                devices += self._start_terminal()
            self._spawn("gateway", ["gateway", "--config", str(self._write_gateway_config(mqtt_url, devices))])
            _wait(self._gateway_online, 30, tr("网关上线", "the gateway to come online"), self.procs)
            terminal = self._terminal_story()
            log.debug("rentgate demo is running: %s", self.url)
            say(tr(f"服务器：{self.url}", f"server: {self.url}"))
            say(tr(f"管理员登录：{self.url}/login  用户名 {login.username}  密码 {login.password}",
                   f"administrator: log in at {self.url}/login as {login.username} with password {login.password}"))
            say(tr(f"网格员登录：用户名 {coordinator.username}  密码 {coordinator.password}，"
                   f"在 {self.url}/c 处理模拟辖区各网格的任务和巡查",
                   f"grid coordinator: {coordinator.username} / {coordinator.password} works the district's grids "
                   f"at {self.url}/c"))
            if self.plates is not None:
                say(tr(f"第一街道的门牌（A4 PDF）：{self.plates['pdf']}；其中一块门牌的二维码打开 "
                       f"{self.plates['sample_url']}（公开页面；以网格员身份登录后打开的是该房间的巡查页面）",
                       f"door plates of the first street: {self.plates['pdf']}; a plate's code opens "
                       f"{self.plates['sample_url']} (the public page; logged in as the coordinator, the unit page)"))
            now = self._district_now() if self.district_buildings > 0 else None
            if now is not None:
                say(_describe_now(now))
            if self.duration_s is None:
                return self._run_until_interrupted()
            result = self._run_measured()
            result["terminal"] = terminal
            if self.camera:
                result["camera"] = self._camera_stats()
                result["camera_at_server"] = self._camera_at_server(database_url)
            if self.plates is not None:
                # The printed code really opens its plate's public page.
                sample = self.plates["sample_url"]
                try:
                    with urllib.request.urlopen(sample, timeout=5) as resp:
                        page = resp.read().decode("utf-8", errors="replace")
                    self.plates["sample_page_status"] = resp.status
                    self.plates["sample_page_is_plate"] = 'class="plate-banner' in page or "我住在这里" in page
                except (urllib.error.URLError, OSError) as exc:
                    self.plates["sample_page_status"] = getattr(exc, "code", None)
                result["plates"] = self.plates
            if self.district is not None:
                result["district"] = {k: self.district.get(k) for k in (
                    "buildings", "days", "people", "events_published", "events_stored", "events_lost", "kinds",
                    "rates", "targets_met", "start", "end")}
                # What the pages say at the end of the run (the same queries).
                result["district"]["now"] = self._district_now()
            return result

    def _run_district(self, database_url: str) -> dict[str, Any]:
        """The registry and reconciliation at work: months of a simulated
        district in seconds, through the real ingest path, into the demo's
        database (so the pages show it afterwards), ending today. Each case
        is printed as it opens and closes."""
        say(tr(f"模拟一个有 {self.district_buildings} 栋出租楼的辖区，过去 {self.district_days} 天到今天为止；"
               "核查案件随租户来去而发现和关闭：",
               f"simulating the last {self.district_days} days, up to today, of a district of "
               f"{self.district_buildings} rental buildings; reconciliation cases as they open and close:"))
        cmd = [sys.executable, "-m", "rentgate.cli", "sim", "district", "--buildings", str(self.district_buildings),
               "--days", str(self.district_days), "--seed", "7", "--database-url", database_url, "--end-today",
               "--patrols", "--cases", "--json"]
        log_path = self.data_dir / "logs" / "district.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            try:
                assert proc.stderr is not None and proc.stdout is not None
                for raw in proc.stderr:
                    log_file.write(raw)
                    line = raw.decode(errors="replace").rstrip()
                    if line.startswith("[district]"):
                        say("  " + line[len("[district]"):].strip())
                out = proc.stdout.read().decode()
                code = proc.wait()
            finally:
                # Ctrl-C or SIGTERM while it runs: it stops with the demo.
                demo_stop.end(proc, 10)
            if code != 0 or not out.strip():
                raise DemoError(tr(f"辖区模拟失败（退出码 {code}），详见 {log_path}",
                                   f"the district simulation failed (exit {code}); see {log_path}"))
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        kinds = result.get("kinds", {})
        summary = tr("，", ", ").join(
            tr(f"{in_cli_language(f'case.{kind}')} {v['cases']} 件", f"{in_cli_language(f'case.{kind}')}: {v['cases']}")
            for kind, v in kinds.items() if v.get("cases"))
        say(tr(f"辖区模拟完成：存储了 {result.get('events_stored')} 条刷卡记录；案件：{summary}",
               f"district done: {result.get('events_stored')} card reads stored; cases: {summary}"))
        return result

    def _print_plates(self, database_url: str) -> dict[str, Any]:
        """The first street's door plates as an A4 PDF, through the real
        `rentgate plates render`, pointing at this demo's server: an address
        on this machine only, which the demo acknowledges for the renderer."""
        out = self.data_dir / "plates"
        cmd = [sys.executable, "-m", "rentgate.cli", "plates", "render", "--street", DEMO_STREET, "--out", str(out),
               "--base-url", self.url, "--allow-private-url", "--database-url", database_url, "--json"]
        env = {**os.environ, "RENTGATE_DATABASE_URL": database_url}
        done = subprocess.run(cmd, capture_output=True, env=env, stdin=subprocess.DEVNULL)
        (self.data_dir / "logs" / "plates.log").write_bytes(done.stderr)
        if done.returncode != 0 or not done.stdout.strip():
            raise DemoError(tr(f"打印门牌失败（退出码 {done.returncode}）：", f"rendering the door plates failed "
                               f"(exit {done.returncode}): ") + done.stderr.decode(errors="replace").strip()[-300:])
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        pdf = next((f for f in result["files"] if f.endswith(".pdf")), None)
        return {"pdf": pdf, "plates": result["plates"], "pages": result["pages"],
                "sample_url": _sample_plate_url(database_url, self.url)}

    def _swept(self) -> bool:
        body = self._get("/api/v1/reconcile/status")
        return body is not None and json.loads(body).get("last_sweep_at") is not None

    def _district_now(self) -> dict[str, Any] | None:
        """The district as the server sees it now, through the API the pages'
        figures come from: the four rates and the open cases per kind."""
        from server.reconcile.rates import RATES

        rates = self._get(f"/api/v1/rates?level=district&code={DISTRICT_CODE}")
        status = self._get("/api/v1/reconcile/status")
        if rates is None or status is None:
            return None
        items = json.loads(rates).get("items") or []
        if not items:
            return None
        area = items[0]
        return {"rates": {name: area[name] for name in RATES if name in area},
                "open_cases": json.loads(status).get("open_cases", {})}

    # ------------------------------------------------------------------ modes

    def _run_until_interrupted(self) -> dict[str, Any]:
        """Print every entry and alarm as the server stores it, until Ctrl-C."""
        print(tr(f"请打开 {self.url}/（门禁状态）、{self.url}/landlord（楼栋、租户、待办；楼栋页的“终端”可以添加新终端）、"
                 f"{self.url}/fleet（终端状态）、{self.url}/overview"
                 f"（四率）、{self.url}/c（网格员）；按 Ctrl-C 停止。下面是示范楼每一次进出，按服务器保存的顺序：",
                 f"open {self.url}/ (door status), {self.url}/landlord (buildings, tenants, cases; a building's "
                 f"\"Terminals\" adds a new terminal), {self.url}/fleet (the terminals' health), "
                 f"{self.url}/overview (the four rates), {self.url}/c (coordinators); Ctrl-C stops. Below, every "
                 "entry at the demo building as the server stores it:"), flush=True)
        from server.rules import CityRules

        zone = CityRules().zone  # the demo's server runs on the default rules
        stored = 0
        after: Any = None
        try:
            while True:
                for name, proc in self.procs.items():
                    if demo_stop.exited(proc, 0):
                        raise DemoError(tr(f"{name} 意外退出（退出码 {proc.returncode}），日志在 {self.data_dir / 'logs'}",
                                           f"{name} exited with code {proc.returncode}; logs in "
                                           f"{self.data_dir / 'logs'}"))
                # This building's events only: the district's months of reads
                # are already in the same database.
                page = self._events_page(after, limit=200, extra=f"&gateway={GATEWAY_ID}")
                for ev in page["events"]:
                    stored += 1
                    print(_describe(ev, zone), flush=True)
                after = page.get("next") or (page["events"][-1]["id"] if page["events"] else after)
                if not page.get("next"):
                    demo_stop.pause(1)
        except KeyboardInterrupt:
            pass  # said by _stop_all, whichever phase the request came in
        return {"events_stored": stored}

    def _run_measured(self) -> dict[str, Any]:
        sim = self.procs["sim"]
        assert self.duration_s is not None
        try:
            out, _ = sim.communicate(timeout=self.duration_s + 60)
        except subprocess.TimeoutExpired as exc:
            raise DemoError(tr("模拟楼栋没有结束", "the simulated building did not finish")) from exc
        if sim.returncode != 0:
            raise DemoError(tr(f"模拟楼栋退出（退出码 {sim.returncode}）",
                               f"the simulated building exited with code {sim.returncode}"))
        stats = json.loads(out.decode().strip().splitlines()[-1])
        if self.readers == "osdp":
            _wait(self._drained, 60, tr("网关发完待发事件", "the gateway's outbox to drain"), {"gateway": self.procs["gateway"]})
            events = self._all_events()
            return {"duration_s": self.duration_s, "readers": "osdp",
                    **demo_osdp.judge(stats["expected"], events), "server": self.url}
        expected = Counter((door, card) for door, card in stats["expected_reads"])
        _wait(self._drained, 60, tr("网关发完待发事件", "the gateway's outbox to drain"), {"gateway": self.procs["gateway"]})
        stored = Counter(self._stored_reads())
        lost = expected - stored
        extra = stored - expected
        metrics = self._metrics()
        return {
            "duration_s": self.duration_s,
            "swipes": stats["swipes"],
            "events_generated": sum(expected.values()),
            "events_stored": sum(stored.values()),
            "duplicates": sum(extra.values()),
            "lost": sum(lost.values()),
            "redeliveries_absorbed": int(metrics.get("rentgate_duplicates_dropped_total", 0)),
            "dead_letters": int(metrics.get("rentgate_dead_letters_total", 0)),
            "frames_written": sum(d.get("frames_written", 0) for d in stats["doors"].values()),
            "server": self.url,
        }

    # ------------------------------------------------------------------ helpers

    def _spawn(self, name: str, args: list[str], stdout: int | None = None) -> None:
        logfile = open(self.data_dir / "logs" / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the child
        cmd = [sys.executable, "-m", "rentgate", *args]
        # The story on stderr is for the person watching; how each part was
        # started is in its log (and here with --log-level DEBUG).
        log.debug("starting %s: %s", name, " ".join(args))
        # Started and recorded without an interrupt in between: a part started
        # but not in self.procs would never be stopped (and in its own
        # session it does not hear a terminal's Ctrl-C either).
        with demo_stop.safe_points():
            self.procs[name] = subprocess.Popen(
                cmd, stdout=stdout if stdout is not None else logfile, stderr=logfile, stdin=subprocess.DEVNULL,
                # Plates printed from the pages (/c/plates) point at this server.
                # PYTHONFAULTHANDLER: a part that hangs on stop and is aborted
                # leaves its threads' stacks in its log (see _stop_all).
                env={**os.environ, "RENTGATE_PUBLIC_URL": self.url, "PYTHONFAULTHANDLER": "1"},
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops the children in order
            )
        demo_stop.check()

    def _stop_all(self) -> None:
        """Stop the parts in order, each within its own time: the server's
        graceful exit takes up to 10 s, the others a few. A part that does
        not stop is aborted (SIGABRT: with PYTHONFAULTHANDLER set at spawn it
        writes where each of its threads was into its log first), then
        killed, so the demo itself always ends. Another Ctrl-C meanwhile
        does not cut this short, which would leave the rest running: it
        hurries it (each part left is killed at once)."""
        asked = demo_stop.requests()
        if asked:
            say(tr("正在停止……", "stopping ..."))

        def asked_again() -> bool:
            return demo_stop.requests() > asked

        with demo_stop.safe_points():
            for name in ("sim", "gateway", "terminal", "camera", "server", "broker"):
                proc = self.procs.get(name)
                if proc is None:
                    continue
                allowed = _STOP_WITHIN_S[name]
                demo_stop.end(proc, allowed, hurry=asked_again, late=functools.partial(
                    log.warning, "%s did not stop within %d s; aborting it (where it hung is at the end of %s)",
                    name, allowed, self.data_dir / "logs" / f"{name}.log"))
        if asked_again():
            say(tr("再次收到停止请求：各部分已被立即结束，没有等它们自行退出",
                   "asked again to stop: the parts were ended at once, without waiting for them to finish"))

    def _get(self, path: str) -> bytes | None:
        headers = {} if path in ("/healthz", "/metrics") else {"Authorization": f"Bearer {self.token}"}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers),
                                        timeout=5) as resp:
                return bytes(resp.read())
        except (urllib.error.URLError, OSError):
            return None

    def _gateway(self) -> dict[str, Any] | None:
        body = self._get("/api/v1/gateways")
        if body is None:
            return None
        for gw in json.loads(body).get("gateways", []):
            if gw.get("id") == GATEWAY_ID:
                return dict(gw)
        return None

    def _gateway_online(self) -> bool:
        gw = self._gateway()
        return bool(gw and gw.get("online"))

    def _drained(self) -> bool:
        gw = self._gateway()
        return bool(gw and gw.get("online") and gw.get("outbox_depth") == 0 and not gw.get("open_gaps"))

    def _events_page(self, after: Any, limit: int = 1000, extra: str = "") -> dict[str, Any]:
        query = f"/api/v1/events?limit={limit}{extra}"
        if after is not None:
            query += f"&after={after}"
        body = self._get(query)
        if body is None:
            raise DemoError(tr("服务器不再响应", "the server stopped answering"))
        return dict(json.loads(body))

    def _all_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        after: Any = None
        while True:
            page = self._events_page(after, extra=f"&gateway={GATEWAY_ID}")
            events.extend(page["events"])
            after = page.get("next")
            if not after:
                return events

    def _write(self, name: str, text: str) -> Path:
        path = self.data_dir / name
        path.write_text(text)
        return path

    def _stored_reads(self) -> list[tuple[str, str]]:
        reads: list[tuple[str, str]] = []
        after: Any = None
        while True:
            page = self._events_page(after, extra=f"&gateway={GATEWAY_ID}&kind=card_read")
            reads.extend((ev["door"], ev["credential"]["value"]) for ev in page["events"])
            after = page.get("next")
            if not after:
                return reads

    def _metrics(self) -> dict[str, float]:
        body = self._get("/metrics") or b""
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.partition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def _write_sim_config(self) -> Path:
        noise = (
            "bad_checksum = 0.03\nsplit = 0.2\ngarbage = 0.03\nextra_repeats = 0.2\n" if self.noise else ""
        )
        text = f"""name = "rentgate demo building"
seed = 7

[[doors]]
id = "door-a"
link = "{self.data_dir / 'door-a'}"

[[doors]]
id = "door-b"
link = "{self.data_dir / 'door-b'}"

[tenants]
count = {self.tenants}

[swipes]
pattern = "poisson"
rate_per_min = {self.rate_per_min}
duration_s = {self.duration_s if self.duration_s is not None else 31536000}
start_delay_s = 5
repeats = 3

[noise]
{noise}"""
        path = self.data_dir / "building.toml"
        path.write_text(text)
        return path

    def _em4100_devices(self) -> str:
        return "".join(
            f"""
[[devices]]
type = "em4100"
id = "reader-{door}"
door = "{door}"
port = "{self.data_dir / door}"
"""
            for door in ("door-a", "door-b")
        )

    def _start_camera(self, swipe_log: Path, door: str) -> str:
        """Serve the synthetic camera on a free port; its gateway config
        (a camera device at ``door`` and where snapshots are uploaded)."""
        self.camera_port = port = free_port()
        self._spawn("camera", ["sim", "camera", "serve", "--port", str(port), "--fps", str(CAMERA_FPS), "--seed", "7",
                               "--follow", str(swipe_log), "--door", door])
        _wait(lambda: _port_open(port), 20, tr("模拟摄像头", "the simulated camera"), self.procs)
        x1, y1, x2, y2 = CAMERA_LINE
        return f"""
[[devices]]
type = "camera"
id = "{door}摄像头"
door = "{door}"
url = "http://127.0.0.1:{port}/stream.mjpg"
fps = {CAMERA_FPS}
line = [{x1}, {y1}, {x2}, {y2}]
inward = "down"

[cameras]
server_url = "{self.url}"
"""

    def _camera_at_server(self, database_url: str) -> dict[str, Any]:
        """The camera's events the server stored, and whether every alert's
        snapshot has arrived (uploaded over HTTP after its event is stored:
        waited for a little, as a person looking at the page would)."""
        from rentgate import wire

        events = [e for e in self._all_events() if e["kind"] in wire.CAMERA_KINDS]
        alerts = [e["id"] for e in events if e["kind"] in wire.INWARD_ALERT_KINDS and e["data"].get("snapshot")]
        kinds = {kind: sum(1 for e in events if e["kind"] == kind) for kind in wire.CAMERA_KINDS}
        from server.db.engine import create_engine

        engine = create_engine(database_url)
        try:
            deadline = time.monotonic() + 20
            stored = _snapshots_stored(engine, alerts)
            while stored < len(alerts) and time.monotonic() < deadline:
                time.sleep(0.25)
                stored = _snapshots_stored(engine, alerts)
        finally:
            engine.dispose()
        return {"events": kinds, "alerts": len(alerts), "alert_snapshots_stored": stored}

    def _camera_stats(self) -> dict[str, Any] | None:
        """What the synthetic camera walked through its door (the truth)."""
        if self.camera_port is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.camera_port}/stats", timeout=5) as resp:
                stats = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return {"crossed": stats["scene"]["crossed"], "frames": stats["frames"]}

    def _start_terminal(self) -> str:
        """The main door's simulated face and card terminal; its table of the gateway config."""
        import secrets

        self.terminal_port = free_port()
        self.terminal_password = secrets.token_urlsafe(12)
        password_file = self.data_dir / "terminal.pw"
        password_file.write_text(self.terminal_password)
        password_file.chmod(0o600)
        port = self.terminal_port
        self._spawn("terminal", demo_terminal.sim_args(port, password_file))
        _wait(lambda: _port_open(port), 20, tr("模拟门禁终端", "the simulated door terminal"), self.procs)
        return demo_terminal.gateway_config(port, password_file, demo_osdp.DOORS[0][0])

    def _terminal_story(self) -> dict[str, Any] | None:
        if self.terminal_port is None:
            return None
        say(tr("人脸门禁终端：一位租户登记后刷卡进门，随后注销登记……",
               "face and card terminal: a tenant registers and is let in, then their registration ends..."))
        try:
            told = demo_terminal.story(self.url, self.token, self.unit_ids[demo_terminal.UNIT], self.terminal_port,
                                       self.terminal_password)
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            log.warning("the terminal story could not be told: %s", exc)
            say(tr("门禁终端演示没有完成（详见日志）", "the terminal part did not complete (see the logs)"))
            return {"error": str(exc)[:300]}
        if told["refused_after_end"]:
            say(tr(f"注销登记后 {told['refused_after_s']} 秒，门禁终端自己拒绝了这张卡（人走注销）",
                   f"{told['refused_after_s']} s after the registration ended the terminal itself refused the card"))
        else:
            say(tr("注销登记后门禁终端仍然开门：请查看网关日志", "the terminal still opened after the registration "
                   "ended: see the gateway's log"))
        return told

    def _write_gateway_config(self, mqtt_url: str, devices: str) -> Path:
        text = f"""gateway_id = "{GATEWAY_ID}"
mqtt_url = "{mqtt_url}"
data_dir = "{self.data_dir / 'gateway'}"
heartbeat_s = 2
{devices}"""
        return self._write("gateway.toml", text)


def _describe(ev: dict[str, Any], zone: ZoneInfo) -> str:
    """One stored event as a line a person reads: when (local time), which
    door, and what happened in the status page's own words, the card masked
    as there."""
    from server.pages.dashboard import event_words
    from server.pages.i18n import TEXTS

    row = {"kind": ev["kind"], "data": ev.get("data") or {}, "device": ev.get("device"), "door": ev.get("door"),
           "credential_value": (ev.get("credential") or {}).get("value")}
    words, _alarm = event_words(TEXTS[cli_lang()], row)
    at = datetime.fromisoformat(ev["occurred_at"]).astimezone(zone)
    # The words name a device themselves; a door is named in front.
    return "  ".join(part for part in (f"{at:%m-%d %H:%M:%S}", ev.get("door") or "", words) if part)
