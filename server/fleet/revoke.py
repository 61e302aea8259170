"""Revoking a gateway (docs/fleet.md): an administrator, or the landlord of
its building, takes a terminal out of service for good.

In this order: the database says so (``gateways.revoked_at``/``revoked_by``,
its HTTP secret gone, an audit entry), in one transaction; from then on no
allowlist is built or published for it (server/access/allowlists.py) and
its configuration is not published (server/fleet/config_publisher.py). Then
the broker deletes its login, which drops its connection at once and
refuses it from then on. Last, the retained allowlist and configuration on
its topics are cleared, so the broker stops holding its building's cards.

Revoking again is harmless: the first time stays recorded, and the broker
and retained steps run again (they are what a retry after a broker outage
needs). A revoked gateway's row stays, so its id is never given out again
(enrolment makes new ids and never reuses a row)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web

from rentgate import wire
from rentgate.mqtt import MqttLink
from server.appkeys import ENGINE
from server.auth.policy import actor_of, allow, require_user
from server.db.models import gateways
from server.fleet.broker import Provisioner
from server.fleet.errors import BrokerError
from server.web.errors import NotFound, Unavailable
from server.web.http import answer, api_errors
from server.web.openapi import Out, api
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

MANAGERS = ("admin", "landlord")
AUDIT_ACTION = "fleet.revoke"


@dataclass(frozen=True)
class Revoked:
    gateway_id: str
    revoked_at: datetime
    # True when this call revoked it; False when it already was.
    first: bool
    building_id: int | None


def mark_revoked(conn: sa.Connection, now: datetime, gateway_id: str, *, actor_user_id: int | None,
                 actor: str) -> Revoked:
    """Record the revocation in the caller's transaction, once. Raises
    NotFound for a gateway the server has never known."""
    from server.audit import store
    from server.audit.entries import AuditEntry

    g = gateways.c
    # The UPDATE first: on PostgreSQL it locks the row, so of two revocations
    # at once exactly one records itself and the other reads its time.
    changed = conn.execute(
        sa.update(gateways).where(g.id == gateway_id, g.revoked_at.is_(None))
        # The broker password also authenticates the gateway's HTTP uploads:
        # forget its hash with the login.
        .values(revoked_at=now, revoked_by=actor_user_id, secret_hash=None, online=False)
    ).rowcount
    row = conn.execute(sa.select(g.revoked_at, g.building_id).where(g.id == gateway_id)).first()
    if row is None:
        raise NotFound("gateway", gateway_id)
    if changed:
        store.append_in(conn, [AuditEntry(actor=actor, action=AUDIT_ACTION, subject=f"gateway:{gateway_id}",
                                          detail={"building_id": row.building_id})], now)
    return Revoked(gateway_id, row.revoked_at, bool(changed), row.building_id)


def clear_retained(link: MqttLink | None, gateway_id: str) -> bool:
    """Publish empty retained messages on the gateway's allowlist and
    configuration topics (an empty retained message deletes the retained
    one). False when there is no connected link: the old messages stay on
    the broker, but nobody may read them any more (the gateway's login is
    gone, and no other gateway's role names its topics)."""
    if link is None:
        return False
    sent = [link.publish(topic, b"", qos=1, retain=True)
            for topic in (wire.allowlist_topic(gateway_id), wire.config_topic(gateway_id))]
    return all(sent)


async def revoke(engine: sa.Engine, provisioner: Provisioner, link: MqttLink | None, gateway_id: str, *,
                 actor_user_id: int | None, actor: str,
                 recorded: Callable[[str], None] | None = None) -> Revoked:
    """The whole revocation (see the module's docstring); ``recorded`` is
    told once the database has it. Raises NotFound, or BrokerError after the
    database has recorded it (a retry finishes)."""

    def record() -> Revoked:
        with write_transaction(engine) as conn:
            return mark_revoked(conn, datetime.now(UTC), gateway_id, actor_user_id=actor_user_id, actor=actor)

    revoked = await asyncio.to_thread(record)
    if recorded is not None:
        recorded(gateway_id)
    if revoked.first:
        log.warning("gateway %s revoked by %s", gateway_id, actor)
    await provisioner.remove_gateway(gateway_id)
    if not clear_retained(link, gateway_id):
        log.warning("gateway %s: retained allowlist and configuration not cleared (no broker connection); "
                    "nobody can read them", gateway_id)
    return revoked


async def revoke_gateway(app: web.Application, gateway_id: str, actor_user_id: int) -> Revoked:
    """Revoke on behalf of a user of this application."""
    from server.access.routes import ACCESS
    from server.fleet.appkeys import BROKER
    from server.ingest.appkeys import INGEST

    ingest = app.get(INGEST)
    access = app.get(ACCESS)
    publisher = access.publisher if access is not None else None
    return await revoke(app[ENGINE], app[BROKER], publisher.link if publisher is not None else None, gateway_id,
                        actor_user_id=actor_user_id, actor=f"user:{actor_user_id}",
                        # Its messages are refused from now, not from ingest's
                        # next refresh of the revoked set (a few seconds).
                        recorded=ingest.note_revoked if ingest is not None else None)


# --------------------------------------------------------------------------- route


class GatewayRevoked(Out):
    gateway: str
    revoked_at: datetime


class BrokerUnconfirmed(Unavailable):
    code = "broker_unavailable"


@api_errors
async def revoke_route(request: web.Request) -> web.Response:
    user = require_user(request, *MANAGERS)
    gw = request.match_info["gw"]
    try:
        revoked = await revoke_gateway(request.app, gw, user.id)
    except BrokerError as exc:
        # The broker's address is no business of the caller's: the log has it.
        log.error("gateway %s revoked in the database by %s, but the broker did not confirm: %s", gw,
                  actor_of(user), exc.reason)
        raise BrokerUnconfirmed("the gateway is revoked (no allowlists, its events refused), but the broker did "
                                "not confirm removing its login; try again") from None
    return answer({"gateway": revoked.gateway_id, "revoked_at": revoked.revoked_at})


def setup(app: web.Application) -> None:
    app.router.add_post("/api/v1/gateways/{gw}/revoke", allow(
        *MANAGERS, path={"gw": "gateway"}, rule="landlords: gateways of their own buildings")(
        api("Revoke a gateway for good", tag="fleet", responses={200: GatewayRevoked},
            description="Cuts the gateway off the broker at once (its login is deleted), stops its allowlist "
                        "and configuration and clears them from the broker. Revoking again answers the first "
                        "revocation's time. A revoked gateway's id is never given out again. 503 when the "
                        "broker did not confirm: the revocation is recorded, and trying again finishes it.")(
            revoke_route)))
