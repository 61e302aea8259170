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
from itertools import accumulate
from operator import attrgetter
from typing import Annotated, Any, Literal, TypeAlias, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import core_schema

SCHEMA_VERSION = 1
TOPIC_ROOT = "rentgate/v1"

# No MQTT wildcards, separators or whitespace: the id is a topic level.
GATEWAY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_GATEWAY_ID_RE = re.compile(GATEWAY_ID_PATTERN)

# The largest number a BIGINT column (the server's ``seq``) holds.
MAX_INT = 2**63 - 1

GatewayId = Annotated[str, StringConstraints(pattern=GATEWAY_ID_PATTERN)]
DeviceId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Seq = Annotated[int, Field(ge=1, le=MAX_INT)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]

# Every time on the wire, exactly as the gateway writes it: a date, ``T``, a
# time with seconds, at most 6 decimals (pydantic would silently drop a 7th),
# then ``Z`` or an offset. Without this check pydantic also takes 12345 and
# "12345" (seconds since 1970), a space for the ``T`` and times without seconds.
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"
TIMESTAMP_RULE = ("must be a time written as text like 2026-11-22T08:30:00.123Z: with seconds, "
                  "at most 6 decimals, and its time zone as Z or an offset like +08:00")


class _TimestampSchema:
    """JSON: text matching TIMESTAMP_PATTERN, then parsed; Python: an aware
    datetime. Built from pydantic-core's own parts, so that checking the
    time of every event costs no Python call."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        text = core_schema.custom_error_schema(
            core_schema.str_schema(pattern=TIMESTAMP_PATTERN, strict=True),
            custom_error_type="timestamp_text", custom_error_message=TIMESTAMP_RULE,
        )
        return core_schema.json_or_python_schema(
            # Not strict after the pattern (the models' strict=True would apply
            # otherwise): strictly pydantic wants a datetime object here, and
            # it is text, which the pattern has already checked.
            json_schema=core_schema.chain_schema([text, core_schema.datetime_schema(tz_constraint="aware",
                                                                                     strict=False)]),
            python_schema=core_schema.datetime_schema(tz_constraint="aware", strict=True),
        )


Timestamp = Annotated[
    datetime,
    _TimestampSchema(),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}),
]
# ``Literal[1]`` would also take ``true`` and ``1.0``.
SchemaVersion = Annotated[int, Strict(), Field(ge=1, le=1), WithJsonSchema({"type": "integer", "const": 1})]

MAX_BATCH_EVENTS = 5000
# The deepest message of the contract is 4 levels (batch, events, event,
# credential); the bound leaves room for new optional fields and stays far
# below where a recursive parser (Python's json) runs out of stack.
MAX_JSON_DEPTH = 32
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
# Several ingest workers sharing the events (docs/scaling.md) each keep a
# retained status of their own under SERVER_STATUS_TOPIC, with a last will
# of their own: one worker's will must not say "offline" for all of them. A
# gateway counts the server online while any of these says online.
SERVER_WORKER_STATUS_SUBSCRIPTION = f"{SERVER_STATUS_TOPIC}/+"
# No "." either: NATS 2.9's MQTT listener refuses a topic holding one and
# drops the connection (docs/clustering.md), and a default client id holds
# the host's name, often a dotted one.
_NOT_IN_TOPIC_LEVEL = re.compile(r"[^A-Za-z0-9_\-]")


def server_worker_status_topic(worker: str) -> str:
    """One ingest worker's status topic; ``worker`` is its MQTT client id,
    with anything a topic level cannot hold replaced by ``_``."""
    level = _NOT_IN_TOPIC_LEVEL.sub("_", worker)[:64]
    if not level:
        raise ValueError("an ingest worker needs a non-empty client id")
    return f"{SERVER_STATUS_TOPIC}/{level}"


def is_server_status_topic(topic: str) -> bool:
    """The single server's status or one worker's."""
    if topic == SERVER_STATUS_TOPIC:
        return True
    prefix = SERVER_STATUS_TOPIC + "/"
    return topic.startswith(prefix) and "/" not in topic[len(prefix):] and len(topic) > len(prefix)


def shared_subscription(subscription: str, group: str | None) -> str:
    """``subscription`` for one member of an MQTT shared-subscription group
    (``$share/<group>/...``: the broker gives each message to one member),
    or as it is without a group."""
    return f"$share/{group}/{subscription}" if group else subscription


def gateway_from_topic(topic: str) -> str | None:
    """The gateway id in ``rentgate/v1/gw/{id}/...``, or None if the topic is not ours."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "rentgate" or parts[1] != "v1" or parts[2] != "gw":
        return None
    return parts[3] if is_gateway_id(parts[3]) else None


# --------------------------------------------------------------------------- events


class _Model(BaseModel):
    # strict: no conversion between JSON types ("2" or 2.0 or true is not the
    # integer 2, "true" is not a boolean); allow_inf_nan: NaN is not JSON.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Credential(_Model):
    """What a reader read. ``value`` is the card number as the format defines it
    (EM4100: 10 upper-case hex digits; Wiegand: facility and card joined by ':';
    osdp_raw / raw: hex of the bits, with ``bits`` saying how many)."""

    # terminal_person: the person number a face or fingerprint terminal
    # reports (Hikvision employeeNoString, ZKTeco PIN), not a card.
    format: Literal["em4100", "wiegand26", "wiegand34", "osdp_raw", "terminal_person", "raw"]
    value: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    # 128 hex digits hold 512 bits, the most an OSDP card read carries.
    bits: Annotated[int, Field(ge=1, le=512)] | None = None


class _EventBase(_Model):
    v: SchemaVersion = 1
    gw: GatewayId
    seq: Seq
    device: DeviceId
    door: DeviceId | None = None
    ts: Timestamp


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
    bad_frames: Count | None = None


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
    version: Annotated[str, StringConstraints(max_length=64)]
    outbox_id: Annotated[str, StringConstraints(max_length=64)]
    outbox_first_seq: Seq | None = None
    pending: Count


class EventsDropped(_EventBase):
    """The outbox hit its size or age bound and deleted unsent events. Dropping
    is never silent: this event names exactly which sequence numbers are gone."""

    kind: Literal["events_dropped"] = "events_dropped"
    first_seq: Seq
    last_seq: Seq
    count: Annotated[int, Field(ge=1, le=MAX_INT)]
    reason: Literal["outbox_full", "outbox_expired"]


# The SHA-256 of a snapshot's JPEG bytes, in lower-case hex. The JPEG itself
# travels over HTTP (docs/cameras.md); the server takes an upload for an
# event only when its bytes hash to this value, so the event, which came
# through the gateway's own broker login, vouches for the picture.
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Track = Annotated[int, Field(ge=0, le=MAX_INT)]


class _CameraEvent(_EventBase):
    """One person crossing a camera's door line. ``device`` is the camera,
    ``door`` the door its line belongs to; ``track`` numbers the person within
    the camera's run (it starts again at 0 when the gateway restarts).

    Every inward crossing becomes exactly one event of three kinds: a
    ``people_crossing`` matched with a grant, a ``tailgating`` or an
    ``unidentified_entry``; every outward one a ``people_crossing``. People
    who went in at a door are therefore the sum of the three inward kinds."""

    door: DeviceId  # a camera always watches a door
    track: Track
    snapshot: Sha256Hex | None = None


class PeopleCrossing(_CameraEvent):
    """A person walked through: out, or in on a grant (``grant_seq`` is the
    ``seq`` of the card read or terminal verdict it was matched with)."""

    kind: Literal["people_crossing"] = "people_crossing"
    direction: Literal["in", "out"]
    grant_seq: Seq | None = None


class Tailgating(_CameraEvent):
    """More people walked in than the door granted in the window: this
    crossing is one beyond the grants (``entered`` people, ``granted`` grants)."""

    kind: Literal["tailgating"] = "tailgating"
    entered: Annotated[int, Field(ge=2, le=MAX_INT)]
    granted: Annotated[int, Field(ge=1, le=MAX_INT)]


class UnidentifiedEntry(_CameraEvent):
    """Someone walked in with no grant of the door anywhere in the window."""

    kind: Literal["unidentified_entry"] = "unidentified_entry"


Event: TypeAlias = Annotated[
    CardRead | DoorState | DeviceStatus | GatewayStarted | EventsDropped | PeopleCrossing | Tailgating
    | UnidentifiedEntry,
    Field(discriminator="kind"),
]
EVENT_KINDS: tuple[str, ...] = ("card_read", "door_state", "device_status", "gateway_started", "events_dropped",
                                "people_crossing", "tailgating", "unidentified_entry")
# The kinds a camera's crossings become, and those that carry a snapshot.
CAMERA_KINDS: tuple[str, ...] = ("people_crossing", "tailgating", "unidentified_entry")
INWARD_ALERT_KINDS: tuple[str, ...] = ("tailgating", "unidentified_entry")
# Fields every event has; the rest are kind-specific and stored as the event's data.
COMMON_FIELDS: set[str] = set({"v", "gw", "seq", "device", "door", "ts", "kind"})


class EventBatch(_Model):
    v: SchemaVersion = 1
    gw: GatewayId
    events: Annotated[list[Event], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]


_batch_adapter = TypeAdapter(EventBatch)
_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)  # type: ignore[arg-type, unused-ignore]


# --------------------------------------------------------------------------- strict JSON
#
# pydantic checks types strictly (see _Model) but its parser lets the last of
# two equal keys win and knows nesting only through its own recursion limit;
# Python's json, which salvages the good events of a bad batch and looks for
# duplicated keys, recurses and would run out of stack. So every payload is
# measured for nesting in a linear scan before any parser sees it, and every
# validated message is checked for duplicated keys.

# translate() deletes these, leaving brackets and quotes.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))


def _as_bytes(payload: bytes | str) -> bytes:
    return payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")


def _without_escapes(data: bytes) -> bytes:
    """``data`` with escaped backslashes and quotes taken out, so that every
    quote left opens or closes a string. Left to right, as JSON reads them:
    of a run of backslashes the pairs go first, then an odd one with its quote."""
    if b"\\" not in data:
        return data
    return data.replace(b"\\\\", b"").replace(b'\\"', b"")


def json_depth_exceeds(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether brackets outside strings nest deeper than ``limit`` in ``data``.

    Linear in the size and without recursion; ``data`` need not be valid JSON
    (the parser that comes next says what else is wrong with it).
    """
    return _depth_exceeds(_without_escapes(data), limit)


def _depth_exceeds(plain: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """json_depth_exceeds for bytes already _without_escapes."""
    if len(plain) < 4096 and plain.count(b"[") + plain.count(b"{") <= limit:
        return False  # a single event: fewer brackets than the bound at all
    skeleton = plain.translate(None, _NOT_STRUCTURE)
    # Every quote now opens or closes a string, so when no string holds a
    # bracket each string is a pair of adjacent quotes: the usual message,
    # and the fast path.
    bare = skeleton.replace(b'""', b"")
    if b'"' in bare:
        # Some string holds brackets: keep what lies between strings only. A
        # string left unterminated runs to the end, as a parser would read it.
        bare = b"".join(skeleton.split(b'"')[::2])
    # Each pass takes off the innermost level of brackets, and perhaps the one
    # around it: empty within limit/2 passes means at most ``limit`` levels.
    rest = bare
    for _ in range(limit // 2):
        shorter = rest.replace(b"[]", b"").replace(b"{}", b"")
        if not shorter:
            return False
        if len(shorter) == len(rest):
            break  # brackets that do not pair up: not JSON, but measure it exactly
        rest = shorter
    return max(accumulate(map(_STEP.__getitem__, bare)), default=0) > limit


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))  # type: ignore[func-returns-value]
    return obj


class _Object(dict[str, Any]):
    """A JSON object as salvage reads it: ``duplicated`` names the keys that
    appeared more than once (the dict holds the last value of each)."""

    duplicated: tuple[str, ...] = ()


def _recording_keys(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        keys = [k for k, _ in pairs]
        obj.duplicated = tuple(sorted({k for k in keys if keys.count(k) > 1}))
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _duplicate_message(key: str) -> str:
    # The sender chose the key: a long one is cut, the reason stays a line.
    return f"key {key[:64]!r} appears twice in one JSON object"


# For each model class, the fields that can hold models (nested JSON objects).
_NESTED_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}


def _holds_models(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_models(arg) for arg in get_args(annotation))


def _nested_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    nested = _NESTED_FIELDS.get(cls)
    if nested is None:
        nested = _NESTED_FIELDS[cls] = tuple(
            name for name, info in cls.model_fields.items() if _holds_models(info.annotation))
    return nested


def _count_keys(value: Any) -> int:
    """How many keys the JSON objects behind a validated value had: every
    field a model took from its input was one key."""
    items = value if isinstance(value, list | tuple) else (value,)
    count = 0
    for item in items:  # a loop rather than a call per item: allowlists hold 100,000
        if isinstance(item, BaseModel):
            given = item.__pydantic_fields_set__
            count += len(given)
            for name in _nested_fields(type(item)):
                if name in given:
                    count += _count_keys(getattr(item, name))
        elif isinstance(item, list | tuple):
            count += _count_keys(item)
    return count


_FIELDS_SET = attrgetter("__pydantic_fields_set__")


def _count_event_keys(events: Sequence[Event]) -> int:
    # _count_keys for events, unrolled: it runs for every event received.
    count = sum(map(len, map(_FIELDS_SET, events)))
    nested_fields = _EVENT_NESTED_FIELDS
    for event in events:
        for name in nested_fields[type(event)]:  # only a card read's credential today
            if name in event.__pydantic_fields_set__:
                value = getattr(event, name)
                # A model without models inside (a credential) is one len(); _count_keys handles the rest.
                flat = _NESTED_FIELDS.get(type(value)) == ()
                count += len(value.__pydantic_fields_set__) if flat else _count_keys(value)
    return count


# Every kind of event (the members of the Event union).
_EVENT_NESTED_FIELDS = {cls: _nested_fields(cls) for cls in get_args(get_args(Event)[0])}
_nested_fields(Credential)
_WHITESPACE = (b" ", b"\t", b"\n", b"\r")
_QUOTE_THEN_SPACE = re.compile(rb'"[ \t\n\r]')


def _space_after_quote(data: bytes) -> bool:
    # Gateways send no whitespace at all; in a long payload, looking for each
    # kind of it on its own is much quicker than the pattern.
    if len(data) > 4096 and not any(space in data for space in _WHITESPACE):
        return False
    return _QUOTE_THEN_SPACE.search(data) is not None


def _check_unique_keys(data: bytes, plain: bytes, keys: int, gateway_id: str | None) -> None:
    """Refuse a validated message in which some object repeats a key; ``plain``
    is ``data`` _without_escapes, ``keys`` the number of keys its models took
    (_count_keys).

    Fast path: once escaped quotes are out, and with no whitespace between a
    key and its colon, each key shows as one '":' in the bytes (a string that
    starts with ':' adds one more, never fewer), while the models count a key
    once however often it was repeated. Equal counts therefore mean no key was
    repeated; anything else is settled by parsing again with a hook that sees
    every pair.
    """
    if plain.count(b'":') == keys and not _space_after_quote(plain):
        return
    try:
        # Safe to parse recursively: the message validated, so it is shallow.
        json.loads(data, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise WireError(_duplicate_message(exc.key), gateway_id=gateway_id) from None
    except ValueError as exc:  # pydantic took it, Python's json does not (should not happen)
        raise WireError(f"not valid JSON: {exc}", gateway_id=gateway_id) from None


def _too_deep(gateway_id: str | None) -> WireError:
    return WireError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", gateway_id=gateway_id)


def decode_events(payload: bytes | str, topic_gateway: str | None = None) -> list[Event]:
    """Validate an ``events`` message and return its events.

    Raises WireError with a short reason if the payload breaks the contract,
    including when an event claims another gateway than the topic it came on.
    """
    data = _as_bytes(payload)
    plain = _without_escapes(data)
    if _depth_exceeds(plain):
        raise _too_deep(topic_gateway)
    msg = _validate_message(data, topic_gateway)
    if isinstance(msg, EventBatch):
        events = list(msg.events)
        keys = len(msg.__pydantic_fields_set__) + _count_event_keys(events)
    else:
        events = [msg]
        keys = _count_event_keys(events)
    _check_unique_keys(data, plain, keys, topic_gateway)
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


def _validate_message(data: bytes, topic_gateway: str | None) -> EventBatch | Event:
    # A cheap look for the "events" key picks the model; a pydantic union (or a
    # callable discriminator) makes every valid message about 35 % slower to
    # validate. The other model is tried only when the first fails, so an odd
    # but valid message (the key written with JSON escapes) still passes, and
    # the error reported is the one for the shape the sender most likely meant.
    looks_batched = b'"events"' in data
    first: TypeAdapter[Any] = _batch_adapter if looks_batched else _event_adapter
    second: TypeAdapter[Any] = _event_adapter if looks_batched else _batch_adapter
    try:
        return first.validate_json(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        try:
            return second.validate_json(data)  # type: ignore[no-any-return]
        except ValidationError:
            raise WireError(_summarise(exc), gateway_id=topic_gateway) from exc


def salvage_events(
    payload: bytes | str, topic_gateway: str
) -> tuple[list[Event], list[tuple[int | None, str, Any]]]:
    """For a message that failed ``decode_events``: the events in it that are
    valid on their own, and ``(seq, reason, raw)`` for each bad one.

    The server stores the good ones, dead-letters the bad ones and rejects those
    with a ``seq``, so that one malformed event does not make a gateway resend
    its batch forever. A bad event gets ``seq=None`` when its number cannot be
    trusted: it is not a JSON integer in range, its ``seq`` key is repeated,
    or it claims another gateway (its number belongs to that gateway, and
    rejecting it would make the gateway of the topic delete an event of its own
    with the same number). Two empty lists mean nothing in the message can be
    told apart: the caller dead-letters it whole.
    """
    data = _as_bytes(payload)
    if json_depth_exceeds(data):
        return [], []
    try:
        doc = json.loads(data, object_pairs_hook=_recording_keys, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError):
        return [], []
    if isinstance(doc, _Object) and "events" in doc:
        raw_events = doc["events"]
        # A repeated key in the batch itself, or more events than a batch may
        # hold: nothing is read from it rather than part of it.
        if doc.duplicated or not isinstance(raw_events, list) or len(raw_events) > MAX_BATCH_EVENTS:
            return [], []
    else:
        raw_events = [doc]
    good: list[Event] = []
    bad: list[tuple[int | None, str, Any]] = []
    for raw in raw_events:
        seq = raw.get("seq") if isinstance(raw, dict) else None
        if not (type(seq) is int and 1 <= seq <= MAX_INT) or "seq" in getattr(raw, "duplicated", ()):
            seq = None
        if repeated := _repeated_key(raw):
            bad.append((seq, _duplicate_message(repeated), raw))
            continue
        try:
            # Through JSON again, so that the event meets exactly the rules of decode_events.
            event = _event_adapter.validate_json(json.dumps(raw))
        except ValidationError as exc:
            bad.append((seq, _summarise(exc), raw))
            continue
        if event.gw != topic_gateway:
            bad.append((None, f"gateway id {event.gw!r} does not match topic {topic_gateway!r}", raw))
        else:
            good.append(event)
    return good, bad


def _repeated_key(value: Any) -> str | None:
    """The first key repeated in any object within ``value`` (as salvage read it)."""
    if isinstance(value, _Object):
        if value.duplicated:
            return value.duplicated[0]
        value = list(value.values())
    if isinstance(value, list):
        # Recursion is bounded: the payload passed json_depth_exceeds.
        return next((key for item in value if (key := _repeated_key(item)) is not None), None)
    return None


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


# JSON's names for the Python types a parser produces, for "got ..." in reasons.
_JSON_TYPES = {str: "text", bool: "true/false", int: "an integer", float: "a number with a fraction or exponent",
               list: "an array", dict: "an object", type(None): "null"}


def _summarise(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        text = f"{loc}: {err['msg']}"
        # Name what was sent instead (never the value: it may be a card number).
        if err["type"].endswith("_type") and (got := _JSON_TYPES.get(type(err.get("input")))):
            text += f", not {got}"
        parts.append(text)
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)[:1000]


def _validate(adapter: TypeAdapter[T], payload: bytes | str) -> T:
    """Validate one message; a contract breach becomes a WireError with a short reason."""
    data = _as_bytes(payload)
    plain = _without_escapes(data)
    if _depth_exceeds(plain):
        raise _too_deep(None)
    try:
        msg = adapter.validate_json(data)
    except ValidationError as exc:
        raise WireError(_summarise(exc)) from exc
    _check_unique_keys(data, plain, _count_keys(msg), None)
    return msg


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

    v: SchemaVersion = 1
    committed: list[tuple[Seq, Seq]] = Field(default_factory=list)
    rejected: list[tuple[Seq, Seq]] = Field(default_factory=list)
    resend: list[tuple[Seq, Seq]] = Field(default_factory=list)


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


# An INTEGER column on the server.
DeviceCount = Annotated[int, Field(ge=0, le=2**31 - 1)]


DeviceHealthState = Literal["ok", "offline", "no_frames", "frozen", "dark", "moved", "starting"]
ShortText = Annotated[str, StringConstraints(max_length=300)]
MAX_STATUS_DEVICES = 256


class DeviceHealth(_Model):
    """One reader, terminal, lock or camera as the gateway sees it now.

    ``last_seen_s``: seconds since the device last answered (a reader's poll,
    a camera's frame); None when it never has since the gateway started."""

    id: DeviceId
    type: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    state: DeviceHealthState
    last_seen_s: Annotated[float, Field(ge=0)] | None = None
    detail: ShortText | None = None


class TerminalSyncHealth(_Model):
    """A terminal that decides at the door itself from a user list the
    gateway keeps (docs/terminal-sync.md). ``version_held``: the allowlist
    version it fully holds; ``pending``: writes still to make;
    ``writes_refused``: writes it refused since it last held the whole list
    (a wrong password, memory full); ``foreign_users``: users on it the
    gateway did not write and leaves alone. A terminal not ``reachable`` or
    refusing writes may still open for someone revoked."""

    id: DeviceId
    reachable: bool | None = None
    version_held: Count | None = None
    pending: Count = 0
    writes_refused: Count = 0
    last_error: ShortText | None = None
    last_full_sync: Timestamp | None = None
    foreign_users: Count | None = None
    skipped_credentials: Count | None = None
    # Its clock minus the gateway's at the last probe (None: not measured).
    # Off by minutes or more, it reads validity times wrong and stamps its
    # events wrong (the gateway corrects those: gateway/terminals/clock.py).
    clock_offset_s: Annotated[float, Field(ge=-1e10, le=1e10)] | None = None


ConfigVersion = Annotated[int, Field(ge=1, le=MAX_INT)]
ConfigState = Literal["applied", "applying", "rolled_back", "refused"]


class GatewayStatus(_Model):
    """Retained on ``gw/{id}/status``; doubles as the heartbeat. The last will
    is the same shape with ``state="offline"`` and no counters.

    Fleet health (docs/fleet.md): the devices one by one, the disk and memory
    of the box, and where its remote configuration stands: ``config_version``
    is the version it runs and last found healthy; ``config_state`` says what
    happened to the newest version it received (``config_attempted``), and
    ``config_error`` why, when it was refused or rolled back. The server
    reads the clock skew from ``ts`` against its own receive time."""

    v: SchemaVersion = 1
    gw: GatewayId
    state: Literal["online", "offline"]
    ts: Timestamp | None = None
    version: str | None = None
    boot_id: str | None = None
    outbox_depth: Count | None = None
    oldest_unsent_age_s: float | None = None
    dropped_total: Count | None = None
    rejected_total: Count | None = None
    devices_online: DeviceCount | None = None
    devices_total: DeviceCount | None = None
    # The allowlist version the gateway decides from (None: access control off),
    # so an operator sees whether a change has reached the door.
    allowlist_version: Count | None = None
    devices: Annotated[list[DeviceHealth], Field(max_length=MAX_STATUS_DEVICES)] | None = None
    disk_free_bytes: Count | None = None
    disk_total_bytes: Count | None = None
    mem_rss_bytes: Count | None = None
    mem_available_bytes: Count | None = None
    config_version: ConfigVersion | None = None
    config_attempted: ConfigVersion | None = None
    config_state: ConfigState | None = None
    config_error: ShortText | None = None
    # Terminals whose own user lists the gateway keeps (optional: older
    # gateways and gateways without such terminals leave it out).
    terminals: Annotated[list[TerminalSyncHealth], Field(max_length=MAX_STATUS_DEVICES)] | None = None


class ServerStatus(_Model):
    v: SchemaVersion = 1
    state: Literal["online", "offline"]
    instance: str
    ts: Timestamp | None = None


_gw_status_adapter = TypeAdapter(GatewayStatus)
_server_status_adapter = TypeAdapter(ServerStatus)


def decode_gateway_status(payload: bytes | str) -> GatewayStatus:
    return _validate(_gw_status_adapter, payload)


def decode_server_status(payload: bytes | str) -> ServerStatus:
    return _validate(_server_status_adapter, payload)


# --------------------------------------------------------------------------- allowlists

PersonRef = Annotated[str, StringConstraints(min_length=1, max_length=64)]
KeyId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
AllowlistVersion = Annotated[int, Field(ge=1, le=MAX_INT)]


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
    valid_from: Timestamp | None = None
    valid_until: Timestamp | None = None


class AllowlistSnapshot(_Model):
    """The whole allowlist of one gateway at ``version``.

    ``revoked`` lists credentials whose access was taken away recently, so a
    gateway that never saw them can still deny them as "revoked" rather than
    "unknown"; it never grants anything.
    """

    v: SchemaVersion = 1
    kind: Literal["allowlist_snapshot"] = "allowlist_snapshot"
    gw: GatewayId
    version: AllowlistVersion
    issued_at: Timestamp
    entries: list[AllowlistEntry]
    revoked: list[Credential] = Field(default_factory=list)


class AllowlistDelta(_Model):
    """Changes that turn version ``base_version`` into ``version``. An upsert
    replaces the entry with the same credential; a removal revokes it."""

    v: SchemaVersion = 1
    kind: Literal["allowlist_delta"] = "allowlist_delta"
    gw: GatewayId
    base_version: AllowlistVersion
    version: AllowlistVersion
    issued_at: Timestamp
    upserts: list[AllowlistEntry] = Field(default_factory=list)
    removals: list[Credential] = Field(default_factory=list)


AllowlistUpdate: TypeAlias = Annotated[AllowlistSnapshot | AllowlistDelta, Field(discriminator="kind")]


class SignedAllowlist(_Model):
    """A snapshot or delta as signed by the server.

    ``payload`` is the JSON text of the update, carried as a string so the
    gateway verifies exactly the bytes that were signed (re-serialising could
    change them); ``signature`` is base64 Ed25519 over ``payload`` in UTF-8.
    """

    v: SchemaVersion = 1
    key_id: KeyId
    signature: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    payload: str


class AllowlistRequest(_Model):
    """Gateway -> server: the gateway's allowlist is missing or out of step
    (a delta did not follow its version); the server answers by publishing a
    fresh retained snapshot."""

    v: SchemaVersion = 1
    gw: GatewayId
    have_version: Count | None = None
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


# --------------------------------------------------------------------------- remote configuration

# A gateway's configuration, as the server publishes it (retained) on
# ``gw/{id}/config``: docs/fleet.md. Bounded well above any real building
# (a few dozen devices) and far below what a gateway's memory would mind.
MAX_CONFIG_BYTES = 256 * 1024
GATE_S_MIN, GATE_S_MAX = 5.0, 600.0


class RemoteConfig(_Model):
    """The settings the server manages for one gateway, at ``version``.

    ``settings`` holds the keys of the gateway's TOML settings that may be set
    remotely (devices, cameras, access, heartbeat_s, outbox, mqtt_url's host
    and port as ``broker_url``): the gateway validates them exactly as it
    validates its file, merged over its local identity (id, data folder,
    broker login), which the server never sends. ``gate_s``: how long the new
    version must stay healthy before the gateway keeps it; otherwise it goes
    back to the last good one."""

    v: SchemaVersion = 1
    kind: Literal["gateway_config"] = "gateway_config"
    gw: GatewayId
    version: ConfigVersion
    issued_at: Timestamp
    gate_s: Annotated[float, Field(ge=GATE_S_MIN, le=GATE_S_MAX)] = 30.0
    settings: dict[str, Any]


class SignedConfig(_Model):
    """A RemoteConfig signed like an allowlist: ``payload`` is its JSON text,
    ``signature`` base64 Ed25519 over ``payload`` in UTF-8, by the allowlist
    key ``key_id`` (the gateway already trusts it)."""

    v: SchemaVersion = 1
    key_id: KeyId
    signature: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    payload: Annotated[str, StringConstraints(max_length=MAX_CONFIG_BYTES)]


_signed_config_adapter = TypeAdapter(SignedConfig)
_remote_config_adapter = TypeAdapter(RemoteConfig)


def config_payload(config: RemoteConfig) -> str:
    """The canonical text of a configuration: what the server signs."""
    return config.model_dump_json(exclude_none=True)


def signed_config_json(payload: str, key_id: str, signature: str) -> bytes:
    return SignedConfig(key_id=key_id, signature=signature, payload=payload).model_dump_json().encode()


def decode_signed_config(message: bytes | str) -> SignedConfig:
    if len(message) > MAX_CONFIG_BYTES * 2:
        raise WireError(f"configuration message of {len(message)} bytes is larger than {MAX_CONFIG_BYTES * 2}")
    return _validate(_signed_config_adapter, message)


def decode_remote_config(payload: bytes | str) -> RemoteConfig:
    """Validate the (already verified) payload of a signed configuration."""
    return _validate(_remote_config_adapter, payload)


# --------------------------------------------------------------------------- enrolment (HTTP)

# Enrolment codes: 12 characters of Crockford's base32 (no I, L, O, U), shown
# in three groups of four; 60 random bits. Hyphens, spaces and case are
# ignored when typed (normalise_enrol_code).
ENROL_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ENROL_CODE_LEN = 12
ENROL_CODE_PATTERN = rf"^[{ENROL_CODE_ALPHABET}]{{{ENROL_CODE_LEN}}}$"
MAX_CSR_BYTES = 8192


def normalise_enrol_code(text: str) -> str | None:
    """The code as stored (upper case, no separators), or None if it cannot be one."""
    if len(text) > 64:
        return None
    code = "".join(ch for ch in text.upper() if ch not in "- \t").replace("O", "0").replace("I", "1").replace("L", "1")
    return code if re.fullmatch(ENROL_CODE_PATTERN, code) else None


class EnrolRequest(_Model):
    """``POST /api/v1/enrol``: the gateway presents the landlord's code and a
    certificate signing request (PEM) for the key pair it has just made."""

    v: SchemaVersion = 1
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    csr: Annotated[str, StringConstraints(min_length=1, max_length=MAX_CSR_BYTES)]
    hostname: Annotated[str, StringConstraints(max_length=64)] | None = None


class EnrolResponse(_Model):
    """What an enrolled gateway needs to run: its id, its own broker login
    (the password exists only here and, hashed, at the broker), the CA that
    signed its certificate and the broker's, the allowlist keys, the server's
    URL and its first configuration."""

    v: SchemaVersion = 1
    gw: GatewayId
    building: Annotated[str, StringConstraints(max_length=200)]
    mqtt_url: str
    mqtt_username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    mqtt_password: Annotated[str, StringConstraints(min_length=16, max_length=128)]
    ca_pem: str
    certificate_pem: str
    allowlist_keys: dict[KeyId, str]
    server_url: str
    config: SignedConfig


_enrol_request_adapter = TypeAdapter(EnrolRequest)
_enrol_response_adapter = TypeAdapter(EnrolResponse)


def decode_enrol_request(payload: bytes | str) -> EnrolRequest:
    return _validate(_enrol_request_adapter, payload)


def decode_enrol_response(payload: bytes | str) -> EnrolResponse:
    return _validate(_enrol_response_adapter, payload)


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
            "config": SignedConfig.model_json_schema(),
            "config_payload": RemoteConfig.model_json_schema(),
            "enrol_request": EnrolRequest.model_json_schema(),
            "enrol_response": EnrolResponse.model_json_schema(),
        },
    }
