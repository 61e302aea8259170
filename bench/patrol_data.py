"""The city the patrol benchmark scans: areas, buildings, units with grades,
persons with encrypted identity numbers, registrations, cards, presence,
cases, tasks, patrols, plates and one logged-in coordinator per grid.

Everything but the persons is generated server-side (INSERT ... SELECT
generate_series); the persons go in by COPY because their identity numbers
are sealed in Python with the real PiiVault (AES-GCM, HMAC digest, mask),
which is spread over every CPU. Ids come out 1..n in table order on the fresh
database, which the SQL below relies on (person p's registration is row p).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bench.stack import daily_partitions
from server.registry.idnumber import make_id_number, mask_id_number
from server.registry.pii import PiiVault

UNITS_PER_BUILDING = 20
UNITS_PER_GRID = 500
BENCH_PASSWORD = "bench-password-1"
TIMEZONE = "Asia/Shanghai"

# Area codes of places many migrant workers in the Pearl River Delta come from.
_ORIGINS = (("440606", "广东省佛山市顺德区"), ("431021", "湖南省郴州市桂阳县"), ("452501", "广西玉林市"),
            ("510722", "四川省绵阳市三台县"), ("421182", "湖北省黄冈市武穴市"), ("362426", "江西省吉安市泰和县"),
            ("500234", "重庆市开州区"), ("412725", "河南省周口市鹿邑县"), ("360732", "江西省赣州市兴国县"),
            ("450881", "广西贵港市桂平市"))
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
_GIVEN = ("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超",
          "秀兰", "霞", "平", "刚", "桂英", "建华", "文", "华", "红", "志强", "海燕", "小红")
_BIRTH_DAYS = 14_000  # births spread over 1965..2003: every tenant is an adult
_FIRST_BIRTH = date(1965, 1, 1)


def progress(text: str, *args: object) -> None:
    print(f"[bench] {text % args}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sizes:
    units: int
    people: int
    events_per_card: int = 10

    @property
    def buildings(self) -> int:
        return max(1, self.units // UNITS_PER_BUILDING)

    @property
    def units_per_building(self) -> int:
        return max(1, self.units // self.buildings)

    @property
    def grids(self) -> int:
        return max(1, round(self.units / UNITS_PER_GRID))

    @property
    def communities(self) -> int:
        return max(1, self.grids // 10)

    @property
    def streets(self) -> int:
        return max(1, self.communities // 4)


@dataclass(frozen=True)
class City:
    """What the load needs from the generated city: each unit's grid, a
    session token per grid (its coordinator's) and the admin's, and the
    tokens of a sample of plates."""

    unit_ids: list[int]
    unit_grid: dict[int, int]
    grid_tokens: dict[int, str]
    admin_token: str
    plate_tokens: dict[int, str]
    counts: dict[str, int]


# ---------------------------------------------------------------- persons


def id_number(p: int) -> str:
    """Person p's identity number: (origin, birth day, sequence) is a bijection of p."""
    origins = len(_ORIGINS)
    area = _ORIGINS[p % origins][0]
    day = (p // origins) % _BIRTH_DAYS
    block = p // (origins * _BIRTH_DAYS)
    sequence = 2 * block + 1 + (day + p) % 2  # parity (sex) varies within a block
    return make_id_number(area, _FIRST_BIRTH + timedelta(days=day), sequence)


def person_rows(vault: PiiVault, first: int, last: int, created: str) -> list[tuple[Any, ...]]:
    """COPY rows for persons first..last: the number sealed, digested and
    masked exactly as server/registry/service.py stores it."""
    rows: list[tuple[Any, ...]] = []
    for p in range(first, last + 1):
        number = id_number(p)
        name = _SURNAMES[p % len(_SURNAMES)] + _GIVEN[(p // len(_SURNAMES)) % len(_GIVEN)]
        sex = "M" if int(number[16]) % 2 else "F"
        rows.append((p, name, created, vault.digest(number), vault.encrypt(number), mask_id_number(number), sex,
                     int(number[6:10]), f"13{p % 1_000_000_000:09d}", _ORIGINS[p % len(_ORIGINS)][1]))
    return rows


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for lo in range(1, n + 1, size):
        yield lo, min(n, lo + size - 1)


def copy_persons(engine: sa.Engine, vault: PiiVault, n: int, now: datetime) -> None:
    """Seal the numbers on every CPU, COPY the rows in as they come back."""
    created = (now - timedelta(days=400)).isoformat()
    columns = "id, display_name, created_at, id_digest, id_cipher, id_masked, sex, birth_year, phone, origin"
    raw = engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        workers = max(1, min(8, len(os.sched_getaffinity(0))))
        with ProcessPoolExecutor(workers) as pool, driver.cursor() as cur:
            with cur.copy(f"COPY persons ({columns}) FROM STDIN") as copy:
                futures = [pool.submit(person_rows, vault, lo, hi, created) for lo, hi in _chunks(n, 10_000)]
                for future in futures:
                    for row in future.result():
                        copy.write_row(row)
            # COPY with explicit ids leaves the sequence behind.
            cur.execute("SELECT setval(pg_get_serial_sequence('persons', 'id'), %s)", (n,))
        driver.commit()
    finally:
        raw.close()


# ---------------------------------------------------------------- the rest, in SQL

_AREAS = """
INSERT INTO areas (level, code, name, parent_id, created_at) VALUES ('district', 'D1', '顺德区', NULL, :now);
INSERT INTO areas (level, code, name, parent_id, created_at)
SELECT 'street', 'S' || i, (ARRAY['大良街道','容桂街道','伦教街道','勒流街道','陈村镇','北滘镇','乐从镇','龙江镇',
       '杏坛镇','均安镇'])[(i - 1) % 10 + 1] || CASE WHEN i > 10 THEN i::text ELSE '' END,
       (SELECT id FROM areas WHERE code = 'D1'), :now
FROM generate_series(1, :streets) i ORDER BY i;
INSERT INTO areas (level, code, name, parent_id, created_at)
SELECT 'community', 'C' || i, (ARRAY['红岗','金榜','云良','升平','逢沙','五沙','古鉴','府又','南霞','新滘'])[(i - 1) % 10 + 1]
       || '社区' || CASE WHEN i > 10 THEN i::text ELSE '' END, a.id, :now
FROM generate_series(1, :communities) i JOIN areas a ON a.code = 'S' || ((i - 1) % :streets + 1) ORDER BY i;
INSERT INTO areas (level, code, name, parent_id, created_at)
SELECT 'grid', 'G' || i, '第' || i || '网格', a.id, :now
FROM generate_series(1, :grids) i JOIN areas a ON a.code = 'C' || ((i - 1) % :communities + 1) ORDER BY i;
"""

_BUILDINGS = """
INSERT INTO buildings (name, created_at, code, address, grid_id, landlord_name, landlord_phone, is_rental,
                       pledge_signed_at, rooms)
SELECT road || b || '号', :now - interval '2 years', 'B' || lpad(b::text, 6, '0'),
       '广东省佛山市' || d.name || s.name || road || b || '号', g.id,
       substr(:surnames, b % 40 + 1, 1) || CASE WHEN b % 3 = 0 THEN '女士' ELSE '先生' END,
       '139' || lpad((b * 7919 % 100000000)::text, 8, '0'), b % 10 <> 0,
       CASE WHEN b % 4 = 0 THEN NULL ELSE :now - interval '300 days' END, :per
FROM generate_series(1, :n) b
JOIN areas g ON g.code = 'G' || ((b - 1) % :grids + 1)
JOIN areas c ON c.id = g.parent_id JOIN areas s ON s.id = c.parent_id JOIN areas d ON d.id = s.parent_id
CROSS JOIN LATERAL (SELECT (ARRAY['环城路','新桂路','德和路','南国路','凤山路','宝林路','碧桂路','云路'])[b % 8 + 1]
                           AS road) r
ORDER BY b
"""

# k: the unit's place in its building, 1..per; four doors a floor.
_UNITS = """
INSERT INTO units (building_id, number, floor, area_m2, rooms, capacity, grade, grade_score, grade_at, created_at)
SELECT x.b, (((x.k - 1) / 4 + 1) * 100 + (x.k - 1) % 4 + 1)::text, (x.k - 1) / 4 + 1,
       20 + (u % 5) * 10, 1 + u % 3, LEAST(2 * (1 + u % 3), (20 + (u % 5) * 10) / 5),
       CASE WHEN h < 55 THEN 'trusted' WHEN h < 80 THEN 'normal' WHEN h < 95 THEN 'watch' ELSE 'strict' END,
       CASE WHEN h < 55 THEN 0 WHEN h < 80 THEN 3 WHEN h < 95 THEN 6 ELSE 10 END,
       :now - interval '1 day', :now - interval '2 years'
FROM generate_series(1, :n) u
CROSS JOIN LATERAL (SELECT LEAST((u - 1) / :per + 1, :buildings) AS b) y
CROSS JOIN LATERAL (SELECT y.b AS b, u - (y.b - 1) * :per AS k, (u * 7919) % 100 AS h) x
ORDER BY u
"""

# Person p lives at unit (p-1) % U + 1: three to a unit with 3U people. Every
# 20th is a pending self-declaration, every 20th (offset 7) moved out.
_REGISTRATIONS = """
INSERT INTO registrations (person_id, building_id, unit_id, valid_from, ended_at, created_at, status, source,
                           end_reason, confirmed_at, updated_at)
SELECT p, u.building_id, u.id,
       CASE WHEN p % 20 = 0 THEN :now - interval '2 days' ELSE :now - (40 + p % 600) * interval '1 day' END,
       CASE WHEN p % 20 = 7 THEN :now - (1 + p % 30) * interval '1 day' END,
       CASE WHEN p % 20 = 0 THEN :now - interval '2 days' ELSE :now - (40 + p % 600) * interval '1 day' END,
       CASE WHEN p % 20 = 0 THEN 'pending' WHEN p % 20 = 7 THEN 'ended' ELSE 'active' END,
       CASE WHEN p % 20 = 0 THEN 'tenant' ELSE 'landlord' END,
       CASE WHEN p % 20 = 7 THEN 'moved' END,
       CASE WHEN p % 20 <> 0 THEN :now - (39 + p % 600) * interval '1 day' END, :now - interval '1 day'
FROM generate_series(1, :n) p JOIN units u ON u.id = (p - 1) % :units + 1
ORDER BY p
"""

# A card for 95 % of the active registrations, and a card handed to every
# 8th unit with nobody registered behind it (someone reconciliation chases).
_CREDENTIALS = """
INSERT INTO credentials (person_id, registration_id, building_id, unit_id, format, value, doors, issued_at,
                         last_seen_at)
SELECT r.person_id, r.id, r.building_id, r.unit_id, 'em4100', upper(lpad(to_hex(r.id), 10, '0')), '[]',
       r.valid_from, :now - (r.id % 72) * interval '1 hour'
FROM registrations r WHERE r.status = 'active' AND r.id % 19 <> 0 ORDER BY r.id;
INSERT INTO credentials (person_id, registration_id, building_id, unit_id, format, value, doors, issued_at,
                         last_seen_at)
SELECT NULL, NULL, u.building_id, u.id, 'em4100', 'F' || upper(lpad(to_hex(u.id), 9, '0')), '[]',
       :now - interval '20 days', :now - (u.id % 48) * interval '1 hour'
FROM units u WHERE u.id % 8 = 0 ORDER BY u.id;
"""

# Evidence behind every card: most seen in the last three days, every 31st
# silent for 40 days (the presumed departures of tomorrow).
_PRESENCE = """
INSERT INTO presence (unit_id, building_id, subject, person_id, credential_id, first_seen_at, last_seen_at,
                      last_day, days_seen, events)
SELECT c.unit_id, c.building_id, CASE WHEN c.person_id IS NULL THEN 'c' || c.id ELSE 'p' || c.person_id END,
       c.person_id, c.id, c.issued_at, t.seen,
       ((t.seen AT TIME ZONE :zone)::date - DATE '0001-01-01' + 1),
       LEAST(60, 5 + c.id % 50), 10 + c.id % 400
FROM credentials c
CROSS JOIN LATERAL (SELECT CASE WHEN c.id % 31 = 0 THEN :now - interval '40 days'
                                ELSE :now - (c.id % 72) * interval '1 hour' END AS seen) t
ORDER BY c.id
"""

# Open cases at 5 % of the units (four kinds), closed ones at another 5 %.
_CASES = """
INSERT INTO cases (kind, subject, state, building_id, unit_id, person_id, registration_id, credential_id,
                   evidence_at, opened_at, due_at, acknowledged_at, closed_at, resolution, evidence, updated_at)
SELECT k.kind, k.subject, CASE WHEN u.id % 100 = 23 THEN 'acknowledged' ELSE 'open' END, u.building_id, u.id,
       k.person_id, k.registration_id, NULL, :now - (5 + u.id % 20) * interval '1 day',
       :now - (u.id % 20) * interval '1 day',
       CASE WHEN k.kind = 'presumed_departure' THEN :now + interval '7 days' END,
       CASE WHEN u.id % 100 = 23 THEN :now - interval '1 day' END, NULL, NULL,
       jsonb_build_object('days_seen', 3 + u.id % 9, 'events', 10 + u.id % 90), :now
FROM units u
CROSS JOIN LATERAL (SELECT (u.id / 20) % 4 AS v) w
CROSS JOIN LATERAL (SELECT
    (ARRAY['unregistered_occupant','overcrowding','presumed_departure','address_mismatch'])[w.v + 1] AS kind,
    CASE w.v WHEN 0 THEN 'u' || u.id || '/c' || u.id WHEN 1 THEN 'u' || u.id WHEN 2 THEN 'r' || u.id
             ELSE 'p' || (u.id + :units) END AS subject,
    CASE WHEN w.v IN (2, 3) THEN u.id + CASE WHEN w.v = 3 THEN :units ELSE 0 END END AS person_id,
    CASE WHEN w.v = 2 THEN u.id END AS registration_id) k
WHERE u.id % 20 = 3 ORDER BY u.id;
INSERT INTO cases (kind, subject, state, building_id, unit_id, evidence_at, opened_at, closed_at, resolution,
                   evidence, updated_at)
SELECT 'overcrowding', 'u' || u.id, 'resolved', u.building_id, u.id, :now - interval '90 days',
       :now - interval '80 days', :now - interval '60 days', 'fixed', '{}', :now - interval '60 days'
FROM units u WHERE u.id % 20 = 11 ORDER BY u.id;
"""

_USERS = """
INSERT INTO users (username, password_hash, role, display_name, phone, created_at)
VALUES ('bench-admin', :hash, 'admin', '管理员', NULL, :now);
INSERT INTO users (username, password_hash, role, display_name, phone, created_at)
SELECT 'coord-' || g.code, :hash, 'coordinator', '网格员' || g.code, '137' || lpad(g.id::text, 8, '0'), :now
FROM areas g WHERE g.level = 'grid' ORDER BY g.id;
INSERT INTO grid_coordinators (grid_id, user_id, assigned_at, assigned_by)
SELECT g.id, us.id, :now, 'user:1' FROM areas g JOIN users us ON us.username = 'coord-' || g.code;
"""

# Every open case became a task, spread over the five live steps; every
# 50th unit also has a task a patrol raised, and every 100th a problem report.
_TASKS = """
INSERT INTO tasks (kind, state, case_id, grid_id, building_id, unit_id, summary, created_at, due_at, source,
                   created_by, assignee_user_id, updated_at)
SELECT c.kind, (ARRAY['reported','dispatched','handled','verified','evaluated'])[c.id % 5 + 1], c.id, b.grid_id,
       c.building_id, c.unit_id, '核查' || b.name || '的情况', c.opened_at, c.opened_at + interval '3 days', 'case',
       'system:reconcile', CASE WHEN c.id % 5 > 0 THEN gc.user_id END, :now
FROM cases c JOIN buildings b ON b.id = c.building_id JOIN grid_coordinators gc ON gc.grid_id = b.grid_id
WHERE c.state IN ('open', 'acknowledged') ORDER BY c.id;
INSERT INTO tasks (kind, state, grid_id, building_id, unit_id, summary, created_at, due_at, source, created_by,
                   assignee_user_id, updated_at)
SELECT 'patrol_finding', CASE WHEN u.id % 100 = 9 THEN 'archived' ELSE 'dispatched' END, b.grid_id, u.building_id,
       u.id, '消防通道堵塞', :now - interval '10 days', :now - interval '7 days', 'patrol', 'user:' || gc.user_id,
       gc.user_id, :now
FROM units u JOIN buildings b ON b.id = u.building_id JOIN grid_coordinators gc ON gc.grid_id = b.grid_id
WHERE u.id % 50 = 9 ORDER BY u.id;
INSERT INTO task_events (task_id, at, actor, action, from_state, to_state, assignee_user_id, note, due_at)
SELECT t.id, t.created_at, t.created_by, 'report', NULL, 'reported', NULL, NULL, t.created_at + interval '1 day'
FROM tasks t ORDER BY t.id;
INSERT INTO task_events (task_id, at, actor, action, from_state, to_state, assignee_user_id, note, due_at)
SELECT t.id, t.created_at + interval '2 hours', 'user:1', 'dispatch', 'reported', 'dispatched', t.assignee_user_id,
       NULL, t.due_at
FROM tasks t WHERE t.state <> 'reported' ORDER BY t.id;
INSERT INTO problem_reports (unit_id, building_id, plate_id, category, description, contact_phone, created_at)
SELECT u.id, u.building_id, u.id, (ARRAY['hazard','overcrowding','suspicious','other'])[u.id / 100 % 4 + 1],
       '楼道堆放杂物，可能有消防隐患', NULL, :now - (u.id % 30) * interval '1 day'
FROM units u WHERE u.id % 100 = 17 ORDER BY u.id;
"""

# One to four patrols of every unit in the last 60 days, by its grid's
# coordinator; the newest sets units.last_patrol_at as server/patrols would.
_PATROLS = """
INSERT INTO patrols (unit_id, building_id, grid_id, user_id, at, occupants_observed, seen_person_ids, checklist,
                     notes, attachment_ids)
SELECT u.id, u.building_id, b.grid_id, gc.user_id,
       :now - (((k - 1) * 15 + u.id % 15) * interval '1 day' + (u.id % 9) * interval '1 hour'),
       1 + (u.id + k) % 3, jsonb_build_array(u.id), jsonb_build_object(
           'fire_safety', CASE WHEN (u.id + k) % 23 = 0 THEN 'problem' ELSE 'ok' END,
           'overcrowding', CASE WHEN (u.id + k) % 37 = 0 THEN 'problem' ELSE 'ok' END,
           'unregistered', CASE WHEN (u.id + k) % 29 = 0 THEN 'problem' ELSE 'ok' END,
           'pledge', CASE WHEN b.pledge_signed_at IS NULL THEN 'problem' ELSE 'ok' END),
       CASE WHEN (u.id + k) % 5 = 0 THEN '住户反映门禁卡偶尔失灵' END, '[]'
FROM units u JOIN buildings b ON b.id = u.building_id JOIN grid_coordinators gc ON gc.grid_id = b.grid_id
CROSS JOIN LATERAL generate_series(1, 1 + u.id % 4) k
ORDER BY u.id, k;
UPDATE units u SET last_patrol_at = x.at FROM (SELECT unit_id, MAX(at) AS at FROM patrols GROUP BY unit_id) x
WHERE x.unit_id = u.id;
"""

# Each card read at its building's door events_per_card times over the last
# 30 days (the newest within the last three days, as presence says), granted;
# the cards handed to units without a registration are sometimes denied.
_GATEWAYS = """
INSERT INTO gateways (id, first_seen, last_seen, max_seq, building_id, online)
SELECT 'gw-' || b.id, :now - interval '1 year', :now, 0, b.id, true FROM buildings b ORDER BY b.id
"""
_EVENTS = """
INSERT INTO events (gateway_id, seq, kind, device, door, occurred_at, received_at, stored_at, credential_format,
                    credential_value, data)
SELECT 'gw-' || c.building_id, (c.id - 1) * :per + k, 'card_read', 'reader-1', 'door-' || (k % 2 + 1), t.at, t.at, t.at,
       c.format, c.value, CASE WHEN c.person_id IS NULL AND k % 3 = 0 THEN '{"decision": "denied", "reason": "unknown"}'
                               ELSE '{"decision": "granted"}' END::jsonb
FROM credentials c CROSS JOIN LATERAL generate_series(1, :per) k
CROSS JOIN LATERAL (SELECT :now - ((c.id % 72) * interval '1 hour') - ((k - 1) * (30.0 / :per) * interval '1 day')
                           - ((c.id * 37 + k * 101) % 3600) * interval '1 second' AS at) t
WHERE c.id BETWEEN :lo AND :hi
ORDER BY c.id, k
"""

_PLATES = """
INSERT INTO plates (unit_id, key_id, issued_at, expires_at)
SELECT u.id, :key_id, :now - interval '30 days', :expires FROM units u ORDER BY u.id
"""


def _run(conn: sa.Connection, what: str, script: str, timings: dict[str, float], **params: Any) -> None:
    started = time.perf_counter()
    for statement in (s.strip() for s in script.split(";\n")):
        if statement:
            conn.execute(sa.text(statement), params)
    timings[what] = round(time.perf_counter() - started, 2)
    progress("%s: %.1fs", what, timings[what])


def insert_events(engine: sa.Engine, per_card: int, now: datetime, chunk: int = 20_000) -> None:
    """The door events, in chunks of cards on one connection per CPU: the
    index upkeep of millions of rows is the slowest part of the load."""
    with engine.connect() as conn:
        top = int(conn.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM credentials")).scalar_one())

    def one(lo: int) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(_EVENTS), {"now": now, "per": per_card, "lo": lo, "hi": lo + chunk - 1})

    with ThreadPoolExecutor(max(1, len(os.sched_getaffinity(0)))) as pool:
        list(pool.map(one, range(1, top + 1, chunk)))


def generate(engine: sa.Engine, sizes: Sizes, vault: PiiVault, plate_key: tuple[str, bytes], now: datetime,
             *, sample_plates: int = 2000, seed: int = 1) -> tuple[City, dict[str, float]]:
    """Fill the migrated, empty database; the city and each phase's seconds."""
    from server.auth.passwords import hash_password
    from server.auth.sessions import start_session
    from server.plates.tokens import sign

    timings: dict[str, float] = {}
    started = time.perf_counter()
    copy_persons(engine, vault, sizes.people, now)
    timings["persons"] = round(time.perf_counter() - started, 2)
    progress("persons (%s, numbers sealed on %s CPUs): %.1fs", sizes.people, len(os.sched_getaffinity(0)),
             timings["persons"])
    s = sizes
    key_id, key = plate_key
    expires = now + timedelta(days=1796)
    with engine.begin() as conn:
        # Foreign keys are not checked row by row (the rows are consistent by
        # construction): a third of the load time otherwise. Needs a superuser,
        # which the throwaway cluster's user is; elsewhere they are checked.
        with contextlib.suppress(sa.exc.DBAPIError), conn.begin_nested():
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        _run(conn, "areas", _AREAS, timings, now=now, streets=s.streets, communities=s.communities, grids=s.grids)
        _run(conn, "buildings", _BUILDINGS, timings, now=now, n=s.buildings, grids=s.grids,
             per=s.units_per_building, surnames=_SURNAMES)
        _run(conn, "units", _UNITS, timings, now=now, n=s.units, per=s.units_per_building, buildings=s.buildings)
        _run(conn, "registrations", _REGISTRATIONS, timings, now=now, n=s.people, units=s.units)
        _run(conn, "credentials", _CREDENTIALS, timings, now=now)
        _run(conn, "presence", _PRESENCE, timings, now=now, zone=TIMEZONE)
        _run(conn, "cases", _CASES, timings, now=now, units=s.units)
        _run(conn, "users", _USERS, timings, now=now, hash=hash_password(BENCH_PASSWORD))
        _run(conn, "tasks", _TASKS, timings, now=now)
        _run(conn, "patrols", _PATROLS, timings, now=now)
        _run(conn, "plates", _PLATES, timings, now=now, key_id=key_id, expires=expires)
        _run(conn, "gateways", _GATEWAYS, timings, now=now)
        # Sessions as a login leaves them (cookie kind, digest stored).
        grid_tokens: dict[int, str] = {}
        for grid_id, user_id in conn.execute(sa.text("SELECT grid_id, user_id FROM grid_coordinators")):
            grid_tokens[int(grid_id)] = start_session(conn, now, int(user_id), kind="cookie", ttl=None, label="bench")
        admin_id = conn.execute(sa.text("SELECT id FROM users WHERE username = 'bench-admin'")).scalar_one()
        admin_token = start_session(conn, now, int(admin_id), kind="cookie", ttl=None, label="bench")
    if s.events_per_card > 0:
        started = time.perf_counter()
        # The daily partitions a city that has run a month has (the events
        # span the last 30 days): without them every read would sit in the
        # DEFAULT partition and the pages would not pay what partitions cost.
        daily_partitions(engine, now, days_back=35)
        insert_events(engine, s.events_per_card, now)
        timings["events"] = round(time.perf_counter() - started, 2)
        progress("events (%s per card): %.1fs", s.events_per_card, timings["events"])
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    timings["analyze"] = round(time.perf_counter() - started, 2)
    progress("vacuum analyze: %.1fs", timings["analyze"])
    with engine.connect() as conn:
        unit_grid = {int(u): int(g) for u, g in conn.execute(sa.text(
            "SELECT u.id, b.grid_id FROM units u JOIN buildings b ON b.id = u.building_id"))}
        unit_ids = sorted(unit_grid)
        rng = random.Random(seed)
        sample = rng.sample(unit_ids, min(sample_plates, len(unit_ids)))
        plate_tokens = {int(unit_id): sign(key_id, key, int(plate_id), expires_on.date())
                        for plate_id, unit_id, expires_on in conn.execute(sa.text(
                            "SELECT id, unit_id, expires_at FROM plates WHERE unit_id = ANY(:ids)"),
                            {"ids": sample})}
        counts = {table: int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())  # noqa: S608
                  for table in _COUNTED}
    return City(unit_ids, unit_grid, grid_tokens, admin_token, plate_tokens, counts), timings


_COUNTED: Sequence[str] = ("areas", "buildings", "units", "persons", "registrations", "credentials", "presence",
                           "cases", "tasks", "task_events", "patrols", "plates", "problem_reports", "users",
                           "gateways", "events")


def today_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
