"""One broker identity per gateway, provisioned in Mosquitto's dynamic
security plugin (docs/mosquitto.md).

Each enrolled gateway gets a dynsec client (username = its gateway id, the
password generated at enrolment, client id fixed to ``rentgate-gw-<id>``)
and a role of its own whose ACLs name its topics literally: Mosquitto 2.0.11
does not substitute %u/%c in dynsec ACLs, so one shared role with patterns
cannot confine a gateway to its own prefix. Deleting the client makes the
broker drop its connection at once and refuse every later login.

The plugin is driven over MQTT: JSON commands to ``$CONTROL/dynamic-
security/v1``, answers on ``.../response`` matched by ``correlationData``.
``NoBroker`` stands in when no admin login is configured (the embedded demo
broker): then gateways are not isolated, and the server says so once."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiohttp import web

from rentgate import wire
from rentgate.mqtt import BrokerAddress, LinkSettings, MqttLink
from server.fleet.ca import GatewayCa
from server.fleet.errors import BrokerError, CaError

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
# A healthy broker answers a command in milliseconds; a landlord's revoke or
# a gateway's enrolment should not hang much longer than this on one that is away.
COMMAND_TIMEOUT_S = 5.0
RECONNECT_MAX_S = 2.0
SERVER_USERNAME = "rentgate-server"
SERVER_ROLE = "rentgate-server"

# What a gateway may publish, under its own prefix.
GATEWAY_SENDS = ("events", "status", "allowlist_request")
# What it may subscribe to and receive: its own server-to-gateway topics.
GATEWAY_RECEIVES = ("ack", "config", "allowlist", "allowlist_delta")


class Provisioner(Protocol):
    """Gives gateways their broker identity and takes it away."""

    # False: the broker does not check who a gateway is (NoBroker).
    enforced: bool

    async def add_gateway(self, gateway_id: str, password: str) -> None:
        """Create (or re-create, after a failed attempt) the gateway's role
        and login. Raises BrokerError."""

    async def remove_gateway(self, gateway_id: str) -> None:
        """Delete the gateway's login and role: the broker drops its
        connection and refuses it from then on. Raises BrokerError."""


def gateway_client_id(gateway_id: str) -> str:
    """The MQTT client id a gateway connects with (gateway/app.py)."""
    return f"rentgate-gw-{gateway_id}"


def gateway_role(gateway_id: str) -> str:
    return f"rentgate-gw-{gateway_id}"


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def gateway_acls(gateway_id: str) -> list[dict[str, Any]]:
    """The gateway's own topics, literally: publish events, status (its last
    will too) and allowlist requests; read its acks, configuration,
    allowlists and the server's status."""
    own = f"{wire.TOPIC_ROOT}/gw/{gateway_id}"
    if not wire.is_gateway_id(gateway_id):
        raise BrokerError(f"not a gateway id: {gateway_id!r}")
    acls = [_acl("publishClientSend", f"{own}/{leaf}") for leaf in GATEWAY_SENDS]
    for topic in [*(f"{own}/{leaf}" for leaf in GATEWAY_RECEIVES), wire.SERVER_STATUS_TOPIC]:
        acls += [_acl("subscribeLiteral", topic), _acl("publishClientReceive", topic)]
    # Each ingest worker's status, when several share the events (docs/scaling.md).
    acls += [_acl("subscribeLiteral", wire.SERVER_WORKER_STATUS_SUBSCRIPTION),
             _acl("publishClientReceive", wire.SERVER_WORKER_STATUS_SUBSCRIPTION)]
    return acls


def server_acls() -> list[dict[str, Any]]:
    """The server's role: read every gateway's events, status and allowlist
    requests (server/ingest, server/access/publisher.py); write acks,
    configurations, allowlists and its own status."""
    acls: list[dict[str, Any]] = []
    for subscription in (wire.EVENTS_SUBSCRIPTION, wire.STATUS_SUBSCRIPTION, wire.ALLOWLIST_REQUEST_SUBSCRIPTION):
        acls += [_acl("subscribePattern", subscription), _acl("publishClientReceive", subscription)]
    # Ingest workers sharing the events (docs/scaling.md): the dynamic
    # security plugin checks a shared subscription with its $share/<group>/
    # prefix, so the plain pattern above does not allow it.
    for subscription in (wire.EVENTS_SUBSCRIPTION, wire.STATUS_SUBSCRIPTION):
        acls.append(_acl("subscribePattern", wire.shared_subscription(subscription, "+")))
    for leaf in GATEWAY_RECEIVES:
        acls.append(_acl("publishClientSend", f"{wire.TOPIC_ROOT}/gw/+/{leaf}"))
    acls.append(_acl("publishClientSend", wire.SERVER_STATUS_TOPIC))
    acls.append(_acl("publishClientSend", wire.SERVER_WORKER_STATUS_SUBSCRIPTION))
    return acls


# Nobody may publish or subscribe without an ACL saying so.
DEFAULT_ACL_ACCESS = [
    {"acltype": "publishClientSend", "allow": False},
    {"acltype": "publishClientReceive", "allow": False},
    {"acltype": "subscribe", "allow": False},
    {"acltype": "unsubscribe", "allow": True},
]


def add_gateway_commands(gateway_id: str, password: str) -> list[dict[str, Any]]:
    """Delete whatever a failed or earlier attempt left, then create: the
    same result however often it runs."""
    role = gateway_role(gateway_id)
    return [
        {"command": "deleteClient", "username": gateway_id},
        {"command": "deleteRole", "rolename": role},
        {"command": "createRole", "rolename": role, "textname": f"rentgate gateway {gateway_id}",
         "acls": gateway_acls(gateway_id)},
        {"command": "createClient", "username": gateway_id, "password": password,
         "clientid": gateway_client_id(gateway_id), "textname": f"rentgate gateway {gateway_id}",
         "roles": [{"rolename": role}]},
    ]


def remove_gateway_commands(gateway_id: str) -> list[dict[str, Any]]:
    return [{"command": "deleteClient", "username": gateway_id},
            {"command": "deleteRole", "rolename": gateway_role(gateway_id)}]


def _harmless(command: dict[str, Any], error: str) -> bool:
    """Deleting what is not there is what idempotence asks for."""
    return command["command"].startswith("delete") and "not found" in error.lower()


class NoBroker:
    """No broker administration: gateways share whatever login the broker
    gives (the embedded demo broker lets everyone in)."""

    enforced = False

    async def add_gateway(self, gateway_id: str, password: str) -> None:
        log.debug("no broker administration: gateway %s gets no broker login of its own", gateway_id)

    async def remove_gateway(self, gateway_id: str) -> None:
        log.debug("no broker administration: gateway %s has no broker login to delete", gateway_id)


class DynsecProvisioner:
    """Provisioning through Mosquitto's dynamic security plugin, over one
    supervised admin connection (rentgate.mqtt.MqttLink: it reconnects)."""

    enforced = True

    def __init__(self, admin_url: str, *, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.address = BrokerAddress.parse(admin_url)
        self.timeout_s = timeout_s
        # A client id of its own per process: two servers' admin links must
        # not take each other's session over.
        self.link = MqttLink(
            LinkSettings(url=admin_url, client_id=f"rentgate-dynsec-{uuid.uuid4().hex[:12]}",
                         subscriptions=[(RESPONSE_TOPIC, 1)],
                         # One connection to a broker on the same host: retry
                         # often, so that a revocation retried once the broker
                         # is back finds the link up within its timeout.
                         backoff_max_s=RECONNECT_MAX_S),
            on_message=self._on_message,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, check_defaults: bool = True) -> None:
        """Connect in the background. ``check_defaults``: once connected,
        close the broker's default ACL access if it is open (the server
        does; a one-off command need not)."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(check_defaults), name="dynsec-admin")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self, check_defaults: bool) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.link.run(), name="dynsec-admin-link")
            if check_defaults:
                tg.create_task(self._check_defaults(), name="dynsec-defaults")

    async def _check_defaults(self) -> None:
        """Once connected: no client may publish or subscribe by default. A
        broker set up by hand keeps Mosquitto's defaults, which let a client
        without an ACL receive whatever it could subscribe to; say so, and
        close publishing and subscribing (the ones that let a gateway speak
        for another)."""
        while True:
            # Wait outside run_commands: its lock must not keep a
            # provisioning call waiting behind this check while the broker is away.
            # Connected is enough here: run_commands waits for the subscription
            # itself, and a login refused it says so in the log every round.
            while not self.link.connected.is_set():
                await asyncio.sleep(0.2)
            try:
                answer = await self.run_commands([{"command": "getDefaultACLAccess"}])
                break
            except BrokerError as exc:
                log.warning("dynamic security: %s", exc.reason)
                await asyncio.sleep(5)
        current = {acl.get("acltype"): acl.get("allow") for acl in answer[0].get("data", {}).get("acls", [])}
        open_ = [kind for kind in ("publishClientSend", "subscribe") if current.get(kind)]
        if open_:
            log.warning("the broker's dynamic security allowed %s to clients without an ACL; closing that "
                        "(docs/mosquitto.md)", " and ".join(open_))
            await self.run_commands([{"command": "setDefaultACLAccess",
                                      "acls": [a for a in DEFAULT_ACL_ACCESS if a["acltype"] in open_]}])

    # ------------------------------------------------------------------ Provisioner

    async def add_gateway(self, gateway_id: str, password: str) -> None:
        await self.run_commands(add_gateway_commands(gateway_id, password))
        log.info("broker: gateway %s has its own login and role", gateway_id)

    async def remove_gateway(self, gateway_id: str) -> None:
        if not wire.is_gateway_id(gateway_id):
            raise BrokerError(f"not a gateway id: {gateway_id!r}")
        await self.run_commands(remove_gateway_commands(gateway_id))
        log.info("broker: gateway %s's login and role deleted", gateway_id)

    # ------------------------------------------------------------------ commands

    async def run_commands(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``commands`` in one message and return their answers in
        order. Raises BrokerError when the broker cannot be reached, does
        not answer within the timeout, or refuses a command (other than
        deleting what is not there)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        # One batch at a time: add_gateway's delete-then-create must not
        # interleave with another batch for the same gateway.
        async with self._lock:
            # Subscribed, not just connected: a command sent between the
            # CONNACK and the SUBACK is answered on a topic nobody hears yet.
            if not await asyncio.to_thread(self.link.wait_subscribed, self.timeout_s):
                if self.link.connected.is_set() and self.link.stats.refused_subscription is not None:
                    raise BrokerError(f"the broker at {self.address.host}:{self.address.port} let this login in but "
                                      f"not hear the dynamic security answers within {self.timeout_s:g} s "
                                      "(is this login its admin?)")
                raise BrokerError(f"no admin connection to the broker at {self.address.host}:{self.address.port} "
                                  f"within {self.timeout_s:g} s ({self.link.stats.last_error or 'no answer'})")
            tagged = []
            futures: list[asyncio.Future[dict[str, Any]]] = []
            for command in commands:
                correlation = uuid.uuid4().hex
                future: asyncio.Future[dict[str, Any]] = loop.create_future()
                self._waiting[correlation] = future
                futures.append(future)
                tagged.append({**command, "correlationData": correlation})
            try:
                if not self.link.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1):
                    raise BrokerError(f"the admin connection to {self.address.host}:{self.address.port} dropped "
                                      "before the command went out")
                try:
                    answers = await asyncio.wait_for(asyncio.gather(*futures), self.timeout_s)
                except TimeoutError:
                    raise BrokerError(f"the broker at {self.address.host}:{self.address.port} did not answer "
                                      f"within {self.timeout_s:g} s (is the dynamic security plugin loaded, "
                                      "and is this login its admin?)") from None
            finally:
                for item in tagged:
                    self._waiting.pop(item["correlationData"], None)
        for command, answer in zip(commands, answers, strict=True):
            error = answer.get("error")
            if error and not _harmless(command, str(error)):
                raise BrokerError(f"the broker refused {command['command']}: {error}")
        return answers

    def _on_message(self, topic: str, payload: bytes) -> None:
        """On the network thread: hand each answer to the loop."""
        try:
            responses = json.loads(payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable dynamic security response on %s", topic)
            return
        loop = self._loop
        if loop is None or loop.is_closed() or not isinstance(responses, list):
            return
        for response in responses:
            if isinstance(response, dict) and isinstance(response.get("correlationData"), str):
                loop.call_soon_threadsafe(self._resolve, response)

    def _resolve(self, response: dict[str, Any]) -> None:
        future = self._waiting.get(response["correlationData"])
        if future is not None and not future.done():
            future.set_result(response)


# --------------------------------------------------------------------------- the application


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_fleet_ctx)


async def _fleet_ctx(app: web.Application) -> AsyncIterator[None]:
    # Imported here: appkeys names this module's Provisioner.
    from server.appkeys import SETTINGS
    from server.fleet.appkeys import BROKER, CA, CA_PROBLEM

    settings = app[SETTINGS]
    try:
        app[CA] = await asyncio.to_thread(GatewayCa.load_or_create, settings)
        app[CA_PROBLEM] = ""
    except CaError as exc:
        app[CA] = None
        app[CA_PROBLEM] = str(exc)
        log.warning("%s", exc)
    provisioner: Provisioner
    if settings.broker_admin_url:
        dynsec = DynsecProvisioner(settings.broker_admin_url, timeout_s=COMMAND_TIMEOUT_S)
        await dynsec.start()
        provisioner = dynsec
    else:
        provisioner = NoBroker()
        log.warning("RENTGATE_BROKER_ADMIN_URL is not set: gateways get no broker login of their own and are not "
                    "isolated from each other at the broker (fine for the embedded demo broker only; "
                    "docs/mosquitto.md)")
    app[BROKER] = provisioner
    try:
        yield
    finally:
        if isinstance(provisioner, DynsecProvisioner):
            await provisioner.close()
