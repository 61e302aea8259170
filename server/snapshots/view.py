"""``GET /api/v1/events/{event_id}/snapshot``: the picture of a camera
alert, for an administrator, a coordinator of the grid the event's building
is in, or police of its jurisdiction (the route policy checks the event's
building against the caller's scope; one outside it answers exactly like a
missing one). Never landlords, never a public page: a snapshot shows the
faces of tenants and visitors (PIPL art. 26, 28; docs/cameras-privacy.md).

Police go through the police API's rules (server/police/context.py): the
``events`` scope, a purpose that permits door events (in the query, as on
every police GET), the rate limit, and an audit entry for refusals too.
Every view is audited as ``pii.view`` with ``what: snapshot`` before the
picture leaves."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from server.auth.identity import current_user
from server.auth.policy import actor_of, allow
from server.police.api_doc import PURPOSE_QUERY
from server.police.context import PoliceAnswer, PoliceContext, run_call
from server.police.purposes import EVENTS
from server.snapshots.audit import ACTION, WHAT, audited, view_entry
from server.snapshots.serve import HEADERS, jpeg_response, snapshot_bytes
from server.web.errors import NotFound
from server.web.http import dumps
from server.web.openapi import Reply, api

ROLES = ("admin", "coordinator", "police")
NOT_FOUND = {"error": "not_found", "detail": "no such snapshot"}
# The police purpose in the query: required of police, ignored for the others.
QUERY = tuple(replace(p, required=False) for p in PURPOSE_QUERY)


def _event_id(request: web.Request) -> int:
    return int(request.match_info["event_id"])


async def _police_view(request: web.Request, ctx: PoliceContext) -> PoliceAnswer:
    event_id = _event_id(request)
    data = await snapshot_bytes(request, event_id)
    if data is None:
        raise NotFound("snapshot")
    return PoliceAnswer(body=data, subject=f"event:{event_id}", size=1,
                        detail={"what": WHAT, "event_id": event_id, "via": "api"})


async def snapshot_handler(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    assert user is not None  # the route policy lets no anonymous caller in
    event_id = _event_id(request)
    if user.role == "police":
        status, body, headers = await run_call(request, ACTION, _police_view, needs=EVENTS, purpose_from="query",
                                               cost=0, body={})
        if status == 200 and isinstance(body, bytes):
            return jpeg_response(body)
        return web.json_response(body, status=status, headers=headers, dumps=dumps)
    data = await snapshot_bytes(request, event_id)
    if data is None:
        return web.json_response(NOT_FOUND, status=404, headers={"Cache-Control": HEADERS["Cache-Control"]})
    await audited(request, view_entry(actor_of(user), event_id, via="api"))
    return jpeg_response(data)


def add_routes(app: web.Application) -> None:
    app.router.add_get(r"/api/v1/events/{event_id:\d+}/snapshot", allow(
        *ROLES, path={"event_id": "event"},
        rule="the event's building in the caller's scope (a coordinator's grids, police jurisdiction); police "
             "also need the events scope and a purpose permitting door events; every view audited as pii.view")(
        api("The camera snapshot of a door event (a tailgating or an unidentified entry)", tag="cameras",
            query=QUERY,
            description="image/jpeg, sent with Cache-Control: no-store. The purpose parameters are for police "
                        "callers (required for them); a landlord may not see snapshots (faces of tenants and "
                        "visitors). 404 when the event has no stored snapshot.",
            responses={200: Reply({"type": "string", "contentMediaType": "image/jpeg"}, "the JPEG as the camera "
                                   "took it", media="image/jpeg")}, errors=(429,))(snapshot_handler)))
