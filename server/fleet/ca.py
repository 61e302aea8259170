"""The gateway CA: a private certificate authority that signs each enrolled
gateway's client certificate (CN = its gateway id) and the broker's server
certificate. Mosquitto's TLS listener for gateways trusts only this CA, so a
stolen password alone does not get anyone onto the broker.

The CA's files (ca.pem, ca.key) live in ``gateway_ca_dir``, or are generated
once beside a SQLite database like the server's other keys
(server/db/keyfiles.py). A PostgreSQL server is given its CA: several servers
share one database, and each making its own CA would sign certificates the
broker trusts only for one of them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rentgate import wire
from server.db.keyfiles import NoFolderBeside, beside_database
from server.fleet.errors import CaError
from server.settings import ServerSettings

log = logging.getLogger(__name__)

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca.key"
# Beside a SQLite database the CA gets a folder of its own: two files that
# belong together and must be backed up together.
GENERATED_DIR_NAME = "gateway-ca"
CA_COMMON_NAME = "rentgate gateway CA"

CA_VALIDITY = dt.timedelta(days=3652)
CLIENT_VALIDITY = dt.timedelta(days=730)
SERVER_VALIDITY = dt.timedelta(days=825)
# Certificates start a little in the past: a gateway whose clock is a few
# minutes behind must not see its fresh certificate as "not yet valid".
BACKDATE = dt.timedelta(minutes=10)

_CURVES_ALLOWED = (ec.SECP256R1, ec.SECP384R1)
MIN_RSA_BITS = 2048

CertificateKey = ec.EllipticCurvePrivateKey


def ca_dir(settings: ServerSettings) -> Path:
    """Where this server's CA lives; CaError saying what to set when it has none."""
    if settings.gateway_ca_dir:
        return Path(settings.gateway_ca_dir)
    try:
        return beside_database(settings.database_url, GENERATED_DIR_NAME)
    except NoFolderBeside as exc:
        if exc.reason == "not_sqlite":
            raise CaError("no gateway CA: set RENTGATE_GATEWAY_CA_DIR to a folder holding ca.pem and ca.key "
                          "(`rentgate fleet broker-setup` makes them; a CA is only generated beside a SQLite "
                          "database); gateways cannot be enrolled until then") from None
        raise CaError("no gateway CA: an in-memory database has no folder to keep a generated CA in; "
                      "set RENTGATE_GATEWAY_CA_DIR") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _serial() -> int:
    # 128 random bits, top bit cleared so the DER integer stays positive in
    # 16 bytes; never zero.
    return secrets.randbits(127) | 1


def _wait_for_file(path: Path, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` mode 600, aside first and linked into place: two
    servers starting at once end with one file, neither half-written."""
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    try:
        os.link(draft, path)
    finally:
        draft.unlink()


def _write_public(path: Path, data: bytes) -> None:
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    draft.write_bytes(data)
    try:
        os.link(draft, path)
    finally:
        draft.unlink()


@dataclass(frozen=True)
class GatewayCa:
    certificate: x509.Certificate
    private_key: CertificateKey

    # ------------------------------------------------------------------ loading

    @classmethod
    def load_or_create(cls, settings: ServerSettings) -> GatewayCa:
        """The CA in ``gateway_ca_dir``; without that setting, the one beside
        a SQLite database, made on first use. Raises CaError saying why not."""
        folder = ca_dir(settings)
        if settings.gateway_ca_dir:
            # A configured CA is never generated: an empty or mistyped folder
            # would otherwise give gateways certificates the broker rejects.
            return cls.load(folder)
        if not (folder / CA_CERT_NAME).exists():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                cls.create(folder)
            except FileExistsError:
                # Another server is making it at this moment: use theirs.
                _wait_for_file(folder / CA_CERT_NAME)
            else:
                log.warning("generated the gateway CA in %s: back it up; the broker's TLS listener must trust "
                            "%s", folder, folder / CA_CERT_NAME)
        return cls.load(folder)

    @classmethod
    def load(cls, folder: Path) -> GatewayCa:
        cert_path, key_path = folder / CA_CERT_NAME, folder / CA_KEY_NAME
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except OSError as exc:
            raise CaError(f"gateway CA in {folder} cannot be read: {exc.strerror or exc} "
                          f"({exc.filename or folder})") from None
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise CaError(f"gateway CA in {folder} is not a PEM certificate and key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError(f"gateway CA key {key_path} is not an EC key")
        if cert.public_key() != key.public_key():
            raise CaError(f"gateway CA in {folder}: {CA_CERT_NAME} and {CA_KEY_NAME} do not belong together")
        return cls(cert, key)

    @classmethod
    def create(cls, folder: Path) -> GatewayCa:
        """A new CA written into ``folder`` (ca.key mode 600). Raises
        FileExistsError rather than replace a CA that is there."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rentgate")])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(_serial())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        # The key first: a ca.pem without its key would look like a CA.
        _write_private(folder / CA_KEY_NAME, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        try:
            _write_public(folder / CA_CERT_NAME, cert.public_bytes(serialization.Encoding.PEM))
        except FileExistsError:
            (folder / CA_KEY_NAME).unlink()
            raise
        return cls(cert, key)

    # ------------------------------------------------------------------ use

    @property
    def ca_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def sign_csr(self, csr_pem: str, gateway_id: str) -> tuple[str, str]:
        """A client certificate for ``gateway_id`` (CN) on the key of this
        signing request: (certificate PEM, serial in hex). The request's own
        subject and extensions are ignored: we say who the gateway is. Raises
        CaError for a request that is too big, unreadable, not signed by its
        key, or on a key we do not accept."""
        if not wire.is_gateway_id(gateway_id):
            raise CaError(f"not a gateway id: {gateway_id!r}")
        data = csr_pem.encode()
        if len(data) > wire.MAX_CSR_BYTES:
            raise CaError(f"the certificate signing request is {len(data)} bytes, more than {wire.MAX_CSR_BYTES}")
        try:
            csr = x509.load_pem_x509_csr(data)
        except ValueError:
            raise CaError("not a PEM certificate signing request") from None
        try:
            public = csr.public_key()
        except (ValueError, UnsupportedAlgorithm):
            raise CaError("the certificate signing request's key is of an unsupported kind") from None
        _check_key(public)
        try:
            valid = csr.is_signature_valid
        except (ValueError, UnsupportedAlgorithm, InvalidSignature):
            valid = False
        if not valid:
            raise CaError("the certificate signing request is not signed by its own key")
        serial = _serial()
        now = _now()
        cert = (
            self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gateway_id)]), public, serial,
                          now, now + CLIENT_VALIDITY)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=isinstance(public, rsa.RSAPublicKey),
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.private_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode(), format(serial, "x")

    def issue_server_cert(self, hosts: list[str]) -> tuple[str, str]:
        """A certificate and a new key for the broker's TLS listener, valid
        for ``hosts`` (names and IP addresses): (certificate PEM, key PEM)."""
        if not hosts:
            raise CaError("a server certificate needs at least one host name or address")
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]), key.public_key(),
                          _serial(), now, now + SERVER_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.private_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()

    def _builder(self, subject: x509.Name, public: CertificatePublicKeyTypes, serial: int,
                 start: dt.datetime, end: dt.datetime) -> x509.CertificateBuilder:
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(serial)
            .not_valid_before(start - BACKDATE)
            # Never past the CA's own end: a chain is only as valid as its root.
            .not_valid_after(min(end, self.certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        )


def _check_key(public: object) -> None:
    """CaError unless the key is EC P-256/P-384, RSA of 2048 bits or more, or Ed25519."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, _CURVES_ALLOWED):
            raise CaError(f"EC keys on {public.curve.name} are not accepted (only P-256 and P-384)")
        return
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise CaError(f"an RSA key of {public.key_size} bits is too short (at least {MIN_RSA_BITS})")
        return
    if isinstance(public, ed25519.Ed25519PublicKey):
        return
    raise CaError("the certificate signing request's key is of an unsupported kind "
                  "(use EC P-256/P-384, RSA of 2048 bits or more, or Ed25519)")


def write_pem(path: Path, text: str, *, private: bool) -> None:
    """Write a PEM file that must not exist yet (FileExistsError if it does);
    private keys mode 600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as out:
        out.write(text)
