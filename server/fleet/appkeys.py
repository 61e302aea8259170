"""The fleet slice's keys in the aiohttp application state, installed by
``server.fleet.broker.setup``."""

from __future__ import annotations

from aiohttp import web

from server.fleet.broker import Provisioner
from server.fleet.ca import GatewayCa
from server.fleet.errors import CaError

# The broker's provisioner: DynsecProvisioner, or NoBroker (enforced False)
# when RENTGATE_BROKER_ADMIN_URL is unset.
BROKER = web.AppKey("fleet_broker", Provisioner)
# The gateway CA, or None when this server has none (a PostgreSQL server
# without RENTGATE_GATEWAY_CA_DIR, an unreadable CA): then CA_PROBLEM says
# why, and gateway_ca() raises it.
CA: web.AppKey[GatewayCa | None] = web.AppKey("fleet_ca")
CA_PROBLEM = web.AppKey("fleet_ca_problem", str)


def gateway_ca(app: web.Application) -> GatewayCa:
    """The gateway CA; CaError saying what to set when there is none."""
    ca = app[CA]
    if ca is None:
        raise CaError(app[CA_PROBLEM])
    return ca
