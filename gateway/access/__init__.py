"""Local access decisions: the signed allowlist on disk, the pure decision,
door alarms, and the controller that ties them together for the gateway app.

Everything here works with the broker and the server unreachable."""

from gateway.access.config import AccessConfig, AntiPassbackPair
from gateway.access.controller import AccessController
from gateway.access.decide import Decision, PassbackCheck, decide
from gateway.access.doors import DoorEvent, DoorMachine
from gateway.access.errors import AccessError
from gateway.access.store import AllowlistStore, ApplyResult

__all__ = [
    "AccessConfig",
    "AccessController",
    "AccessError",
    "AllowlistStore",
    "AntiPassbackPair",
    "ApplyResult",
    "Decision",
    "DoorEvent",
    "DoorMachine",
    "PassbackCheck",
    "decide",
]
