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
from pathlib import Path
from typing import Any

FACILITY = 90
TENANT_CARDS = [f"{FACILITY}:{n}" for n in range(324, 336)]
LEFT_CARD = f"{FACILITY}:999"  # the tenant who moved out
HELD_OPEN_S = 4.0
# Each entry keeps its door busy for a few seconds (swipe, push, walk through,
# door closes): more arrivals than this only queue up at two doors.
MAX_RATE_PER_MIN = 12.0
DOORS = (("front", 1), ("back", 2))
LINK = "osdp-line-1"


def _call(base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read() or b"{}"))


def register_tenants(base: str, gateway_id: str, token: str) -> str:
    """Building, gateway, tenants and their cards; the one who left has their
    registration ended (so their card is revoked), all as the administrator
    whose bearer ``token`` is given. Returns the gateway's allowlist public key
    entry as ``key_id = "base64"`` TOML."""
    building = _call(base, token, "POST", "/api/v1/buildings", {"name": "出租屋 禅城区 示范楼"})["id"]
    _call(base, token, "PUT", f"/api/v1/gateways/{gateway_id}/building", {"building_id": building})
    for i, card in enumerate([*TENANT_CARDS, LEFT_CARD], start=1):
        person = _call(base, token, "POST", "/api/v1/persons", {"display_name": f"租户 {i:02d}"})["id"]
        registration = _call(base, token, "POST", "/api/v1/registrations", {"person_id": person, "building_id": building})
        _call(base, token, "POST", "/api/v1/credentials",
              {"registration_id": registration["id"], "format": "wiegand26", "value": card})
        if card == LEFT_CARD:
            _call(base, token, "POST", f"/api/v1/registrations/{registration['id']}/end")
    keys = _call(base, token, "GET", "/api/v1/allowlist-keys")["keys"]
    return ", ".join(f'"{key_id}" = "{key}"' for key_id, key in keys.items())


def sim_config(data_dir: Path, duration_s: float | None, rate_per_min: float) -> str:
    # Incidents at fixed moments, scaled into a short headless run.
    span = duration_s if duration_s is not None else 60.0
    at = {name: round(span * share, 1) for name, share in
          (("enter", 0.05), ("revoked", 0.2), ("forced", 0.35), ("held_open", 0.5))}
    doors = "".join(f'\n[[doors]]\nid = "{door}"\nline = "line-1"\naddress = {address}\n' for door, address in DOORS)
    unplug = "" if duration_s is not None else (
        '\n[[script]]\nat_s = 45\ndoor = "back"\naction = "unplug"\nunplugged_s = 15\n')
    return f"""name = "rentgate demo building (OSDP)"
seed = 7
held_open_s = {HELD_OPEN_S}

[[lines]]
id = "line-1"
link = "{data_dir / LINK}"
channel_id = 1
{doors}
[tenants]
cards = {json.dumps(TENANT_CARDS)}

[traffic]
pattern = "poisson"
rate_per_min = {rate_per_min}
{f"duration_s = {span}" if duration_s is not None else "# no duration: until Ctrl-C"}
start_delay_s = 5

[[script]]
at_s = {at["enter"]}
door = "front"
action = "enter"
card = "{TENANT_CARDS[0]}"

[[script]]
at_s = {at["revoked"]}
door = "front"
action = "revoked"
card = "{LEFT_CARD}"

[[script]]
at_s = {at["forced"]}
door = "back"
action = "forced"
open_s = 2

[[script]]
at_s = {at["held_open"]}
door = "front"
action = "held_open"
card = "{TENANT_CARDS[1]}"
open_s = {HELD_OPEN_S + 2}
{unplug}"""


def gateway_devices(data_dir: Path, public_keys: str) -> str:
    readers = "".join(
        f'\n[[devices.readers]]\nid = "reader-{door}"\ndoor = "{door}"\naddress = {address}\n'
        for door, address in DOORS
    )
    return f"""
[access]
public_keys = {{ {public_keys} }}
unlock_pulse_ms = 2000
held_open_s = {HELD_OPEN_S}

[[devices]]
type = "osdp"
id = "line-1"
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
