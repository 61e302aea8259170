"""The gateway's settings: one TOML file, validated, unknown keys rejected.

``load_config`` turns every problem into a :class:`ConfigProblem` naming the
key path (``devices.1.port``) and, where it can find it, the line."""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.access.config import AccessConfig
from gateway.camera.config import CamerasConfig
from gateway.devices import DeviceConfig
from gateway.devices.base import DeviceConfigBase
from gateway.errors import ConfigError, ConfigProblem
from gateway.terminals.config import TerminalSyncConfig
from rentgate import wire
from rentgate.mqtt import validate_url
from rentgate.validation_words import explain

log = logging.getLogger(__name__)

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutboxConfig(_Model):
    max_events: int = Field(default=1_000_000, ge=10)
    max_age_days: float = Field(default=30, gt=0)
    batch_max: int = Field(default=500, ge=1, le=wire.MAX_BATCH_EVENTS)
    inflight_max: int = Field(default=20_000, ge=1)
    ack_timeout_s: float = Field(default=15, gt=0)
    # "normal" survives a process crash but not a power cut (the WAL is not
    # synced at each commit).
    synchronous: Literal["full", "normal"] = "full"

    @property
    def max_age_s(self) -> float:
        return self.max_age_days * 86400


class GatewayConfig(_Model):
    gateway_id: str
    mqtt_url: str
    # Other nodes of a clustered broker (docs/clustering.md), tried in turn
    # when the one the gateway is on cannot be reached; same login and TLS
    # files. Empty: mqtt_url alone. Set in the file only, never remotely.
    mqtt_fallback_urls: list[str] = Field(default_factory=list, max_length=16)
    data_dir: Path
    # An enrolled gateway's own broker login and TLS files (written by
    # `rentgate gateway enroll`, docs/enrolment.md): the password in a file of
    # its own (mode 600), the private CA that signed the broker's certificate,
    # and the gateway's client certificate and key. Relative paths are taken
    # from the settings file's folder.
    mqtt_username: str | None = Field(default=None, min_length=1, max_length=64)
    mqtt_password_file: Path | None = None
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    heartbeat_s: float = Field(default=10, gt=0)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    devices: list[DeviceConfig] = Field(default_factory=list)
    # Local access decisions; off (observe only) until public_keys are given.
    access: AccessConfig = Field(default_factory=AccessConfig)
    # Door cameras: snapshot uploads and the crossing/grant window.
    cameras: CamerasConfig = Field(default_factory=CamerasConfig)
    # Terminals whose own user and card lists the gateway keeps equal to its
    # allowlist (docs/terminal-sync.md); needs [access] public_keys. Set in
    # the file only: it names password files.
    terminals: list[TerminalSyncConfig] = Field(default_factory=list, max_length=64)

    @field_validator("gateway_id")
    @classmethod
    def _gateway_id(cls, value: str) -> str:
        if not wire.is_gateway_id(value):
            raise ValueError(f"must match {wire.GATEWAY_ID_PATTERN} (it is an MQTT topic level)")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        return validate_url(value)

    @field_validator("mqtt_fallback_urls")
    @classmethod
    def _mqtt_fallback_urls(cls, value: list[str]) -> list[str]:
        return [validate_url(url) for url in value]

    @field_validator("devices")
    @classmethod
    def _unique_ids(cls, value: list[DeviceConfig]) -> list[DeviceConfig]:
        _once_each("device", [device.id for device in value])
        return value

    @field_validator("terminals")
    @classmethod
    def _unique_terminals(cls, value: list[TerminalSyncConfig]) -> list[TerminalSyncConfig]:
        _once_each("terminal", [terminal.id for terminal in value])
        return value

    @model_validator(mode="after")
    def _terminals_need_allowlist(self) -> GatewayConfig:
        if self.terminals and not self.access.public_keys:
            raise ValueError("terminals are kept from the signed allowlist: set [access] public_keys")
        devices = {d.id for d in self.devices}
        kept = []
        for terminal in self.terminals:
            # Both report a state under their id; name the terminal as its
            # push listener's route does, not as the listener itself.
            if terminal.id in devices:
                raise ValueError(f"terminal id {terminal.id!r} is also a device id")
            if terminal.catch_up_events and (problem := _events_under_another_id(terminal, self.devices)):
                if "catch_up_events" in terminal.model_fields_set:
                    raise ValueError(problem)
                # On by default only: a configuration written before it was the
                # default must not stop the gateway (and its doors) at an upgrade.
                log.warning("%s; catch_up_events is off for it until then", problem)
                terminal = terminal.model_copy(update={"catch_up_events": False})
            kept.append(terminal)
        object.__setattr__(self, "terminals", kept)  # frozen: the checked list replaces the given one
        return self

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.sqlite3"

    def mqtt_password(self) -> str | None:
        """The password in ``mqtt_password_file`` (read at each connect set-up,
        so a rotated file is picked up on restart); None without one."""
        if self.mqtt_password_file is None:
            return None
        return self.mqtt_password_file.read_text(encoding="utf-8").strip()


# Top-level keys the server may set remotely (wire.RemoteConfig.settings).
# Identity (id, data folder, broker login, TLS files) is never among them, nor
# the allowlist keys the gateway trusts: a signed configuration cannot
# change whom the gateway believes.
REMOTE_KEYS = frozenset({"devices", "cameras", "access", "heartbeat_s", "outbox", "broker_url"})
_PATH_KEYS = ("data_dir", "mqtt_password_file", "mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file")


def _once_each(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise ValueError(f"{what} id {item!r} appears twice")
        seen.add(item)


def _is_file_key(key: object) -> bool:
    return isinstance(key, str) and (key.endswith("_file") or key.endswith("_dir"))


def _files_in(tables: Any, base_dir: Path) -> Any:
    """``devices`` or ``terminals`` with each table's relative file paths
    (``*_file``, ``*_dir``) taken from the settings file's folder, as
    ``data_dir`` is, so a service's working directory does not matter. A
    copy: the document a remote configuration is compared with keeps what the
    file says."""
    if not isinstance(tables, list):
        return tables
    out = []
    for table in tables:
        if isinstance(table, dict):
            table = {key: str(base_dir / value) if _is_file_key(key) and isinstance(value, str)
                     and value and not Path(value).is_absolute() else value for key, value in table.items()}
        out.append(table)
    return out


def _remote_device_files(local: dict[str, Any], devices: Any) -> list[ConfigProblem]:
    """A remote configuration may replace ``devices``, but not name files on
    the gateway: a device's ``password_file`` is read and sent to the device's
    address (with digest authentication an address the configuration also
    names could try the secret offline), its ``state_file`` written. Each such
    key must stay what the gateway's own settings file says for that device
    (by id); setting one is refused."""
    if not isinstance(devices, list):
        return []
    raw = local.get("devices")
    own = {d.get("id"): d for d in raw if isinstance(d, dict)} if isinstance(raw, list) else {}
    problems = []
    for i, device in enumerate(devices):
        if not isinstance(device, dict):
            continue
        mine = own.get(device.get("id"), {})
        for key, value in device.items():
            if _is_file_key(key) and mine.get(key) != value:
                problems.append(ConfigProblem(
                    f"devices.{i}.{key}", "a file on the gateway may not be named by a remote configuration; "
                    "set it in the gateway's own settings file"))
    return problems


def merge_remote(local: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The settings document a remote configuration makes of the local one:
    each remote key replaces the local key of that name, except the tables
    ``access`` and ``cameras``, whose keys replace the file's one by one (the
    file keeps what the server does not set, such as the cameras' upload URL
    enrolment wrote, and always the trusted keys); ``broker_url``
    (``mqtt[s]://host[:port]``, no login) replaces the scheme, host and port
    of ``mqtt_url`` and keeps its login. Raises ConfigError for keys that may
    not be set remotely or a bad ``broker_url``."""
    problems = [ConfigProblem(str(key), "may not be set by a remote configuration")
                for key in settings if key not in REMOTE_KEYS]
    access = settings.get("access")
    if isinstance(access, dict) and "public_keys" in access:
        problems.append(ConfigProblem("access.public_keys", "the trusted keys may not be set remotely"))
    problems += _remote_device_files(local, settings.get("devices"))
    doc = dict(local)
    for key, value in settings.items():
        if key == "broker_url":
            try:
                doc["mqtt_url"] = _with_broker(str(doc.get("mqtt_url", "")), value)
            except ValueError as exc:
                problems.append(ConfigProblem("broker_url", str(exc)))
        elif key in ("access", "cameras") and isinstance(value, dict):
            raw = local.get(key)
            local_table: dict[str, Any] = raw if isinstance(raw, dict) else {}
            doc[key] = {**local_table, **{k: v for k, v in value.items() if k != "public_keys"}}
        else:
            doc[key] = value
    if problems:
        raise ConfigError("remote configuration", problems)
    return doc


def _with_broker(mqtt_url: str, broker_url: object) -> str:
    from urllib.parse import urlsplit

    if not isinstance(broker_url, str) or len(broker_url) > 300:
        raise ValueError("must be text like mqtts://broker.example.cn:8883")
    new = urlsplit(validate_url(broker_url))
    if new.username or new.password or new.path not in ("", "/"):
        raise ValueError("only the scheme, host and port: the login stays the gateway's own")
    old = urlsplit(mqtt_url)
    login = old.netloc.rpartition("@")[0]
    return f"{new.scheme}://{login + '@' if login else ''}{new.netloc}"


def parse_remote(local: dict[str, Any], settings: dict[str, Any], *, source: str = "remote configuration",
                 base_dir: Path | None = None) -> GatewayConfig:
    """Validate a remote configuration exactly as the gateway will run it:
    merged over ``local`` (the parsed TOML document), then checked like a
    settings file. Raises ConfigError naming each problem's key path."""
    doc = merge_remote(local, settings)
    if base_dir is not None:
        for key in _PATH_KEYS:
            if isinstance(doc.get(key), str) and not Path(doc[key]).is_absolute():
                doc[key] = str(base_dir / doc[key])
        if "devices" in doc:
            doc["devices"] = _files_in(doc["devices"], base_dir)
    try:
        return GatewayConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(source, [ConfigProblem(".".join(str(k) for k in _loc(err["loc"], err["type"])) or "<root>",
                                                 explain(err)) for err in exc.errors()]) from exc


def remote_problems(gateway_id: str, settings: dict[str, Any]) -> list[ConfigProblem]:
    """For the server: what a gateway would refuse in ``settings``, checked
    over a neutral local identity (the server does not know the box's)."""
    local = {"gateway_id": gateway_id, "mqtt_url": "mqtts://gateway@broker.invalid:8883", "data_dir": "/var/lib/rentgate"}
    try:
        parse_remote(local, settings)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a TOML file; a relative ``data_dir`` is taken from
    the file's folder, so a service's working directory does not matter."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [ConfigProblem("<file>", f"cannot read: {exc.strerror or exc}")]) from exc
    return parse_config(text, source=str(path), base_dir=path.parent)


def parse_config(text: str, *, source: str = "<config>", base_dir: Path | None = None) -> GatewayConfig:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigProblem("<toml>", str(exc))]) from exc
    if base_dir is not None:
        for key in _PATH_KEYS:
            value = doc.get(key)
            if isinstance(value, str) and not Path(value).is_absolute():
                doc[key] = str(base_dir / value)
        for tables in ("devices", "terminals"):
            if tables in doc:
                doc[tables] = _files_in(doc[tables], base_dir)
    try:
        return GatewayConfig.model_validate(doc)
    except ValidationError as exc:
        problems = [_problem(text, _loc(err["loc"], err["type"]), explain(err)) for err in exc.errors()]
        raise ConfigError(source, problems) from exc


def _loc(loc: tuple[int | str, ...], error_type: str) -> tuple[int | str, ...]:
    # With several device types, a bad or missing type is reported on the
    # table rather than on its key: point at the key the user has to fix.
    if error_type in ("union_tag_invalid", "union_tag_not_found"):
        return (*loc, "type")
    return loc


def _problem(text: str, loc: tuple[int | str, ...], msg: str) -> ConfigProblem:
    # A discriminated union puts the tag in the location ("devices.0.em4100.port");
    # the user wrote no such key.
    tags = set(_device_types())
    keys = [p for i, p in enumerate(loc) if not (i == 2 and loc[0] == "devices" and p in tags)]
    return ConfigProblem(".".join(str(k) for k in keys) or "<root>", msg, _find_line(text, keys))


def _device_types() -> list[str]:
    from gateway.devices import adapter_types

    return list(adapter_types())


def _find_line(text: str, loc: list[int | str]) -> int | None:
    """Best effort: the line that sets the key, or the table that lacks it.
    Handles the shapes this file uses (top-level keys, ``[table]``, ``[[array]]``)."""
    lines = text.splitlines()
    start, end = 0, len(lines)
    keys = list(loc)
    found: int | None = None
    if len(keys) >= 2 and isinstance(keys[0], str) and isinstance(keys[1], int):
        headers = [i for i, line in enumerate(lines) if re.match(rf"\s*\[\[\s*{re.escape(keys[0])}\s*\]\]", line)]
        if keys[1] >= len(headers):
            return None
        start = headers[keys[1]]
        found = start + 1
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        keys = keys[2:]
    elif len(keys) >= 2 and isinstance(keys[0], str):
        header = next((i for i, line in enumerate(lines) if re.match(rf"\s*\[\s*{re.escape(keys[0])}\s*\]", line)), None)
        if header is not None:
            start, found = header, header + 1
            end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
            keys = keys[1:]
    else:
        end = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    if keys and isinstance(keys[0], str):
        pattern = re.compile(rf"\s*{re.escape(keys[0])}\s*=")
        for i in range(start, end):
            if pattern.match(lines[i]):
                return i + 1
    return found


def describe(config: GatewayConfig) -> dict[str, Any]:
    """The validated settings as JSON-ready data (for ``check-config --json``)."""
    return config.model_dump(mode="json")


def _events_under_another_id(terminal: TerminalSyncConfig, devices: list[DeviceConfigBase]) -> str | None:
    """A terminal whose missed events are fetched (catch_up_events) must have
    its pushed or streamed events reported under its own id: each event is
    stored once per device (gateway.outbox.Sourced), so under another id the
    catch-up would store every pushed event a second time. What is wrong, or None."""
    from urllib.parse import urlsplit

    host = urlsplit(terminal.url).hostname
    for device in devices:
        if device.type == "hikvision_isapi" and not getattr(device, "terminals", None):
            return (f"terminal {terminal.id!r} has its missed events fetched (catch_up_events), and push listener "
                    f"{device.id!r} reports every terminal as {device.id!r}: route the terminal to its id "
                    f"([devices.terminals.\"<its IP, MAC or deviceID>\"] device = {terminal.id!r}), or set "
                    f"catch_up_events = false")
        if device.type == "hikvision_stream" and urlsplit(str(getattr(device, "url", ""))).hostname == host:
            return (f"terminal {terminal.id!r} is also streamed by device {device.id!r}: its events would be stored "
                    f"under both ids; set catch_up_events = false for it, or use its push instead of the stream")
    return None
