"""Raw MQTT messages -> rows to store (pure: no I/O).

Everything that can go wrong with a payload is decided here, so that the
database transaction only ever sees rows it can store: an event that breaks the
contract becomes a dead letter and a rejected sequence number, a payload that
is not ours at all becomes a dead letter.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic_core import PydanticSerializationError

from rentgate import wire
from rentgate.wire import SeqRange

DEAD_LETTER_PAYLOAD_LIMIT = 64 * 1024
TEXT_LIMIT = 4000

# Column order of ``EventRow`` tuples; the PostgreSQL path COPYs them as they are.
EVENT_COLUMNS = (
    "gateway_id", "seq", "kind", "device", "door", "occurred_at", "received_at",
    "credential_format", "credential_value", "data",
)
# ``data`` is already JSON text: serialising it in pydantic's core is several
# times cheaper than ``wire.event_data`` followed by ``json.dumps``.
EventRow = tuple[str, int, str, str, str | None, datetime, datetime, str | None, str | None, str]
Message = tuple[str, bytes, datetime]
"""``(topic, payload, received_at)`` as the MQTT callback saw it."""

# What became of a message: every one ends in exactly one of these.
STORED, DUPLICATE, DEAD_LETTERED = "stored", "duplicate", "dead_lettered"
OUTCOMES = (STORED, DUPLICATE, DEAD_LETTERED)
# The dead letters' reason for anything a revoked gateway sends (docs/fleet-health.md).
REVOKED_REASON = "gateway revoked"


def clean_text(value: str, limit: int = TEXT_LIMIT) -> str:
    """PostgreSQL text refuses NUL; it can hide in topics and in error messages
    that quote a payload's keys."""
    return value.replace("\x00", "\ufffd")[:limit]


def payload_for_storage(payload: bytes) -> tuple[str, str]:
    """``(encoding, text)`` of a payload's first 64 KiB, kept exactly: UTF-8
    text when it is, else base64."""
    head = payload[:DEAD_LETTER_PAYLOAD_LIMIT]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(head).decode("ascii")
    if "\x00" in text:
        return "base64", base64.b64encode(head).decode("ascii")
    return "utf-8", text


def unstorable_reason(event: wire.Event) -> str | None:
    """Why an otherwise valid event cannot go into a text column, if it cannot."""
    try:
        text = event.model_dump_json()
        text.encode("utf-8")
    except (UnicodeError, PydanticSerializationError, ValueError):
        return "text that is not valid UTF-8 (lone surrogate)"
    if "\\u0000" in text:
        return "NUL character in a text field"
    return None


@dataclass
class ParsedBatch:
    event_rows: dict[tuple[str, int], EventRow] = field(default_factory=dict)
    # Every good event's seq, duplicates included: all of them get acknowledged.
    committed: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    rejected: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    dropped: defaultdict[str, list[SeqRange]] = field(default_factory=lambda: defaultdict(list))
    # gateway -> (first seq, outbox id) of a new outbox whose first event is in this batch
    outbox_starts: dict[str, tuple[int, str]] = field(default_factory=dict)
    statuses: dict[str, tuple[wire.GatewayStatus, datetime]] = field(default_factory=dict)
    last_seen: dict[str, datetime] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    attempted: int = 0
    messages: int = 0
    # Per message, in arrival order: DEAD_LETTERED if any of it went to the
    # dead letters, STORED for a gateway status, else the (gateway, seq) of
    # the events it was the first in this batch to bring; after the commit
    # those say whether it was STORED or a DUPLICATE (see ``outcomes``).
    fates: list[str | list[tuple[str, int]]] = field(default_factory=list)
    # Gateways whose events are refused (gateways.revoked_at set); the ingest
    # service keeps this set fresh, so no query runs per message.
    revoked: frozenset[str] = frozenset()

    def add(self, topic: str, payload: bytes, received_at: datetime, *, max_payload_bytes: int) -> None:
        self.messages += 1
        dead_before = len(self.dead_letters)
        fate = self._add(topic, payload, received_at, max_payload_bytes)
        self.fates.append(DEAD_LETTERED if len(self.dead_letters) > dead_before else fate)

    def _add(self, topic: str, payload: bytes, received_at: datetime,
             max_payload_bytes: int) -> str | list[tuple[str, int]]:
        gateway = wire.gateway_from_topic(topic)
        leaf = topic.rsplit("/", 1)[-1]
        if gateway is None or leaf not in ("events", "status"):
            self.dead_letter(topic, payload, received_at, "topic is not a rentgate gateway events/status topic")
            return DEAD_LETTERED
        if gateway in self.revoked:
            self._refuse_revoked(topic, gateway, payload, received_at, leaf == "events" and
                                 len(payload) <= max_payload_bytes)
            return DEAD_LETTERED
        seen = self.last_seen.get(gateway)
        self.last_seen[gateway] = received_at if seen is None else max(seen, received_at)
        if len(payload) > max_payload_bytes:
            self.dead_letter(topic, payload, received_at, f"payload of {len(payload)} bytes exceeds "
                             f"the {max_payload_bytes}-byte limit", gateway=gateway)
            return DEAD_LETTERED
        if leaf == "status":
            # An empty one clears the retained status at the broker: nothing to
            # apply, and nothing wrong with it either.
            self._add_status(topic, gateway, payload, received_at)
            return STORED
        return self._add_events(topic, gateway, payload, received_at)

    def outcomes(self, new_keys: set[tuple[str, int]] | None) -> dict[str, int]:
        """How many messages ended in each outcome, given the event keys the
        commit stored for the first time (None: every one)."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for fate in self.fates:
            if isinstance(fate, str):
                counts[fate] += 1
            elif fate and (new_keys is None or any(key in new_keys for key in fate)):
                counts[STORED] += 1
            else:
                counts[DUPLICATE] += 1
        return counts

    def dead_letter(self, topic: str, payload: bytes, received_at: datetime, reason: str,
                    *, gateway: str | None = None, seq: int | None = None) -> None:
        encoding, text = payload_for_storage(payload)
        self.dead_letters.append({
            "received_at": received_at, "topic": clean_text(topic), "gateway_id": gateway, "seq": seq,
            "reason": clean_text(reason), "payload_encoding": encoding, "payload": text,
            "payload_size": len(payload),
        })

    def _refuse_revoked(self, topic: str, gateway: str, payload: bytes, received_at: datetime,
                        has_events: bool) -> None:
        """A revoked gateway's message is kept as one dead letter and its
        events are acknowledged as rejected (so it stops sending them); its
        status is not applied and its row is not touched: it stays revoked."""
        self.dead_letter(topic, payload, received_at, REVOKED_REASON, gateway=gateway)
        if has_events:
            self.rejected[gateway].extend(event_seqs(payload, gateway))

    def _add_status(self, topic: str, gateway: str, payload: bytes, received_at: datetime) -> None:
        if not payload:
            return  # someone cleared the retained message
        try:
            status = wire.decode_gateway_status(payload)
        except wire.WireError as exc:
            self.dead_letter(topic, payload, received_at, f"bad gateway status: {exc.reason}", gateway=gateway)
            return
        if status.gw != gateway:
            self.dead_letter(topic, payload, received_at,
                             f"status names gateway {status.gw!r} on the topic of {gateway!r}", gateway=gateway)
            return
        self.statuses[gateway] = (status, received_at)

    def _add_events(self, topic: str, gateway: str, payload: bytes,
                    received_at: datetime) -> str | list[tuple[str, int]]:
        try:
            events = wire.decode_events(payload, gateway)
        except wire.WireError as exc:
            events, bad = wire.salvage_events(payload, gateway)
            for seq, reason, raw in bad:
                text = json.dumps(raw, ensure_ascii=False).encode("utf-8", "surrogatepass")
                if seq is None:
                    self.dead_letter(topic, text, received_at, reason, gateway=gateway)
                else:
                    self._reject(topic, gateway, seq, reason, text, received_at)
            if not events and not bad:
                self.dead_letter(topic, payload, received_at, exc.reason, gateway=gateway)
                return DEAD_LETTERED
        # JSON escapes are the only way NUL or lone surrogates get in.
        check = b"\\u" in payload
        rows, committed = self.event_rows, self.committed[gateway]
        brought: list[tuple[str, int]] = []
        for event in events:
            if check and (why := unstorable_reason(event)) is not None:
                self._reject(topic, gateway, event.seq, why, wire.encode_event(event).encode(errors="replace"),
                             received_at)
                continue
            committed.append(event.seq)
            self.attempted += 1
            key = (gateway, event.seq)
            if key not in rows:
                rows[key] = _row(event, received_at)
                brought.append(key)
            if isinstance(event, wire.EventsDropped):
                self.dropped[gateway].append((event.first_seq, event.last_seq))
            elif isinstance(event, wire.GatewayStarted) and event.outbox_first_seq == event.seq:
                self.outbox_starts[gateway] = (event.seq, event.outbox_id)
        return brought

    def _reject(self, topic: str, gateway: str, seq: int, reason: str, raw: bytes, received_at: datetime) -> None:
        self.rejected[gateway].append(seq)
        self.dead_letter(topic, raw, received_at, reason, gateway=gateway, seq=seq)

    def gateways(self) -> set[str]:
        return set(self.last_seen)


_COMMON_FIELDS = set(wire.COMMON_FIELDS)


_CARD_COLUMNS = {*_COMMON_FIELDS, "credential"}


def _row(event: wire.Event, received_at: datetime) -> EventRow:
    if isinstance(event, wire.CardRead):
        credential = event.credential
        # The credential has columns of its own (the reconciliation queries
        # them); ``data`` keeps the rest. A plain read, the bulk of all
        # traffic, has no rest: no serialisation at all.
        if credential.bits is not None:  # no column for it: keep the whole credential
            data = event.model_dump_json(exclude=_COMMON_FIELDS, exclude_none=True)
        elif event.decision is None and event.reason is None:
            data = "{}"
        else:
            data = event.model_dump_json(exclude=_CARD_COLUMNS, exclude_none=True)
        return (event.gw, event.seq, event.kind, event.device, event.door, event.ts, received_at,
                credential.format, credential.value, data)
    return (
        event.gw, event.seq, event.kind, event.device, event.door, event.ts, received_at, None, None,
        # The kind-specific fields, as wire.event_data(event) gives them.
        event.model_dump_json(exclude=_COMMON_FIELDS, exclude_none=True),
    )


def event_seqs(payload: bytes, gateway: str) -> list[int]:
    """The sequence numbers of every event in a message that can be numbered,
    valid or not: those its gateway may delete once told they are rejected."""
    try:
        return [e.seq for e in wire.decode_events(payload, gateway)]
    except wire.WireError:
        good, bad = wire.salvage_events(payload, gateway)
        return [e.seq for e in good] + [s for s, _, _ in bad if s is not None]


def parse_messages(messages: list[Message], *, max_payload_bytes: int,
                   revoked: frozenset[str] = frozenset()) -> ParsedBatch:
    batch = ParsedBatch(revoked=revoked)
    for topic, payload, received_at in messages:
        batch.add(topic, payload, received_at, max_payload_bytes=max_payload_bytes)
    return batch
