"""What every device adapter is: a config model keyed by ``type`` and a
factory for an object whose ``run()`` reads the device until cancelled.

Adapters talk to the rest of the gateway only through an :class:`EventSink`,
which is safe to call from any thread (serial readers have their own)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast, runtime_checkable

from pydantic import BaseModel, ConfigDict

from rentgate import wire

if TYPE_CHECKING:
    from datetime import datetime

    from devices.camera.crossing import Crossing


class DeviceConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    id: wire.DeviceId
    door: wire.DeviceId | None = None


DoorStateName = Literal["open", "closed", "forced", "held_open"]
# (granted, unlock seconds); called on the gateway's event loop.
Respond = Callable[[bool, float], None]


class EventSink(Protocol):
    """Where an adapter reports; thread-safe, returns at once (the outbox
    commit happens on the gateway's loop)."""

    def card_read(self, credential: wire.Credential, respond: Respond | None = None,
                  verdict: bool | None = None) -> None:
        """Report a presented credential. When the gateway decides access, it
        calls ``respond(granted, unlock_s)`` once the decision is on disk: the
        adapter then signals the reader and pulses the lock for ``unlock_s``.
        ``verdict``: a terminal that decides itself says whether it let the
        person in (used when the gateway does not decide)."""

    def door_contact(self, is_open: bool) -> None:
        """The door contact of this device's door opened or closed (the gateway
        decides whether that was forced or held open)."""

    def door_state(self, state: DoorStateName) -> None:
        """A controller that judges its door itself (a face terminal driving
        its own lock) reports the state as it saw it."""

    def device_status(self, online: bool, detail: str | None = None, bad_frames: int | None = None) -> None: ...

    def person_crossed(self, crossing: Crossing, at: datetime) -> None:
        """A camera saw a person cross its door line at ``at`` (wall clock)."""


@dataclass(frozen=True)
class TerminalOrigin:
    """Where an event a terminal numbered itself came from: its identity
    (serial, time, type: devices.hikvision.TerminalEvent.identity), so that
    it is stored once however it reaches the gateway, and the time the
    terminal stamped it (which the gateway checks against its own clock)."""

    serial: int | None  # None: the terminal does not number its events (ZKTeco ATTLOG)
    identity: str
    stamped: datetime | None
    # How long the outbox keeps the identity (None: its age bound): shorter
    # when the identity holds what a person presented.
    keep_s: float | None = None


@runtime_checkable
class TerminalSink(Protocol):
    """A sink that takes a terminal's own events with their origin (the
    gateway's sink does; a plain sink gets card_read/door_state)."""

    def terminal_read(self, credential: wire.Credential, verdict: bool | None, origin: TerminalOrigin) -> None: ...

    def terminal_door(self, state: DoorStateName, origin: TerminalOrigin) -> None: ...

    def terminal_heard(self, origin: TerminalOrigin) -> None:
        """An event with nothing to report (an alarm, a tamper): only its serial counts."""


@runtime_checkable
class DeviceRouter(Protocol):
    """A sink that can also report for other devices than the adapter's own:
    one adapter serving several readers (an OSDP line, a push listener)."""

    def for_device(self, device: wire.DeviceId, door: wire.DeviceId | None) -> EventSink: ...


class DeviceAdapter(Protocol):
    async def run(self) -> None:
        """Read the device until cancelled; report through the sink."""


C = TypeVar("C", bound=DeviceConfigBase)


@dataclass(frozen=True)
class AdapterType:
    config_model: type[DeviceConfigBase]
    factory: Callable[[Any, EventSink], DeviceAdapter]


_REGISTRY: dict[str, AdapterType] = {}


def register(type_name: str, config_model: type[C], factory: Callable[[C, EventSink], DeviceAdapter]) -> None:
    if type_name in _REGISTRY:
        raise ValueError(f"device type {type_name!r} registered twice")
    _REGISTRY[type_name] = AdapterType(config_model, cast(Callable[[Any, EventSink], DeviceAdapter], factory))


def adapter_types() -> dict[str, AdapterType]:
    return dict(_REGISTRY)


def make_adapter(config: DeviceConfigBase, sink: EventSink) -> DeviceAdapter:
    return _REGISTRY[config.type].factory(config, sink)
