"""The demo's OSDP building: what the server is told, what the simulator plays,
how the gateway is configured, and how the outcome is judged.

A landlord's day in miniature: tenants registered with cards, one tenant whose
registration has ended (their card must be refused as revoked), normal
entries, a forced door and a door held open. Everything goes through the
server's real HTTP API and the gateway's real allowlist.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

FACILITY = 90
TENANT_CARDS = [f"{FACILITY}:{n}" for n in range(324, 336)]
LEFT_CARD = f"{FACILITY}:999"  # the tenant who moved out
HELD_OPEN_S = 4.0
# Each entry keeps its door busy for a few seconds (swipe, push, walk through,
# door closes): more arrivals than this only queue up at two doors.
MAX_RATE_PER_MIN = 12.0
# Doors and the RS-485 line are named as a landlord's installer would name
# them; the pages show these names as they are.
DOORS = (("正门", 1), ("后门", 2))
LINE = "1号线"
LINK = "osdp-line-1"  # the pty's file name in the data folder
BUILDING_NAME = "示范楼"
BUILDING_ADDRESS = "模拟区示范路8号"
# The first grid of the simulated district's first street, whose plates the demo prints.
DEMO_GRID = "440699001001G01"
# (number, floor, rooms, m²): capacity min(m² ÷ 5, rooms × 2) is at least 2 each.
UNITS = (("101", 1, 1, 18.0), ("102", 1, 1, 16.5), ("201", 2, 2, 30.0), ("202", 2, 1, 15.0),
         ("301", 3, 2, 28.0), ("302", 3, 1, 20.0))
TENANT_NAMES = (("陈伟", "湖南省"), ("李娜", "广西壮族自治区"), ("黄强", "四川省"), ("周敏", "江西省"),
                ("吴磊", "河南省"), ("刘芳", "湖北省"), ("赵杰", "贵州省"), ("孙丽", "湖南省"),
                ("郭涛", "四川省"), ("何静", "广东省"), ("林超", "江西省"), ("罗艳", "河南省"),
                ("马建国", "湖南省"))


def _call(base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read() or b"{}"))


def _tenants() -> list[dict[str, Any]]:
    """Twelve tenants with valid identity numbers (GB 11643, made for the
    demo), two to a unit, and the one who moved out of 302."""
    from server.registry.idnumber import make_id_number

    people = []
    for i, (name, origin) in enumerate(TENANT_NAMES, start=1):
        birth = date(1985 + i % 15, 1 + i % 12, 1 + (7 * i) % 28)
        people.append({"id_number": make_id_number("430521", birth, 100 + 2 * i + i % 2), "name": name,
                       "phone": f"139{20260000 + i:08d}", "origin": origin})
    return people


def register_building(base: str, gateway_id: str, token: str, grid_code: str | None) -> tuple[str, dict[str, int]]:
    """The demo building through the registry API, as an administrator would
    enter it (``token`` is the administrator's bearer token): its address in
    ``grid_code`` (None: outside any area), six rooms, twelve registered
    tenants with their cards, and one tenant who moved out (registration
    ended, so their card is revoked); the gateway bound to it. Returns the
    gateway's allowlist public key entry as ``key_id = "base64"`` TOML, and
    the units' ids by number."""
    building = _call(base, token, "POST", "/api/v1/registry/buildings", {
        "name": BUILDING_NAME, "code": "DEMO-001", "address": BUILDING_ADDRESS, "grid_code": grid_code,
        "landlord_name": "何志强", "landlord_phone": "13800138000", "is_rental": True,
        "pledge_signed_at": "2026-01-10", "rooms": sum(rooms for _, _, rooms, _ in UNITS)})["id"]
    unit_ids = {}
    for number, floor, rooms, area in UNITS:
        unit_ids[number] = _call(base, token, "POST", f"/api/v1/registry/buildings/{building}/units",
                                 {"number": number, "floor": floor, "rooms": rooms, "area_m2": area})["id"]
    _call(base, token, "PUT", f"/api/v1/gateways/{gateway_id}/building", {"building_id": building})
    people = _tenants()
    moved_in = (date.today() - timedelta(days=60)).isoformat()
    homes = [number for number, *_ in UNITS for _ in range(2)]
    for person, number, card in zip(people, [*homes, "302"], [*TENANT_CARDS, LEFT_CARD], strict=True):
        registration = _call(base, token, "POST", "/api/v1/registry/registrations", {
            "unit_id": unit_ids[number], "person": person, "arrived_at": moved_in,
            "credential": {"format": "wiegand26", "value": card}})
        if card == LEFT_CARD:
            _call(base, token, "POST", f"/api/v1/registry/registrations/{registration['id']}/end",
                  {"reason": "moved_out"})
    keys = _call(base, token, "GET", "/api/v1/allowlist-keys")["keys"]
    return ", ".join(f'"{key_id}" = "{key}"' for key_id, key in keys.items()), unit_ids


def sim_config(data_dir: Path, duration_s: float | None, rate_per_min: float) -> str:
    # Incidents at fixed moments, scaled into a short headless run.
    span = duration_s if duration_s is not None else 60.0
    at = {name: round(span * share, 1) for name, share in
          (("enter", 0.05), ("revoked", 0.2), ("forced", 0.35), ("held_open", 0.5))}
    doors = "".join(f'\n[[doors]]\nid = "{door}"\nline = "{LINE}"\naddress = {address}\n' for door, address in DOORS)
    unplug = "" if duration_s is not None else (
        '\n[[script]]\nat_s = 45\ndoor = "后门"\naction = "unplug"\nunplugged_s = 15\n')
    return f"""name = "rentgate demo building (OSDP)"
seed = 7
held_open_s = {HELD_OPEN_S}

[[lines]]
id = "{LINE}"
link = "{data_dir / LINK}"
channel_id = 1
{doors}
[tenants]
cards = {json.dumps(TENANT_CARDS)}

# People wait up to 5 s for the door: on a busy laptop the gateway may unlock
# a second after the swipe, and the held-open incident needs the unlock.
[person]
push_within_s = 5

[traffic]
pattern = "poisson"
rate_per_min = {rate_per_min}
{f"duration_s = {span}" if duration_s is not None else "# no duration: until Ctrl-C"}
start_delay_s = 5

[[script]]
at_s = {at["enter"]}
door = "正门"
action = "enter"
card = "{TENANT_CARDS[0]}"

[[script]]
at_s = {at["revoked"]}
door = "正门"
action = "revoked"
card = "{LEFT_CARD}"

[[script]]
at_s = {at["forced"]}
door = "后门"
action = "forced"
open_s = 2

[[script]]
at_s = {at["held_open"]}
door = "正门"
action = "held_open"
card = "{TENANT_CARDS[1]}"
open_s = {HELD_OPEN_S + 2}
{unplug}"""


def gateway_devices(data_dir: Path, public_keys: str) -> str:
    readers = "".join(
        f'\n[[devices.readers]]\nid = "{door}读卡器"\ndoor = "{door}"\naddress = {address}\n'
        for door, address in DOORS
    )
    return f"""
[access]
public_keys = {{ {public_keys} }}
unlock_pulse_ms = 2000
held_open_s = {HELD_OPEN_S}

[[devices]]
type = "osdp"
id = "{LINE}"
port = "{data_dir / LINK}"
channel_id = 1
{readers}"""


def judge(expected: list[list[Any]], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare what the building did with what the server stored.

    ``expected`` is the simulator's record: ``[door, kind, card]`` with kind
    granted / denied / forced / held_open / reader_offline.
    """
    want: Counter[tuple[str, str, str | None]] = Counter()
    for door, kind, card in expected:
        if kind in ("granted", "denied"):
            want[(door, kind, card)] += 1
        elif kind in ("forced", "held_open"):
            want[(door, kind, None)] += 1
    got: Counter[tuple[str, str, str | None]] = Counter()
    reasons: Counter[str] = Counter()
    for ev in events:
        data = ev.get("data") or {}
        if ev["kind"] == "card_read" and data.get("decision"):
            got[(ev["door"], data["decision"], ev["credential"]["value"])] += 1
            reasons[data.get("reason") or "granted"] += 1
        elif ev["kind"] == "door_state" and data.get("state") in ("forced", "held_open"):
            got[(ev["door"], data["state"], None)] += 1
    lost, extra = want - got, got - want
    return {
        "events_generated": sum(want.values()),
        "events_stored": sum((want & got).values()),
        "lost": sum(lost.values()),
        "duplicates": sum(extra.values()),
        "decisions": dict(reasons),
        "door_alarms": {kind: sum(n for (_, k, _), n in got.items() if k == kind) for kind in ("forced", "held_open")},
        "missing": [list(k) for k in lost.elements()][:20],
        "unexpected": [list(k) for k in extra.elements()][:20],
    }
