"""The JetStream source's own rules, without a NATS server: subjects and
topics, the settings it needs, the stream it makes, and that a message is
acknowledged to JetStream only when ingest settles it, in order."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from nats.js.api import DiscardPolicy, RetentionPolicy

from rentgate import wire
from server.ingest.jetstream import SUBJECTS, JetStreamSource, StreamPlan, subject_of, topic_of
from server.settings import ServerSettings, SettingsProblems, read_settings


def test_the_stream_takes_the_subjects_nats_gives_the_gateways_topics() -> None:
    assert SUBJECTS == ["rentgate.v1.gw.*.events", "rentgate.v1.gw.*.status"]
    assert topic_of("rentgate.v1.gw.gw-7.events") == wire.events_topic("gw-7")
    assert topic_of(subject_of(wire.status_topic("b_1"))) == wire.status_topic("b_1")


def test_a_dot_nats_2_10_carries_as_a_double_slash_comes_back_as_a_dot() -> None:
    assert topic_of("rentgate.v1.gw.bldg//0001.events") == wire.events_topic("bldg.0001")


def test_a_worker_status_topic_holds_no_dot_which_nats_2_9_refuses() -> None:
    assert wire.server_worker_status_topic("rentgate-server-ingest1.example.org") == \
        f"{wire.SERVER_STATUS_TOPIC}/rentgate-server-ingest1_example_org"


def test_jetstream_without_nats_servers_is_refused_in_words() -> None:
    with pytest.raises(SettingsProblems) as caught:
        read_settings({"RENTGATE_INGEST_SOURCE": "jetstream"})
    (problem,) = caught.value.problems
    assert problem.name == "RENTGATE_NATS_URL"
    assert "nats://" in problem.message


@pytest.mark.parametrize("value", ["mqtt://127.0.0.1:4222", "nats://", "nats://h:99999", " , "])
def test_a_wrong_nats_url_is_refused(value: str) -> None:
    with pytest.raises(SettingsProblems) as caught:
        read_settings({"RENTGATE_INGEST_SOURCE": "jetstream", "RENTGATE_NATS_URL": value})
    assert [p.name for p in caught.value.problems] == ["RENTGATE_NATS_URL"]


def test_nats_servers_separated_by_commas_are_taken() -> None:
    settings = read_settings({"RENTGATE_INGEST_SOURCE": "jetstream",
                              "RENTGATE_NATS_URL": "nats://a:4222, nats://b:4222,tls://c"}).settings
    assert settings.nats_url == "nats://a:4222, nats://b:4222,tls://c"


def test_the_stream_is_a_bounded_work_queue_that_refuses_new_messages_when_full() -> None:
    plan = StreamPlan(replicas=3, max_bytes=2**30, max_age_s=3600, ack_wait_s=30, max_ack_pending=4000)
    stream, consumer = plan.stream(), plan.consumer()
    assert (stream.retention, stream.discard, stream.num_replicas) == (RetentionPolicy.WORK_QUEUE,
                                                                       DiscardPolicy.NEW, 3)
    assert (stream.max_bytes, stream.max_age) == (2**30, 3600)
    assert (consumer.ack_wait, consumer.max_ack_pending, consumer.max_deliver) == (30, 4000, -1)


# --------------------------------------------------------------------------- acknowledged when settled


@dataclass
class FakeMsg:
    subject: str
    data: bytes = b"{}"
    calls: list[str] = field(default_factory=list)

    async def ack(self) -> None:
        self.calls.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.calls.append("nak")

    async def in_progress(self) -> None:
        self.calls.append("in_progress")


class FakeService:
    """IngestService's side: offer() takes up to ``room`` messages."""

    instance = "test/0"

    def __init__(self, room: int) -> None:
        self.room = room
        self.offered: list[tuple[str, bytes]] = []
        self.listeners: list[object] = []

    def offer(self, topic: str, payload: bytes) -> bool:
        if len(self.offered) >= self.room:
            return False
        self.offered.append((topic, payload))
        return True

    def add_settle_listener(self, listener: object) -> None:
        self.listeners.append(listener)


async def test_messages_are_acknowledged_only_once_settled_oldest_first_and_a_shed_one_given_back() -> None:
    settings = ServerSettings(ingest_source="jetstream", nats_url="nats://127.0.0.1:1")
    service = FakeService(room=3)
    source = JetStreamSource(settings, service)  # type: ignore[arg-type]
    msgs = [FakeMsg(f"rentgate.v1.gw.g{i}.events") for i in range(4)]
    for msg in msgs:
        await source._offer(msg)  # type: ignore[arg-type]
    assert [t for t, _ in service.offered] == [wire.events_topic(f"g{i}") for i in range(3)]
    assert msgs[3].calls == ["nak"]  # shed: back to the stream for later
    assert all(m.calls == [] for m in msgs[:3])  # nothing acknowledged before its commit

    source._settled(2)
    await source._flush_acks()
    assert [m.calls for m in msgs[:3]] == [["ack"], ["ack"], []]

    await source._give_back()  # shutdown with one unsettled: given back, not acknowledged
    assert msgs[2].calls == ["nak"]
    assert (source.acked, source.nakked) == (2, 2)


def test_check_config_warns_of_gateway_ids_with_a_dot_on_nats_2_9() -> None:
    from server.cli import check

    report = check({"RENTGATE_INGEST_SOURCE": "jetstream", "RENTGATE_NATS_URL": "nats://a:4222"})
    assert report.ok
    assert "nats_topic_dots" in [w.code for w in report.warnings]
    assert "nats_topic_dots" not in [w.code for w in check({}).warnings]


def test_the_servers_fallback_brokers_are_a_checked_comma_separated_list() -> None:
    settings = read_settings({"RENTGATE_MQTT_FALLBACK_URLS": "mqtt://n2:1883, mqtts://u:pw@n3"}).settings
    assert settings.mqtt_fallbacks() == ["mqtt://n2:1883", "mqtts://u:pw@n3"]
    assert read_settings({}).settings.mqtt_fallbacks() == []
    with pytest.raises(SettingsProblems) as caught:
        read_settings({"RENTGATE_MQTT_FALLBACK_URLS": "mqtt://n2:1883,nats://u:secret@n3"})
    (problem,) = caught.value.problems
    assert problem.name == "RENTGATE_MQTT_FALLBACK_URLS" and "secret" not in problem.message
