"""The registry bench/police.py asks about, and the PostgreSQL it lives in.

Persons go in by COPY: their identity numbers are real (valid check
characters, 47 area codes of 30 provinces, births over 44 years), sealed
with the real PiiVault (the keyed HMAC digest the police API looks up by,
an AES-GCM ciphertext, the mask), computed on every CPU in a process pool
because sealing a million numbers takes about 25 s on one core. Everything
else is generated server-side (INSERT ... SELECT generate_series), in one
transaction with foreign-key triggers off; the indexes are the migrations'
own and are kept up to date during the load, as in production.

Person ``p`` (ids 1..n on the fresh database) is, by ``p % 10``:

- 0..5 (60 %): an active registration; four in five of them seen at their
  door within the last three days (a presence row); every fourth also has an
  earlier, ended registration elsewhere. Answer: ``registered``.
- 6 (10 %): registration ended 30 to 180 days ago, yet read at the door
  within the last 20 days. Answer: ``evidenced_unregistered``.
- 7 (10 %): registration ended, last seen 40 to 120 days ago, past the
  city's 30 silent days. Answer: ``unknown``.
- 8, 9 (20 %): a person record and nothing else (every thirtieth with a
  pending self-declaration, which is not a registration). Answer: ``unknown``.

Numbers of ``p`` above n are valid numbers nobody in the registry holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from server.police.lookups import EVIDENCED, REGISTERED, UNKNOWN
from server.registry.idnumber import make_id_number, mask_id_number
from server.registry.pii import PiiVault
from tests.services import PostgresCluster, ServiceMissing, find_postgres_bindir, free_port, postgres_os_user

TIMEZONE = "Asia/Shanghai"
DISTRICT_CODE = "440106"
UNITS_PER_BUILDING = 20
PERSONS_PER_UNIT = 4
COPY_CHUNK = 10_000
# Bumped when what is seeded changes: a kept cluster of another version is seeded afresh.
SEED_VERSION = 1

# Area codes (first two digits: the province) of places migrant workers come
# from; 47, a prime, so that the area and ``p % 10`` do not move together.
AREA_CODES = (
    "440106", "440111", "440305", "440606", "441900", "442000", "445102", "431021", "430104", "430521",
    "452501", "450881", "450102", "510722", "510104", "511323", "421182", "420102", "422801", "362426",
    "360732", "360102", "500234", "500101", "412725", "410102", "411502", "350102", "350583", "330102",
    "320102", "340102", "341221", "370102", "370683", "130102", "140105", "150102", "210102", "220102",
    "230102", "460105", "520102", "522601", "530102", "532901", "610102",
)
BIRTH_DAYS = 16_000  # births 1960-01-01 .. 2003-10: every tenant an adult
FIRST_BIRTH = date(1960, 1, 1)
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
_GIVEN = ("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超",
          "秀兰", "霞", "平", "刚", "桂英", "建华", "文", "华", "红", "志强", "海燕", "小红")


def progress(text: str, *args: object) -> None:
    print(f"[bench] {text % args}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- who is who


def id_number(p: int) -> str:
    """Person p's identity number. (area, birth day, block) is a bijection
    of p, and for a fixed birth day the block's sequence number
    ``1 + (211 * block + day) % 999`` differs for every block below 999
    (211 and 999 are coprime), so no two p share a number."""
    areas = len(AREA_CODES)
    day = (p // areas) % BIRTH_DAYS
    block = p // (areas * BIRTH_DAYS)
    if not 0 <= block < 999:
        raise ValueError(f"person {p} is beyond the numbers this bench can make")
    return make_id_number(AREA_CODES[p % areas], FIRST_BIRTH + timedelta(days=day), 1 + (211 * block + day) % 999)


def expected_result(p: int, persons: int) -> str:
    """What the police API must answer for person p's number."""
    if not 1 <= p <= persons:
        return UNKNOWN
    kind = p % 10
    return REGISTERED if kind <= 5 else EVIDENCED if kind == 6 else UNKNOWN


def sample_person(rng: random.Random, persons: int, answer: str) -> int:
    """A random person (or, for ``unknown``, half the time a number nobody
    holds) whose number the police API must answer with ``answer``."""
    if answer == UNKNOWN and rng.random() < 0.5:
        return rng.randint(persons + 1, 2 * persons)
    while True:
        p = rng.randint(1, persons)
        if expected_result(p, persons) == answer:
            return p


# ---------------------------------------------------------------- the cluster


class BenchCluster(PostgresCluster):
    """A private PostgreSQL from the system's binaries (tests/services.py),
    but durable, unlike the tests' one: every police answer waits for its
    audit entry's commit, and a commit's fsync is part of what is measured.
    ``keep``: a directory the cluster lives in and outlives the run (made
    on first use, reused after), else a temporary one."""

    def __init__(self, keep: Path | None = None) -> None:
        if keep is None:
            super().__init__()
            return
        # PostgresCluster.__init__ always makes a fresh directory; this is
        # the same set-up on a directory that may already hold a cluster.
        bindir = find_postgres_bindir()
        if bindir is None:
            raise ServiceMissing(self.service, self.hint)
        self.bindir = bindir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.os_user = postgres_os_user()
        self.basedir = keep.resolve()
        self.basedir.mkdir(parents=True, exist_ok=True)
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            os.chown(self.basedir, entry.pw_uid, entry.pw_gid)
        self.datadir = self.basedir / "data"
        self.log_path = self.basedir / "postgres.log"
        self._proc = None
        self._log = None
        if not (self.datadir / "PG_VERSION").exists():
            self._initdb()

    def _spawn(self, cmd: list[str], stdout: IO[bytes]) -> Any:
        if cmd and cmd[0].endswith("/postgres"):
            durable = {"fsync=off": "fsync=on", "synchronous_commit=off": "synchronous_commit=on",
                       "full_page_writes=off": "full_page_writes=on"}
            cmd = [durable.get(arg, arg) for arg in cmd]
            # A modest production tuning rather than the 128 MB default: the
            # persons table and its digest index (~450 MB) stay in memory, and
            # the bulk load does not checkpoint every few seconds.
            cmd += ["-c", "shared_buffers=1GB", "-c", "max_wal_size=8GB", "-c", "checkpoint_timeout=30min"]
        return super()._spawn(cmd, stdout)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def ensure_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                self.create_database(name)
        return self.url(name)


@contextlib.contextmanager
def running_cluster(keep: Path | None) -> Iterator[BenchCluster]:
    """Started, and on the way out stopped (and removed unless kept)."""
    cluster = BenchCluster(keep)
    try:
        cluster.start()
        yield cluster
    finally:
        if keep is None:
            cluster.destroy()
        else:
            cluster.stop()


# ---------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    persons: int

    @property
    def units(self) -> int:
        return max(UNITS_PER_BUILDING, self.persons // PERSONS_PER_UNIT)

    @property
    def buildings(self) -> int:
        return -(-self.units // UNITS_PER_BUILDING)

    @property
    def grids(self) -> int:
        return max(1, self.buildings // 25)

    @property
    def communities(self) -> int:
        return max(1, self.grids // 10)

    @property
    def streets(self) -> int:
        return max(1, self.communities // 5)


# ---------------------------------------------------------------- persons


def person_rows(vault: PiiVault, first: int, last: int, created: str) -> list[tuple[Any, ...]]:
    """COPY rows of persons first..last, sealed as server/registry/service.py
    seals them. Runs in a worker process."""
    rows: list[tuple[Any, ...]] = []
    for p in range(first, last + 1):
        number = id_number(p)
        name = _SURNAMES[p % len(_SURNAMES)] + _GIVEN[(p // len(_SURNAMES)) % len(_GIVEN)]
        rows.append((p, name, created, vault.digest(number), vault.encrypt(number), mask_id_number(number),
                     "M" if int(number[16]) % 2 else "F", int(number[6:10]), f"13{p % 1_000_000_000:09d}",
                     AREA_CODES[p % len(AREA_CODES)]))
    return rows


def copy_persons(engine: sa.Engine, vault: PiiVault, n: int, now: datetime) -> float:
    """Seals on every CPU, COPYs the rows in as they come back, in order.
    Returns the seconds the sealing alone would have taken on one core."""
    created = (now - timedelta(days=800)).isoformat()
    columns = "id, display_name, created_at, id_digest, id_cipher, id_masked, sex, birth_year, phone, origin"
    raw = engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        workers = max(1, len(os.sched_getaffinity(0)))
        with ProcessPoolExecutor(workers) as pool, driver.cursor() as cur:
            cur.execute("SET synchronous_commit = off")
            with cur.copy(f"COPY persons ({columns}) FROM STDIN") as copy:
                chunks = [(lo, min(n, lo + COPY_CHUNK - 1)) for lo in range(1, n + 1, COPY_CHUNK)]
                futures = [pool.submit(person_rows, vault, lo, hi, created) for lo, hi in chunks]
                for i, future in enumerate(futures):
                    for row in future.result():
                        copy.write_row(row)
                    if (i + 1) % 20 == 0:
                        progress("persons: %s of %s", min(n, (i + 1) * COPY_CHUNK), n)
            # COPY with explicit ids leaves the sequence behind.
            cur.execute("SELECT setval(pg_get_serial_sequence('persons', 'id'), %s)", (n,))
        driver.commit()
    finally:
        raw.close()
    started = time.perf_counter()
    person_rows(vault, 1, 2000, created)
    return (time.perf_counter() - started) / 2000 * n


# ---------------------------------------------------------------- the rest, in SQL

_AREAS = """
INSERT INTO areas (level, code, name, parent_id, created_at) VALUES ('district', :district, '天河区', NULL, :now);
INSERT INTO areas (level, code, name, parent_id, created_at)
SELECT 'street', 'S' || i, '第' || i || '街道', (SELECT id FROM areas WHERE code = :district), :now
FROM generate_series(1, :streets) i ORDER BY i;
INSERT INTO areas (level, code, name, parent_id, created_at)
SELECT 'community', 'C' || i, '第' || i || '社区', a.id, :now
FROM generate_series(1, :communities) i JOIN areas a ON a.code = 'S' || ((i - 1) % :streets + 1) ORDER BY i;
INSERT INTO areas (level, code, name, parent_id, created_at)
SELECT 'grid', 'G' || i, '第' || i || '网格', a.id, :now
FROM generate_series(1, :grids) i JOIN areas a ON a.code = 'C' || ((i - 1) % :communities + 1) ORDER BY i
"""

_BUILDINGS = """
INSERT INTO buildings (name, created_at, code, address, grid_id, landlord_name, is_rental, rooms)
SELECT '棠下' || b || '号', :now - interval '3 years', 'B' || lpad(b::text, 7, '0'),
       '广东省广州市天河区棠下' || b || '号', g.id, substr(:surnames, b % 40 + 1, 1) || '先生', true, :per
FROM generate_series(1, :n) b JOIN areas g ON g.code = 'G' || ((b - 1) % :grids + 1)
ORDER BY b
"""

_UNITS = """
INSERT INTO units (building_id, number, floor, area_m2, rooms, capacity, created_at)
SELECT (u - 1) / :per + 1, ((((u - 1) % :per) / 4 + 1) * 100 + (u - 1) % 4 + 1)::text,
       ((u - 1) % :per) / 4 + 1, 20 + (u % 5) * 10, 1 + u % 3, 2 * (1 + u % 3), :now - interval '3 years'
FROM generate_series(1, :n) u ORDER BY u
"""

# Each person's current registration (see the module's docstring), at a
# unit spread over the city; then an earlier one for every fourth registered.
_REGISTRATIONS = """
INSERT INTO registrations (person_id, building_id, unit_id, valid_from, ended_at, created_at, status, source,
                           end_reason, confirmed_at, updated_at)
SELECT p, u.building_id, u.id, :now - (60 + p % 700) * interval '1 day',
       CASE WHEN p % 10 IN (6, 7) THEN :now - (30 + p % 150) * interval '1 day' END,
       :now - (60 + p % 700) * interval '1 day',
       CASE WHEN p % 10 <= 5 THEN 'active' WHEN p % 10 IN (6, 7) THEN 'ended' ELSE 'pending' END,
       CASE WHEN p % 10 <= 7 THEN 'landlord' ELSE 'tenant' END,
       CASE WHEN p % 10 IN (6, 7) THEN 'deregistered' END,
       CASE WHEN p % 10 <= 7 THEN :now - (59 + p % 700) * interval '1 day' END, :now - interval '1 day'
FROM generate_series(1, :n) p JOIN units u ON u.id = (p::bigint * 7919) % :units + 1
WHERE p % 10 <= 7 OR p % 30 = 8
ORDER BY p;
INSERT INTO registrations (person_id, building_id, unit_id, valid_from, ended_at, created_at, status, source,
                           end_reason, confirmed_at, updated_at)
SELECT p, u.building_id, u.id, :now - (800 + p % 300) * interval '1 day', :now - (61 + p % 700) * interval '1 day',
       :now - (800 + p % 300) * interval '1 day', 'ended', 'landlord', 'moved',
       :now - (799 + p % 300) * interval '1 day', :now - (61 + p % 700) * interval '1 day'
FROM generate_series(1, :n) p JOIN units u ON u.id = (p::bigint * 104729) % :units + 1
WHERE p % 10 <= 5 AND p % 4 = 0
ORDER BY p
"""

# Door evidence, as reconciliation keeps it in presence.
_PRESENCE = """
INSERT INTO presence (unit_id, building_id, subject, person_id, credential_id, first_seen_at, last_seen_at,
                      last_day, days_seen, events)
SELECT r.unit_id, r.building_id, 'p' || r.person_id, r.person_id, NULL, r.valid_from, t.seen,
       ((t.seen AT TIME ZONE :zone)::date - DATE '0001-01-01' + 1), LEAST(60, 5 + r.person_id % 50),
       10 + r.person_id % 400
FROM registrations r
CROSS JOIN LATERAL (SELECT CASE
    WHEN r.person_id % 10 = 6 THEN :now - (1 + r.person_id % 20) * interval '1 day'
                                   - (r.person_id % 86400) * interval '1 second'
    WHEN r.person_id % 10 = 7 THEN :now - (40 + r.person_id % 80) * interval '1 day'
    ELSE :now - (r.person_id % 72) * interval '1 hour' END AS seen) t
WHERE (r.status = 'active' AND r.person_id % 5 <> 0) OR (r.status = 'ended' AND r.person_id % 10 IN (6, 7))
ORDER BY r.id
"""


def _run(conn: sa.Connection, what: str, script: str, timings: dict[str, float], **params: Any) -> None:
    started = time.perf_counter()
    for statement in (s.strip() for s in script.split(";\n")):
        if statement:
            conn.execute(sa.text(statement), params)
    timings[what] = round(time.perf_counter() - started, 2)
    progress("%s: %.1fs", what, timings[what])


def seed(engine: sa.Engine, sizes: Sizes, vault: PiiVault, now: datetime) -> dict[str, Any]:
    """Fills the migrated, empty database; each step's seconds and the row counts."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    one_core = copy_persons(engine, vault, sizes.persons, now)
    timings["persons"] = round(time.perf_counter() - started, 2)
    timings["persons_sealing_one_core_s"] = round(one_core, 1)
    progress("persons (%s, sealed on %s CPUs): %.1fs; sealing alone on one core would take %.0fs", sizes.persons,
             len(os.sched_getaffinity(0)), timings["persons"], one_core)
    s = sizes
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL synchronous_commit = off"))
        # Foreign keys are not checked row by row (the rows are consistent by
        # construction). Needs a superuser, which the bench cluster's user is.
        with contextlib.suppress(sa.exc.DBAPIError), conn.begin_nested():
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        _run(conn, "areas", _AREAS, timings, now=now, district=DISTRICT_CODE, streets=s.streets,
             communities=s.communities, grids=s.grids)
        _run(conn, "buildings", _BUILDINGS, timings, now=now, n=s.buildings, grids=s.grids, per=UNITS_PER_BUILDING,
             surnames=_SURNAMES)
        _run(conn, "units", _UNITS, timings, now=now, n=s.units, per=UNITS_PER_BUILDING)
        _run(conn, "registrations", _REGISTRATIONS, timings, now=now, n=s.persons, units=s.units)
        _run(conn, "presence", _PRESENCE, timings, now=now, zone=TIMEZONE)
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    timings["vacuum_analyze"] = round(time.perf_counter() - started, 2)
    progress("vacuum analyze: %.1fs", timings["vacuum_analyze"])
    return {"steps_s": timings, "rows": row_counts(engine)}


def row_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one())  # noqa: S608 - fixed names
                for t in ("areas", "buildings", "units", "persons", "registrations", "presence")}


# ---------------------------------------------------------------- a kept cluster


def seeded_marker(keep: Path) -> Path:
    return keep / "seeded.json"


def reusable(keep: Path | None, persons: int) -> dict[str, Any] | None:
    """What a kept cluster was seeded with, if it fits this run."""
    if keep is None or not seeded_marker(keep).exists():
        return None
    found: dict[str, Any] = json.loads(seeded_marker(keep).read_text())
    if found.get("persons") != persons or found.get("version") != SEED_VERSION:
        return None
    return found


def mark_seeded(keep: Path, persons: int, now: datetime) -> None:
    seeded_marker(keep).write_text(json.dumps({"persons": persons, "version": SEED_VERSION,
                                               "seeded_at": now.isoformat()}))


def catch_up_clock(engine: sa.Engine, seeded_at: datetime, now: datetime) -> None:
    """A kept registry seeded days ago: move its door evidence forward by as
    much, so that who is evidenced is still who the bench expects."""
    shift = now - seeded_at
    if shift < timedelta(hours=1):
        return
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE presence SET first_seen_at = first_seen_at + :d, "
                             "last_seen_at = last_seen_at + :d"), {"d": shift})
    progress("kept registry: door evidence moved forward by %s", shift)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
