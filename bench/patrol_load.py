"""Concurrent phone clients for the patrol benchmark: each client is its own
aiohttp session with one keep-alive connection (a phone), taking the next
request from a shared list as soon as its last answer is read. Every answer's
status, client-side time and ``Server-Timing`` figures are kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from bench.measure import percentile
from server.auth.sessions import SESSION_COOKIE


@dataclass(frozen=True)
class Request:
    path: str
    # The session token sent as the login cookie; None: not logged in.
    token: str | None = None


@dataclass(frozen=True)
class Sample:
    status: int
    client_ms: float
    # Server-Timing metric name -> milliseconds (empty if the header was missing).
    timing: dict[str, float]


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0
    # Statuses other than 200 and the first few failure texts, for the report.
    failures: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for s in self.samples if s.status != 200)

    @property
    def per_s(self) -> float:
        return len(self.samples) / self.seconds if self.seconds else 0.0


def parse_server_timing(header: str | None) -> dict[str, float]:
    """``db;dur=1.2, render;dur=0.4;desc="x", total;dur=2`` -> {"db": 1.2, ...}.
    Metrics without a valid ``dur`` are left out (the header is advisory)."""
    out: dict[str, float] = {}
    if not header:
        return out
    for metric in header.split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur" and name:
                try:
                    out[name] = float(value.strip().strip('"'))
                except ValueError:
                    pass
    return out


async def _client(base_url: str, requests: Sequence[Request], cursor: list[int], result: LoadResult,
                  timeout: float) -> None:
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    async with aiohttp.ClientSession(base_url, connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        while cursor[0] < len(requests):
            req = requests[cursor[0]]
            cursor[0] += 1
            headers = {"Accept": "text/html"}
            if req.token is not None:
                headers["Cookie"] = f"{SESSION_COOKIE}={req.token}"
            started = time.perf_counter()
            try:
                async with session.get(req.path, headers=headers, allow_redirects=False) as resp:
                    await resp.read()
                    status, timing_header = resp.status, resp.headers.get("Server-Timing")
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, timing_header = 0, None
                if len(result.failures) < 5:
                    result.failures.append(f"{req.path}: {exc!r}")
            elapsed = (time.perf_counter() - started) * 1000
            if status not in (0, 200) and len(result.failures) < 5:
                result.failures.append(f"{req.path}: HTTP {status}")
            result.samples.append(Sample(status, elapsed, parse_server_timing(timing_header)))


async def run_load(base_url: str, requests: Sequence[Request], clients: int, *, timeout: float = 60.0) -> LoadResult:
    """All ``requests`` through ``clients`` concurrent clients; wall time from
    the first request to the last answer."""
    result = LoadResult()
    cursor = [0]  # shared: one event loop, so no lock is needed
    started = time.perf_counter()
    await asyncio.gather(*(_client(base_url, requests, cursor, result, timeout)
                           for _ in range(max(1, min(clients, len(requests))))))
    result.seconds = time.perf_counter() - started
    return result


def timing_values(samples: Sequence[Sample], *names: str) -> list[float]:
    """Per answer, the sum of the named Server-Timing metrics (answers
    missing any of them are left out)."""
    return [sum(s.timing[n] for n in names) for s in samples if s.status == 200 and all(n in s.timing for n in names)]


def summary(prefix: str, values: Sequence[float]) -> dict[str, float | None]:
    """``{prefix}_p50`` and ``{prefix}_p99``, rounded to 0.01 ms."""
    return {f"{prefix}_p50": _r(percentile(values, 50)), f"{prefix}_p99": _r(percentile(values, 99))}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
