"""What the remote-configuration routes take and answer, for the OpenAPI
document (server/web/openapi.py). The Out models describe the dicts
server/fleet/configs.py and rollouts.py build; they never build them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rentgate import wire
from server.fleet.rollouts import MAX_GATEWAYS
from server.web.ids import DbId
from server.web.openapi import Out

Comment = Annotated[str, StringConstraints(min_length=1, max_length=200)]
GateS = Annotated[float, Field(ge=wire.GATE_S_MIN, le=wire.GATE_S_MAX)]
GatewayIdText = Annotated[str, StringConstraints(pattern=wire.GATEWAY_ID_PATTERN, max_length=64)]
MAX_BUILDINGS = 1000


class ConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The gateway settings the server manages (gateway.config.REMOTE_KEYS:
    # devices, cameras, access without public_keys, heartbeat_s, outbox,
    # broker_url), as in the gateway's TOML file; they replace the previous
    # version's settings as a whole.
    settings: dict[str, Any]
    # How long the new version must stay healthy before the gateway keeps it.
    gate_s: GateS | None = None
    comment: Comment | None = None


class RolloutIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Top-level remote keys to set; each replaces that key in every
    # gateway's current settings.
    changes: dict[str, Any]
    gateways: Annotated[list[GatewayIdText], Field(min_length=1, max_length=MAX_GATEWAYS)] | None = None
    building_ids: Annotated[list[DbId], Field(min_length=1, max_length=MAX_BUILDINGS)] | None = None
    # The share of the gateways in the first wave.
    share: Annotated[float, Field(ge=0.01, le=1.0)]
    gate_s: GateS | None = None
    comment: Comment | None = None


class Running(Out):
    """What the gateway said last: the version it runs (and found healthy),
    the newest it received, how that went and why."""

    version: int | None
    attempted: int | None
    state: str | None
    error: str | None


class GatewayConfig(Out):
    gateway: str
    revoked: bool
    running: Running
    # None: no version yet (the gateway runs its local settings).
    version: int | None
    settings: dict[str, Any]
    gate_s: float
    created_at: datetime | None
    created_by: str | None
    comment: str | None
    rollout_id: int | None
    # applied | rolled_back | refused | superseded; None: not heard of yet.
    outcome: str | None
    outcome_at: datetime | None
    outcome_detail: str | None


class GatewayConfigMade(GatewayConfig):
    # Whether the new version went out over MQTT at once (else the next
    # connect or the catch-up publishes it).
    published: bool


class ConfigVersion(Out):
    version: int
    created_at: datetime
    # The display name of who made it; None: the system (e.g. at enrolment).
    created_by: str | None
    comment: str | None
    gate_s: float
    rollout_id: int | None
    outcome: str | None
    outcome_at: datetime | None
    outcome_detail: str | None
    # The top-level keys this version changed from the one before.
    changed: list[str]


class ConfigHistory(Out):
    gateway: str
    versions: list[ConfigVersion]
    # Pass as ?before= for the next (older) page; None: this was the last.
    next_before: int | None


class FailedGateway(Out):
    gateway: str
    version: int
    outcome: str
    reason: str | None


class Rollout(Out):
    id: int
    # staged (first wave out) | completed (every version sent) | halted
    state: str
    changes: dict[str, Any]
    share: float
    comment: str | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    gateways: int
    sent: int
    # applied, pending, rolled_back, refused, superseded, waiting (not sent yet)
    counts: dict[str, int]
    failed: list[FailedGateway]
    failed_total: int


class RolloutMade(Rollout):
    published: bool


class RolloutList(Out):
    rollouts: list[Rollout]
