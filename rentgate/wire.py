"""The wire contract between gateways and the server.

This is the only module the server shares with the gateway. Everything that
crosses MQTT is defined here: topic names, event shapes, batches, the server's
acknowledgements and both sides' status messages. docs/wire.md describes it for
people; ``rentgate wire-schema`` prints the JSON Schema generated from these
models.

Topics, all under ``rentgate/v1/``:

* ``gw/{gateway_id}/events``  gateway -> server, QoS 1, one event or a batch
* ``gw/{gateway_id}/ack``     server -> gateway, QoS 1, committed/rejected/resend ranges
* ``gw/{gateway_id}/status``  gateway -> all, retained; the last will says offline
* ``gw/{gateway_id}/config``  server -> gateway, retained (reserved for later work)
* ``server/status``           server -> all, retained; a gateway replays its
                              unacknowledged events when a server comes online
* ``gw/{gateway_id}/allowlist``          server -> gateway, retained: the latest
                                         signed allowlist snapshot
* ``gw/{gateway_id}/allowlist_delta``    server -> gateway, not retained: signed
                                         changes on top of a version
* ``gw/{gateway_id}/allowlist_request``  gateway -> server: "send me a snapshot"
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

SCHEMA_VERSION = 1
TOPIC_ROOT = "rentgate/v1"

# No MQTT wildcards, separators or whitespace: the id is a topic level.
GATEWAY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_GATEWAY_ID_RE = re.compile(GATEWAY_ID_PATTERN)

GatewayId = Annotated[str, StringConstraints(pattern=GATEWAY_ID_PATTERN)]
DeviceId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Seq = Annotated[int, Field(ge=1, le=2**63 - 1)]

MAX_BATCH_EVENTS = 5000
T = TypeVar("T")


class WireError(ValueError):
    """A payload that does not follow the contract; ``reason`` says why."""

    def __init__(self, reason: str, *, gateway_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.gateway_id = gateway_id


# --------------------------------------------------------------------------- topics


def is_gateway_id(value: str) -> bool:
    return bool(_GATEWAY_ID_RE.match(value))


def _gw_topic(gateway_id: str, leaf: str) -> str:
    if not is_gateway_id(gateway_id):
        raise WireError(f"invalid gateway id {gateway_id!r}")
    return f"{TOPIC_ROOT}/gw/{gateway_id}/{leaf}"


def events_topic(gateway_id: str) -> str:
    return _gw_topic(gateway_id, "events")


def ack_topic(gateway_id: str) -> str:
    return _gw_topic(gateway_id, "ack")


def status_topic(gateway_id: str) -> str:
    return _gw_topic(gateway_id, "status")


def config_topic(gateway_id: str) -> str:
    return _gw_topic(gateway_id, "config")


def allowlist_topic(gateway_id: str) -> str:
    return _gw_topic(gateway_id, "allowlist")


def allowlist_delta_topic(gateway_id: str) -> str:
    return _gw_topic(gateway_id, "allowlist_delta")


def allowlist_request_topic(gateway_id: str) -> str:
    return _gw_topic(gateway_id, "allowlist_request")


EVENTS_SUBSCRIPTION = f"{TOPIC_ROOT}/gw/+/events"
ALLOWLIST_REQUEST_SUBSCRIPTION = f"{TOPIC_ROOT}/gw/+/allowlist_request"
STATUS_SUBSCRIPTION = f"{TOPIC_ROOT}/gw/+/status"
SERVER_STATUS_TOPIC = f"{TOPIC_ROOT}/server/status"


def gateway_from_topic(topic: str) -> str | None:
    """The gateway id in ``rentgate/v1/gw/{id}/...``, or None if the topic is not ours."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "rentgate" or parts[1] != "v1" or parts[2] != "gw":
        return None
    return parts[3] if is_gateway_id(parts[3]) else None


# --------------------------------------------------------------------------- events


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Credential(_Model):
    """What a reader read. ``value`` is the card number as the format defines it
    (EM4100: 10 upper-case hex digits; Wiegand: facility and card joined by ':';
    osdp_raw / raw: hex of the bits, with ``bits`` saying how many)."""

    # terminal_person: the person number a face or fingerprint terminal
    # reports (Hikvision employeeNoString, ZKTeco PIN), not a card.
    format: Literal["em4100", "wiegand26", "wiegand34", "osdp_raw", "terminal_person", "raw"]
    value: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    bits: int | None = None


class _EventBase(_Model):
    v: Literal[1] = 1
    gw: GatewayId
    seq: Seq
    device: DeviceId
    door: DeviceId | None = None
    ts: AwareDatetime


class CardRead(_EventBase):
    """A credential was presented at a reader."""

    kind: Literal["card_read"] = "card_read"
    credential: Credential
    # Filled by the gateway's local access decision (later work); None means
    # the gateway only observed the read.
    decision: Literal["granted", "denied"] | None = None
    reason: Annotated[str, StringConstraints(max_length=200)] | None = None


class DoorState(_EventBase):
    kind: Literal["door_state"] = "door_state"
    state: Literal["open", "closed", "forced", "held_open"]


class DeviceStatus(_EventBase):
    """A device came up, went away, or reported a fault (counters are cumulative)."""

    kind: Literal["device_status"] = "device_status"
    online: bool
    detail: Annotated[str, StringConstraints(max_length=500)] | None = None
    bad_frames: int | None = None


class GatewayStarted(_EventBase):
    """First event after every gateway start.

    A new outbox starts numbering at the Unix time in microseconds, never at 1,
    so that a gateway whose outbox file was lost or replaced cannot reuse a
    sequence number its old outbox used (the server would take the new events
    for duplicates). ``outbox_first_seq`` is that first number; the event whose
    ``seq`` equals it is the first of a new outbox, which tells the server that
    numbers below it were never sent by this outbox: not a gap to ask for, and
    whatever the old outbox still held is lost.
    """

    kind: Literal["gateway_started"] = "gateway_started"
    version: str
    outbox_id: str
    outbox_first_seq: Seq | None = None
    pending: int = Field(ge=0)


class EventsDropped(_EventBase):
    """The outbox hit its size or age bound and deleted unsent events. Dropping
    is never silent: this event names exactly which sequence numbers are gone."""

    kind: Literal["events_dropped"] = "events_dropped"
    first_seq: Seq
    last_seq: Seq
    count: int = Field(ge=1)
    reason: Literal["outbox_full", "outbox_expired"]


Event: TypeAlias = Annotated[
    CardRead | DoorState | DeviceStatus | GatewayStarted | EventsDropped,
    Field(discriminator="kind"),
]
EVENT_KINDS: tuple[str, ...] = ("card_read", "door_state", "device_status", "gateway_started", "events_dropped")
# Fields every event has; the rest are kind-specific and stored as the event's data.
COMMON_FIELDS: set[str] = set({"v", "gw", "seq", "device", "door", "ts", "kind"})


class EventBatch(_Model):
    v: Literal[1] = 1
    gw: GatewayId
    events: Annotated[list[Event], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]


_batch_adapter = TypeAdapter(EventBatch)
_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)  # type: ignore[arg-type, unused-ignore]


def decode_events(payload: bytes | str, topic_gateway: str | None = None) -> list[Event]:
    """Validate an ``events`` message and return its events.

    Raises WireError with a short reason if the payload breaks the contract,
    including when an event claims another gateway than the topic it came on.
    """
    msg = _validate_message(payload, topic_gateway)
    events: list[Event] = list(msg.events) if isinstance(msg, EventBatch) else [msg]
    if topic_gateway is not None:
        claimed = {e.gw for e in events}
        if isinstance(msg, EventBatch):
            claimed.add(msg.gw)
        if claimed != {topic_gateway}:
            raise WireError(
                f"gateway id in payload {sorted(claimed)} does not match topic {topic_gateway!r}",
                gateway_id=topic_gateway,
            )
    return events


def _validate_message(payload: bytes | str, topic_gateway: str | None) -> EventBatch | Event:
    # A cheap look for the "events" key picks the model; a pydantic union (or a
    # callable discriminator) makes every valid message about 35 % slower to
    # validate. The other model is tried only when the first fails, so an odd
    # but valid message (the key written with JSON escapes) still passes, and
    # the error reported is the one for the shape the sender most likely meant.
    looks_batched = (b'"events"' in payload) if isinstance(payload, bytes) else ('"events"' in payload)
    first: TypeAdapter[Any] = _batch_adapter if looks_batched else _event_adapter
    second: TypeAdapter[Any] = _event_adapter if looks_batched else _batch_adapter
    try:
        return first.validate_json(payload)  # type: ignore[no-any-return]
    except ValidationError as exc:
        try:
            return second.validate_json(payload)  # type: ignore[no-any-return]
        except ValidationError:
            raise WireError(_summarise(exc), gateway_id=topic_gateway) from exc


def salvage_events(
    payload: bytes | str, topic_gateway: str
) -> tuple[list[Event], list[tuple[int | None, str, Any]]]:
    """For a message that failed ``decode_events``: the events in it that are
    valid on their own, and ``(seq, reason, raw)`` for each bad one.

    The server stores the good ones, dead-letters the bad ones and rejects those
    with a ``seq``, so that one malformed event does not make a gateway resend
    its batch forever. An event claiming another gateway gets ``seq=None``: its
    number belongs to that other gateway, and rejecting it would make the
    gateway of the topic delete an event of its own with the same number.
    """
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return [], []
    raw_events = doc.get("events") if isinstance(doc, dict) and "events" in doc else [doc]
    if not isinstance(raw_events, list):
        return [], []
    good: list[Event] = []
    bad: list[tuple[int | None, str, Any]] = []
    for raw in raw_events[:MAX_BATCH_EVENTS]:
        seq = raw.get("seq") if isinstance(raw, dict) else None
        try:
            event = _event_adapter.validate_python(raw)
        except ValidationError as exc:
            if isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq < 2**63:
                bad.append((seq, _summarise(exc), raw))
            continue
        if event.gw != topic_gateway:
            bad.append((None, f"gateway id {event.gw!r} does not match topic {topic_gateway!r}", raw))
        else:
            good.append(event)
    return good, bad


def event_data(event: Event) -> dict[str, Any]:
    """The kind-specific fields of an event, JSON-ready."""
    return event.model_dump(mode="json", exclude=COMMON_FIELDS, exclude_none=True)


def encode_event(event: Event) -> str:
    return event.model_dump_json(exclude_none=True)


def batch_json(gateway_id: str, event_jsons: Sequence[str]) -> bytes:
    """A batch message built from already-encoded events.

    The gateway stores each event's JSON once, when it is made durable; a
    backlog is sent by joining those strings rather than re-encoding them.
    """
    if len(event_jsons) == 1:
        return event_jsons[0].encode()
    return ('{"v":1,"gw":"%s","events":[%s]}' % (gateway_id, ",".join(event_jsons))).encode()


def _summarise(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)[:1000]


def _validate(adapter: TypeAdapter[T], payload: bytes | str) -> T:
    """Validate one message; a contract breach becomes a WireError with a short reason."""
    try:
        return adapter.validate_json(payload)
    except ValidationError as exc:
        raise WireError(_summarise(exc)) from exc


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- acknowledgements

SeqRange = tuple[int, int]


class Ack(_Model):
    """Server -> gateway. Ranges are inclusive ``[first, last]`` sequence numbers.

    * ``committed``: stored in the server's database (or already were). The
      gateway deletes these from its outbox; nothing else allows it to.
    * ``rejected``: invalid; kept in the server's dead-letter table. The gateway
      deletes them too and counts them, since resending cannot fix them.
    * ``resend``: the server saw a gap and asks for these again.
    """

    v: Literal[1] = 1
    committed: list[tuple[int, int]] = Field(default_factory=list)
    rejected: list[tuple[int, int]] = Field(default_factory=list)
    resend: list[tuple[int, int]] = Field(default_factory=list)


_ack_adapter = TypeAdapter(Ack)


def decode_ack(payload: bytes | str) -> Ack:
    return _validate(_ack_adapter, payload)


def merge_ranges(ranges: Iterable[SeqRange]) -> list[SeqRange]:
    """Sorted inclusive ranges with overlapping and touching ones joined."""
    out: list[list[int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return [(a, b) for a, b in out]


def to_ranges(seqs: Iterable[int]) -> list[SeqRange]:
    """Collapse sequence numbers into sorted inclusive ranges."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return [(a, b) for a, b in out]


# --------------------------------------------------------------------------- status


class GatewayStatus(_Model):
    """Retained on ``gw/{id}/status``; doubles as the heartbeat. The last will
    is the same shape with ``state="offline"`` and no counters."""

    v: Literal[1] = 1
    gw: GatewayId
    state: Literal["online", "offline"]
    ts: AwareDatetime | None = None
    version: str | None = None
    boot_id: str | None = None
    outbox_depth: int | None = None
    oldest_unsent_age_s: float | None = None
    dropped_total: int | None = None
    rejected_total: int | None = None
    devices_online: int | None = None
    devices_total: int | None = None
    # The allowlist version the gateway decides from (None: access control off),
    # so an operator sees whether a change has reached the door.
    allowlist_version: int | None = None


class ServerStatus(_Model):
    v: Literal[1] = 1
    state: Literal["online", "offline"]
    instance: str
    ts: AwareDatetime | None = None


_gw_status_adapter = TypeAdapter(GatewayStatus)
_server_status_adapter = TypeAdapter(ServerStatus)


def decode_gateway_status(payload: bytes | str) -> GatewayStatus:
    return _validate(_gw_status_adapter, payload)


def decode_server_status(payload: bytes | str) -> ServerStatus:
    return _validate(_server_status_adapter, payload)


# --------------------------------------------------------------------------- allowlists

PersonRef = Annotated[str, StringConstraints(min_length=1, max_length=64)]
KeyId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
AllowlistVersion = Annotated[int, Field(ge=1, le=2**63 - 1)]


class AllowlistEntry(_Model):
    """One credential the gateway may open doors for.

    ``person`` is the server's opaque reference for the holder, never an
    identity number: the allowlist sits on a box in a stairwell. ``doors``
    empty means every door of the gateway. The validity bounds are inclusive
    of ``valid_from`` and exclusive of ``valid_until``.
    """

    credential: Credential
    person: PersonRef
    doors: list[DeviceId] = Field(default_factory=list)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None


class AllowlistSnapshot(_Model):
    """The whole allowlist of one gateway at ``version``.

    ``revoked`` lists credentials whose access was taken away recently, so a
    gateway that never saw them can still deny them as "revoked" rather than
    "unknown"; it never grants anything.
    """

    v: Literal[1] = 1
    kind: Literal["allowlist_snapshot"] = "allowlist_snapshot"
    gw: GatewayId
    version: AllowlistVersion
    issued_at: AwareDatetime
    entries: list[AllowlistEntry]
    revoked: list[Credential] = Field(default_factory=list)


class AllowlistDelta(_Model):
    """Changes that turn version ``base_version`` into ``version``. An upsert
    replaces the entry with the same credential; a removal revokes it."""

    v: Literal[1] = 1
    kind: Literal["allowlist_delta"] = "allowlist_delta"
    gw: GatewayId
    base_version: AllowlistVersion
    version: AllowlistVersion
    issued_at: AwareDatetime
    upserts: list[AllowlistEntry] = Field(default_factory=list)
    removals: list[Credential] = Field(default_factory=list)


AllowlistUpdate: TypeAlias = Annotated[AllowlistSnapshot | AllowlistDelta, Field(discriminator="kind")]


class SignedAllowlist(_Model):
    """A snapshot or delta as signed by the server.

    ``payload`` is the JSON text of the update, carried as a string so the
    gateway verifies exactly the bytes that were signed (re-serialising could
    change them); ``signature`` is base64 Ed25519 over ``payload`` in UTF-8.
    """

    v: Literal[1] = 1
    key_id: KeyId
    signature: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    payload: str


class AllowlistRequest(_Model):
    """Gateway -> server: the gateway's allowlist is missing or out of step
    (a delta did not follow its version); the server answers by publishing a
    fresh retained snapshot."""

    v: Literal[1] = 1
    gw: GatewayId
    have_version: int | None = None
    reason: Annotated[str, StringConstraints(max_length=200)] | None = None


_signed_allowlist_adapter = TypeAdapter(SignedAllowlist)
_allowlist_update_adapter: TypeAdapter[AllowlistUpdate] = TypeAdapter(AllowlistUpdate)  # type: ignore[arg-type, unused-ignore]
_allowlist_request_adapter = TypeAdapter(AllowlistRequest)


def allowlist_payload(update: AllowlistSnapshot | AllowlistDelta) -> str:
    """The canonical text of an update: what the server signs."""
    return update.model_dump_json(exclude_none=True)


def signed_allowlist_json(payload: str, key_id: str, signature: str) -> bytes:
    return SignedAllowlist(key_id=key_id, signature=signature, payload=payload).model_dump_json().encode()


def decode_signed_allowlist(message: bytes | str) -> SignedAllowlist:
    return _validate(_signed_allowlist_adapter, message)


def decode_allowlist_update(payload: bytes | str) -> AllowlistSnapshot | AllowlistDelta:
    """Validate the (already verified) payload of a signed allowlist message."""
    return _validate(_allowlist_update_adapter, payload)


def decode_allowlist_request(payload: bytes | str) -> AllowlistRequest:
    return _validate(_allowlist_request_adapter, payload)


def json_schema() -> dict[str, Any]:
    """JSON Schema of every message, generated from the models."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "rentgate wire contract v1",
        "messages": {
            "events": {"oneOf": [_event_adapter.json_schema(), _batch_adapter.json_schema()]},
            "ack": Ack.model_json_schema(),
            "gateway_status": GatewayStatus.model_json_schema(),
            "server_status": ServerStatus.model_json_schema(),
            "allowlist": SignedAllowlist.model_json_schema(),
            "allowlist_payload": _allowlist_update_adapter.json_schema(),
            "allowlist_request": AllowlistRequest.model_json_schema(),
        },
    }
