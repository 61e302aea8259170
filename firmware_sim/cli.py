"""``rentgate sim ...``: simulated hardware for demos and manual tests."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol, TypeVar

from rentgate.lang import count, tr

# Seconds the readers stay plugged in after the last swipe, so a gateway can
# read the tail of the line before the ptys go away.
_LINGER_S = 1.0


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser("sim", help="simulated buildings and districts, for trying rentgate without hardware",
                                description="Simulated card readers, doors and tenants (a building), or months of "
                                            "a whole district, for trying rentgate without hardware.")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")
    building = sim_sub.add_parser(
        "building",
        help="simulate a building's EM4100 readers and tenants swiping them",
        description="Simulates one card reader per door on a virtual serial port (at the paths in the "
        "settings file), prints the ports' paths, and has tenants swipe their cards until the duration or the "
        "number of swipes is reached, or Ctrl-C.",
    )
    building.add_argument("--config", required=True, help="the building's settings file (.toml; see "
                          "firmware_sim/examples/building.toml)")
    building.add_argument("--duration", type=float, default=None, metavar="S",
                          help="run this many seconds (default: the settings file's swipes.duration_s)")
    building.add_argument("--json", action="store_true", help="print the stats as one JSON object on stdout")
    building.add_argument("--swipe-log", default=None, metavar="FILE",
                          help="append a JSON line per swipe (ts, door, card, granted) to FILE, for `rentgate sim "
                               "camera serve --follow FILE`")
    building.set_defaults(func=_building)
    osdp = sim_sub.add_parser(
        "osdp-building",
        help="simulate a building's OSDP doors: readers, locks, contacts, tenants and incidents",
        description="Simulates each OSDP line of readers on a virtual serial port (at the paths in the "
        "settings file), prints the ports' paths, and runs the tenants' entries and the scripted incidents "
        "until the duration, the number of entries or the script's end is reached, or Ctrl-C. With --json the "
        "record lists what was done and what the gateway should report.",
    )
    osdp.add_argument("--config", required=True, help="the building's settings file (.toml; see "
                      "firmware_sim/examples/osdp_building.toml)")
    osdp.add_argument("--duration", type=float, default=None, metavar="S",
                      help="run this many seconds (default: the settings file's traffic.duration_s)")
    osdp.add_argument("--json", action="store_true", help="print the record as one JSON object on stdout")
    osdp.add_argument("--swipe-log", default=None, metavar="FILE",
                      help="append a JSON line per card presented (ts, door, card, granted) to FILE, for "
                           "`rentgate sim camera serve --follow FILE`")
    osdp.set_defaults(func=_osdp_building)
    from firmware_sim.camera.command import add_parser as add_camera
    from firmware_sim.district.command import add_parser as add_district
    from firmware_sim.terminal_command import add_parsers as add_terminals

    add_district(sim_sub)
    add_camera(sim_sub)
    add_terminals(sim_sub)


class _Sim(Protocol):
    """What both simulated buildings offer the command line."""

    def ports(self) -> dict[str, str]: ...

    def pts(self) -> dict[str, str]: ...

    def start(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


def _building(args: argparse.Namespace) -> int:
    from firmware_sim.building import BuildingSim
    from firmware_sim.config import load_config

    def report(sim: BuildingSim) -> dict[str, Any]:
        stats = sim.stats()
        for door, d in stats.doors.items():
            if d.reader.unread_bytes:
                print(tr(f"注意：门 {door} 有 {d.reader.unread_bytes} 字节没有被读走（有网关在读 {d.port} 吗？）",
                         f"warning: door {door}: {count(d.reader.unread_bytes, '字节', 'byte')} never read "
                         f"(was a gateway reading {d.port}?)"), file=sys.stderr)
        print(tr(f"刷卡 {stats.swipes} 次，其中 {stats.swipes_with_valid_frame} 次帧完好，用时 {stats.elapsed_s:.1f} 秒",
                 f"{count(stats.swipes, '次', 'swipe')}, {stats.swipes_with_valid_frame} with a valid frame, "
                 f"in {stats.elapsed_s:.1f} s"), file=sys.stderr)
        return stats.to_json()

    return _run(args, lambda: BuildingSim(load_config(args.config), duration_s=args.duration,
                                               swipe_log=args.swipe_log), report,
                port_label="door", what=tr("模拟读卡器", "simulated readers"))


def _osdp_building(args: argparse.Namespace) -> int:
    from firmware_sim.config import load_osdp_config
    from firmware_sim.osdp_building import OsdpBuildingSim

    def report(sim: OsdpBuildingSim) -> dict[str, Any]:
        record = sim.record()
        print(tr(f"完成 {len(record.actions)} 个动作，应有 {len(record.expected)} 条事件，用时 {record.elapsed_s:.1f} 秒",
                 f"{count(len(record.actions), '个', 'action')}, {count(len(record.expected), '条', 'expected event')}, "
                 f"in {record.elapsed_s:.1f} s"), file=sys.stderr)
        return record.to_json()

    return _run(args, lambda: OsdpBuildingSim(load_osdp_config(args.config), duration_s=args.duration,
                                                   swipe_log=args.swipe_log), report,
                port_label="osdp line", what=tr("模拟 OSDP 线路", "simulated OSDP lines"))


S = TypeVar("S", bound=_Sim)


def _run(args: argparse.Namespace, make: Callable[[], S], report: Callable[[S], dict[str, Any]], *,
         port_label: str, what: str) -> int:
    """Open, announce the ports, run until done, Ctrl-C or SIGTERM, report."""
    from firmware_sim.errors import SimConfigError

    if args.duration is not None and args.duration <= 0:
        print(tr("错误：--duration 必须大于 0", "error: --duration must be > 0"), file=sys.stderr)
        return 2
    try:
        sim = make()
    except SimConfigError as exc:
        print(tr(f"错误：模拟器配置文件有误：{exc}", f"error: bad simulator config {exc}"), file=sys.stderr)
        return 2
    except OSError as exc:
        print(tr(f"错误：无法打开{what}：{exc}", f"error: cannot open the {what}: {exc}"), file=sys.stderr)
        return 1
    interrupted = threading.Event()

    def terminate() -> None:
        interrupted.set()
        sim.stop()

    previous = _on_sigterm(terminate)
    try:
        pts = sim.pts()
        for name, port in sim.ports().items():
            print(f"{port_label} {name}: {port}" + (f" -> {pts[name]}" if pts[name] != port else ""),
                  file=sys.stderr)
        sim.start()
        try:
            while not sim.wait(0.5):
                pass
        except KeyboardInterrupt:
            interrupted.set()
            sim.stop()
        if not interrupted.is_set():
            interrupted.wait(_LINGER_S)
        result = report(sim)
    finally:
        signal.signal(signal.SIGTERM, previous)
        sim.close()
    if args.json:
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


def _on_sigterm(action: Callable[[], None]) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        # Stop from another thread: the main thread may be joining the doors.
        threading.Thread(target=action, name="sim-sigterm", daemon=True).start()

    return signal.signal(signal.SIGTERM, handler)
