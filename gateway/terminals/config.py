"""Settings of the terminals whose user and card lists the gateway keeps
(the ``[[terminals]]`` tables of a gateway config, docs/terminal-sync.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.terminals.errors import TerminalError
from rentgate import wire
from rentgate.zones import check_zone


class TerminalSyncConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["hikvision_isapi"] = "hikvision_isapi"
    # The terminal as the status names it; the push listener's terminal route
    # (or device) id for the same box, so both read as one device.
    id: wire.DeviceId
    # http(s)://host[:port] of the terminal's web interface.
    url: str
    username: str = Field(default="admin", min_length=1, max_length=32)
    # The admin password, from a file (mode 600) or an environment variable;
    # never in this file, never logged.
    password_file: Path | None = None
    # Only RENTGATE_SECRET_* (server/settings.py SECRET_PREFIX): a
    # configuration, a remote one too, cannot name any other variable.
    password_env: str | None = None
    # The doors this terminal opens: it holds the allowlist entries for any of
    # them, and entries that name no door (every door of the gateway).
    doors: list[wire.DeviceId] = Field(min_length=1, max_length=16)
    # Users on the terminal the gateway did not write (a landlord's own admin
    # card, the installer's test user): "keep" leaves them and reports how
    # many there are; "remove" makes the terminal hold the allowlist only.
    foreign_users: Literal["keep", "remove"] = "keep"
    # The name written on every user record: it marks the records as the
    # gateway's, and says nothing about the person on a stairwell box.
    label: str = Field(default="rentgate", min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    # The terminal's clock zone: validity times are written in its local time.
    timezone: str = "Asia/Shanghai"
    batch_size: int = Field(default=30, ge=1, le=100)
    request_timeout_s: float = Field(default=10, gt=0, le=120)
    probe_interval_s: float = Field(default=10, gt=0, le=3600)
    full_sync_interval_s: float = Field(default=6 * 3600, gt=0)
    retry_max_s: float = Field(default=60, gt=0, le=3600)
    # After a refused login: terminals lock an address out after a few
    # failures, the landlord's own admin login too, so wait this long.
    login_retry_s: float = Field(default=600, gt=0, le=86400)
    # Fetch through AcsEvent search the events that did not arrive by push:
    # after start, an outage or a reboot, when a gap in the pushed serials
    # stays open, and every catch_up_interval_s. Each event is stored once
    # whichever way it came (docs/terminal-sync.md, "Events").
    catch_up_events: bool = True
    catch_up_interval_s: float = Field(default=300, gt=0, le=86400)
    # Its clock may be this far off the gateway's before its event times are
    # no longer believed (gateway/terminals/clock.py).
    clock_tolerance_s: float = Field(default=120, ge=1, le=86400)
    # The door caught-up events are reported for (default: the first door).
    event_door: wire.DeviceId | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError("must be http(s)://host[:port] with no path")
        if parts.username or parts.password:
            raise ValueError("no login in the URL: username and password_file / password_env")
        return value.rstrip("/")

    @field_validator("password_env")
    @classmethod
    def _secret_name(cls, value: str | None) -> str | None:
        if value is not None and re.fullmatch(r"RENTGATE_SECRET_[A-Z0-9_]{1,48}", value) is None:
            raise ValueError("must name a variable RENTGATE_SECRET_<NAME> (capitals, digits, _; "
                             "docs/terminal-sync.md)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @model_validator(mode="after")
    def _one_secret(self) -> TerminalSyncConfig:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("give exactly one of password_file and password_env")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def door(self) -> str:
        return self.event_door or self.doors[0]

    def password(self) -> str:
        """Read at each session start, so a changed password needs no restart."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise TerminalError(self.id, f"cannot read password_file: {exc.strerror or exc}") from exc
        assert self.password_env is not None
        value = os.environ.get(self.password_env)
        if not value:
            raise TerminalError(self.id, f"environment variable {self.password_env} is not set")
        return value
