"""One database transaction per batch of raw MQTT messages.

Events are inserted with ``ON CONFLICT DO NOTHING`` (the unique key is
(gateway_id, seq), with occurred_at on PostgreSQL's partitioned table:
docs/postgres-scale.md), so a resent event is a duplicate that is
acknowledged again but stored once. On
PostgreSQL the rows go through ``COPY`` into a temporary table first, which is
several times faster than a multi-row INSERT.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from rentgate import wire
from rentgate.wire import SeqRange
from server.db.models import dead_letters, events, gateways, seq_gaps
from server.ingest import gaps, terminals
from server.ingest.parse import (
    DEAD_LETTER_PAYLOAD_LIMIT,
    DEAD_LETTERED,
    EVENT_COLUMNS,
    EventRow,
    Message,
    ParsedBatch,
    clean_text,
    event_seqs,
    parse_messages,
)

log = logging.getLogger(__name__)

_BIGINT = 2**63 - 1
_INT = 2**31 - 1

_PG_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS events_in (gateway_id text, seq bigint, kind text, device text, "
    "door text, occurred_at timestamptz, received_at timestamptz, credential_format text, "
    "credential_value text, data jsonb) ON COMMIT DELETE ROWS"
)
_COLS = ", ".join(EVENT_COLUMNS)
_PG_MERGE = (
    f"INSERT INTO events ({_COLS}, stored_at, txid) SELECT {_COLS}, :stored_at, :txid FROM events_in "
    # No conflict target: it is (gateway_id, seq, occurred_at) on the partitioned table.
    "ON CONFLICT DO NOTHING"
)
# This transaction's id, which every event it stores carries, so that
# reconciliation reads only events of transactions that have ended
# (server/reconcile/marks.py). The column's default is the same value; ingest
# passes it anyway, so that the hot path does not depend on a default a
# table rebuild could lose. Either costs about the same per row (measured:
# docs/reconcile.md); asking costs one round trip per batch.
_PG_TXID = "SELECT pg_current_xact_id()::text::bigint"

_SQLITE_INSERT = (
    f"INSERT INTO events ({_COLS}, stored_at) VALUES ({', '.join('?' * (len(EVENT_COLUMNS) + 1))}) "
    "ON CONFLICT (gateway_id, seq) DO NOTHING"
)


def _sqlite_stamp(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores (naive UTC, see UtcDateTime)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class GatewayOutcome:
    committed: list[SeqRange] = field(default_factory=list)
    rejected: list[SeqRange] = field(default_factory=list)
    events: int = 0
    rejected_events: int = 0

    def ack(self) -> wire.Ack | None:
        if not self.committed and not self.rejected:
            return None
        return wire.Ack(committed=self.committed, rejected=self.rejected)


@dataclass
class CommitResult:
    gateways: dict[str, GatewayOutcome] = field(default_factory=dict)
    messages: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    statuses: int = 0
    gaps_opened: int = 0
    gaps_filled: int = 0
    gaps_lost: int = 0
    seq_jumps: int = 0
    # How many messages ended in each outcome (parse.OUTCOMES).
    outcomes: dict[str, int] = field(default_factory=dict)
    stored_at: datetime | None = None
    newest_event_at: datetime | None = None
    # stored_at - event time for each event of this batch: outbox-to-commit latency.
    latencies_s: list[float] = field(default_factory=list)


# ServerSettings.max_seq_jump's default: far more numbers than any outbox
# holds (a million by default), so that only a wrong number is a jump.
DEFAULT_MAX_SEQ_JUMP = 1_000_000_000


class EventStore:
    def __init__(self, engine: sa.Engine, *, max_payload_bytes: int = 8 * 1024 * 1024,
                 max_seq_jump: int = DEFAULT_MAX_SEQ_JUMP) -> None:
        self.engine = engine
        self.max_payload_bytes = max_payload_bytes
        # A hole in a gateway's numbers wider than this is a jump, not a gap (gaps.advance).
        self.max_seq_jump = max_seq_jump
        self._postgres = engine.dialect.name == "postgresql"
        # Revoked gateways, whose messages are refused (parse.REVOKED_REASON);
        # the ingest service replaces the set every few seconds.
        self.revoked: frozenset[str] = frozenset()

    def commit(self, messages: list[Message], *, now: datetime | None = None) -> CommitResult:
        """Store a batch of messages in one transaction and say what to acknowledge."""
        batch = parse_messages(messages, max_payload_bytes=self.max_payload_bytes, revoked=self.revoked)
        return self.commit_parsed(batch, now=now)

    def commit_parsed(self, batch: ParsedBatch, *, now: datetime | None = None) -> CommitResult:
        stored_at = now or datetime.now(UTC)
        result = CommitResult(messages=batch.messages, stored_at=stored_at,
                              dead_letters=len(batch.dead_letters), statuses=len(batch.statuses))
        with self.engine.begin() as conn:
            max_seq = self._lock_gateways(conn, batch.last_seen)
            rows = list(batch.event_rows.values())
            # Every seq ever stored is <= its gateway's max_seq, so rows above
            # it cannot conflict: the usual case, and the fast path.
            all_new = all(row[1] > max_seq[row[0]] for row in rows)
            result.inserted = self._insert_events(conn, rows, stored_at, all_new=all_new)
            if batch.dead_letters:
                conn.execute(dead_letters.insert(), batch.dead_letters)
            # Which events are new is only asked of the database when some
            # event was already there.
            new_keys = None if result.inserted == len(rows) else _stored_now(conn, rows, stored_at)
            self._update_gateways(conn, batch, max_seq, stored_at, result, new_keys)
        result.duplicates = batch.attempted - result.inserted
        result.outcomes = batch.outcomes(new_keys)
        self._summarise(batch, stored_at, result)
        return result

    def dead_letter_messages(self, messages: list[Message], reason: str, *, bare: bool = False) -> CommitResult:
        """Last resort for messages the database refused for a reason other than
        being unreachable: keep them as dead letters and reject their events, so
        that one poison message cannot stop ingest for everyone.

        ``bare``: when even that was refused, keep only what surely fits (the
        payload in base64, no gateway bookkeeping, nothing rejected).
        """
        batch = ParsedBatch()
        for topic, payload, received_at in messages:
            batch.messages += 1
            batch.fates.append(DEAD_LETTERED)
            gateway = wire.gateway_from_topic(topic)
            batch.dead_letter(topic, payload, received_at, reason, gateway=gateway)
            if bare:
                batch.dead_letters[-1].update(payload_encoding="base64", payload=_base64_head(payload))
                continue
            if gateway is None:
                continue
            batch.last_seen[gateway] = received_at
            batch.rejected[gateway].extend(event_seqs(payload, gateway))
        return self.commit_parsed(batch)

    # ------------------------------------------------------------------ events

    def _insert_events(self, conn: sa.Connection, rows: list[EventRow], stored_at: datetime, *,
                       all_new: bool) -> int:
        if not rows:
            return 0
        if self._postgres:
            return self._copy_events(conn, rows, stored_at, all_new=all_new)
        # Straight to the driver: SQLAlchemy's per-value bind processing costs
        # more than SQLite's insert itself.
        stamp, stored = _sqlite_stamp, _sqlite_stamp(stored_at)
        received: dict[datetime, str] = {}
        params = [
            (*row[:5], stamp(row[5]), received.get(row[6]) or received.setdefault(row[6], stamp(row[6])),
             *row[7:], stored)
            for row in rows
        ]
        return conn.exec_driver_sql(_SQLITE_INSERT, params).rowcount

    def _copy_events(self, conn: sa.Connection, rows: list[EventRow], stored_at: datetime, *,
                     all_new: bool) -> int:
        raw: Any = conn.connection.driver_connection
        txid = int(conn.exec_driver_sql(_PG_TXID).scalar_one())
        if all_new:
            # Straight into the table, about twice as fast as staging; the
            # savepoint covers another server instance having stored them meanwhile.
            savepoint = conn.begin_nested()
            try:
                with raw.cursor() as cur, cur.copy(f"COPY events ({_COLS}, stored_at, txid) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row((*row, stored_at, txid))
            except psycopg.errors.UniqueViolation:
                savepoint.rollback()
            else:
                savepoint.commit()
                return len(rows)
        conn.exec_driver_sql(_PG_STAGING)
        with raw.cursor() as cur, cur.copy(f"COPY events_in ({_COLS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return conn.execute(sa.text(_PG_MERGE), {"stored_at": stored_at, "txid": txid}).rowcount

    # ------------------------------------------------------------------ gateways and gaps

    def _lock_gateways(self, conn: sa.Connection, seen_at: dict[str, datetime]) -> dict[str, int]:
        """Register new gateways and return every gateway's max_seq, locking
        their rows (PostgreSQL) so that concurrent commits serialise per gateway."""
        if not seen_at:
            return {}
        insert = postgresql.insert if self._postgres else sqlite.insert
        conn.execute(
            insert(gateways).on_conflict_do_nothing(index_elements=["id"]),
            [{"id": gw, "first_seen": at, "last_seen": at, "max_seq": 0} for gw, at in seen_at.items()],
        )
        return dict(conn.execute(
            sa.select(gateways.c.id, gateways.c.max_seq).where(gateways.c.id.in_(list(seen_at)))
            .order_by(gateways.c.id).with_for_update()
        ).tuples().all())

    def _update_gateways(self, conn: sa.Connection, batch: ParsedBatch, max_seq: dict[str, int], now: datetime,
                         result: CommitResult, new_keys: set[tuple[str, int]] | None) -> None:
        seen_at = batch.last_seen
        if not seen_at:
            return
        updates = []
        for gw, at in seen_at.items():
            seen = wire.to_ranges([*batch.committed.get(gw, ()), *batch.rejected.get(gw, ())])
            previous = max_seq[gw]
            dropped = batch.dropped.get(gw, [])
            if (start := batch.outbox_starts.get(gw)) is not None:
                seen, dropped = _new_outbox(conn, gw, start, previous, seen, dropped)
            elif previous == 0 and seen:
                # Nothing numbered stored yet: the first numbers seen start the
                # count. With several ingest workers on a shared subscription
                # the gateway's first message (gateway_started, which says where
                # its outbox starts) can be committed by one worker after
                # another worker committed later ones; the hole below them is
                # then neither a gap nor a jump (the gateway sends again
                # whatever is not acknowledged).
                previous = seen[0][0] - 1
            step = gaps.advance(previous, seen, self.max_seq_jump, functools.partial(_highest_stored, conn, gw))
            # A jump sent again (its ack was lost) was recorded when it was stored.
            jumps = [j for j in step.jumps if new_keys is None or (gw, j.seq) in new_keys
                     or (gw, j.seq) not in batch.event_rows]
            if jumps:
                self._record_jumps(conn, gw, jumps, now, result)
            self._track_gaps(conn, gw, previous, step.gaps, seen, gaps.merge(dropped), now, result)
            updates.append({"gid": gw, "at": at, "max_seq": max(previous, step.highest)})
        conn.execute(
            gateways.update().where(gateways.c.id == sa.bindparam("gid")).values(
                last_seen=sa.case((gateways.c.last_seen < sa.bindparam("at"), sa.bindparam("at")),
                                  else_=gateways.c.last_seen),
                max_seq=sa.bindparam("max_seq"),
            ),
            updates,
        )
        # One statement per status, as ever: statuses are rare next to events.
        for gw, (status, at) in batch.statuses.items():
            conn.execute(gateways.update().where(gateways.c.id == gw).values(**_status_values(status, at)))

    def _record_jumps(self, conn: sa.Connection, gw: str, jumps: list[gaps.Jump], now: datetime,
                      result: CommitResult) -> None:
        """A jump is kept where operators look for what went wrong, the dead
        letters, though its event is stored: the reason says so."""
        rows = []
        for jump in jumps:
            then = (f"counting continues from {jump.seq}" if jump.followed else
                    f"counting stays at {jump.after} until more numbers arrive near {jump.seq}")
            reason = (f"sequence jump: seq {jump.seq} leaves {jump.seq - jump.after - 1} numbers unused after "
                      f"{jump.after}, more than max_seq_jump ({self.max_seq_jump}); the event is handled as "
                      f"usual, the numbers in between are not asked for; {then}")
            log.warning("gateway %s: %s", gw, reason)
            payload = json.dumps({"anomaly": "seq_jump", "gw": gw, "seq": jump.seq, "after": jump.after,
                                  "max_seq_jump": self.max_seq_jump, "followed": jump.followed})
            rows.append({"received_at": now, "topic": wire.events_topic(gw), "gateway_id": gw, "seq": jump.seq,
                         "reason": reason, "payload_encoding": "utf-8", "payload": payload,
                         "payload_size": len(payload)})
        conn.execute(dead_letters.insert(), rows)
        result.seq_jumps += len(jumps)

    def _track_gaps(self, conn: sa.Connection, gw: str, previous_max: int, holes: list[SeqRange],
                    seen: list[SeqRange], dropped: list[SeqRange], now: datetime, result: CommitResult) -> None:
        inserts: list[dict[str, Any]] = []
        for span in holes:
            pieces = gaps.settle(span, [], dropped)
            inserts.extend(_gap_row(gw, r, state, now, detected_at=now) for r, state in pieces)
            result.gaps_opened += sum(1 for _, state in pieces if state == "open")
            result.gaps_lost += sum(1 for _, state in pieces if state == "lost")
        # In-order traffic never touches older gaps; skip the query for it.
        if dropped or (seen and seen[0][0] <= previous_max):
            self._settle_open_gaps(conn, gw, seen, dropped, now, result, inserts)
        if inserts:
            conn.execute(seq_gaps.insert(), inserts)

    def _settle_open_gaps(self, conn: sa.Connection, gw: str, seen: list[SeqRange], dropped: list[SeqRange],
                          now: datetime, result: CommitResult, inserts: list[dict[str, Any]]) -> None:
        rows = conn.execute(
            sa.select(seq_gaps).where(seq_gaps.c.gateway_id == gw, seq_gaps.c.state == "open")
        ).mappings().all()
        for row in rows:
            span = (row["first_seq"], row["last_seq"])
            pieces = gaps.settle(span, seen, dropped)
            if pieces == [(span, "open")]:
                continue
            if not pieces:
                result.gaps_filled += 1
                conn.execute(seq_gaps.update().where(seq_gaps.c.id == row["id"])
                             .values(state="filled", closed_at=now))
                continue
            result.gaps_lost += sum(1 for _, state in pieces if state == "lost")
            (first, last), state = pieces[0]
            conn.execute(seq_gaps.update().where(seq_gaps.c.id == row["id"]).values(
                first_seq=first, last_seq=last, state=state, closed_at=now if state != "open" else None))
            inserts.extend(
                _gap_row(gw, r, s, now, detected_at=row["detected_at"], last_requested_at=row["last_requested_at"],
                         request_count=row["request_count"])
                for r, s in pieces[1:]
            )

    # ------------------------------------------------------------------ result

    @staticmethod
    def _summarise(batch: ParsedBatch, stored_at: datetime, result: CommitResult) -> None:
        for gw in batch.committed.keys() | batch.rejected.keys():
            committed = batch.committed.get(gw, [])
            committed_set = set(committed)
            rejected = [s for s in batch.rejected.get(gw, []) if s not in committed_set]
            result.gateways[gw] = GatewayOutcome(
                committed=wire.to_ranges(committed), rejected=wire.to_ranges(rejected),
                events=len(committed), rejected_events=len(rejected),
            )
        stamp = stored_at.timestamp()
        times = [row[5].timestamp() for row in batch.event_rows.values()]
        if times:
            newest = max(times)
            result.newest_event_at = datetime.fromtimestamp(newest, UTC)
            result.latencies_s = [stamp - t for t in times]


def _highest_stored(conn: sa.Connection, gw: str, low: int, high: int) -> int | None:
    return conn.execute(sa.select(sa.func.max(events.c.seq)).where(
        events.c.gateway_id == gw, events.c.seq >= low, events.c.seq <= high)).scalar_one_or_none()


def _stored_now(conn: sa.Connection, rows: list[EventRow], stored_at: datetime) -> set[tuple[str, int]]:
    """The (gateway, seq) of ``rows`` that this transaction stored: theirs is
    its ``stored_at``, a duplicate's is older."""
    by_gateway: dict[str, list[EventRow]] = {}
    for row in rows:
        by_gateway.setdefault(row[0], []).append(row)
    found: set[tuple[str, int]] = set()
    for gw, mine in by_gateway.items():
        for i in range(0, len(mine), 500):
            part = mine[i:i + 500]
            # The rows' own times bound the look-up: on PostgreSQL's
            # partitioned events it then reads the days of the batch, not
            # every day's index (planning over ~200 partitions costs tens of
            # milliseconds per statement: docs/postgres-scale.md).
            times = [row[5] for row in part]
            found.update(conn.execute(sa.select(events.c.gateway_id, events.c.seq).where(
                events.c.gateway_id == gw, events.c.seq.in_([row[1] for row in part]),
                events.c.stored_at == stored_at, events.c.occurred_at >= min(times),
                events.c.occurred_at <= max(times),
            )).tuples())
    return found


def _base64_head(payload: bytes) -> str:
    return base64.b64encode(payload[:DEAD_LETTER_PAYLOAD_LIMIT]).decode("ascii")


def _new_outbox(conn: sa.Connection, gw: str, start: tuple[int, str], previous_max: int, seen: list[SeqRange],
                dropped: list[SeqRange]) -> tuple[list[SeqRange], list[SeqRange]]:
    """A gateway started a new outbox numbered from ``first``. Numbers between
    the old maximum and ``first`` were never used: not a gap. Open gaps below
    ``first`` can no longer be filled (the old outbox is gone): lost."""
    first, outbox_id = start
    if first <= previous_max:
        stored = conn.execute(sa.select(events.c.data).where(events.c.gateway_id == gw, events.c.seq == first)
                              ).scalar_one_or_none()
        if not (isinstance(stored, dict) and stored.get("outbox_id") == outbox_id):
            log.error("gateway %s started a new outbox at seq %d, at or below the %d already stored: its events "
                      "may be taken for duplicates; check the gateway's clock", gw, first, previous_max)
        # else: the new outbox's first event sent again (a replay); nothing new.
        return seen, dropped
    never_used = (previous_max + 1, first - 1) if first > previous_max + 1 else None
    seen = gaps.merge([*seen, never_used]) if never_used else seen
    return seen, [*dropped, (1, first - 1)] if first > 1 else dropped


def _gap_row(gw: str, span: SeqRange, state: str, now: datetime, *, detected_at: datetime,
             last_requested_at: datetime | None = None, request_count: int = 0) -> dict[str, Any]:
    return {
        "gateway_id": gw, "first_seq": span[0], "last_seq": span[1], "state": state,
        "detected_at": detected_at, "last_requested_at": last_requested_at, "request_count": request_count,
        "closed_at": None if state == "open" else now,
    }


def _status_values(status: wire.GatewayStatus, received_at: datetime) -> dict[str, Any]:
    """The gateways columns a status sets. A field the status leaves out keeps
    its column: a last will carries no counters, and an older gateway no fleet
    health, and neither may blank what the last heartbeat said."""
    values: dict[str, Any] = {"online": status.state == "online", "status_at": status.ts or received_at}
    for name in ("version", "boot_id"):
        if (text := getattr(status, name)) is not None:
            values[name] = clean_text(text, 64)
    # Clamped to the columns' range: an absurd counter must not fail the batch.
    for name, limit in (("outbox_depth", _BIGINT), ("dropped_total", _BIGINT), ("rejected_total", _BIGINT),
                        ("devices_online", _INT), ("devices_total", _INT), ("allowlist_version", _BIGINT),
                        ("disk_free_bytes", _BIGINT), ("disk_total_bytes", _BIGINT), ("mem_rss_bytes", _BIGINT),
                        ("mem_available_bytes", _BIGINT), ("config_version", _BIGINT)):
        if (number := getattr(status, name)) is not None:
            values[name] = max(-limit, min(limit, number))
    if status.oldest_unsent_age_s is not None:
        values["oldest_unsent_age_s"] = status.oldest_unsent_age_s
    if status.devices is not None:
        values["devices_health"] = [_device_health(d) for d in status.devices]
    if status.terminals is not None:
        held = [_terminal_health(t) for t in status.terminals]
        values["terminals_health"] = held
        values["terminals_behind"] = terminals.count_behind(held, status.allowlist_version)
    if status.config_state is not None:
        # The three belong together: an "applied" after a "rolled_back" clears the reason.
        values["config_state"] = status.config_state
        values["config_attempted"] = status.config_attempted
        values["config_error"] = None if status.config_error is None else clean_text(status.config_error, 300)
    if status.state == "online":
        values["clock_skew_s"] = _clock_skew(status, received_at)
    return values


def _clock_skew(status: wire.GatewayStatus, received_at: datetime) -> Any:
    """Server receive time minus the status's own time, in seconds (None
    without one). The broker hands the server every gateway's retained status
    again when it subscribes: that copy is as old as it is, not a skewed
    clock, so a status no newer than the one stored keeps the skew stored."""
    if status.ts is None:
        return None
    skew = (received_at - status.ts).total_seconds()
    return sa.case((sa.or_(gateways.c.status_at.is_(None), gateways.c.status_at < status.ts), skew),
                   else_=gateways.c.clock_skew_s)


def _terminal_health(terminal: wire.TerminalSyncHealth) -> dict[str, Any]:
    return {key: clean_text(value, 300) if isinstance(value, str) else value
            for key, value in terminal.model_dump(mode="json", exclude_none=True).items()}


def _device_health(device: wire.DeviceHealth) -> dict[str, Any]:
    # PostgreSQL's jsonb refuses NUL, which a JSON escape can carry in.
    return {key: clean_text(value, 300) if isinstance(value, str) else value
            for key, value in device.model_dump(exclude_none=True).items()}
