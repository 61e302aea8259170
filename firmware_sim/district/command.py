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
from typing import Any

from firmware_sim.district.world import DAY, START

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
    district.add_argument("--cases", action="store_true", help="print each case opened or closed to stderr")
    district.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    district.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from firmware_sim.district.driver import CaseEvent, DistrictOptions, run_district
    from server.errors import ServerError
    from server.rules import load_rules

    if args.buildings < 1 or args.days < 1:
        print("error: --buildings and --days must be at least 1", file=sys.stderr)
        return 2
    latest = (datetime.now(START.tzinfo) - START) // DAY
    if args.days > latest:
        print(f"error: --days at most {latest}: the run starts {START:%Y-%m-%d} and must end before today",
              file=sys.stderr)
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
        extra = f" ({event.resolution})" if event.resolution else ""
        progress(f"{event.at:%Y-%m-%d} case {event.case_id} {event.action}: {event.kind} "
                 f"{event.unit or event.building or ''}{extra}")

    options = DistrictOptions(buildings=args.buildings, days=args.days, seed=args.seed,
                              database_url=args.database_url, mqtt_url=args.mqtt_url, rules=rules)
    try:
        result = asyncio.run(run_district(options, on_case=on_case if args.cases else None, progress=progress))
    except (OSError, TimeoutError, ServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _summary(result, progress)
    if args.json:
        print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


def _summary(result: dict[str, Any], progress: Any) -> None:
    progress(f"{result['people']} people, {result['events']} card reads ({result['events_lost']} lost), "
             f"{result['elapsed_s']} s")
    for kind, k in result["kinds"].items():
        progress(f"{kind}: precision {k['precision']}, recall {k['recall']}, median delay "
                 f"{k['median_delay_days']} d (period {k['period_days']} d), {k['cases']} cases, "
                 f"{k['incidents']} incidents ({k['incidents_due']} due)")
    for name, r in result["rates"].items():
        progress(f"rate {name}: true {r['true']}, computed {r['computed']}")
    missed = [t for t, ok in result["targets_met"].items() if not ok]
    progress("all targets met" if not missed else f"targets missed: {', '.join(missed)}")
