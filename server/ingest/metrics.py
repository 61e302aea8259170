"""Ingest counters and their Prometheus text exposition."""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

from server.ingest.parse import OUTCOMES
from server.ingest.store import CommitResult

LATENCY_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    total: float = 0.0
    count: int = 0

    def observe_many(self, values: list[float]) -> None:
        for value in values:
            self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += sum(values)
        self.count += len(values)


@dataclass
class IngestMetrics:
    messages_received: int = 0
    messages_shed: int = 0
    events_ingested: int = 0
    duplicates_dropped: int = 0
    dead_letters: int = 0
    commit_batches: int = 0
    commit_errors: int = 0
    acks_published: int = 0
    resend_requests: int = 0
    open_gaps: int = 0
    pending_messages: int = 0
    seq_jumps: int = 0
    newest_event_at: float | None = None
    latency: Histogram = field(default_factory=Histogram)
    # Messages taken off the queue, by what became of them (parse.OUTCOMES).
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def record_commit(self, result: CommitResult) -> None:
        self.commit_batches += 1
        for outcome, count in result.outcomes.items():
            self.outcomes[outcome] += count
        self.seq_jumps += result.seq_jumps
        self.events_ingested += result.inserted
        self.duplicates_dropped += result.duplicates
        self.dead_letters += result.dead_letters
        if result.newest_event_at is not None:
            stamp = result.newest_event_at.timestamp()
            self.newest_event_at = max(stamp, self.newest_event_at or stamp)
        self.latency.observe_many(result.latencies_s)

    def ingest_lag_s(self, now: float | None = None) -> float:
        """Age of the newest event committed so far (0 before the first)."""
        if self.newest_event_at is None:
            return 0.0
        return max(0.0, (now or time.time()) - self.newest_event_at)


def render(metrics: IngestMetrics, *, mqtt_connected: bool, database_ok: bool) -> str:
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float) -> None:
        out.append(f"# HELP rentgate_{name} {help_text}")
        out.append(f"# TYPE rentgate_{name} {kind}")
        out.append(f"rentgate_{name} {_number(value)}")

    m = metrics
    metric("messages_received_total", "counter", "MQTT messages received on event and status topics.",
           m.messages_received)
    metric("messages_shed_total", "counter", "Messages dropped unacknowledged because too many were pending.",
           m.messages_shed)
    metric("events_ingested_total", "counter", "Events stored for the first time.", m.events_ingested)
    metric("duplicates_dropped_total", "counter", "Events received again after they were stored.",
           m.duplicates_dropped)
    metric("dead_letters_total", "counter", "Payloads or events kept as dead letters.", m.dead_letters)
    name = "rentgate_ingest_messages_total"
    out.append(f"# HELP {name} Messages taken off the queue, by outcome: stored (something in it was new), "
               "duplicate (all of it was stored before), dead_lettered (all or part of it kept as a dead letter).")
    out.append(f"# TYPE {name} counter")
    out.extend(f'{name}{{outcome="{outcome}"}} {count}' for outcome, count in m.outcomes.items())
    metric("seq_jumps_total", "counter", "Sequence numbers too far past their gateway's highest to ask for the "
           "numbers in between; each is stored and recorded as a dead letter.", m.seq_jumps)
    metric("commit_batches_total", "counter", "Database transactions that stored a batch.", m.commit_batches)
    metric("commit_errors_total", "counter", "Failed attempts to commit a batch.", m.commit_errors)
    metric("acks_published_total", "counter", "Acknowledgements published to gateways.", m.acks_published)
    metric("resend_requests_total", "counter", "Resend requests published for sequence gaps.", m.resend_requests)
    metric("open_gaps", "gauge", "Sequence gaps still open.", m.open_gaps)
    metric("pending_messages", "gauge", "Messages received and not yet committed.", m.pending_messages)
    metric("ingest_lag_seconds", "gauge", "Now minus the time of the newest event committed.", m.ingest_lag_s())
    metric("mqtt_connected", "gauge", "1 if the server is connected to the broker.", int(mqtt_connected))
    metric("database_up", "gauge", "1 if the database answered the last check.", int(database_ok))
    name = "rentgate_event_commit_latency_seconds"
    out.append(f"# HELP {name} From the event's time at the gateway to its commit here.")
    out.append(f"# TYPE {name} histogram")
    cumulative = 0
    for bound, count in zip(m.latency.buckets, m.latency.counts):
        cumulative += count
        out.append(f'{name}_bucket{{le="{_number(bound)}"}} {cumulative}')
    out.append(f'{name}_bucket{{le="+Inf"}} {m.latency.count}')
    out.append(f"{name}_sum {_number(m.latency.total)}")
    out.append(f"{name}_count {m.latency.count}")
    return "\n".join(out) + "\n"


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)
