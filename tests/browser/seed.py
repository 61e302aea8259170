"""A small world for the page tests, made through the registry functions:
one district > street > community > two grids; landlord A's building in grid
1 with units 101 (empty) and 102 (one tenant, silent long enough to be asked
"has this tenant left?"), landlord B's building in grid 2 with one tenant;
coordinator coord-1 assigned to grid 1."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from server.db.models import cases
from server.grid import grids
from server.registry import service
from server.registry.idnumber import make_id_number
from server.registry.pii import PiiVault, load_vault
from server.rules import CityRules
from server.web.transactions import write_transaction
from tests.server.auth_helpers import UserCreds, make_user

ACTOR = "test:seed"
# Valid numbers (GB 11643) made for the tests; none is ever allowed on a page.
TENANT_ID = make_id_number("440104", date(1990, 5, 17), 123)
SILENT_ID = make_id_number("440106", date(1985, 2, 3), 45)
OTHER_ID = make_id_number("510104", date(1995, 11, 30), 88)
DECLARANT_ID = make_id_number("430102", date(2000, 1, 9), 12)


@dataclass(frozen=True)
class World:
    landlord: UserCreds
    other_landlord: UserCreds
    admin: UserCreds
    building_id: int
    other_building_id: int
    empty_unit_id: int
    silent_unit_id: int
    other_unit_id: int
    silent_registration_id: int
    departure_case_id: int
    # A grid coordinator of grid G1 (幸福楼 is in it), for the grid pages.
    coordinator: UserCreds
    # A police officer (lookups only, the defaults), for the console.
    police: UserCreds


def vault_for(database_url: str) -> PiiVault:
    return load_vault(None, database_url)


def seed(engine: sa.Engine, database_url: str) -> World:
    vault = vault_for(database_url)
    rules = CityRules()
    landlord = make_user(engine, "landlord", "landlord-a")
    other = make_user(engine, "landlord", "landlord-b")
    admin = make_user(engine, "admin", "admin-1")
    coordinator = make_user(engine, "coordinator", "coord-1")
    police = make_user(engine, "police", "police-1")
    now = datetime.now(UTC)
    long_ago = now - timedelta(days=60)
    with write_transaction(engine) as conn:
        for level, code, name, parent in (("district", "D1", "越秀区", None), ("street", "S1", "北京街", "D1"),
                                          ("community", "C1", "盐运西社区", "S1"), ("grid", "G1", "一网格", "C1"),
                                          ("grid", "G2", "二网格", "C1")):
            service.create_area(conn, now, ACTOR, level=level, code=code, name=name, parent_code=parent)
        building = service.create_building(conn, now, ACTOR, name="幸福楼", address="北京街12号", grid_code="G1",
                                           landlord_user_id=landlord.id, is_rental=True, pledge_signed_at=now)
        other_building = service.create_building(conn, now, ACTOR, name="别人楼", grid_code="G2",
                                                 landlord_user_id=other.id, is_rental=True)
        empty = service.create_unit(conn, now, ACTOR, rules, building_id=building["id"], number="101",
                                    area_m2=30.0, rooms=2, floor=1)
        silent = service.create_unit(conn, now, ACTOR, rules, building_id=building["id"], number="102",
                                     area_m2=20.0, rooms=1, floor=1)
        other_unit = service.create_unit(conn, now, ACTOR, rules, building_id=other_building["id"], number="201",
                                         area_m2=25.0, rooms=1, floor=2)
        silent_reg = service.register(conn, now, ACTOR, vault, unit_id=silent["id"], arrived_at=long_ago,
                                      source="landlord",
                                      person=service.PersonFields(SILENT_ID, "王五", "13800138000", "湖南长沙"))
        service.register(conn, now, ACTOR, vault, unit_id=other_unit["id"], arrived_at=long_ago, source="landlord",
                         person=service.PersonFields(OTHER_ID, "赵六", None, None))
        # What reconciliation opens after 30 silent days (server/reconcile).
        case_id = conn.execute(sa.insert(cases).values(
            kind="presumed_departure", subject=f"r{silent_reg.body['id']}", state="open",
            building_id=building["id"], unit_id=silent["id"], person_id=silent_reg.body["person_id"],
            registration_id=silent_reg.body["id"], evidence_at=now - timedelta(days=31), opened_at=now,
            due_at=now + timedelta(days=7), evidence={"last_seen_at": (now - timedelta(days=31)).isoformat()},
            updated_at=now).returning(cases.c.id)).scalar_one()
        grids.assign(conn, now, ACTOR, service.grid_id_of(conn, "G1"), coordinator.id)
    return World(landlord, other, admin, building["id"], other_building["id"], empty["id"], silent["id"],
                 other_unit["id"], silent_reg.body["id"], case_id, coordinator, police)


def database_url_for(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'pages.db'}"


# --------------------------------------------------------------------------- the status page's scene

# A card of the seeded building's tenants as the readers report it.
SCENE_CARD = "0A1B2C3D4E"
SCENE_VERSION = "0.1.0"
# Gateways the district simulator creates: events only, never a status message.
SIMULATED_GATEWAYS = ("sim-gw-1", "sim-gw-2")


def seed_gateways(engine: sa.Engine, data_dir: str, now: datetime | None = None) -> None:
    """What the status page shows after a demo: a gateway that is online and
    reported a start (with its outbox id and first seq), devices coming up on
    a serial port under the data folder, a tamper alarm, swipes granted and
    denied at doors with Chinese names, a forced door and dropped events; one
    gateway that went offline months ago; simulated gateways that never sent
    a status."""
    from rentgate import wire
    from server.ingest.store import EventStore

    now = now or datetime.now(UTC)
    old = now - timedelta(days=400)
    seq = iter(range(1, 1000))

    def at(minutes: float) -> datetime:
        return now - timedelta(minutes=minutes)

    main: list[wire.Event] = [
        wire.GatewayStarted(gw="gw-main", seq=next(seq), device="gateway", ts=at(30), version=SCENE_VERSION,
                            outbox_id="ob-7f3a9c", outbox_first_seq=1, pending=0),
        wire.DeviceStatus(gw="gw-main", seq=next(seq), device="1号线", ts=at(29), online=True,
                          detail=f"port {data_dir}/line-1 open", bad_frames=0),
        wire.DeviceStatus(gw="gw-main", seq=next(seq), device="1号线", ts=at(20), online=True,
                          detail="tamper alarm: casing opened"),
        wire.DeviceStatus(gw="gw-main", seq=next(seq), device="2号线", ts=at(19), online=False,
                          detail=f"port {data_dir}/line-2 closed: [Errno 5] Input/output error", bad_frames=3),
        wire.CardRead(gw="gw-main", seq=next(seq), device="1号线", door="正门", ts=at(10), decision="granted",
                      credential=wire.Credential(format="em4100", value=SCENE_CARD)),
        wire.CardRead(gw="gw-main", seq=next(seq), device="1号线", door="后门", ts=at(9), decision="denied",
                      reason="revoked", credential=wire.Credential(format="wiegand26", value="90:324")),
        wire.DoorState(gw="gw-main", seq=next(seq), device="1号线", door="后门", ts=at(8), state="forced"),
        wire.EventsDropped(gw="gw-main", seq=next(seq), device="gateway", ts=at(5), first_seq=900, last_seq=911,
                           count=12, reason="outbox_full"),
        # The door camera's alerts: the coordinator's unit page lists them.
        wire.Tailgating(gw="gw-main", seq=next(seq), device="正门摄像头", door="正门", ts=at(4), track=3,
                        snapshot="ab" * 32, entered=2, granted=1),
        wire.UnidentifiedEntry(gw="gw-main", seq=next(seq), device="正门摄像头", door="正门", ts=at(3), track=4),
    ]
    messages = [(f"{wire.TOPIC_ROOT}/gw/gw-main/events", wire.batch_json("gw-main", [wire.encode_event(e)
                                                                                       for e in main]), now)]
    for gw in SIMULATED_GATEWAYS:
        swipe = wire.CardRead(gw=gw, seq=1, device="reader-1", door="door-1", ts=old, decision="granted",
                              credential=wire.Credential(format="em4100", value="11223344AA"))
        messages.append((f"{wire.TOPIC_ROOT}/gw/{gw}/events", wire.batch_json(gw, [wire.encode_event(swipe)]), old))
    gone = wire.GatewayStarted(gw="gw-old", seq=1, device="gateway", ts=old, version="0.0.9", outbox_id="ob-1",
                               pending=4)
    messages.append((f"{wire.TOPIC_ROOT}/gw/gw-old/events", wire.batch_json("gw-old", [wire.encode_event(gone)]),
                     old))
    statuses = ((wire.GatewayStatus(gw="gw-main", state="online", ts=now, version=SCENE_VERSION, outbox_depth=0,
                                    devices_online=1, devices_total=2), now),
                (wire.GatewayStatus(gw="gw-old", state="offline", ts=old), old))
    for status, when in statuses:
        messages.append((f"{wire.TOPIC_ROOT}/gw/{status.gw}/status", status.model_dump_json().encode(), when))
    EventStore(engine).commit(messages, now=now)


# --------------------------------------------------------------------------- door terminals on the fleet page

# The allowlist version the door gateway decides from, and what its terminals hold.
DOORS_ALLOWLIST = 12
# A landlord's gateway keeping the lists of face and card terminals that decide
# at the door (docs/terminal-sync.md): one holds the gateway's list, the others
# are behind it in each way there is, and the gateway's own error texts carry
# what must not reach a page (an address, a URL, the protocol).
DOOR_TERMINALS: tuple[dict[str, object], ...] = (
    {"id": "正门人脸机", "reachable": True, "version_held": DOORS_ALLOWLIST, "clock_offset_s": -7260.0},
    {"id": "后门人脸机", "reachable": False, "version_held": DOORS_ALLOWLIST - 1,
     "last_error": "http://192.168.1.64/ISAPI/System/deviceInfo: Cannot connect to host 192.168.1.64:80"},
    {"id": "车库刷卡机", "reachable": True, "version_held": DOORS_ALLOWLIST - 1, "writes_refused": 3,
     "last_error": "PUT /ISAPI/AccessControl/UserInfo/SetUp: statusCode=6 subStatusCode=deviceUserAlreadyExistFace"},
    {"id": "侧门人脸机", "reachable": True, "version_held": DOORS_ALLOWLIST - 1, "pending": 5},
    {"id": "天台门禁", "reachable": True, "version_held": DOORS_ALLOWLIST - 2},
    {"id": "新装终端", "reachable": True, "last_error": "no allowlist yet: the terminal's list is left as it is"},
)
# A gateway whose terminals all hold its list.
SYNCED_TERMINALS: tuple[dict[str, object], ...] = (
    {"id": "大堂人脸机", "reachable": True, "version_held": DOORS_ALLOWLIST, "pending": 0, "writes_refused": 0},
    {"id": "电梯厅刷卡机", "reachable": True, "version_held": DOORS_ALLOWLIST, "pending": 0, "writes_refused": 0},
)
DOOR_GATEWAYS = ("gw-doors", "gw-doors-ok")


def seed_terminal_gateways(engine: sa.Engine, building_id: int, now: datetime | None = None) -> None:
    """Two gateways of ``building_id`` whose heartbeats report door terminals,
    stored the way ingest stores any status (so ingest counts those behind):
    ``gw-doors`` with one terminal holding its list and five behind it
    (unreachable, refusing writes, writes pending, an older list, never
    synced), ``gw-doors-ok`` with every terminal up to date."""
    from rentgate import wire
    from server.db.models import gateways
    from server.ingest.store import EventStore

    now = now or datetime.now(UTC)
    reader = wire.DeviceHealth(id="1号读卡器", type="reader", state="ok")
    messages = []
    for gw, held in (("gw-doors", DOOR_TERMINALS), ("gw-doors-ok", SYNCED_TERMINALS)):
        terminals = [wire.TerminalSyncHealth.model_validate(t) for t in held]
        # The gateway reports each terminal among its devices too (gateway/app.py):
        # "offline" whenever it does not hold the list, even one that answers.
        devices = [reader, *(wire.DeviceHealth(
            id=t.id, type="hikvision_isapi", state="ok" if t.version_held == DOORS_ALLOWLIST and t.reachable
            and not t.pending and not t.writes_refused else "offline",
            detail=t.last_error or f"holds allowlist version {t.version_held}") for t in terminals)]
        online = sum(d.state == "ok" for d in devices)
        status = wire.GatewayStatus(
            gw=gw, state="online", ts=now, version=SCENE_VERSION, outbox_depth=0, allowlist_version=DOORS_ALLOWLIST,
            devices=devices, devices_online=online, devices_total=len(devices), disk_free_bytes=6 * 1024 ** 3,
            disk_total_bytes=16 * 1024 ** 3, mem_rss_bytes=64 * 1024 ** 2, mem_available_bytes=700 * 1024 ** 2,
            terminals=terminals)
        messages.append((f"{wire.TOPIC_ROOT}/gw/{gw}/status", status.model_dump_json().encode(), now))
    result = EventStore(engine).commit(messages, now=now)
    assert result.dead_letters == 0, "the door gateways' statuses must be valid"
    with write_transaction(engine) as conn:
        conn.execute(gateways.update().where(gateways.c.id.in_(DOOR_GATEWAYS)).values(building_id=building_id))
