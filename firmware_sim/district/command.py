"""``rentgate sim district``: the district simulator on the command line.
Progress goes to stderr (one line per simulated week); with ``--json`` the
last line of stdout is the whole result. A missed target is in the result,
not in the exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from firmware_sim.district.world import DAY, START, start_ending_today
from rentgate.lang import count, tr
from server.pages.i18n import in_cli_language

if TYPE_CHECKING:
    from firmware_sim.district.driver import CaseEvent

log = logging.getLogger(__name__)


def add_parser(sim_sub: Any) -> None:
    district = sim_sub.add_parser(
        "district",
        help="simulate months of a district and score what rentgate finds against what really happened",
        description="Builds a district of rental buildings with tenants who arrive, register or not, move and "
                    "leave; runs months of it in accelerated time through the real server; and prints, for "
                    "each kind of case, how many real problems were found (recall), how many cases were right "
                    "(precision) and how late, and the four rates as computed against the true ones.")
    district.add_argument("--buildings", type=int, default=200, help="how many rental buildings")
    district.add_argument("--days", type=int, default=120, help="how many days to simulate")
    district.add_argument("--seed", type=int, default=7,
                          help="the random seed: the same seed gives the same district and the same lives")
    district.add_argument("--database-url", default=None,
                          help="the database to use, which should be empty (default: a SQLite file in a temporary "
                          "folder)")
    district.add_argument("--mqtt-url", default=None, help="the MQTT broker to use (default: one started in this process)")
    district.add_argument("--rules-file", default=None, help="the city's rules file (.toml; default: the built-in rules)")
    district.add_argument("--end-today", action="store_true",
                          help="end the run at today's midnight instead of starting on the fixed date "
                               f"{START:%Y-%m-%d}: what the pages show afterwards is true today (the demo uses it)")
    district.add_argument("--patrols", action="store_true",
                          help="grid coordinators patrol the units as often as their grades ask, sometimes late, "
                               "and work their task queue with the street's dispatcher (the demo uses it; the "
                               "scores do not depend on it)")
    district.add_argument("--cameras", type=float, default=0.0, metavar="SHARE",
                          help="put a people-counting camera at the door of this share of units (0-1; default 0)")
    district.add_argument("--hidden", type=float, default=0.0, metavar="SHARE",
                          help="give this share of units a hidden occupant who never has a card and is never "
                               "registered (0-1; default 0); the rest of the district is the same with or without")
    district.add_argument("--camera-miss", type=float, default=0.05, metavar="RATE",
                          help="the share of crossings a camera misses (default 0.05)")
    district.add_argument("--camera-double", type=float, default=0.02, metavar="RATE",
                          help="the share of crossings a camera counts twice (default 0.02)")
    district.add_argument("--cases", action="store_true", help="print each case opened or closed to stderr")
    district.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    district.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from firmware_sim.district.cameras import CameraOptions
    from firmware_sim.district.driver import DistrictOptions, run_district
    from server.errors import ServerError
    from server.rules import load_rules

    if args.buildings < 1 or args.days < 1:
        print("error: --buildings and --days must be at least 1", file=sys.stderr)
        return 2
    for name in ("cameras", "hidden", "camera_miss", "camera_double"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            print(f"error: --{name.replace('_', '-')} must be between 0 and 1", file=sys.stderr)
            return 2
    start = start_ending_today(args.days) if args.end_today else START
    latest = (datetime.now(START.tzinfo) - START) // DAY
    if not args.end_today and args.days > latest:
        print(tr(f"错误：--days 最多 {latest}：模拟从 {START:%Y-%m-%d} 开始，必须在今天之前结束；"
                 "要模拟更长时间，请加 --end-today",
                 f"error: --days at most {latest}: the run starts {START:%Y-%m-%d} and must end before today; "
                 "add --end-today for a longer run"), file=sys.stderr)
        return 2
    try:
        rules = load_rules(args.rules_file)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # One INFO line per sweep would drown the weekly progress.
    logging.getLogger("server.reconcile").setLevel(logging.WARNING)

    def progress(text: str) -> None:
        print(f"[district] {text}", file=sys.stderr, flush=True)

    def on_case(event: CaseEvent) -> None:
        progress(case_line(event))

    options = DistrictOptions(buildings=args.buildings, days=args.days, seed=args.seed,
                              database_url=args.database_url, mqtt_url=args.mqtt_url, rules=rules, start=start,
                              patrols=args.patrols,
                              cameras=CameraOptions(share=args.cameras, hidden=args.hidden, miss=args.camera_miss,
                                                    double=args.camera_double))
    try:
        result = asyncio.run(run_district(options, on_case=on_case if args.cases else None, progress=progress))
    except (OSError, TimeoutError, ServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _summary(result, progress)
    if args.json:
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


# How a case ended, in words (what a case is: the pages' own texts).
_RESOLUTIONS = {
    "registered": ("已登记", "registered"),
    "registration_ended": ("登记已注销", "registration ended"),
    "seen_again": ("又有进出记录", "seen at the door again"),
    "still_resident": ("房东确认仍在住", "the landlord says they still live here"),
    "departure_confirmed": ("房东确认已搬离", "the landlord confirmed the departure"),
}


def case_line(event: CaseEvent) -> str:
    """``2026-11-02 案件 7 发现：有人居住但未登记（b0004-201）``: one case
    opened or closed, for the demo's story."""
    kind = in_cli_language(f"case.{event.kind}", event.kind.replace("_", " "))
    where = event.unit or event.building or ""
    if event.action == "opened":
        return tr(f"{event.at:%Y-%m-%d} 案件 {event.case_id} 发现：{kind}" + (f"（{where}）" if where else ""),
                  f"{event.at:%Y-%m-%d} case {event.case_id} opened: {kind}" + (f" ({where})" if where else ""))
    zh_res, en_res = _RESOLUTIONS.get(event.resolution or "", (event.resolution or "", event.resolution or ""))
    return tr(f"{event.at:%Y-%m-%d} 案件 {event.case_id} 关闭：{kind}" + (f"（{where}）" if where else "")
              + (f"，{zh_res}" if zh_res else ""),
              f"{event.at:%Y-%m-%d} case {event.case_id} closed: {kind}" + (f" ({where})" if where else "")
              + (f", {en_res}" if en_res else ""))


def _summary(result: dict[str, Any], progress: Any) -> None:
    progress(tr(f"{result['people']} 人，刷卡 {result['events']} 次（丢失 {result['events_lost']} 次），"
                f"用时 {result['elapsed_s']} 秒",
                f"{result['people']} people, {result['events']} card reads ({result['events_lost']} lost), "
                f"{result['elapsed_s']} s"))
    for kind, k in result["kinds"].items():
        name = in_cli_language(f"case.{kind}", kind)
        progress(tr(f"{name}：准确率 {_num(k['precision'])}，检出率 {_num(k['recall'])}，发现用时中位数 "
                    f"{_num(k['median_delay_days'])} 天（规定 {k['period_days']} 天），案件 {k['cases']} 件，"
                    f"实际发生 {k['incidents']} 起（到期 {k['incidents_due']} 起）",
                    f"{name}: precision {_num(k['precision'])}, recall {_num(k['recall'])}, median delay "
                    f"{_num(k['median_delay_days'])} d (period {k['period_days']} d), "
                    f"{count(k['cases'], '件', 'case')}, {count(k['incidents'], '起', 'incident')} "
                    f"({k['incidents_due']} due)"))
    for name, r in result["rates"].items():
        rate = in_cli_language(f"rate.{name}", name)
        progress(tr(f"{rate}：真实 {_num(r['true'])}，系统计算 {_num(r['computed'])}",
                    f"{rate}: true {_num(r['true'])}, computed {_num(r['computed'])}"))
    missed = [t for t, ok in result["targets_met"].items() if not ok]
    progress(tr("所有指标均达标", "all targets met") if not missed
             else tr("未达标：", "targets missed: ") + ", ".join(missed))


def _num(value: Any) -> str:
    """A figure, or a dash where there was nothing to measure (never "None")."""
    return "—" if value is None else str(value)
