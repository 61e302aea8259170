"""Server settings: one validated model, read from ``RENTGATE_*`` variables,
overridable by command-line flags.

Every ``RENTGATE_*`` name the project reads is known here: the server's own
(one per field of ServerSettings, derived, so a new field is known at once)
and OTHER_VARIABLES, those other parts read. A ``RENTGATE_*`` variable that is
neither is a mistake (``RENTGATE_DATABSE_URL`` would otherwise leave the
server on its default SQLite file, silently), so reading the settings refuses
it, with the nearest known name. tests/test_settings_names.py greps the
repository for RENTGATE_ names, so this list cannot drift from the code.
docs/settings.md lists them all."""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from rentgate.lang import tr
from rentgate.validation_words import explain
from server.errors import SettingsError

ENV_PREFIX = "RENTGATE_"
# Names an operator chooses for a device's secret on a gateway (a terminal's
# admin password: ``password_env`` in a gateway config). They hold no
# setting, so the server does not call them typos; a gateway reads only
# names in this family, so a configuration cannot point it at any other
# variable of its environment.
SECRET_PREFIX = "RENTGATE_SECRET_"

# RENTGATE_* variables other parts read, and where: not server settings, but
# not mistakes either. (A dict, not imports of each module's constant: the
# server must not import the tests, nor the plate renderer to start.)
OTHER_VARIABLES: dict[str, str] = {
    "RENTGATE_LANG": "rentgate/lang.py: the language of what the rentgate command says (zh or en)",
    "RENTGATE_LOG_LEVEL": "rentgate/logs.py: DEBUG, INFO or WARNING for every rentgate command",
    "RENTGATE_PLATE_FONT": "server/plates/fonts.py: the CJK font door plates are printed with",
    "RENTGATE_REQUIRE_SERVICES": "tests/services.py: 1 makes tests fail, not skip, without Mosquitto, "
                                 "PostgreSQL or Chromium (CI)",
    "RENTGATE_PG_OS_USER": "tests/services.py: the system user the tests' PostgreSQL runs as",
    "RENTGATE_DYNSEC_PLUGIN": "tests/services.py: where Mosquitto's dynamic security plugin is, when not in "
                              "the usual library folders",
}
# The server's flags that override a setting, by field (the rest have none).
FLAGS: dict[str, str] = {"database_url": "--database-url", "mqtt_url": "--mqtt-url", "http_host": "--host",
                         "http_port": "--port", "role": "--role"}
DEFAULT_SOURCE = "default"


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
    # Other nodes of a clustered broker, comma-separated, tried in turn when
    # mqtt_url cannot be reached (docs/clustering.md). Unset: mqtt_url alone.
    mqtt_fallback_urls: str | None = None
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
    # A hole in a gateway's sequence numbers wider than this is a jump, not a
    # gap: recorded as a dead letter and never asked for (docs/wire.md). Far
    # above any outbox backlog (a million events by default).
    max_seq_jump: int = Field(default=1_000_000_000, ge=1, le=2**63 - 1)
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
    # Raw door events older than this are deleted by the purge job, which
    # keeps per-day counts (server/retention, docs/retention.md).
    event_retention_days: int = Field(default=180, ge=1, le=36_500)
    # How often the purge job looks for events past the retention period.
    purge_interval_s: float = Field(default=3600.0, gt=0.0)
    # Camera snapshots (faces at the door) are deleted this long after they
    # arrived or were taken, whichever is earlier (server/snapshots,
    # docs/cameras-privacy.md); their events stay.
    snapshot_retention_days: int = Field(default=30, ge=1, le=3650)
    # Ed25519 private key that signs the audit log's checkpoints
    # (docs/audit.md). Unset: generated next to a SQLite database.
    audit_key_file: str | None = None
    # A signed checkpoint is written this often when the log has grown.
    audit_checkpoint_interval_s: float = Field(default=60.0, gt=0.0)
    # Ed25519 private key that signs watch alerts to police webhooks
    # (docs/police.md). Unset: generated next to a SQLite database.
    police_signing_key_file: str | None = None
    # Police access tokens (OAuth2 client credentials) live this long.
    police_token_ttl_s: int = Field(default=600, ge=60, le=3600)
    # The longest a watch may be set for.
    police_watch_max_days: int = Field(default=90, ge=1, le=365)
    # The fleet (server/fleet, docs/fleet.md). The broker's dynamic-security
    # admin login, as an MQTT URL: each enrolled gateway gets its own broker
    # login and topics there. Unset: gateways are not isolated at the broker
    # (the embedded demo broker); `server check-config` warns.
    broker_admin_url: str | None = None
    # The broker as gateways reach it (usually mqtts://host:8883); unset: the
    # server's own mqtt_url without its login.
    gateway_mqtt_url: str | None = None
    # The gateway CA (ca.pem, ca.key) that signs gateways' certificates and
    # the broker's. Unset: generated beside a SQLite database.
    gateway_ca_dir: str | None = None
    # How long a landlord's enrolment code is valid.
    enrol_code_ttl_s: int = Field(default=600, ge=60, le=3600)
    # Enrolment attempts (POST /api/v1/enrol) allowed per minute from one
    # address, and from all addresses together (docs/enrolment.md).
    enrol_attempts_per_address: int = Field(default=10, ge=1, le=10_000)
    enrol_attempts_per_minute: int = Field(default=120, ge=1, le=100_000)
    # How long a new configuration must stay healthy at the gateway before
    # it keeps it (otherwise it rolls back).
    config_gate_s: float = Field(default=30.0, ge=5.0, le=600.0)
    # A gateway silent for this long counts as offline even without its last will.
    fleet_offline_after_s: float = Field(default=90.0, ge=10.0)
    # Outbox depth past which a gateway is flagged on the fleet page and in metrics.
    fleet_outbox_alert: int = Field(default=10_000, ge=1)
    # Scaling out (docs/scaling.md). What this process does: "all" (one
    # process does everything, the default), "ingest" (MQTT events into the
    # database, nothing else; run several), "web" (pages and APIs; run
    # several behind a load balancer), "reconcile" (reconciliation, police
    # watches, retention, fleet and allowlist publishing: run exactly one).
    role: Literal["all", "ingest", "web", "reconcile"] = "all"
    # Ingest workers share the events through this MQTT shared-subscription
    # group ($share/<group>/...): each message goes to one of them. Unset: a
    # plain subscription, right for a single ingest process.
    ingest_share_group: str | None = Field(default=None, min_length=1, max_length=64,
                                           pattern=r"^[A-Za-z0-9_\-]+$")
    # Where ingest reads events: "mqtt" (the broker at mqtt_url, the
    # default) or "jetstream" (a NATS JetStream work queue at nats_url, for a
    # clustered NATS deployment: docs/clustering.md).
    ingest_source: Literal["mqtt", "jetstream"] = "mqtt"
    # NATS servers for ingest_source=jetstream: nats://host:4222, several
    # separated by commas.
    nats_url: str | None = Field(default=None, validate_default=True)
    # The JetStream stream's copies (None: 3 when the NATS server is in a
    # cluster, 1 alone), its bounds (past them new messages are refused and
    # the gateways' outboxes keep them), and how long a worker may hold a
    # message before JetStream gives it to another (docs/clustering.md).
    nats_replicas: int | None = Field(default=None, ge=1, le=5)
    nats_stream_max_bytes: int = Field(default=8 * 1024**3, ge=1024**2)
    nats_stream_max_age_s: float = Field(default=7 * 86400.0, ge=60.0)
    nats_ack_wait_s: float = Field(default=30.0, ge=1.0, le=3600.0)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        value = normalise_database_url(value.strip())
        if not value.startswith(("sqlite:", "postgresql+psycopg:")):
            raise ValueError(tr("只支持 sqlite:/// 和 postgresql:// 数据库",
                                "only sqlite:/// and postgresql:// databases are supported"))
        return value

    @field_validator("mqtt_fallback_urls")
    @classmethod
    def _mqtt_fallback_urls(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from rentgate.mqtt import validate_url

        for url in _comma_list(value):
            try:
                validate_url(url)
            except ValueError as exc:
                raise ValueError(str(exc).replace(url, redact(url))) from None
        return value

    def mqtt_fallbacks(self) -> list[str]:
        """mqtt_fallback_urls as a list (LinkSettings.fallback_urls)."""
        return _comma_list(self.mqtt_fallback_urls or "")

    @field_validator("nats_url")
    @classmethod
    def _nats_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("ingest_source") == "jetstream":
                raise ValueError(tr("RENTGATE_INGEST_SOURCE=jetstream 需要 NATS 服务器：nats://主机:4222，多个用逗号分开",
                                    "RENTGATE_INGEST_SOURCE=jetstream needs the NATS servers: nats://host:4222, "
                                    "several separated by commas"))
            return None
        nats_urls(value)
        return value

    @field_validator("mqtt_url", "broker_admin_url", "gateway_mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from rentgate.mqtt import validate_url

        try:
            return validate_url(value)
        except ValueError as exc:
            # The broker's words quote the URL, password and all.
            raise ValueError(str(exc).replace(value, redact(value))) from None


def _comma_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def nats_urls(value: str) -> list[str]:
    """``nats://host:4222`` (or ``tls://``), several separated by commas,
    as a list; ValueError saying which one is wrong."""
    urls = _comma_list(value)
    if not urls:
        raise ValueError(tr("没有给出 NATS 服务器（nats://主机:4222，多个用逗号分开）",
                            "no NATS server given (nats://host:4222, several separated by commas)"))
    for url in urls:
        parts = urlsplit(url)
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme not in ("nats", "tls") or not parts.hostname or not port_ok:
            raise ValueError(tr(f"不是 NATS 服务器地址：{redact(url)}（应为 nats://主机:4222 或 tls://主机:4222）",
                                f"not a NATS server URL: {redact(url)} (nats://host:4222 or tls://host:4222)"))
    return urls


def variable(field: str) -> str:
    """``RENTGATE_HTTP_PORT`` for ``http_port``."""
    return ENV_PREFIX + field.upper()


def setting_variables() -> dict[str, str]:
    """The server's own variables: name -> field."""
    return {variable(field): field for field in ServerSettings.model_fields}


def known_variables() -> frozenset[str]:
    """Every RENTGATE_* name the project reads."""
    return frozenset(setting_variables()) | frozenset(OTHER_VARIABLES)


def redact(value: str) -> str:
    """A URL's password as ``***`` (``mqtt://server:***@host``). Everything
    between the first ``:`` after ``//`` and the last ``@`` goes: a password
    holding ``/`` or ``@`` (unescaped, so the URL is wrong anyway) is hidden
    too, at the price of hiding a little more than needed."""
    scheme, sep, rest = value.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return value
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def shown(value: object, limit: int = 80) -> str:
    """A value as a message may show it: password redacted, characters a
    terminal would act on escaped, long ones cut."""
    text = redact(str(value))
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the settings. ``name``: the variable or flag as
    the person wrote it; ``code``: stable, for --json (unknown_variable,
    lower_case_variable, a pydantic error type such as int_parsing, or a
    start-up check's own); ``message``: in the command's language, never
    with a password; ``suggestion``: the known name a misspelt one is
    nearest to."""

    name: str
    code: str
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        return f"{self.name}{tr('：', ': ')}{self.message}"

    def as_json(self) -> dict[str, str | None]:
        return {"name": self.name, "code": self.code, "message": self.message, "suggestion": self.suggestion}


class SettingsProblems(SettingsError):
    """Settings that cannot be used: every problem found, not only the first,
    so one correction round fixes them all."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class LoadedSettings:
    settings: ServerSettings
    # Where each field's value came from: its variable, a flag or "default".
    sources: dict[str, str]


def _nearest(suffix: str) -> str | None:
    """The known name whose part after RENTGATE_ is nearest ``suffix``.
    Compared without the prefix, which every name shares and which would
    make any two names look alike."""
    known = {name.removeprefix(ENV_PREFIX): name for name in known_variables()}
    found = difflib.get_close_matches(suffix, list(known), n=1, cutoff=0.6)
    return known[found[0]] if found else None


def _misspelt_prefix(upper: str) -> str | None:
    """``RENTGAET_MQTT_URL``: a known name behind a misspelt prefix, or None.
    Both halves must be close, so another program's variable is never taken
    for one of ours."""
    head, sep, tail = upper.partition("_")
    if not sep or head + "_" == ENV_PREFIX:
        return None
    if difflib.SequenceMatcher(None, head, ENV_PREFIX[:-1]).ratio() < 0.75:
        return None
    known = {name.removeprefix(ENV_PREFIX): name for name in known_variables()}
    found = difflib.get_close_matches(tail, list(known), n=1, cutoff=0.8)
    return known[found[0]] if found else None


def _unknown(name: str, suggestion: str | None) -> Problem:
    message = explain({"type": "extra_forbidden"})
    if suggestion is not None:
        message += tr(f"；是不是 {suggestion}？", f"; did you mean {suggestion}?")
    else:
        message += tr("；全部设置见 docs/settings.md", "; docs/settings.md lists every setting")
    return Problem(name, "unknown_variable", message, suggestion)


def unknown_variables(environ: Mapping[str, str]) -> list[Problem]:
    """RENTGATE_* variables nobody reads: misspelt, lower case, or with a
    misspelt prefix. Empty ones too: ``RENTGATE_DATABSE_URL=`` is still a typo."""
    known = known_variables()
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if name in known or name.startswith(SECRET_PREFIX):
            continue
        if upper in known:
            problems.append(Problem(name, "lower_case_variable",
                                    tr(f"变量名要全部大写：{upper}", f"variable names are upper case: {upper}"), upper))
        elif upper.startswith(ENV_PREFIX):
            problems.append(_unknown(name, _nearest(upper.removeprefix(ENV_PREFIX))))
        elif (suggestion := _misspelt_prefix(upper)) is not None:
            problems.append(_unknown(name, suggestion))
    return problems


def read_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> LoadedSettings:
    """Settings from ``RENTGATE_<FIELD>`` variables, then non-None
    ``overrides`` (command-line flags, by field name) on top, with where each
    value came from. SettingsProblems names every unknown variable and every
    value that cannot be used, with what was expected."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in ServerSettings.model_fields:
        raw = env.get(variable(name))
        if raw is not None and raw != "":
            values[name], sources[name] = raw, variable(name)
    for name, value in overrides.items():
        if value is not None:
            values[name], sources[name] = value, FLAGS.get(name, "--" + name.replace("_", "-"))
    problems = unknown_variables(env)
    settings = None
    try:
        settings = ServerSettings(**values)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            source = sources.get(field, variable(field))
            message = explain(err)
            if field in values:
                message += tr(f"（现在是 {shown(values[field])}）", f" (given: {shown(values[field])})")
            problems.append(Problem(source, str(err["type"]), message))
    if problems or settings is None:
        raise SettingsProblems(problems)
    return LoadedSettings(settings, {name: sources.get(name, DEFAULT_SOURCE) for name in ServerSettings.model_fields})


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerSettings:
    """read_settings' settings alone."""
    return read_settings(environ, **overrides).settings
