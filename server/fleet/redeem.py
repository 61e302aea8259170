"""``POST /api/v1/enrol``'s work: a gateway presents a landlord's code and a
certificate signing request and leaves with its identity, or with nothing
(docs/enrolment.md).

The order is chosen so that a refusal costs little and a failure leaves
nothing behind: the limits first, then the body, then the CSR is signed
for a fresh gateway id (a garbage CSR is a 400 and the code is untouched),
then the code is claimed (enrol.claim; the loser of a race is refused like
any used code), then the broker login is made, then the records. A broker
or database failure after the claim releases it, removes what the broker
was given, and answers 503: the same code works on the next try.

Every attempt is counted by outcome for /metrics. A refused code gets one
answer whatever the reason, so the answer says nothing about which codes
exist; only the counters (and the log, with the code cut to its first
group) tell the reasons apart."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from rentgate import wire
from server.access.keys import SigningKey
from server.access.routes import ACCESS
from server.appkeys import ENGINE, SETTINGS
from server.auth.passwords import hash_password
from server.fleet import enrol
from server.fleet.appkeys import BROKER, gateway_ca
from server.fleet.ca import GatewayCa
from server.fleet.config_service import CONFIGS
from server.fleet.errors import BrokerError, CaError
from server.media.limits import OTHER_BODY_MAX
from server.web.body import parse_json
from server.web.errors import InvalidInput
from server.web.ratelimit import RateLimiter, retry_after_header
from server.web.transactions import write_transaction

log = logging.getLogger(__name__)

OUTCOMES = ("ok", "unknown", "expired", "used", "cancelled", "rate_limited", "bad_request", "broker_unavailable",
            "unavailable")
# The body: a CSR of at most wire.MAX_CSR_BYTES, the code and a host name,
# as JSON. The bound every JSON route has (a body without a declared length
# is cut here too); wire's models then bound each field.
MAX_BODY_BYTES = OTHER_BODY_MAX
# Longer than the provisioner's own timeout (10 s), so that its reason is the one logged.
BROKER_TIMEOUT_S = 15.0
REFUSED = {"error": "enrolment_refused",
           "detail": "this enrolment code cannot be used: it is mistyped, was used already, has expired or was "
                     "cancelled. Ask for a new code on the building's terminals page"}


@dataclass
class EnrolMetrics:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def count(self, outcome: str) -> None:
        self.counts[outcome] += 1

    def render(self) -> str:
        lines = ["# HELP rentgate_enrol_attempts_total Gateway enrolment attempts (POST /api/v1/enrol) by outcome.",
                 "# TYPE rentgate_enrol_attempts_total counter"]
        lines += [f'rentgate_enrol_attempts_total{{outcome="{k}"}} {v}' for k, v in self.counts.items()]
        return "\n".join(lines) + "\n"


@dataclass
class EnrolGuard:
    """The limits and the counters of one server process."""

    per_address: RateLimiter
    in_all: RateLimiter
    metrics: EnrolMetrics = field(default_factory=EnrolMetrics)


ENROL_GUARD = web.AppKey("fleet_enrol_guard", EnrolGuard)


def make_guard(per_address_per_minute: int, all_per_minute: int) -> EnrolGuard:
    return EnrolGuard(RateLimiter(per_address_per_minute, 60.0), RateLimiter(all_per_minute, 60.0))


class Refusal(Exception):
    """Ends an attempt with ``response``, counted as ``outcome``."""

    def __init__(self, outcome: str, response: web.Response) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.response = response


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _bad(field_name: str, detail: str) -> Refusal:
    return Refusal("bad_request", _json(400, {"error": "bad_parameter", "field": field_name, "detail": detail}))


def _unavailable(outcome: str, detail: str) -> Refusal:
    return Refusal(outcome, _json(503, {"error": outcome, "detail": detail}))


def _limit(request: web.Request, guard: EnrolGuard) -> None:
    settings = request.app[SETTINGS]
    wait = guard.per_address.hit(request.remote or "unknown")
    detail = f"at most {settings.enrol_attempts_per_address} enrolment attempts a minute from one address"
    if wait is None:
        wait = guard.in_all.hit("all")
        detail = "too many enrolment attempts at this server just now"
    if wait is not None:
        raise Refusal("rate_limited", _json(429, {"error": "too_many_requests", "detail": detail + "; try later"},
                                            {"Retry-After": retry_after_header(wait)}))


async def _body(request: web.Request) -> bytes:
    """The whole body, refusing it (413) as soon as it passes the bound: a
    body without a declared length is not buffered past it."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refusal("bad_request", _json(413, {
                "error": "too_large", "detail": f"an enrolment request is at most {MAX_BODY_BYTES} bytes"}))
        chunks.append(chunk)
    return b"".join(chunks)


def _read(raw: bytes) -> tuple[wire.EnrolRequest, str, str | None]:
    """The request, its normalised code and host name, or a 400 saying what is wrong."""
    try:
        parse_json(raw)  # the server's strict JSON rules (duplicate keys, depth, NUL)
    except InvalidInput as exc:
        raise _bad(exc.field, exc.problem) from None
    try:
        request = wire.decode_enrol_request(raw)
    except wire.WireError as exc:
        raise _bad("body", str(exc)[:300]) from None
    code = wire.normalise_enrol_code(request.code)
    if code is None:
        raise _bad("code", f"an enrolment code is {wire.ENROL_CODE_LEN} letters and digits, shown as "
                           "XXXX-XXXX-XXXX")
    hostname = (request.hostname or "").strip() or None
    if hostname is not None and any(not ch.isprintable() for ch in hostname):
        raise _bad("hostname", "holds control or invisible characters")
    return request, code, hostname


def _prerequisites(request: web.Request) -> tuple[SigningKey, GatewayCa]:
    """The allowlist key and the gateway CA, or a 503 naming the missing one:
    checked before the code is touched."""
    access = request.app[ACCESS]
    if access.key is None:
        raise _unavailable("unavailable", "the server has no allowlist signing key, so it cannot give a terminal "
                                          "its first configuration; the administrator must set one")
    try:
        ca = gateway_ca(request.app)
    except CaError as exc:
        log.error("enrolment refused: no gateway CA: %s", exc)
        raise _unavailable("unavailable", "the server has no certificate authority for terminals yet; "
                                          "the administrator must set one up") from None
    return access.key, ca


async def _release(request: web.Request, won: enrol.Claim) -> None:
    def run() -> None:
        with write_transaction(request.app[ENGINE]) as conn:
            enrol.release(conn, won)
    try:
        await asyncio.to_thread(run)
    except sa.exc.SQLAlchemyError:
        log.exception("enrolment %s: the code could not be released after a failure", won.enrolment_id)


async def attempt(request: web.Request) -> web.Response:
    """One enrolment attempt, start to answer; never raises a Refusal."""
    guard = request.app[ENROL_GUARD]
    try:
        response = await _attempt(request, guard)
    except Refusal as refusal:
        guard.metrics.count(refusal.outcome)
        return refusal.response
    guard.metrics.count("ok")
    return response


async def _attempt(request: web.Request, guard: EnrolGuard) -> web.Response:
    _limit(request, guard)
    body, code, hostname = _read(await _body(request))
    key, ca = _prerequisites(request)
    gateway_id = enrol.new_gateway_id()
    try:
        certificate, serial = await asyncio.to_thread(ca.sign_csr, body.csr, gateway_id)
    except CaError as exc:
        raise _bad("csr", str(exc)) from None
    engine, now = request.app[ENGINE], datetime.now(UTC)

    def claim() -> enrol.Claim | str:
        with write_transaction(engine) as conn:
            return enrol.claim(conn, now, enrol.code_digest(code))

    won = await asyncio.to_thread(claim)
    if isinstance(won, str):
        log.info("enrolment refused (%s) for code %s from %s", won, enrol.masked(code), request.remote)
        raise Refusal(won, _json(403, REFUSED))
    password = secrets.token_urlsafe(24)
    broker = request.app[BROKER]
    try:
        await asyncio.wait_for(broker.add_gateway(gateway_id, password), BROKER_TIMEOUT_S)
    except (BrokerError, OSError, TimeoutError) as exc:
        log.error("enrolment %s: the broker did not take gateway %s: %s", won.enrolment_id, gateway_id,
                  getattr(exc, "reason", None) or type(exc).__name__)
        await _release(request, won)
        raise _unavailable("broker_unavailable", "the message broker did not answer, so the terminal could not be "
                                                 "given its login; nothing was kept: try again with the same code "
                                                 "in a minute") from None
    try:
        recorded = await asyncio.to_thread(_record, engine, won, gateway_id, hostname, serial, password, key)
    except Exception:
        log.exception("enrolment %s: recording gateway %s failed; undoing", won.enrolment_id, gateway_id)
        try:
            await asyncio.wait_for(broker.remove_gateway(gateway_id), BROKER_TIMEOUT_S)
        except (BrokerError, OSError, TimeoutError):
            log.error("gateway %s: its broker login could not be removed after a failed enrolment", gateway_id)
        await _release(request, won)
        raise _unavailable("unavailable", "the terminal could not be recorded; nothing was kept: try again "
                                          "with the same code") from None
    log.info("enrolment %s: gateway %s enrolled in building %s (code %s)", won.enrolment_id, gateway_id,
             won.building_id, enrol.masked(code))
    _publish_after(request, gateway_id, recorded)
    settings = request.app[SETTINGS]
    answer = wire.EnrolResponse(
        gw=gateway_id, building=recorded.building, mqtt_url=enrol.gateway_mqtt_url(settings),
        mqtt_username=gateway_id, mqtt_password=password, ca_pem=ca.ca_pem, certificate_pem=certificate,
        allowlist_keys={key.key_id: key.public_b64}, server_url=settings.public_url.rstrip("/"),
        config=wire.decode_signed_config(recorded.config))
    return web.Response(body=answer.model_dump_json().encode(), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def _record(engine: sa.Engine, won: enrol.Claim, gateway_id: str, hostname: str | None, serial: str,
            password: str, key: SigningKey) -> enrol.Recorded:
    # The password's hash lets the same secret authenticate the gateway's
    # HTTP calls (snapshot uploads); scrypt, like users' passwords.
    secret_hash = hash_password(password)
    with write_transaction(engine) as conn:
        return enrol.record(conn, datetime.now(UTC), won, gateway_id=gateway_id, hostname=hostname,
                            certificate_serial=serial, secret_hash=secret_hash, key=key)


_BACKGROUND: set[asyncio.Task[Any]] = set()


def _publish_after(request: web.Request, gateway_id: str, recorded: enrol.Recorded) -> None:
    """The new gateway's allowlist and configuration version 1, published
    (retained) without holding up the answer: the gateway is not connected
    yet and has version 1 in the answer; the publishers also send both when
    it connects, and their catch-up would within seconds anyway."""
    jobs: list[Coroutine[Any, Any, bool]] = [request.app[ACCESS].publish(recorded.changes)]
    configs = request.app.get(CONFIGS)
    if configs is not None and configs.publisher is not None:
        jobs.append(configs.publisher.publish_latest([gateway_id]))
    for job in jobs:
        task = asyncio.create_task(job, name="enrolment-publish")
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)
