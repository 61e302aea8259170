"""Server settings: one validated model, read from ``RENTGATE_*`` variables,
overridable by command-line flags."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rentgate.validation_words import explain
from server.errors import SettingsError

ENV_PREFIX = "RENTGATE_"


def normalise_database_url(url: str) -> str:
    """Plain ``postgresql://`` means psycopg 3 here, not SQLAlchemy's psycopg2 default."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    return url


def _default_client_id() -> str:
    return f"rentgate-server-{socket.gethostname()}"[:64]


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = "sqlite:///var/rentgate.db"
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    # Stable across restarts: the broker keeps this client's persistent session
    # and queues events for it while the server is down.
    mqtt_client_id: str = Field(default_factory=_default_client_id, min_length=1, max_length=64)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    ingest_batch_messages: int = Field(default=2000, ge=1, le=100_000)
    ingest_linger_s: float = Field(default=0.0, ge=0.0, le=5.0)
    # Past this many messages waiting for the database, new ones are dropped
    # unacknowledged: the gateways still hold them and send them again.
    ingest_max_pending: int = Field(default=200_000, ge=100)
    max_payload_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    gap_resend_delay_s: float = Field(default=5.0, gt=0.0)
    gap_resend_max_interval_s: float = Field(default=300.0, gt=0.0)
    commit_retry_max_s: float = Field(default=10.0, gt=0.0)
    # Ed25519 private key (PEM or base64) that signs allowlists. Unset: a key
    # is generated next to a SQLite database; PostgreSQL servers need one.
    allowlist_key_file: str | None = None
    # Unset: derived from the public key, so a new key gets a new id.
    allowlist_key_id: str | None = Field(default=None, min_length=1, max_length=64)
    # How long a revoked credential stays in snapshots' `revoked` list.
    allowlist_revoked_keep_days: float = Field(default=30.0, gt=0.0)
    # 32 random bytes in base64 that protect identity numbers at rest
    # (server/registry/pii.py). Unset: generated next to a SQLite database.
    pii_key_file: str | None = None
    # Plate-signing keyring (server/plates/keys.py). Unset: generated next to
    # a SQLite database.
    plate_key_file: str | None = None
    # Where scanned plates point: the server's address as phones reach it.
    # QR codes hold <public_url>/p/<token>.
    public_url: str = "http://127.0.0.1:8080"
    # Uploaded photos (patrols, problem reports). Unset: "media" next to a
    # SQLite database; PostgreSQL servers need it set.
    media_dir: str | None = None
    # TOML file overriding the city's rules (server/rules.py); unset: defaults.
    rules_file: str | None = None
    # How often reconciliation sweeps every registration (cases that depend
    # on time passing: deadlines, silence, unanswered prompts).
    reconcile_sweep_interval_s: float = Field(default=3600.0, gt=0.0)
    # Login sessions (cookies) last this long without use.
    session_idle_hours: float = Field(default=12.0, gt=0.0)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        value = normalise_database_url(value.strip())
        if not value.startswith(("sqlite:", "postgresql+psycopg:")):
            raise ValueError("only sqlite:/// and postgresql:// databases are supported")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        from rentgate.mqtt import validate_url

        return validate_url(value)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerSettings:
    """Settings from ``RENTGATE_<FIELD>`` variables, then non-None ``overrides``
    (command-line flags) on top."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in ServerSettings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServerSettings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()}: {explain(err)}" for err in exc.errors()
        )
        raise SettingsError(problems) from exc
