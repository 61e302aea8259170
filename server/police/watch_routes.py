"""The watch routes (docs/police-watches.md): set, list and withdraw a
watch, and the public key that signs its alerts. The watch routes run
inside ``police_api`` (server/police/context.py), which checks the caller's
``watch`` scope and that the purpose permits a watch, rate-limits and
audits every call; a watch id names only the caller's own watches, looked
up with the caller's user id, so another client's id answers exactly like
one that does not exist."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.appkeys import ENGINE, SETTINGS
from server.auth.policy import allow, public
from server.db.read_pool import read_only, with_retry
from server.police import watch_api_doc as doc
from server.police import watches
from server.police.api_doc import PURPOSE_QUERY
from server.police.appkeys import RULES_ZONE
from server.police.context import PoliceAnswer, PoliceContext, police_api
from server.police.purposes import WATCH
from server.police.signing_key import WEBHOOK_KEY, WEBHOOK_KEY_PROBLEM
from server.police.watch_matcher import MATCHER
from server.registry.api_input import id_number, when
from server.registry.appkeys import VAULT, VAULT_PROBLEM
from server.registry.idnumber import mask_id_number
from server.web.errors import InvalidInput, NotFound, Unavailable
from server.web.http import answer, int_param
from server.web.openapi import api
from server.web.transactions import write_transaction

OWN_RULE = ("police clients with the watch scope; watch ids are random and name only the caller's own "
            "watches (another's answers like one that does not exist)")
_WATCH_ID = re.compile(watches.PUBLIC_ID_PATTERN)
M = TypeVar("M", bound=BaseModel)


class SigningKeyUnavailable(Unavailable):
    code = "signing_key_unavailable"


def _validated(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        # Never echo the input: it holds an identity number.
        raise InvalidInput(".".join(str(p) for p in err["loc"]) or "body", err["msg"]) from None


def _require_key(request: web.Request) -> None:
    """No watch is set that could not be delivered signed."""
    if request.app.get(WEBHOOK_KEY) is None:
        raise SigningKeyUnavailable(request.app.get(WEBHOOK_KEY_PROBLEM, "no webhook signing key is loaded"))


async def _refresh(request: web.Request) -> None:
    """The matcher's index follows the change before the client is
    answered (in a process that matches; others pick it up within a sweep)."""
    matcher = request.app.get(MATCHER)
    if matcher is not None:
        await matcher.refresh()


async def create_watch(request: web.Request, ctx: PoliceContext) -> PoliceAnswer:
    body = _validated(doc.WatchIn, ctx.body)
    number = id_number("id_number", body.id_number)
    now = datetime.now(UTC)
    until = when("until", body.until, request.app[RULES_ZONE]) if body.until is not None else None
    expires_at = watches.expires_in(body.days, until, now, request.app[SETTINGS].police_watch_max_days)
    _require_key(request)
    vault = request.app.get(VAULT)
    if vault is None:
        raise Unavailable(request.app.get(VAULT_PROBLEM, "the identity-number key is not configured"))
    assert ctx.purpose is not None  # purpose_from="body": police_api has validated it
    digest = vault.digest(number)
    spec = watches.WatchSpec(ctx.caller.user_id, digest, mask_id_number(number), ctx.purpose.as_record(),
                             expires_at)

    def write() -> dict[str, Any]:
        with write_transaction(request.app[ENGINE]) as conn:
            return watches.create_watch(conn, spec, now)

    watch = await asyncio.to_thread(write)
    await _refresh(request)
    # The answer says nothing of whether the registry knows the person: a
    # watch is not a look-up.
    return PoliceAnswer(watch, status=201, subject=f"id:{digest}", size=1, subjects_checked=1,
                        detail={"watch_id": watch["id"], "expires_at": expires_at.isoformat()})


async def list_watches(request: web.Request, ctx: PoliceContext) -> PoliceAnswer:
    state = request.query.get("state")
    if state is not None and state not in watches.STATES:
        raise InvalidInput("state", "one of: " + ", ".join(watches.STATES))
    limit = int_param(request.query, "limit", default=watches.LIST_DEFAULT, hi=watches.LIST_MAX)
    assert limit is not None

    def read() -> list[dict[str, Any]]:
        with read_only(request.app) as conn:
            return watches.list_watches(conn, ctx.caller.user_id, state=state, limit=limit)

    found = await asyncio.to_thread(with_retry, read)
    return PoliceAnswer({"watches": found}, size=len(found))


async def withdraw_watch(request: web.Request, ctx: PoliceContext) -> PoliceAnswer:
    public_id = request.match_info["watch_id"]
    if not _WATCH_ID.fullmatch(public_id):
        raise NotFound("watch")
    now = datetime.now(UTC)

    def write() -> dict[str, Any]:
        with write_transaction(request.app[ENGINE]) as conn:
            return watches.withdraw_watch(conn, ctx.caller.user_id, public_id, now)

    watch = await asyncio.to_thread(write)
    await _refresh(request)
    return PoliceAnswer(watch, subject=f"watch:{public_id}", size=1, detail={"state": watch["state"]})


async def signing_key(request: web.Request) -> web.Response:
    key = request.app.get(WEBHOOK_KEY)
    if key is None:
        problem = request.app.get(WEBHOOK_KEY_PROBLEM, "no webhook signing key is loaded")
        return answer({"error": SigningKeyUnavailable.code, "detail": problem}, 503)
    return answer(key.public_info())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/police/watches", allow("police", rule=OWN_RULE)(
        api("Watch an identity number: alerts to the client's webhook when a door reads the person's card",
            tag="police", body=doc.WatchIn, responses={201: doc.Watch}, errors=(409, 429),
            description="The client's webhook_url must be set by the administrator (else 400). At most "
                        f"{watches.ACTIVE_WATCHES_MAX} active watches per client (409), and one per number "
                        "(409). Alerts are signed: GET /api/v1/police/signing-key.")(
            police_api("police.watch_create", needs=WATCH)(create_watch))))
    r.add_get("/api/v1/police/watches", allow("police", rule=OWN_RULE)(
        api("The caller's own watches, newest first", tag="police", query=doc.LIST_QUERY,
            responses={200: doc.WatchList}, errors=(429,))(
            police_api("police.watch_list", needs=WATCH, purpose_from="query", cost=0,
                       read_json=False)(list_watches))))
    r.add_delete("/api/v1/police/watches/{watch_id}", allow("police", rule=OWN_RULE)(
        api("Withdraw one of the caller's watches (its identity data is erased at once)", tag="police",
            path=(doc.WATCH_ID,), query=PURPOSE_QUERY, responses={200: doc.Watch}, errors=(429,))(
            police_api("police.watch_withdraw", needs=WATCH, purpose_from="query", cost=0,
                       read_json=False)(withdraw_watch))))
    r.add_get("/api/v1/police/signing-key", public("the public key that verifies watch alerts; no data")(
        api("The public key that signs watch alerts, and the exact signature rule", tag="police",
            responses={200: doc.SigningKey})(signing_key)))
