"""Hooks the schemathesis runs of tests/server/test_openapi_fuzz.py load
(SCHEMATHESIS_HOOKS): the police batch's NDJSON, which schemathesis does
not speak by itself. A generated body (one line's object, or anything in
negative mode) becomes a batch: a valid purpose line, then that line; the
streamed answer is read as the text it is documented to be."""

from __future__ import annotations

import json
from typing import Any

import schemathesis

PURPOSE_LINE = json.dumps({"purpose": {"code": "residence_verification", "legal_basis": "fuzz", "case_ref": "F-1"}})


@schemathesis.serializer("application/x-ndjson")
def ndjson_request(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    return (PURPOSE_LINE + "\n" + json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")


@schemathesis.deserializer("application/x-ndjson")
def ndjson_response(ctx: schemathesis.DeserializationContext, response: Any) -> str:
    return bytes(response.content).decode("utf-8")
