"""Concurrent police clients for bench/police.py: person checks through
one aiohttp session (one keep-alive connection per concurrent client),
closed-loop (each client sends its next check as soon as its last answer is
read) or paced (the clients together offer a fixed rate), and one streamed
NDJSON batch. Every answer is checked against what the registry holds."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import aiohttp

from bench.measure import percentile

PERSON_CHECK = "/api/v1/police/checks/person"
BATCH_CHECK = "/api/v1/police/checks/batch"


@dataclass(frozen=True)
class Probe:
    """One person check: its JSON body and the result it must get."""

    body: bytes
    expected: str


@dataclass
class LoadResult:
    # Milliseconds per answered check: for the closed loop from send to the
    # last byte; for the paced loop from when the check was due (see paced()).
    ms: list[float] = field(default_factory=list)
    # Paced loop only: from the actual send (what the server and network took).
    service_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0
    wrong: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.ms)

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def note(self, text: str) -> None:
        if len(self.failures) < 5:
            self.failures.append(text[:300])

    def figures(self, prefix: str) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {
            f"{prefix}_ms_p50": _r(percentile(self.ms, 50)), f"{prefix}_ms_p95": _r(percentile(self.ms, 95)),
            f"{prefix}_ms_p99": _r(percentile(self.ms, 99)), f"{prefix}_ms_max": _r(max(self.ms, default=None)),
            f"{prefix}_requests": self.requests, f"{prefix}_per_s": round(self.per_s, 1),
            f"{prefix}_errors": self.errors, f"{prefix}_wrong_answers": self.wrong}
        if self.service_ms:
            out[f"{prefix}_service_ms_p99"] = _r(percentile(self.service_ms, 99))
        return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def session(base_url: str, token: str, clients: int) -> aiohttp.ClientSession:
    """One session for all clients: a shared connector whose pool holds one
    keep-alive connection per concurrent client."""
    return aiohttp.ClientSession(
        base_url, connector=aiohttp.TCPConnector(limit=clients, force_close=False),
        cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=120),
        headers={"Authorization": f"Bearer {token}"})


async def _check(http: aiohttp.ClientSession, probe: Probe, result: LoadResult) -> bool:
    """Sends one check; False (and counted) unless the answer is 200 with
    the expected result."""
    try:
        async with http.post(PERSON_CHECK, data=probe.body, headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.errors += 1
        result.note(f"{exc!r}")
        return False
    if status != 200:
        result.errors += 1
        result.note(f"HTTP {status}: {raw[:200]!r}")
        return False
    got = json.loads(raw).get("result")
    if got != probe.expected:
        result.wrong += 1
        result.note(f"expected {probe.expected}, got {got}")
    return True


async def closed_loop(http: aiohttp.ClientSession, probes: Sequence[Probe], clients: int, seconds: float
                      ) -> LoadResult:
    """``clients`` clients, each sending its next check as soon as its last
    answer is in, for ``seconds``. Under saturation the latency is mostly
    queueing: by Little's law, clients / throughput."""
    result = LoadResult()
    cursor = [0]  # shared by the clients: one event loop, no lock needed
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            probe = probes[cursor[0] % len(probes)]
            cursor[0] += 1
            started = time.perf_counter()
            if await _check(http, probe, result):
                result.ms.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


async def paced(http: aiohttp.ClientSession, probes: Sequence[Probe], clients: int, rate: float, seconds: float
                ) -> LoadResult:
    """The clients together offer ``rate`` checks a second for ``seconds``:
    check k is due at start + k / rate, sent by client k mod clients. Latency
    counts from when the check was due, not from when it went out, so a
    client held up by a slow answer does not hide the wait it caused
    (coordinated omission); ``service_ms`` counts from the send."""
    result = LoadResult()
    total = max(1, int(rate * seconds))
    start = time.perf_counter() + 0.05

    async def client(first: int) -> None:
        for k in range(first, total, clients):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            if await _check(http, probes[k % len(probes)], result):
                done = time.perf_counter()
                result.ms.append((done - due) * 1000)
                result.service_ms.append((done - sent) * 1000)

    await asyncio.gather(*(client(i) for i in range(min(clients, total))))
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class BatchResult:
    # Whether the body went with a Content-Length (else chunked).
    sized: bool = True
    seconds: float = 0.0
    first_line_s: float | None = None
    lines: int = 0
    wrong: int = 0
    summary: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


class TooLarge(Exception):
    """The server refused the body for its declared length (413)."""


async def _chunked(body: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for lo in range(0, len(body), size):
        yield body[lo:lo + size]


async def batch(http: aiohttp.ClientSession, body: bytes, expected: Sequence[str], *, sized: bool = True
                ) -> BatchResult:
    """One batch request; time from the start of the request to its last
    byte (the summary line). ``sized``: the body goes with its
    Content-Length, else with chunked transfer encoding (as a client that
    streams its numbers sends it). The answer is read as it streams and
    checked only after the clock stops, so that the bench's own JSON parsing
    is not counted: every line's number, and that its result is
    ``expected[line - 1]``."""
    out = BatchResult(sized=sized)
    chunks: list[bytes] = []
    data: bytes | AsyncIterator[bytes] = body if sized else _chunked(body)
    started = time.perf_counter()
    async with http.post(BATCH_CHECK, data=data, headers={"Content-Type": "application/x-ndjson"}) as resp:
        if resp.status == 413 and sized:
            raise TooLarge((await resp.read())[:300].decode(errors="replace"))
        if resp.status != 200:
            raise RuntimeError(f"the batch was answered {resp.status}: {(await resp.read())[:500]!r}")
        async for chunk in resp.content.iter_any():
            if out.first_line_s is None:
                out.first_line_s = time.perf_counter() - started
            chunks.append(chunk)
    out.seconds = time.perf_counter() - started
    lines = b"".join(chunks).splitlines()
    for n, raw in enumerate(lines, 1):
        item = json.loads(raw)
        if "summary" in item:
            out.summary = item["summary"]
            if n != len(lines):
                out.failures.append("the summary is not the last line")
            break
        if item.get("line") != n or n > len(expected) or item.get("result") != expected[n - 1]:
            out.wrong += 1
            if len(out.failures) < 5:
                want = expected[n - 1] if n <= len(expected) else None
                out.failures.append(f"line {n}: expected {want}, got {item}"[:300])
        out.lines += 1
    return out
