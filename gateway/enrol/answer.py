"""Checks on the server's answer before anything is written: the certificate
is for the key made here and signed by the CA sent with it, the allowlist
keys load, and the first configuration is signed by one of them and made for
this gateway. An answer that fails any of them is not used at all."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from gateway.enrol.errors import EnrolServerError
from gateway.enrol.keys import GatewayKey, public_der
from rentgate import signing, wire
from rentgate.lang import tr
from rentgate.mqtt import validate_url


@dataclass(frozen=True)
class Enrolment:
    """A checked answer: what the gateway's folder is written from."""

    answer: wire.EnrolResponse
    config: wire.RemoteConfig  # the first configuration's verified payload
    mqtt_url: str  # the broker's address without any login
    certificate_serial: str
    certificate_expires: dt.datetime


def check_answer(answer: wire.EnrolResponse, key: GatewayKey) -> Enrolment:
    """Raises EnrolServerError (bad_answer) naming the first check that failed."""
    cert = _certificate(answer.certificate_pem)
    if public_der(cert.public_key()) != public_der(key.public_key()):
        raise _bad(tr("证书不是给这台网关的密钥的", "the certificate is not for this gateway's key"))
    _check_issued_by_ca(cert, answer.ca_pem)
    keys = _allowlist_keys(answer.allowlist_keys)
    signed = answer.config
    if not signing.verify(signed.payload.encode("utf-8"), signed.signature, keys, signed.key_id):
        raise _bad(tr("第一份配置的签名与发来的名单密钥不符", "the first configuration is not signed by the allowlist key sent with it"))
    try:
        config = wire.decode_remote_config(signed.payload)
    except wire.WireError as exc:
        raise _bad(tr(f"第一份配置无法读取：{exc}", f"the first configuration cannot be read: {exc}")) from exc
    if config.gw != answer.gw:
        raise _bad(tr("第一份配置是给另一台网关的", "the first configuration is for another gateway"))
    return Enrolment(answer=answer, config=config, mqtt_url=_without_login(answer.mqtt_url),
                     certificate_serial=format(cert.serial_number, "x"),
                     certificate_expires=cert.not_valid_after_utc)


def _certificate(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise _bad(tr("网关证书无法读取", "the gateway's certificate cannot be read")) from exc


def _check_issued_by_ca(cert: x509.Certificate, ca_pem: str) -> None:
    try:
        cas = x509.load_pem_x509_certificates(ca_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise _bad(tr("CA 证书无法读取", "the CA certificate cannot be read")) from exc
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return
    raise _bad(tr("网关证书不是发来的 CA 签发的", "the gateway's certificate was not signed by the CA sent with it"))


def _allowlist_keys(texts: dict[str, str]) -> dict[str, signing.Ed25519PublicKey]:
    if not texts:
        raise _bad(tr("没有名单密钥", "no allowlist key"))
    try:
        return {key_id: signing.load_public_key(text, source=key_id) for key_id, text in texts.items()}
    except signing.SigningError as exc:
        raise _bad(tr(f"名单密钥无法读取：{exc}", f"an allowlist key cannot be read: {exc}")) from exc


def _without_login(url: str) -> str:
    # The login is the gateway's own (mqtt_username and its password file);
    # a URL with a password in it would end up in a readable settings file.
    try:
        validate_url(url)
    except ValueError as exc:
        raise _bad(tr(f"代理地址不对：{exc}", f"bad broker address: {exc}")) from exc
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}"


def _bad(why: str) -> EnrolServerError:
    return EnrolServerError(
        "bad_answer",
        tr(f"服务器的回答没有通过检查：{why}；什么都没有写入", f"the server's answer failed a check: {why}; nothing was written"),
        tr("告诉管理员；网关已在服务器上登记，请在楼栋页面上撤销它，再用新的登记码重试",
           "tell the administrator; the server has enrolled the gateway, so revoke it on the building's page and "
           "try again with a new code"))
