"""The gateway's ``[cameras]`` table: where snapshots go and how crossings
are matched with grants. Each camera itself is a ``[[devices]]`` entry of
``type = "camera"`` (gateway/devices/camera.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CamerasConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The rentgate server's base URL for snapshot uploads; without it the
    # snapshots stay on the gateway (a warning at start).
    server_url: str | None = None
    # A grant may come this long before a person crosses the door line...
    grant_before_s: float = Field(default=10.0, ge=0, le=120)
    # ...or this long after (a terminal's verdict that lands late).
    grant_after_s: float = Field(default=2.0, ge=0, le=30)
    # An unmatched person who crosses within this long after someone else's
    # grant followed them through the open door (tailgating); later than
    # that, on nobody's grant (an unidentified entry). About the lock's
    # unlock time plus a step or two.
    follow_s: float = Field(default=5.0, ge=0, le=60)
    # Snapshots not uploaded after this long are deleted, as are the oldest
    # beyond snapshot_max_files.
    snapshot_keep_days: float = Field(default=7.0, gt=0, le=365)
    snapshot_max_files: int = Field(default=5000, ge=10, le=1_000_000)
    upload_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Retries after a connection error, 404 or 5xx back off up to this.
    upload_retry_max_s: float = Field(default=300.0, ge=1, le=86400)

    @field_validator("server_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host, e.g. https://rentgate.example.org")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return value.rstrip("/")
