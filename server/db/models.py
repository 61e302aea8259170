"""The server's tables. Event ingest writes with Core statements against these
tables (no ORM objects on the hot path); the classes document the schema and
serve Alembic and the API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from server.db.types import BigId, JsonDoc, UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

GAP_STATES = ("open", "filled", "lost")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


_CAMERA_ALERTS = sa.text("kind IN ('tailgating', 'unidentified_entry')")
_HAS_TXID = sa.text("txid IS NOT NULL")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        # Every index costs each ingested row (about 8 us per row on PostgreSQL
        # with six of them): only what the API's filters need. The unique key
        # also serves the gateway filter; kind has too few values to index.
        # PostgreSQL's table is partitioned by occurred_at (migration 0011,
        # server/db/partitions.py), whose unique keys must hold it: a resend
        # carries its first copy's occurred_at, so dedup stays exact. Its
        # primary key is (id, occurred_at) there (not compared by Alembic).
        sa.UniqueConstraint("gateway_id", "seq").ddl_if(dialect="sqlite"),
        sa.UniqueConstraint("gateway_id", "seq", "occurred_at").ddl_if(dialect="postgresql"),
        sa.Index(None, "occurred_at"),
        sa.Index(None, "door", "occurred_at"),
        # A card's last events for the coordinator's unit page (server/patrols/unit_view.py);
        # partial, so door contacts and status events cost nothing more.
        sa.Index(None, "credential_value", "occurred_at", sqlite_where=sa.text("credential_value IS NOT NULL"),
                 postgresql_where=sa.text("credential_value IS NOT NULL")),
        # A building's last camera alerts for the coordinator's unit page
        # (server/pages/camera_alerts.py); partial, so nothing else ingested
        # pays for it.
        sa.Index("ix_events_camera_alerts", "gateway_id", "occurred_at", sqlite_where=_CAMERA_ALERTS,
                 postgresql_where=_CAMERA_ALERTS),
        # Reconciliation reads events in (txid, id) order (server/reconcile/marks.py).
        # Partial: SQLite leaves txid NULL, so there it holds nothing and costs nothing.
        sa.Index("ix_events_txid_id", "txid", "id", sqlite_where=_HAS_TXID, postgresql_where=_HAS_TXID),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    gateway_id: Mapped[str] = mapped_column(sa.String(64))
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    kind: Mapped[str] = mapped_column(sa.String(32))
    device: Mapped[str] = mapped_column(sa.String(64))
    door: Mapped[str | None] = mapped_column(sa.String(64))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime)
    credential_format: Mapped[str | None] = mapped_column(sa.String(16))
    credential_value: Mapped[str | None] = mapped_column(sa.String(128))
    data: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    # PostgreSQL: the id of the transaction that stored the event (its default,
    # pg_current_xact_id(), set by migration 0010; ingest passes it in the
    # COPY); 0 for rows older than that migration. SQLite: NULL. FetchedValue:
    # an insert that does not name it leaves it to the database (never NULL).
    txid: Mapped[int | None] = mapped_column(sa.BigInteger, server_default=sa.FetchedValue())


class Gateway(Base):
    __tablename__ = "gateways"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    online: Mapped[bool | None] = mapped_column(sa.Boolean)
    status_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    version: Mapped[str | None] = mapped_column(sa.String(64))
    boot_id: Mapped[str | None] = mapped_column(sa.String(64))
    outbox_depth: Mapped[int | None] = mapped_column(sa.BigInteger)
    oldest_unsent_age_s: Mapped[float | None] = mapped_column(sa.Float)
    dropped_total: Mapped[int | None] = mapped_column(sa.BigInteger)
    rejected_total: Mapped[int | None] = mapped_column(sa.BigInteger)
    devices_online: Mapped[int | None] = mapped_column(sa.Integer)
    devices_total: Mapped[int | None] = mapped_column(sa.Integer)
    max_seq: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    # The allowlist version the gateway last said it holds (its status).
    allowlist_version: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Which building's allowlist the gateway holds; set at enrolment or by an operator.
    building_id: Mapped[int | None] = mapped_column(
        sa.BigInteger, sa.ForeignKey("buildings.id"), index=True)
    # Enrolment (server/fleet, docs/fleet.md): who enrolled it and when, its
    # certificate's serial number, and its revocation. A revoked gateway's
    # broker login is gone and its events are refused.
    enrolled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    enrolled_by: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id"))
    hostname: Mapped[str | None] = mapped_column(sa.String(64))
    certificate_serial: Mapped[str | None] = mapped_column(sa.String(64))
    # A hash (scrypt, like users' passwords) of the gateway's broker password:
    # the same secret authenticates its HTTP calls (snapshot uploads).
    secret_hash: Mapped[str | None] = mapped_column(sa.String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_by: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id"))
    # Fleet health from the last status (wire.GatewayStatus).
    clock_skew_s: Mapped[float | None] = mapped_column(sa.Float)
    disk_free_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    disk_total_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    mem_rss_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    mem_available_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    devices_health: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonDoc)
    # Terminals that decide at the door from a user list the gateway keeps
    # (docs/terminal-sync.md): each one's sync state as its last status said,
    # and how many of them did not hold the gateway's allowlist then
    # (server/fleet/health.py: terminals_behind; a number, so that the fleet
    # page can sort and filter on it in SQL).
    terminals_health: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonDoc)
    terminals_behind: Mapped[int | None] = mapped_column(sa.Integer)
    # The remote configuration the gateway runs, the newest it tried and how that went.
    config_version: Mapped[int | None] = mapped_column(sa.BigInteger)
    config_attempted: Mapped[int | None] = mapped_column(sa.BigInteger)
    config_state: Mapped[str | None] = mapped_column(sa.String(16))
    config_error: Mapped[str | None] = mapped_column(sa.Text)


class DeadLetter(Base):
    __tablename__ = "dead_letters"
    __table_args__ = (sa.Index(None, "gateway_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    topic: Mapped[str] = mapped_column(sa.Text)
    gateway_id: Mapped[str | None] = mapped_column(sa.String(64))
    seq: Mapped[int | None] = mapped_column(sa.BigInteger)
    reason: Mapped[str] = mapped_column(sa.Text)
    # "utf-8" or "base64": bytes that are not text (or hold NULs, which
    # PostgreSQL text refuses) are kept as base64 rather than mangled.
    payload_encoding: Mapped[str] = mapped_column(sa.String(8))
    payload: Mapped[str] = mapped_column(sa.Text)
    payload_size: Mapped[int] = mapped_column(sa.Integer)


class SeqGap(Base):
    __tablename__ = "seq_gaps"
    __table_args__ = (
        sa.Index(None, "gateway_id", "state", "first_seq"),
        sa.CheckConstraint("state IN ('open', 'filled', 'lost')", name="state"),
        sa.CheckConstraint("first_seq <= last_seq", name="range"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    gateway_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("gateways.id", ondelete="CASCADE"))
    first_seq: Mapped[int] = mapped_column(sa.BigInteger)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger)
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    request_count: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    state: Mapped[str] = mapped_column(sa.String(8), server_default="open")
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


AREA_LEVELS = ("district", "street", "community", "grid")
REGISTRATION_STATES = ("pending", "active", "ended", "rejected")
REGISTRATION_SOURCES = ("landlord", "tenant", "coordinator", "import", "access")
CASE_KINDS = ("unregistered_occupant", "presumed_departure", "address_mismatch", "overcrowding",
              "unknown_credential", "credential_unused")
CASE_STATES = ("open", "acknowledged", "resolved", "auto_closed")
OPEN_CASE_STATES = ("open", "acknowledged")
USER_ROLES = ("admin", "landlord", "coordinator", "police")
GRADES = ("trusted", "normal", "watch", "strict")  # 放心 / 一般 / 重点 / 严控
# 上报 → 派遣 → 处置 → 核查 → 评价 → 归档 (server/grid/workflow.py).
TASK_STATES = ("reported", "dispatched", "handled", "verified", "evaluated", "archived")
# Where a task came from: a reconciliation case, a public report from a plate,
# a patrol's finding, or a person creating one by hand.
TASK_SOURCES = ("case", "report", "patrol", "manual")
REPORT_CATEGORIES = ("hazard", "overcrowding", "suspicious", "other")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class User(Base):
    """Someone who logs in: an administrator, a landlord, a grid coordinator
    or a police client. Passwords are scrypt hashes (server/auth)."""

    __tablename__ = "users"
    __table_args__ = (sa.CheckConstraint(_in("role", USER_ROLES), name="role"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(16))
    display_name: Mapped[str] = mapped_column(sa.String(200))
    phone: Mapped[str | None] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuthSession(Base):
    """A login (cookie) or an API token (bearer). Only a digest of the token
    is stored, so a copy of the database cannot be used to log in."""

    __tablename__ = "auth_sessions"
    __table_args__ = (sa.Index(None, "user_id"),
                      sa.CheckConstraint("kind IN ('cookie', 'token')", name="kind"))

    token_digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(8))
    label: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Area(Base):
    """One level of the standard address: district (区) > street (街道/镇) >
    community (社区/村) > grid (网格). Codes are the city's own."""

    __tablename__ = "areas"
    __table_args__ = (sa.Index(None, "parent_id"),
                      sa.CheckConstraint(_in("level", AREA_LEVELS), name="level"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    level: Mapped[str] = mapped_column(sa.String(12))
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    parent_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("areas.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Building(Base):
    __tablename__ = "buildings"
    __table_args__ = (sa.Index(None, "grid_id"), sa.Index(None, "landlord_user_id"),
                      sa.Index(None, "code", unique=True))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The standard address (一标): its code and its text in full.
    code: Mapped[str | None] = mapped_column(sa.String(32))
    address: Mapped[str | None] = mapped_column(sa.String(300))
    grid_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("areas.id"))
    landlord_name: Mapped[str | None] = mapped_column(sa.String(100))
    landlord_phone: Mapped[str | None] = mapped_column(sa.String(32))
    landlord_user_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id"))
    # Registered with the authorities as a rental (出租房屋登记).
    is_rental: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    pledge_signed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    rooms: Mapped[int | None] = mapped_column(sa.Integer)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Unit(Base):
    """A rental unit (房号) with a door plate. ``capacity`` is derived from the
    area and the rooms under the city's rules and kept here so that the sweep
    and the rates need no per-row arithmetic; it is recomputed when they change."""

    __tablename__ = "units"
    __table_args__ = (sa.UniqueConstraint("building_id", "number"),
                      sa.CheckConstraint("grade IS NULL OR " + _in("grade", GRADES), name="grade"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    building_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("buildings.id"))
    number: Mapped[str] = mapped_column(sa.String(32))
    floor: Mapped[int | None] = mapped_column(sa.Integer)
    area_m2: Mapped[float] = mapped_column(sa.Float)
    rooms: Mapped[int] = mapped_column(sa.Integer)
    capacity: Mapped[int] = mapped_column(sa.Integer)
    grade: Mapped[str | None] = mapped_column(sa.String(8))
    grade_score: Mapped[int | None] = mapped_column(sa.Integer)
    grade_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Kept by server/patrols so the overdue list needs no aggregate.
    last_patrol_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Person(Base):
    """A person. The identity number is never stored in the clear: ``id_cipher``
    holds it encrypted (AES-GCM, key id first), ``id_digest`` is a keyed hash
    (HMAC-SHA256) that finds a person by number and keeps numbers unique, and
    ``id_masked`` is the only form pages and logs ever show. Allowlists carry
    ``p-<id>`` and nothing else. Persons made through the access API before the
    registry existed have no number."""

    __tablename__ = "persons"
    __table_args__ = (sa.Index(None, "id_digest", unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    display_name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    id_digest: Mapped[str | None] = mapped_column(sa.String(64))
    id_cipher: Mapped[str | None] = mapped_column(sa.Text)
    id_masked: Mapped[str | None] = mapped_column(sa.String(18))
    sex: Mapped[str | None] = mapped_column(sa.String(1))
    birth_year: Mapped[int | None] = mapped_column(sa.Integer)
    phone: Mapped[str | None] = mapped_column(sa.String(32))
    # 户籍地: where the person's household registration is.
    origin: Mapped[str | None] = mapped_column(sa.String(100))
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Registration(Base):
    """A residence registration (居住登记): a person living at a unit from
    ``valid_from`` (arrival) until ``ended_at`` (departure). Registrations made
    through the access API before the registry existed name a building and no
    unit. ``pending`` is a tenant's self-declaration awaiting confirmation."""

    __tablename__ = "registrations"
    __table_args__ = (
        sa.Index(None, "building_id"), sa.Index(None, "person_id"),
        sa.Index(None, "unit_id", "status"),
        sa.Index(None, "status", "unit_id"),
        sa.CheckConstraint(_in("status", REGISTRATION_STATES), name="status"),
        sa.CheckConstraint(_in("source", REGISTRATION_SOURCES), name="source"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("persons.id"))
    building_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("buildings.id"))
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    unit_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("units.id"))
    status: Mapped[str] = mapped_column(sa.String(12), server_default="active")
    source: Mapped[str] = mapped_column(sa.String(12), server_default="access")
    # deregistered, moved, presumed_departure, rejected, ...
    end_reason: Mapped[str | None] = mapped_column(sa.String(32))
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    confirmed_by: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id"))
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Credential(Base):
    """A card or terminal person id, issued under a registration or, when a
    landlord hands a card to someone not (yet) registered, to a unit alone:
    using such a card is the evidence reconciliation works from.
    ``building_id`` repeats the registration's or unit's so that the database
    itself keeps one active credential per (format, value) and building."""

    __tablename__ = "credentials"
    __table_args__ = (
        sa.Index("uq_credentials_active_building_id_format_value", "building_id", "format", "value", unique=True,
                 sqlite_where=sa.text("revoked_at IS NULL"), postgresql_where=sa.text("revoked_at IS NULL")),
        sa.Index(None, "registration_id"),
        sa.Index(None, "building_id", "revoked_at"),
        # A card read's credential, revoked ones included (reconciliation
        # attributes a read to the credential valid when it happened).
        sa.Index(None, "building_id", "format", "value"),
        sa.Index(None, "person_id"),
        sa.Index(None, "unit_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("persons.id"))
    registration_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("registrations.id"))
    building_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("buildings.id"))
    unit_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("units.id"))
    format: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[str] = mapped_column(sa.String(128))
    # Door ids of the building's gateways; empty means every door.
    doors: Mapped[list[str]] = mapped_column(JsonDoc)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(32))
    # The newest event that used it (reconciliation); None: never seen.
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AllowlistVersion(Base):
    """Each gateway's allowlist version, bumped in the transaction that changes
    what the list holds, so a change is never published under an old number."""

    __tablename__ = "allowlist_versions"

    gateway_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("gateways.id", ondelete="CASCADE"),
                                            primary_key=True)
    version: Mapped[int] = mapped_column(sa.BigInteger)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    published_version: Mapped[int | None] = mapped_column(sa.BigInteger)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class History(Base):
    """The trace of every change to the registry and to cases: who, when, what
    and the fields before and after. Identity numbers appear masked only."""

    __tablename__ = "history"
    __table_args__ = (sa.Index(None, "entity", "entity_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    # "user:<id>", "system:reconcile", "import:<file>", "sim:landlord", ...
    actor: Mapped[str] = mapped_column(sa.String(64))
    entity: Mapped[str] = mapped_column(sa.String(24))
    entity_id: Mapped[int] = mapped_column(sa.BigInteger)
    action: Mapped[str] = mapped_column(sa.String(32))
    changes: Mapped[dict[str, Any]] = mapped_column(JsonDoc)


class Presence(Base):
    """Evidence of someone living at a unit, kept up to date from every
    ingested event: a person (when the credential names one) or else the
    credential itself. ``last_day`` and ``days_seen`` count distinct local
    days, which tell a resident from a one-day visitor."""

    __tablename__ = "presence"
    __table_args__ = (sa.UniqueConstraint("unit_id", "subject"),
                      sa.Index(None, "person_id"),
                      sa.Index(None, "last_seen_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    unit_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("units.id"))
    building_id: Mapped[int] = mapped_column(sa.BigInteger)
    # "p<person id>" or "c<credential id>".
    subject: Mapped[str] = mapped_column(sa.String(24))
    person_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    credential_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_day: Mapped[int] = mapped_column(sa.Integer)
    days_seen: Mapped[int] = mapped_column(sa.Integer)
    events: Mapped[int] = mapped_column(sa.BigInteger)


class UnknownCredential(Base):
    """A credential read at a building that has no record of it."""

    __tablename__ = "unknown_credentials"
    __table_args__ = (sa.UniqueConstraint("building_id", "format", "value"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    building_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("buildings.id"))
    format: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[str] = mapped_column(sa.String(128))
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_day: Mapped[int] = mapped_column(sa.Integer)
    days_seen: Mapped[int] = mapped_column(sa.Integer)
    events: Mapped[int] = mapped_column(sa.BigInteger)


class Door(Base):
    """Which unit a gateway's door serves (none: the building's entrance),
    and whether a camera there counts people for that unit. Camera events
    count as evidence only at a door mapped to a unit of the building the
    gateway is in now (server/reconcile/camera.py)."""

    __tablename__ = "doors"
    __table_args__ = (sa.UniqueConstraint("gateway_id", "door"),
                      sa.Index(None, "building_id"),
                      sa.Index(None, "unit_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    gateway_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("gateways.id"))
    door: Mapped[str] = mapped_column(sa.String(64))
    building_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("buildings.id"))
    unit_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("units.id"))
    camera: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.true())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CameraDay(Base):
    """A unit door camera's figures for one camera day (local days that
    begin at ``CityRules.camera_day_start_hour``, numbered like presence's
    ``last_day``): people in and out, entries without a grant of their own,
    and the running in/out count (reset at the start of the day, never
    below 0) with its peak. Folded from events by the incremental catch-up;
    they outlive the purge of raw events."""

    __tablename__ = "camera_days"
    __table_args__ = (sa.Index(None, "day"),)

    unit_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("units.id"), primary_key=True,
                                         autoincrement=False)
    day: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    building_id: Mapped[int] = mapped_column(sa.BigInteger)
    entered: Mapped[int] = mapped_column(sa.Integer)
    exited: Mapped[int] = mapped_column(sa.Integer)
    unidentified: Mapped[int] = mapped_column(sa.Integer)
    tailgating: Mapped[int] = mapped_column(sa.Integer)
    level: Mapped[int] = mapped_column(sa.Integer)
    peak: Mapped[int] = mapped_column(sa.Integer)
    first_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ReconcileState(Base):
    """How far incremental reconciliation has read the events table."""

    __tablename__ = "reconcile_state"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    # The mark (last_txid, last_event_id): server/reconcile/marks.py.
    last_txid: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    last_event_id: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Case(Base):
    """A gap between evidence and the record. At most one open (or
    acknowledged) case per kind and subject, which the database enforces."""

    __tablename__ = "cases"
    __table_args__ = (
        sa.Index("uq_cases_open_kind_subject", "kind", "subject", unique=True,
                 sqlite_where=sa.text("state IN ('open', 'acknowledged')"),
                 postgresql_where=sa.text("state IN ('open', 'acknowledged')")),
        sa.Index(None, "state", "kind"),
        sa.Index(None, "building_id", "state"),
        sa.Index(None, "unit_id", "state"),
        # The police person check's open cases (server/police/lookups.py).
        sa.Index(None, "person_id", "state"),
        sa.CheckConstraint(_in("kind", CASE_KINDS), name="kind"),
        sa.CheckConstraint(_in("state", CASE_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(sa.String(24))
    # What the case is about, e.g. "u12/p34", "r56", "u12", "b3/em4100/0A1B2C3D4E".
    subject: Mapped[str] = mapped_column(sa.String(200))
    state: Mapped[str] = mapped_column(sa.String(12))
    building_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    unit_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    person_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    registration_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    credential_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    # When the evidence behind the case began (first sighting, last sighting).
    evidence_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Presumed departure: the landlord's answer is due by then.
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolution: Mapped[str | None] = mapped_column(sa.String(32))
    evidence: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Task(Base):
    """Work for a grid coordinator, run through the six steps of
    ``server/grid/workflow.py``. ``due_at`` is the deadline of the current
    step; every transition is a ``task_events`` row."""

    __tablename__ = "tasks"
    __table_args__ = (sa.Index(None, "grid_id", "state"), sa.Index(None, "case_id"),
                      sa.Index(None, "assignee_user_id", "state"),
                      # The unit page's open tasks and the patrol's "already open" check.
                      sa.Index(None, "unit_id", "state"),
                      # At most one task per case that is not archived (server/grid/cases.py).
                      sa.Index("uq_tasks_open_case_id", "case_id", unique=True,
                               sqlite_where=sa.text("state <> 'archived'"),
                               postgresql_where=sa.text("state <> 'archived'")),
                      # The overdue list: due_at < now among tasks not archived.
                      sa.Index("ix_tasks_open_due_at", "due_at", sqlite_where=sa.text("state <> 'archived'"),
                               postgresql_where=sa.text("state <> 'archived'")),
                      sa.CheckConstraint(_in("state", TASK_STATES), name="state"),
                      sa.CheckConstraint(_in("source", TASK_SOURCES), name="source"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    state: Mapped[str] = mapped_column(sa.String(16))
    case_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("cases.id"))
    grid_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    building_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    unit_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    summary: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(sa.String(12), server_default="case")
    created_by: Mapped[str | None] = mapped_column(sa.String(64))
    assignee_user_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id"))
    report_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    patrol_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    # 评价: "good", "adequate" or "poor", with a note.
    evaluation: Mapped[str | None] = mapped_column(sa.String(12))
    evaluation_note: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Last escalation of its case (server/grid/cases.py): the dispatch view
    # lists escalated tasks first; dispatching clears it.
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class TaskEvent(Base):
    """The audit trail of a task: every step, assignment and note, who did it
    and when. Never updated or deleted."""

    __tablename__ = "task_events"
    __table_args__ = (sa.Index(None, "task_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("tasks.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(24))
    from_state: Mapped[str | None] = mapped_column(sa.String(16))
    to_state: Mapped[str | None] = mapped_column(sa.String(16))
    assignee_user_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    note: Mapped[str | None] = mapped_column(sa.Text)
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class GridCoordinator(Base):
    """A coordinator assigned to a grid cell (网格). A coordinator may hold
    several grids and a grid several coordinators."""

    __tablename__ = "grid_coordinators"
    __table_args__ = (sa.Index(None, "user_id"),)

    grid_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("areas.id", ondelete="CASCADE"),
                                         primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime)
    assigned_by: Mapped[str] = mapped_column(sa.String(64))


class Plate(Base):
    """A printed door plate. Its token (server/plates/tokens.py) names only
    this row's id, signed with ``key_id``'s key; revoking the row makes every
    printed copy of that plate invalid. At most one unrevoked plate per unit."""

    __tablename__ = "plates"
    __table_args__ = (
        sa.Index("uq_plates_active_unit_id", "unit_id", unique=True,
                 sqlite_where=sa.text("revoked_at IS NULL"), postgresql_where=sa.text("revoked_at IS NULL")),
        sa.Index(None, "unit_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    unit_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("units.id"))
    key_id: Mapped[str] = mapped_column(sa.String(16))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(32))
    revoked_by: Mapped[str | None] = mapped_column(sa.String(64))


class ScanRejection(Base):
    """A plate token that was refused (forged, altered, expired, revoked,
    unknown): the logged attempt. Only the token's first characters are
    kept, and the client's address."""

    __tablename__ = "scan_rejections"
    __table_args__ = (sa.Index(None, "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(sa.String(24))
    token_excerpt: Mapped[str] = mapped_column(sa.String(64))
    plate_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    client: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(200))


class Attachment(Base):
    """An uploaded photo. The bytes live in the media folder under their
    SHA-256 (server/media); the row says what they are and who sent them."""

    __tablename__ = "attachments"
    __table_args__ = (sa.Index(None, "sha256"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    content_type: Mapped[str] = mapped_column(sa.String(32))
    size: Mapped[int] = mapped_column(sa.Integer)
    width: Mapped[int | None] = mapped_column(sa.Integer)
    height: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # "public:<plate id>" or "user:<id>".
    actor: Mapped[str] = mapped_column(sa.String(64))


class ProblemReport(Base):
    """"Report a problem" from a plate's public page: anyone may send one; it
    becomes a task (上报) for the grid."""

    __tablename__ = "problem_reports"
    __table_args__ = (sa.Index(None, "unit_id", "created_at"),
                      # Which report a photo belongs to (GET /media/{id}).
                      sa.Index(None, "attachment_id"),
                      sa.CheckConstraint(_in("category", REPORT_CATEGORIES), name="category"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    unit_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("units.id"))
    building_id: Mapped[int] = mapped_column(sa.BigInteger)
    plate_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    category: Mapped[str] = mapped_column(sa.String(16))
    description: Mapped[str] = mapped_column(sa.Text)
    contact_phone: Mapped[str | None] = mapped_column(sa.String(32))
    attachment_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("attachments.id"))
    # Keyed digest of the client's address, for rate limits and abuse review.
    client_digest: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    task_id: Mapped[int | None] = mapped_column(sa.BigInteger)


class Patrol(Base):
    """A coordinator's visit to a unit (巡查): what they saw and checked.
    ``checklist`` maps each item (fire_safety, overcrowding, unregistered,
    pledge) to "ok", "problem" or "n/a"."""

    __tablename__ = "patrols"
    __table_args__ = (sa.Index(None, "unit_id", "at"), sa.Index(None, "user_id", "at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    unit_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("units.id"))
    building_id: Mapped[int] = mapped_column(sa.BigInteger)
    grid_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    occupants_observed: Mapped[int | None] = mapped_column(sa.Integer)
    # Registered persons the coordinator saw there.
    seen_person_ids: Mapped[list[int]] = mapped_column(JsonDoc)
    checklist: Mapped[dict[str, str]] = mapped_column(JsonDoc)
    notes: Mapped[str | None] = mapped_column(sa.Text)
    attachment_ids: Mapped[list[int]] = mapped_column(JsonDoc)


class RateSnapshot(Base):
    """The four rates of one area on one day, for trends."""

    __tablename__ = "rate_snapshots"
    __table_args__ = (sa.UniqueConstraint("area_id", "day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    area_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("areas.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(sa.Date)
    # {"registration": [numerator, denominator], "rental": [...], ...}
    counts: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime)


POLICE_KINDS = ("client", "officer")
# What a police principal may be granted (docs/police.md): match-style
# look-ups of persons and addresses; their registration history, open cases
# and full identity numbers; whereabouts (last seen, events); batch
# cross-checks; watches.
POLICE_SCOPES = ("lookup", "detail", "events", "batch", "watch")


class PolicePrincipal(Base):
    """What a police user may do: an integrating system (``client``, OAuth2
    client credentials) or an officer who logs in (``officer``). Its user
    row carries the role ``police``; revoking disables that row and ends its
    tokens at once. ``jurisdiction`` is an area code: only buildings in that
    area (at any level below it) can be named; None is the whole registry."""

    __tablename__ = "police_principals"
    __table_args__ = (sa.CheckConstraint(_in("kind", POLICE_KINDS), name="kind"),
                      sa.Index(None, "client_id", unique=True))

    user_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    # The public half of the client credentials ("pc_..."); None for officers.
    client_id: Mapped[str | None] = mapped_column(sa.String(40))
    scopes: Mapped[list[str]] = mapped_column(JsonDoc)
    rate_per_min: Mapped[int] = mapped_column(sa.Integer)
    # Identity numbers checked per local day (a batch counts each line).
    daily_quota: Mapped[int] = mapped_column(sa.Integer)
    jurisdiction: Mapped[str | None] = mapped_column(sa.String(32))
    # Where watch alerts are delivered (signed POSTs); clients only.
    webhook_url: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class PoliceClientSecret(Base):
    """A client secret, stored as its SHA-256 (it is 256 random bits, so a
    fast hash is as safe as a slow one). Rotating adds a secret and gives the
    old one an ``expires_at``: both work during the overlap."""

    __tablename__ = "police_client_secrets"
    __table_args__ = (sa.Index(None, "user_id"), sa.Index(None, "secret_digest", unique=True))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"))
    secret_digest: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class PoliceUsage(Base):
    """Requests and identity numbers checked per principal per local day,
    for the daily quota."""

    __tablename__ = "police_usage"

    user_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    requests: Mapped[int] = mapped_column(sa.BigInteger)
    subjects: Mapped[int] = mapped_column(sa.BigInteger)


WATCH_STATES = ("active", "expired", "withdrawn")


class PoliceWatch(Base):
    """An identity number a police client watches for a bounded time: when a
    door reads a credential of that person, an alert is delivered to the
    client's webhook. Only the keyed digest and the masked number are held,
    and both are erased when the watch ends (``state`` not active)."""

    __tablename__ = "police_watches"
    __table_args__ = (
        sa.CheckConstraint(_in("state", WATCH_STATES), name="state"),
        sa.Index(None, "public_id", unique=True),
        sa.Index(None, "user_id", "state"),
        sa.Index(None, "id_digest", sqlite_where=sa.text("state = 'active'"),
                 postgresql_where=sa.text("state = 'active'")),
        sa.Index(None, "state", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # What clients see and name: random, so one client cannot walk another's.
    public_id: Mapped[str] = mapped_column(sa.String(32))
    user_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(sa.String(10))
    id_digest: Mapped[str | None] = mapped_column(sa.String(64))
    id_masked: Mapped[str | None] = mapped_column(sa.String(18))
    # The purpose it was set with: code, legal basis, case reference, badge.
    purpose: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    alerts: Mapped[int] = mapped_column(sa.Integer, server_default="0")


class PoliceAlert(Base):
    """One sighting of a watched person, to be delivered to the client's
    webhook until it answers 2xx. Holds where and when, not who: the watch
    names the person, and is erased when it ends."""

    __tablename__ = "police_alerts"
    __table_args__ = (
        sa.UniqueConstraint("watch_id", "event_id"),
        sa.Index(None, "next_attempt_at", sqlite_where=sa.text("delivered_at IS NULL"),
                 postgresql_where=sa.text("delivered_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    watch_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("police_watches.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(sa.BigInteger)
    building_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    door: Mapped[str | None] = mapped_column(sa.String(64))
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.String(300))


class AuditRecord(Base):
    """One entry of the audit log (docs/audit.md): ``record`` is the exact
    canonical JSON that was hashed, ``hash`` chains it to the entry before
    (``seq`` counts from 0 without holes). The other columns repeat fields
    of ``record`` for searching; verification reads only ``record``."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index(None, "at"), sa.Index(None, "subject", "seq"), sa.Index(None, "actor", "seq"))

    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(48))
    # A keyed digest of an identity number, or "building:<id>", ...
    subject: Mapped[str | None] = mapped_column(sa.String(80))
    record: Mapped[str] = mapped_column(sa.Text)
    hash: Mapped[str] = mapped_column(sa.String(64))


class AuditHead(Base):
    """The one row that says how long the audit log is and its last hash.
    Appending locks it, so appenders in any number of processes chain in
    one order."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    head: Mapped[str] = mapped_column(sa.String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuditCheckpoint(Base):
    """A signed statement "the log had ``size`` entries and ended in
    ``head``" (Ed25519, docs/audit.md)."""

    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    head: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    key_id: Mapped[str] = mapped_column(sa.String(64))
    signature: Mapped[str] = mapped_column(sa.String(100))


class EventDaily(Base):
    """What survives the purge of raw events: per local day, gateway, door
    and kind, how many events and how many distinct credentials."""

    __tablename__ = "event_daily"
    __table_args__ = (sa.Index(None, "building_id", "day"),)

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    gateway_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    door: Mapped[str] = mapped_column(sa.String(64), primary_key=True)  # "" for events without a door
    kind: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    building_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    events: Mapped[int] = mapped_column(sa.BigInteger)
    credentials: Mapped[int] = mapped_column(sa.BigInteger)


class EventSnapshot(Base):
    """The JPEG a camera took of a tailgating or unidentified entry
    (server/snapshots). The bytes live in the media folder's ``snapshots/``
    under their SHA-256, which the event's ``data["snapshot"]`` names; the
    row says the upload arrived. Retention deletes the row and the file; the
    event keeps its hash as evidence that a picture existed."""

    __tablename__ = "event_snapshots"
    # No foreign key on PostgreSQL: nothing is unique on the partitioned
    # events' id alone (migration 0011); the purges check snapshots themselves.
    __table_args__ = (sa.Index(None, "stored_at"),
                      sa.ForeignKeyConstraint(["event_id"], ["events.id"]).ddl_if(dialect="sqlite"))

    event_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size_bytes: Mapped[int] = mapped_column(sa.Integer)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime)
    gateway_id: Mapped[str] = mapped_column(sa.String(64))


class GatewayEnrolment(Base):
    """A one-time enrolment code a landlord made for a building. Only its
    SHA-256 is kept; it is used at most once, before ``expires_at``."""

    __tablename__ = "gateway_enrolments"
    __table_args__ = (sa.Index(None, "building_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code_digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    building_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("buildings.id"))
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    gateway_id: Mapped[str | None] = mapped_column(sa.String(64), sa.ForeignKey("gateways.id"))


class ConfigRollout(Base):
    """One change sent to many gateways in stages: first ``share`` of them,
    the rest when those are healthy (docs/fleet.md)."""

    __tablename__ = "config_rollouts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id"))
    changes: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    share: Mapped[float] = mapped_column(sa.Float)
    gateways: Mapped[list[str]] = mapped_column(JsonDoc)
    state: Mapped[str] = mapped_column(sa.String(16))
    comment: Mapped[str | None] = mapped_column(sa.String(200))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class GatewayConfig(Base):
    """One version of one gateway's remote configuration, as signed and
    published; never changed after, except for what became of it."""

    __tablename__ = "gateway_configs"
    __table_args__ = (sa.UniqueConstraint("gateway_id", "version"), sa.Index(None, "rollout_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    gateway_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("gateways.id"))
    version: Mapped[int] = mapped_column(sa.BigInteger)
    settings: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    gate_s: Mapped[float] = mapped_column(sa.Float)
    # The signed message exactly as published (wire.SignedConfig).
    payload: Mapped[str] = mapped_column(sa.Text)
    key_id: Mapped[str] = mapped_column(sa.String(64))
    signature: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("users.id"))
    comment: Mapped[str | None] = mapped_column(sa.String(200))
    rollout_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("config_rollouts.id"))
    # applied | rolled_back | refused | superseded (None: not heard of yet)
    outcome: Mapped[str | None] = mapped_column(sa.String(16))
    outcome_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome_detail: Mapped[str | None] = mapped_column(sa.Text)


# Declarative types these as FromClause; they are Tables.
events = cast(sa.Table, Event.__table__)
gateways = cast(sa.Table, Gateway.__table__)
dead_letters = cast(sa.Table, DeadLetter.__table__)
seq_gaps = cast(sa.Table, SeqGap.__table__)
buildings = cast(sa.Table, Building.__table__)
persons = cast(sa.Table, Person.__table__)
registrations = cast(sa.Table, Registration.__table__)
credentials = cast(sa.Table, Credential.__table__)
allowlist_versions = cast(sa.Table, AllowlistVersion.__table__)
users = cast(sa.Table, User.__table__)
auth_sessions = cast(sa.Table, AuthSession.__table__)
areas = cast(sa.Table, Area.__table__)
units = cast(sa.Table, Unit.__table__)
history = cast(sa.Table, History.__table__)
presence = cast(sa.Table, Presence.__table__)
unknown_credentials = cast(sa.Table, UnknownCredential.__table__)
doors = cast(sa.Table, Door.__table__)
camera_days = cast(sa.Table, CameraDay.__table__)
reconcile_state = cast(sa.Table, ReconcileState.__table__)
cases = cast(sa.Table, Case.__table__)
tasks = cast(sa.Table, Task.__table__)
rate_snapshots = cast(sa.Table, RateSnapshot.__table__)
task_events = cast(sa.Table, TaskEvent.__table__)
grid_coordinators = cast(sa.Table, GridCoordinator.__table__)
plates = cast(sa.Table, Plate.__table__)
scan_rejections = cast(sa.Table, ScanRejection.__table__)
attachments = cast(sa.Table, Attachment.__table__)
problem_reports = cast(sa.Table, ProblemReport.__table__)
patrols = cast(sa.Table, Patrol.__table__)
police_principals = cast(sa.Table, PolicePrincipal.__table__)
police_client_secrets = cast(sa.Table, PoliceClientSecret.__table__)
police_usage = cast(sa.Table, PoliceUsage.__table__)
police_watches = cast(sa.Table, PoliceWatch.__table__)
police_alerts = cast(sa.Table, PoliceAlert.__table__)
audit_log = cast(sa.Table, AuditRecord.__table__)
audit_head = cast(sa.Table, AuditHead.__table__)
audit_checkpoints = cast(sa.Table, AuditCheckpoint.__table__)
event_daily = cast(sa.Table, EventDaily.__table__)
event_snapshots = cast(sa.Table, EventSnapshot.__table__)
metadata = Base.metadata
gateway_enrolments = cast(sa.Table, GatewayEnrolment.__table__)
config_rollouts = cast(sa.Table, ConfigRollout.__table__)
gateway_configs = cast(sa.Table, GatewayConfig.__table__)
