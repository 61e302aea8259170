"""The server's tables. Event ingest writes with Core statements against these
tables (no ORM objects on the hot path); the classes document the schema and
serve Alembic and the API."""

from __future__ import annotations

from datetime import datetime
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


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        # Every index costs each ingested row (about 8 us per row on PostgreSQL
        # with six of them): only what the API's filters need. The unique key
        # also serves the gateway filter; kind has too few values to index.
        sa.UniqueConstraint("gateway_id", "seq"),
        sa.Index(None, "occurred_at"),
        sa.Index(None, "door", "occurred_at"),
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
    # Which building's allowlist the gateway holds; set by an operator.
    building_id: Mapped[int | None] = mapped_column(
        sa.BigInteger, sa.ForeignKey("buildings.id"))


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


class Building(Base):
    __tablename__ = "buildings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Person(Base):
    """A credential holder. No identity numbers here: the registry (issue 4)
    adds them, protected; allowlists only ever carry ``p-<id>``."""

    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    display_name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Registration(Base):
    """A person's right to live in a building, from ``valid_from`` (inclusive)
    to ``valid_until`` (exclusive, open-ended when None) unless ended early."""

    __tablename__ = "registrations"
    __table_args__ = (sa.Index(None, "building_id"), sa.Index(None, "person_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("persons.id"))
    building_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("buildings.id"))
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Credential(Base):
    """A card or terminal person id issued under a registration. ``building_id``
    repeats the registration's so that the database itself keeps one active
    credential per (format, value) and building."""

    __tablename__ = "credentials"
    __table_args__ = (
        sa.Index("uq_credentials_active_building_id_format_value", "building_id", "format", "value", unique=True,
                 sqlite_where=sa.text("revoked_at IS NULL"), postgresql_where=sa.text("revoked_at IS NULL")),
        sa.Index(None, "registration_id"),
        sa.Index(None, "building_id", "revoked_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("persons.id"))
    registration_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("registrations.id"))
    building_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("buildings.id"))
    format: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[str] = mapped_column(sa.String(128))
    # Door ids of the building's gateways; empty means every door.
    doors: Mapped[list[str]] = mapped_column(JsonDoc)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(32))


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
metadata = Base.metadata
