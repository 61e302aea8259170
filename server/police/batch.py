"""POST /api/v1/police/checks/batch: up to 100,000 identity numbers in one
request, answered line by line as NDJSON.

The body is NDJSON: the first line ``{"purpose": {...}}``, then one number
per line, as ``{"id_number": "...", "ref": "..."}`` or a bare JSON string.
Each line gets one answer line, in order: ``{"line": n, "ref": ...,
"result": "registered" | "evidenced_unregistered" | "unknown"}``, or
``"result": "invalid"`` with an ``error`` for a line that is not JSON, not
a valid number, or too long; a bad line never fails the batch. The last
line is ``{"summary": {...}}``.

The body is read whole (it is at most BODY_MAX bytes) before the first
answer line, so that an oversize batch, a missing purpose or a used-up
quota is a plain 4xx, not a broken stream. The audit entry of the batch is
durable before the first answer line; a second entry records how it ended.
Answers go out chunk by chunk: each chunk of numbers is one query."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from server.db.read_pool import read_only, with_retry
from server.police import lookups
from server.police.appkeys import METER
from server.police.checks import evidence_since, vault_of
from server.police.context import NO_STORE, PoliceRefusal, _audit, admit, caller_of, refusal_response
from server.police.principals import PoliceCaller
from server.police.purposes import BATCH, Purpose
from server.registry.idnumber import InvalidIdNumber, parse_id_number
from server.registry.pii import PiiVault
from server.web.body import parse_json
from server.web.errors import InvalidInput, RequestError

log = logging.getLogger(__name__)

LINES_MAX = 100_000
LINE_BYTES_MAX = 512
BODY_MAX = 16 * 1024 * 1024
CHUNK = 2000
MEDIA = ("application/x-ndjson", "application/jsonl", "application/json-seq", "text/plain")
REF_MAX = 64


@dataclass
class Line:
    number: int  # 1 for the first number (the line after the purpose)
    ref: str | None
    digest: str | None
    error: str | None


async def _read_body(request: web.Request) -> bytes:
    if request.content_type not in MEDIA:
        raise InvalidInput("body", "send NDJSON (Content-Type: application/x-ndjson)")
    if request.content_length is not None and request.content_length > BODY_MAX:
        raise PoliceRefusal(413, "too_large", f"a batch is at most {BODY_MAX // (1024 * 1024)} MiB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > BODY_MAX:
            raise PoliceRefusal(413, "too_large", f"a batch is at most {BODY_MAX // (1024 * 1024)} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _split(raw: bytes) -> tuple[bytes, list[bytes]]:
    lines = raw.split(b"\n")
    if lines and lines[-1].strip() == b"":
        lines.pop()
    if not lines:
        raise InvalidInput("body", "empty: the first line is {\"purpose\": {...}}, then one number per line")
    head, rest = lines[0], lines[1:]
    if len(rest) > LINES_MAX:
        raise PoliceRefusal(413, "too_large", f"a batch holds at most {LINES_MAX} numbers, this one {len(rest)}")
    return head, rest


def _purpose_line(head: bytes) -> dict[str, Any]:
    if len(head) > 4096:
        raise InvalidInput("purpose", "the first line is too long")
    try:
        parsed = parse_json(head.strip())
    except InvalidInput:
        raise InvalidInput("purpose", "the first line must be the JSON object {\"purpose\": {...}}") from None
    if not isinstance(parsed, dict) or set(parsed) != {"purpose"}:
        raise InvalidInput("purpose", "the first line must be the JSON object {\"purpose\": {...}}")
    return parsed


def _parse_line(n: int, raw: bytes, vault: PiiVault) -> Line:
    if len(raw) > LINE_BYTES_MAX:
        return Line(n, None, None, f"line longer than {LINE_BYTES_MAX} bytes")
    text = raw.strip()
    if not text:
        return Line(n, None, None, "empty line")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return Line(n, None, None, "not JSON")
    ref: str | None = None
    if isinstance(value, dict):
        ref_raw = value.get("ref")
        if isinstance(ref_raw, str) and len(ref_raw) <= REF_MAX and ref_raw.isprintable():
            ref = ref_raw
        elif ref_raw is not None:
            return Line(n, None, None, f"ref must be text of at most {REF_MAX} characters")
        if set(value) - {"id_number", "ref"}:
            return Line(n, ref, None, "unknown field; a line holds id_number and ref")
        value = value.get("id_number")
    if not isinstance(value, str):
        return Line(n, ref, None, "no id_number")
    try:
        number = parse_id_number(value).value
    except InvalidIdNumber as exc:
        return Line(n, ref, None, exc.reason)
    return Line(n, ref, vault.digest(number), None)


def _answer_line(line: Line, result: str) -> str:
    """One answer line. The common one (no ref, no error) is formatted
    directly: json.dumps per line was a tenth of a 100,000-line batch."""
    if line.ref is None and line.error is None:
        return f'{{"line":{line.number},"result":"{result}"}}'
    item: dict[str, Any] = {"line": line.number}
    if line.ref is not None:
        item["ref"] = line.ref
    item["result"] = result
    if line.error is not None:
        item["error"] = line.error
    return json.dumps(item, ensure_ascii=False)


def _chunks(lines: list[bytes]) -> Iterator[tuple[int, list[bytes]]]:
    for start in range(0, len(lines), CHUNK):
        yield start, lines[start:start + CHUNK]


async def batch_check(request: web.Request) -> web.StreamResponse:
    caller: PoliceCaller | None = None
    purpose: Purpose | None = None
    try:
        caller = await caller_of(request)
        raw = await _read_body(request)
        head, lines = _split(raw)
        first = _purpose_line(head)
        if not lines:
            raise InvalidInput("body", "no numbers after the purpose line")
        ctx = await admit(request, caller, needs=BATCH, purpose_from="body", cost=len(lines), body=first)
        purpose = ctx.purpose
        vault = vault_of(request)
    except RequestError as exc:
        status, payload, headers = refusal_response(exc)
        await _audit(request, caller, "police.batch", purpose, status=status, size=0, subject=None,
                     detail={"error": payload["error"]})
        return web.json_response(payload, status=status, headers=headers)
    body_digest = hashlib.sha256(raw).hexdigest()
    # Durable before the first answer: the batch is on record even if the
    # connection drops half-way.
    await _audit(request, caller, "police.batch", purpose, status=200, size=len(lines), subject=None,
                 detail={"lines": len(lines), "body_sha256": body_digest})
    request.app[METER].add(caller.user_id, ctx.today, len(lines))
    response = web.StreamResponse(headers={**NO_STORE, "Content-Type": "application/x-ndjson; charset=utf-8"})
    await response.prepare(request)
    since = evidence_since(request)
    counts = {r: 0 for r in (*lookups.RESULTS, "invalid")}
    completed = False

    def work(start: int, chunk: list[bytes]) -> tuple[list[Line], dict[str, str]]:
        # Parsing (CPU) and the query (mostly waiting on the database) of one
        # chunk, in a worker thread: the next chunk's parsing overlaps this
        # one's query, and the event loop only writes.
        parsed = [_parse_line(start + i + 1, line, vault) for i, line in enumerate(chunk)]
        digests = [p.digest for p in parsed if p.digest is not None]

        def read() -> dict[str, str]:
            with read_only(request.app) as conn:
                return lookups.batch_results(conn, digests, evidence_since=since)

        return parsed, with_retry(read)

    chunks = list(_chunks(lines))
    pending: asyncio.Future[tuple[list[Line], dict[str, str]]] | None = asyncio.ensure_future(
        asyncio.to_thread(work, *chunks[0]))
    try:
        for index in range(len(chunks)):
            assert pending is not None
            parsed, found = await pending
            pending = (asyncio.ensure_future(asyncio.to_thread(work, *chunks[index + 1]))
                       if index + 1 < len(chunks) else None)
            out = []
            for line in parsed:
                result = found.get(line.digest, lookups.UNKNOWN) if line.digest is not None else "invalid"
                counts[result] += 1
                out.append(_answer_line(line, result))
            await response.write(("\n".join(out) + "\n").encode())
        await response.write((json.dumps({"summary": {"lines": len(lines), **counts}}) + "\n").encode())
        completed = True
    except (ConnectionResetError, asyncio.CancelledError):
        log.info("police batch: the client went away after %d lines", sum(counts.values()))
        raise
    finally:
        if pending is not None:
            pending.cancel()
        await _audit(request, caller, "police.batch_done", purpose, status=200 if completed else 499,
                     size=sum(counts.values()), subject=None, detail={"body_sha256": body_digest, **counts})
    await response.write_eof()
    return response
