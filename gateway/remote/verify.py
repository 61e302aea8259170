"""Is a message on the config topic a configuration this gateway may run?

Checked in order, each refusal with a short reason for the status (no
secrets: reasons name keys and versions, never values): the envelope, the
signature by a key the gateway trusts (its allowlist keys, which a remote
configuration cannot change), the payload, the gateway it names. Versions are
the runner's business (it knows which one runs); the settings are checked
last, merged over the local file, exactly as they would run."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config import GatewayConfig
from gateway.errors import ConfigError, GatewayError
from gateway.remote.local import LocalSettings
from rentgate import signing, wire
from rentgate.signing import Ed25519PublicKey

_REASON_MAX = 300  # wire.ShortText


class Refused(GatewayError):
    """A configuration the gateway will not run. ``version`` is set when the
    message is a signed configuration for this gateway (the status then names
    the version it refused), None when it cannot be attributed to one."""

    def __init__(self, reason: str, version: int | None = None) -> None:
        self.reason = reason[:_REASON_MAX]
        self.version = version
        super().__init__(self.reason)


def check_message(payload: bytes, gateway_id: str, public_keys: Mapping[str, Ed25519PublicKey]) -> wire.RemoteConfig:
    try:
        signed = wire.decode_signed_config(payload)
    except wire.WireError as exc:
        raise Refused(f"malformed configuration message: {exc.reason}") from exc
    if not public_keys:
        raise Refused("no trusted keys: [access] public_keys is empty in the settings file")
    if signed.key_id not in public_keys:
        raise Refused(f"signed with unknown key {signed.key_id!r}")
    if not signing.verify(signed.payload.encode(), signed.signature, public_keys, signed.key_id):
        raise Refused(f"bad signature (key {signed.key_id!r})")
    try:
        remote = wire.decode_remote_config(signed.payload)
    except wire.WireError as exc:
        raise Refused(f"malformed configuration: {exc.reason}") from exc
    if remote.gw != gateway_id:
        raise Refused(f"configuration for another gateway ({remote.gw})")
    return remote


def check_settings(local: LocalSettings, remote: wire.RemoteConfig) -> GatewayConfig:
    """The GatewayConfig ``remote`` makes of the local file, or Refused naming the bad keys."""
    try:
        return local.with_remote(remote.settings)
    except ConfigError as exc:
        problems = "; ".join(f"{p.path}: {p.message}" for p in exc.problems[:5])
        more = f" (and {len(exc.problems) - 5} more)" if len(exc.problems) > 5 else ""
        raise Refused(f"invalid settings: {problems}{more}", remote.version) from exc
