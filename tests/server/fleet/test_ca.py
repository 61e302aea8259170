"""The gateway CA: what it signs, what it refuses, where its files live."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rentgate import wire
from server.fleet.ca import CA_CERT_NAME, CA_KEY_NAME, GENERATED_DIR_NAME, GatewayCa, ca_dir
from server.fleet.errors import CaError
from server.settings import ServerSettings


def csr_pem(key: CertificateIssuerPrivateKeyTypes, cn: str = "someone-else") -> str:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, algorithm))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def ca(tmp_path: Path) -> GatewayCa:
    return GatewayCa.create(tmp_path / "ca")


def test_new_ca_is_a_p256_ca_for_ten_years_with_a_private_key_file(tmp_path: Path) -> None:
    ca = GatewayCa.create(tmp_path / "ca")
    cert = x509.load_pem_x509_certificate(ca.ca_pem.encode())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 3650
    assert stat.S_IMODE((tmp_path / "ca" / CA_KEY_NAME).stat().st_mode) == 0o600
    # Loading gives the same CA; creating over it is refused.
    assert GatewayCa.load(tmp_path / "ca").ca_pem == ca.ca_pem
    with pytest.raises(FileExistsError):
        GatewayCa.create(tmp_path / "ca")


@pytest.mark.parametrize("key", [ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1()),
                                 rsa.generate_private_key(65537, 2048), ed25519.Ed25519PrivateKey.generate()],
                         ids=["p256", "p384", "rsa2048", "ed25519"])
def test_signs_a_client_certificate_naming_the_gateway_not_the_request(
        ca: GatewayCa, key: CertificateIssuerPrivateKeyTypes) -> None:
    pem, serial = ca.sign_csr(csr_pem(key, cn="gw-forged"), "gw-7")
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-7"
    assert cert.issuer == x509.load_pem_x509_certificate(ca.ca_pem.encode()).subject
    assert format(cert.serial_number, "x") == serial
    assert cert.serial_number.bit_length() > 64
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.public_key() == key.public_key()
    ca_key = ca.certificate.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    assert 700 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 740


def test_serials_differ(ca: GatewayCa) -> None:
    request = csr_pem(ec.generate_private_key(ec.SECP256R1()))
    assert ca.sign_csr(request, "gw-1")[1] != ca.sign_csr(request, "gw-1")[1]


def test_refuses_weak_unsupported_oversized_and_forged_requests(ca: GatewayCa) -> None:
    with pytest.raises(CaError, match="too short"):
        ca.sign_csr(csr_pem(rsa.generate_private_key(65537, 1024)), "gw-1")
    with pytest.raises(CaError, match="secp256k1"):
        ca.sign_csr(csr_pem(ec.generate_private_key(ec.SECP256K1())), "gw-1")
    with pytest.raises(CaError, match="not a PEM"):
        ca.sign_csr("-----BEGIN CERTIFICATE REQUEST-----\nnonsense\n-----END CERTIFICATE REQUEST-----\n", "gw-1")
    with pytest.raises(CaError, match="bytes"):
        ca.sign_csr("x" * (wire.MAX_CSR_BYTES + 1), "gw-1")
    with pytest.raises(CaError, match="gateway id"):
        ca.sign_csr(csr_pem(ec.generate_private_key(ec.SECP256R1())), "gw/+")
    # A request whose signature does not match its key: someone else's key
    # put into a request signed by another.
    good = x509.load_pem_x509_csr(csr_pem(ec.generate_private_key(ec.SECP256R1())).encode())
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(CaError, match="not signed by its own key"):
        ca.sign_csr(forged, "gw-1")


def test_server_certificate_names_every_host(ca: GatewayCa) -> None:
    cert_pem, key_pem = ca.issue_server_cert(["broker.example.cn", "10.0.0.5"])
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["broker.example.cn"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert cert.public_key() == key.public_key()
    with pytest.raises(CaError):
        ca.issue_server_cert([])


def test_generated_once_beside_a_sqlite_database(tmp_path: Path) -> None:
    settings = ServerSettings(database_url=f"sqlite:///{tmp_path / 'db' / 'server.db'}")
    first = GatewayCa.load_or_create(settings)
    folder = tmp_path / "db" / GENERATED_DIR_NAME
    assert ca_dir(settings) == folder
    assert (folder / CA_CERT_NAME).exists()
    assert GatewayCa.load_or_create(settings).ca_pem == first.ca_pem


def test_a_configured_folder_is_never_filled_and_postgresql_needs_one(tmp_path: Path) -> None:
    with pytest.raises(CaError, match="cannot be read"):
        GatewayCa.load_or_create(ServerSettings(gateway_ca_dir=str(tmp_path / "empty")))
    assert not (tmp_path / "empty").exists()
    with pytest.raises(CaError, match="RENTGATE_GATEWAY_CA_DIR"):
        GatewayCa.load_or_create(ServerSettings(database_url="postgresql+psycopg://u@h/db"))
    GatewayCa.create(tmp_path / "given")
    settings = ServerSettings(database_url="postgresql+psycopg://u@h/db", gateway_ca_dir=str(tmp_path / "given"))
    assert GatewayCa.load_or_create(settings).ca_pem == GatewayCa.load(tmp_path / "given").ca_pem


def test_a_mismatched_key_is_refused(tmp_path: Path) -> None:
    GatewayCa.create(tmp_path / "a")
    GatewayCa.create(tmp_path / "b")
    (tmp_path / "a" / CA_KEY_NAME).write_bytes((tmp_path / "b" / CA_KEY_NAME).read_bytes())
    with pytest.raises(CaError, match="do not belong together"):
        GatewayCa.load(tmp_path / "a")


def test_check_config_reports_the_gateway_ca(tmp_path: Path) -> None:
    from server.cli import check

    sqlite = {"RENTGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}"}
    report = check(sqlite)
    assert report.ok and str(tmp_path / GENERATED_DIR_NAME) in report.parts["gateway_ca_dir"]
    assert not (tmp_path / GENERATED_DIR_NAME).exists()  # checking creates nothing

    broken = check({**sqlite, "RENTGATE_GATEWAY_CA_DIR": str(tmp_path / "nothing")})
    assert not broken.ok
    assert [p.as_json()["name"] for p in broken.problems] == ["RENTGATE_GATEWAY_CA_DIR"]

    GatewayCa.create(tmp_path / "given")
    assert check({**sqlite, "RENTGATE_GATEWAY_CA_DIR": str(tmp_path / "given")}).ok

    postgres = check({"RENTGATE_DATABASE_URL": "postgresql://u@db.invalid/rentgate"})
    assert postgres.ok
    assert "RENTGATE_GATEWAY_CA_DIR" in [w.as_json()["name"] for w in postgres.warnings]
