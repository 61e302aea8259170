"""Gateways with real identities on a real fleet broker (the ``fleet_broker``
fixture of tests/conftest.py): a key pair, a certificate signed by the
broker's gateway CA, a login made by DynsecProvisioner."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.fleet.broker import DynsecProvisioner, gateway_client_id
from server.fleet.ca import GatewayCa
from tests.services import Mosquitto, MqttProbe


@dataclass
class GatewayIdentity:
    """What enrolment hands a gateway: its id, broker password, and TLS files."""

    gateway_id: str
    password: str
    ca_file: Path
    cert_file: Path
    key_file: Path

    def tls(self, *, with_certificate: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if with_certificate:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx

    def probe(self, broker: Mosquitto, *, client_id: str | None = None, with_certificate: bool = True,
              password: str | None = None, will: tuple[str, bytes] | None = None) -> MqttProbe:
        """A client on the broker's TLS listener as this gateway connects."""
        return MqttProbe(broker.host, broker.tls_port, client_id=client_id or gateway_client_id(self.gateway_id),
                         username=self.gateway_id, password=password or self.password,
                         tls=self.tls(with_certificate=with_certificate), will=will)


def make_identity(ca: GatewayCa, ca_file: Path, folder: Path, gateway_id: str) -> GatewayIdentity:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gateway_id)]))
           .sign(key, hashes.SHA256()))
    cert_pem, _serial = ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM).decode(), gateway_id)
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / f"{gateway_id}.pem", folder / f"{gateway_id}.key"
    cert_file.write_text(cert_pem)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return GatewayIdentity(gateway_id, secrets.token_urlsafe(24), ca_file, cert_file, key_file)


@pytest.fixture
async def provisioner(fleet_broker: Mosquitto) -> AsyncIterator[DynsecProvisioner]:
    dynsec = DynsecProvisioner(fleet_broker.admin_url, timeout_s=5.0)
    await dynsec.start()
    try:
        yield dynsec
    finally:
        await dynsec.close()


@pytest.fixture
def identity(fleet_broker: Mosquitto, tmp_path: Path) -> Callable[[str], GatewayIdentity]:
    """A factory: an identity for a gateway id (not yet at the broker)."""
    assert fleet_broker.dynsec is not None
    setup = fleet_broker.dynsec
    return lambda gateway_id: make_identity(setup.ca, setup.ca_file, tmp_path / "gateways", gateway_id)


@pytest.fixture
def server_probe(fleet_broker: Mosquitto) -> MqttProbe:
    """The server's login on the plain loopback listener, connected."""
    assert fleet_broker.dynsec is not None
    probe = MqttProbe(fleet_broker.host, fleet_broker.port, username="rentgate-server",
                      password=fleet_broker.dynsec.server_password)
    assert probe.try_connect() == "Success"
    return probe
