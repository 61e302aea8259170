"""The gateway's own key pair and its certificate signing request.

EC P-256: every TLS stack the broker or a gateway's OpenSSL may have speaks
it, and it is small and fast on a box. The private key is made here, written
only into the gateway's folder (mode 600) and never sent or logged: the
server sees the CSR, which holds only the public half."""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

GatewayKey = ec.EllipticCurvePrivateKey

# What may go into the CSR's common name: the server names the gateway by its
# id in the certificate anyway, so this is only a hint for a person.
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]")


def new_key() -> GatewayKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: GatewayKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the gateway starts unattended, so the file's
    mode and the folder's are its protection."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def csr_pem(key: GatewayKey, hostname: str | None) -> str:
    """A CSR signed by ``key``; its common name is the box's host name
    (cleaned, at most 64 characters) or ``rentgate-gateway``."""
    name = _NAME_OK.sub("-", hostname or "")[:64].strip("-.") or "rentgate-gateway"
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM).decode("ascii")


def public_der(key: CertificatePublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo DER of a public key, to compare two keys."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
