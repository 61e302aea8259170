"""The police API's routes (docs/police.md). Each declares its policy (the
police role; an address check's building or unit is checked against the
caller's jurisdiction by the route policy before the handler runs) and its
API description."""

from __future__ import annotations

from aiohttp import web

from server.auth.policy import allow, public
from server.police import api_doc as doc
from server.police.batch import batch_check
from server.police.checks import address_check, person_check, person_events, purposes_doc
from server.police.context import police_api
from server.police.oauth import token
from server.police.purposes import EVENTS, MATCH, OCCUPANTS
from server.web.http import answer
from server.web.openapi import Reply, api

PURPOSE_RULE = "police clients and officers; the purpose and the caller's scopes decide what the answer holds"


async def purposes(request: web.Request) -> web.Response:
    return answer(purposes_doc())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/police/token", public("OAuth2 client credentials; failed attempts throttled")(
        api("Exchange client credentials for an access token (RFC 6749 §4.4)", tag="police", body=doc.TokenForm,
            body_media="application/x-www-form-urlencoded", responses={200: doc.Token}, errors=(401, 429))(token)))
    r.add_get("/api/v1/police/purposes", public("the list of purposes and scopes; no data")(
        api("The purpose codes, what each permits, and what each scope grants", tag="police",
            responses={200: doc.Purposes})(purposes)))
    r.add_post("/api/v1/police/checks/person", allow("police", rule=PURPOSE_RULE)(
        api("Is this person registered here? (match-style; more under scopes and purposes that allow it)",
            tag="police", body=doc.PersonCheckIn, responses={200: doc.PersonCheck}, errors=(429,))(
            police_api("police.person_check", needs=MATCH)(person_check))))
    r.add_post("/api/v1/police/checks/address", allow(
        "police", body={"building": "building", "unit": "unit"},
        rule="buildings and units in the caller's jurisdiction; " + PURPOSE_RULE)(
        api("Who is registered and who is evidenced at an address, and the difference", tag="police",
            body=doc.AddressCheckIn, responses={200: doc.AddressCheck}, errors=(429,))(
            police_api("police.address_check", needs=OCCUPANTS)(address_check))))
    r.add_post("/api/v1/police/checks/events", allow("police", rule=PURPOSE_RULE)(
        api("The door events of one person in a time window (at most 92 days, 1,000 events)", tag="police",
            body=doc.EventsIn, responses={200: doc.Events}, errors=(429,))(
            police_api("police.person_events", needs=EVENTS)(person_events))))
    r.add_post("/api/v1/police/checks/batch", allow("police", rule=PURPOSE_RULE)(
        api("Cross-check up to 100,000 identity numbers, answered line by line (NDJSON)", tag="police",
            body=doc.BatchLine, body_media="application/x-ndjson",
            responses={200: Reply(doc.BATCH_REPLY, media="application/x-ndjson")}, errors=(429,),
            description="The first line is {\"purpose\": {...}}; each further line one number "
                        "({\"id_number\": ..., \"ref\": ...} or a JSON string).")(batch_check)))
