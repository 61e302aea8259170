"""A complete Mosquitto 2 configuration for a fleet broker, as
``rentgate fleet broker-setup`` writes it (docs/mosquitto.md): the
durability and queue settings rentgate needs, a plain listener on loopback
for the server, a TLS listener for gateways that wants a client certificate
from the gateway CA, and the dynamic security plugin with its store made
here: an admin login (for the server's provisioner), the server's own login
and role, a monitoring login, and nothing allowed to anyone else.

Nothing here starts or asks a broker: the store is written in the plugin's
own format (PBKDF2-SHA512 password hashes), so the machine running this
needs no mosquitto_ctrl."""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.fleet.broker import DEFAULT_ACL_ACCESS, SERVER_ROLE, SERVER_USERNAME, server_acls
from server.fleet.ca import CA_CERT_NAME, GatewayCa, write_pem

CONF_NAME = "mosquitto.conf"
STORE_NAME = "dynamic-security.json"
BROKER_CERT_NAME = "broker.pem"
BROKER_KEY_NAME = "broker.key"
CA_DIR_NAME = "gateway-ca"
ADMIN_USERNAME = "admin"
MONITOR_USERNAME = "monitor"
DEFAULT_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
PLUGIN_NAME = "mosquitto_dynamic_security.so"
# Mosquitto 2.0's own default for new passwords.
HASH_ITERATIONS = 101
SALT_BYTES = 12


def find_plugin() -> str:
    """The dynamic security plugin on this machine (any Debian
    architecture), else the amd64 Debian path to edit."""
    found = sorted(glob.glob(f"/usr/lib/*/{PLUGIN_NAME}")) + [
        p for p in (f"/usr/lib/mosquitto/{PLUGIN_NAME}", f"/usr/local/lib/{PLUGIN_NAME}") if Path(p).is_file()]
    return found[0] if found else DEFAULT_PLUGIN


def new_password() -> str:
    # URL-safe: it goes into RENTGATE_*_URL settings without escaping.
    return secrets.token_urlsafe(24)


def password_fields(password: str) -> dict[str, Any]:
    """A dynsec client's password as the plugin stores it."""
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, HASH_ITERATIONS, 64)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": HASH_ITERATIONS}


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def dynsec_store(passwords: dict[str, str]) -> dict[str, Any]:
    """The plugin's JSON: ``passwords`` for admin, rentgate-server, monitor."""
    control = "$CONTROL/dynamic-security/#"
    roles = [
        # Only the plugin's control topics: provisioning, not reading traffic.
        {"rolename": "admin", "textname": "dynamic security administration (rentgate's provisioner)",
         "acls": [_acl("publishClientSend", control), _acl("publishClientReceive", control),
                  _acl("subscribePattern", control)]},
        {"rolename": SERVER_ROLE, "textname": "the rentgate server", "acls": server_acls()},
        {"rolename": MONITOR_USERNAME, "textname": "the broker's counters",
         "acls": [_acl("subscribePattern", "$SYS/#"), _acl("publishClientReceive", "$SYS/#")]},
    ]
    clients = [
        {"username": ADMIN_USERNAME, "textname": "dynamic security admin", "roles": [{"rolename": "admin"}],
         **password_fields(passwords[ADMIN_USERNAME])},
        {"username": SERVER_USERNAME, "textname": "the rentgate server", "roles": [{"rolename": SERVER_ROLE}],
         **password_fields(passwords[SERVER_USERNAME])},
        {"username": MONITOR_USERNAME, "textname": "monitoring", "roles": [{"rolename": MONITOR_USERNAME}],
         **password_fields(passwords[MONITOR_USERNAME])},
    ]
    return {"clients": clients, "groups": [], "roles": roles,
            "defaultACLAccess": {acl["acltype"]: acl["allow"] for acl in DEFAULT_ACL_ACCESS}}


def mosquitto_conf(folder: Path, *, server_port: int, gateway_port: int, plugin: str) -> str:
    """mosquitto.conf naming the files in ``folder`` by absolute path."""
    return f"""\
# rentgate fleet broker (docs/mosquitto.md), written by `rentgate fleet broker-setup`.
# Replaces Debian's /etc/mosquitto/mosquitto.conf (or include it from there).
pid_file /run/mosquitto/mosquitto.pid
per_listener_settings false
# Every login is a dynamic security client; nobody connects without one.
allow_anonymous false
plugin {plugin}
plugin_opt_config_file {folder / STORE_NAME}

# --- durability -----------------------------------------------------------
persistence true
persistence_location /var/lib/mosquitto/
# Seconds between saves of the in-memory store. A broker crash loses at most
# this much queued state; gateways replay what the server never acknowledged.
autosave_interval 60
# Forget sessions of gateways that never came back, or their queues grow forever.
persistent_client_expiration 14d

# --- queues: deliberately large -------------------------------------------
# Per client. The server's session is the one that fills while it is down:
# size it as (messages per second for the server) x (outage to ride out, in s).
# Past it Mosquitto DROPS, silently.
max_queued_messages 200000
# 0 = no byte limit; set one (e.g. 2G) if memory is tight, the same drop rule applies.
max_queued_bytes 0
# QoS 1 messages in flight to one client. The default (20) throttles the
# server's ingest to a trickle; rentgate's own client allows 1000.
max_inflight_messages 1000

# $SYS counters every 10 s; watch $SYS/broker/publish/messages/dropped.
sys_interval 10
set_tcp_nodelay true

# --- listeners ------------------------------------------------------------
# The server (and its provisioner) on this host, without TLS. Loopback only:
# whoever reaches it can try any login without a client certificate.
listener {server_port} 127.0.0.1

# Gateways: TLS, and a client certificate signed by the gateway CA, then
# their own login (user name = gateway id, client id rentgate-gw-<id>).
listener {gateway_port}
cafile {folder / CA_CERT_NAME}
certfile {folder / BROKER_CERT_NAME}
keyfile {folder / BROKER_KEY_NAME}
require_certificate true
tls_version tlsv1.2

log_dest file /var/log/mosquitto/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
"""


@dataclass
class BrokerSetup:
    """What was written, and the secrets to hand on (shown once)."""

    folder: Path
    files: list[Path]
    passwords: dict[str, str]
    ca_dir: Path
    ca_created: bool
    settings: dict[str, str] = field(default_factory=dict)


class TargetsExist(Exception):
    """Files that would be overwritten; nothing was written."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(", ".join(str(p) for p in paths))
        self.paths = paths


def targets(folder: Path, ca_dir: Path | None) -> list[Path]:
    paths = [folder / name for name in (CONF_NAME, STORE_NAME, BROKER_CERT_NAME, BROKER_KEY_NAME, CA_CERT_NAME)]
    if ca_dir is None:
        paths.append(folder / CA_DIR_NAME)
    return paths


def write_broker_setup(folder: Path, hosts: list[str], *, gateway_port: int = 8883, server_port: int = 1883,
                       ca_dir: Path | None = None, plugin: str | None = None) -> BrokerSetup:
    """Write everything into ``folder`` (made if missing). ``ca_dir``: an
    existing gateway CA to use (the server's); without it a new one is made
    in ``folder``/gateway-ca. Raises TargetsExist before writing anything
    if a file is there, CaError for an unusable ``ca_dir``."""
    folder = folder.resolve()
    existing = [p for p in targets(folder, ca_dir) if p.exists()]
    if existing:
        raise TargetsExist(existing)
    ca = GatewayCa.load(ca_dir) if ca_dir is not None else None
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    created = ca is None
    if ca is None:
        ca_dir = folder / CA_DIR_NAME
        ca = GatewayCa.create(ca_dir)
        written += [ca_dir / CA_CERT_NAME, ca_dir / "ca.key"]
    assert ca_dir is not None
    cert_pem, key_pem = ca.issue_server_cert(hosts)
    passwords = {name: new_password() for name in (ADMIN_USERNAME, SERVER_USERNAME, MONITOR_USERNAME)}
    for name, text, private in (
            (CA_CERT_NAME, ca.ca_pem, False),
            (BROKER_CERT_NAME, cert_pem, False),
            (BROKER_KEY_NAME, key_pem, True),
            # Password hashes, and the plugin rewrites it on every change.
            (STORE_NAME, json.dumps(dynsec_store(passwords), indent=2) + "\n", True),
            (CONF_NAME, mosquitto_conf(folder, server_port=server_port, gateway_port=gateway_port,
                                       plugin=plugin or find_plugin()), False)):
        write_pem(folder / name, text, private=private)
        written.append(folder / name)
    local = f"127.0.0.1:{server_port}"
    gateway_host = hosts[0] if ":" not in hosts[0] else f"[{hosts[0]}]"
    settings = {
        "RENTGATE_BROKER_ADMIN_URL": f"mqtt://{ADMIN_USERNAME}:{passwords[ADMIN_USERNAME]}@{local}",
        "RENTGATE_MQTT_URL": f"mqtt://{SERVER_USERNAME}:{passwords[SERVER_USERNAME]}@{local}",
        "RENTGATE_GATEWAY_MQTT_URL": f"mqtts://{gateway_host}:{gateway_port}",
        "RENTGATE_GATEWAY_CA_DIR": str(ca_dir.resolve()),
    }
    return BrokerSetup(folder, written, passwords, ca_dir.resolve(), created, settings)
