"""The key pair, the certificate request, and the checks on the server's answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.enrol.answer import check_answer
from gateway.enrol.errors import EnrolServerError
from gateway.enrol.keys import csr_pem, key_pem, new_key
from rentgate import signing, wire
from server.fleet.ca import GatewayCa
from tests.gateway.enrol.fakes import CODE, GW, FakeServerSide


def request(key: ec.EllipticCurvePrivateKey) -> wire.EnrolRequest:
    return wire.EnrolRequest(code=CODE, csr=csr_pem(key, "box-1"), hostname="box-1")


def test_the_csr_holds_a_p256_key_signed_by_itself_and_the_host_name() -> None:
    key = new_key()
    csr = x509.load_pem_x509_csr(csr_pem(key, "gate box/1 ü").encode())
    assert csr.is_signature_valid
    public = csr.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert public.public_numbers() == key.public_key().public_numbers()
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gate-box-1"
    assert len(csr_pem(key, None)) <= wire.MAX_CSR_BYTES
    assert b"PRIVATE KEY" not in csr_pem(key, None).encode()
    assert key_pem(key).startswith(b"-----BEGIN PRIVATE KEY-----")


def test_the_rentgate_ca_signs_the_csr(tmp_path: Path) -> None:
    key = new_key()
    ca = GatewayCa.create(tmp_path)
    cert_pem, _serial = ca.sign_csr(csr_pem(key, None), GW)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == GW


def test_a_good_answer_passes(tmp_path: Path) -> None:
    side, key = FakeServerSide(tmp_path), new_key()
    enrolment = check_answer(side.answer(request(key), mqtt_url="mqtts://gw:secret@broker.example.cn:8883"), key)
    assert enrolment.config.gw == GW and enrolment.config.version == 1
    assert enrolment.mqtt_url == "mqtts://broker.example.cn:8883"  # a login in the URL is not kept
    assert enrolment.certificate_serial


def spoilt(side: FakeServerSide, key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> dict[str, dict[str, object]]:
    other_key = new_key()
    other_ca = GatewayCa.create(tmp_path / "other-ca")
    return {
        "a certificate for another key": {"certificate_pem": side.ca.sign_csr(csr_pem(other_key, None), GW)[0]},
        "a certificate from another CA": {"certificate_pem": other_ca.sign_csr(csr_pem(key, None), GW)[0]},
        "a CA that is not a certificate": {"ca_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
        "a configuration signed by another key": {"config": side.signed_config(key=signing.generate_private_key())},
        "a configuration for another gateway": {"config": side.signed_config(gw="gw-other")},
        "no allowlist key": {"allowlist_keys": {}},
        "an allowlist key that is not one": {"allowlist_keys": {"k1": "bm90IGEga2V5"}},
        "a broker address that is not one": {"mqtt_url": "http://broker.example.cn"},
    }


def test_a_spoilt_answer_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    side, key = FakeServerSide(tmp_path), new_key()
    for what, change in spoilt(side, key, tmp_path).items():
        with pytest.raises(EnrolServerError) as caught:
            check_answer(side.answer(request(key), **change), key)
        assert caught.value.code == "bad_answer", what
        assert caught.value.exit_code == 1
