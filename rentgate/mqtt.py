"""A supervised MQTT connection shared by the gateway and the server.

paho-mqtt does the protocol. Around it this module adds what field gateways
have been bitten by (see docs/architecture.md): a network thread of our own that
never dies silently, jittered and capped reconnect backoff, subscriptions made
again on every connect, and a watchdog (an asyncio task) that replaces a
network loop that has stopped beating.

Callbacks (``on_message``, ``on_connect``, ``on_subscribed``,
``on_disconnect``) run on the
network thread; consumers hand work to their own loop or thread from there and
return quickly.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

log = logging.getLogger(__name__)


class MqttError(Exception):
    """Root of this module's errors."""


class MqttUrlError(MqttError, ValueError):
    pass


@dataclass(frozen=True, kw_only=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtt://[user:pass@]host[:port]`` or ``mqtts://...`` (TLS, port 8883)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise MqttUrlError(f"unsupported MQTT URL scheme {parts.scheme!r} in {url!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        if not parts.hostname:
            raise MqttUrlError(f"no host in MQTT URL {url!r}")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise MqttUrlError(f"bad port in MQTT URL {url!r}") from exc
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def validate_url(value: str) -> str:
    """For settings validators: the URL if it parses, else ValueError saying why."""
    try:
        BrokerAddress.parse(value)
    except MqttUrlError as exc:
        raise ValueError(str(exc)) from exc
    return value


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    """A private CA and a client certificate, for an enrolled gateway: the
    broker's certificate is checked against ``ca_file`` (not the system's
    store), and the gateway proves itself with ``cert_file``/``key_file``."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file is not None:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


@dataclass(kw_only=True)
class LinkSettings:
    url: str
    client_id: str
    # Other nodes of a clustered broker (docs/clustering.md), tried in turn
    # after ``url`` when a connection attempt fails; empty: ``url`` alone.
    fallback_urls: Sequence[str] = ()
    # Overrides the URL's login (a password kept in its own file, not in the URL).
    username: str | None = None
    password: str | None = None
    tls_files: TlsFiles | None = None
    keepalive_s: int = 30
    clean_session: bool = True
    subscriptions: Sequence[tuple[str, int]] = ()
    will: Will | None = None
    # paho's default of 20 in-flight QoS 1 messages caps a localhost pipe well
    # below what the broker can take.
    max_inflight: int = 1000
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 15.0
    watchdog_s: float = 10.0
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311


@dataclass
class LinkStats:
    connects: int = 0
    disconnects: int = 0
    watchdog_restarts: int = 0
    callback_errors: int = 0
    last_error: str | None = None
    # The topic the broker last refused in a SUBACK, until every
    # subscription of a connection has been granted.
    refused_subscription: str | None = None
    connected_since: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def backoff_delays(initial: float, maximum: float) -> Any:
    """Full-jitter exponential backoff: each delay uniform in [0, min(max, initial*2^n)],
    with a small floor so that a flapping broker is not hammered."""
    attempt = 0
    while True:
        ceiling = min(maximum, initial * (2**attempt))
        yield max(initial / 2, random.uniform(0, ceiling))
        attempt = min(attempt + 1, 30)


def _set_nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _no_op_socket_hook(client: paho.Client, userdata: Any, sock: Any) -> None:
    return None


class MqttLink:
    """One supervised MQTT client. Start it with ``await link.run()`` as a task."""

    def __init__(
        self,
        settings: LinkSettings,
        *,
        on_message: Callable[[str, bytes], None] | None = None,
        on_connect: Callable[[], None] | None = None,
        on_subscribed: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.addresses = [BrokerAddress.parse(url) for url in (settings.url, *settings.fallback_urls)]
        # The broker this link connects to now; the next one after a failed attempt.
        self._address_index = 0
        self.address = self.addresses[0]
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_subscribed = on_subscribed
        self._on_disconnect = on_disconnect
        self.connected = threading.Event()
        # Set once the broker has granted every subscription of the current
        # connection: only from then on is a message published to them sure
        # to reach this client (a CONNACK alone does not say so; a clean
        # session, or a broker that lost its store, has no subscriptions yet).
        self.subscribed = threading.Event()
        self.stats = LinkStats()
        self._client: paho.Client | None = None
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._draining = threading.Event()  # stop(): no reconnects, finish writing
        self._unacked = 0  # QoS > 0 messages handed to paho, not yet acknowledged by the broker
        self._count_lock = threading.Lock()
        self._lock = threading.Lock()
        # Subscriptions of the current connection awaiting their SUBACK (mid
        # -> topic, qos, the delay before asking again if refused), and those
        # the broker refused, due again at a time. Network thread only.
        self._suback_due: dict[int, tuple[str, int, float]] = {}
        self._resubscribe: list[tuple[float, str, int, float]] = []

    # ------------------------------------------------------------------ public API

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> bool:
        """Hand a message to the network thread. False if not connected: the
        caller keeps it (the gateway's outbox does) rather than letting paho
        queue it in memory."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        # Counted before paho sees it (its PUBACK may come back at once), and
        # never while holding a lock paho's callbacks would need.
        counted = qos > 0 and self._count(client, +1)
        info = client.publish(topic, payload, qos=qos, retain=retain)
        ok = info.rc == paho.MQTT_ERR_SUCCESS
        if not ok and counted:
            self._count(client, -1)
        return ok

    def _count(self, client: paho.Client, delta: int) -> bool:
        """Count for the current client only: a message handed to a client that
        has just been replaced never gets its PUBACK, and counting it would make
        every later stop() wait out its whole drain time."""
        with self._count_lock:
            if client is not self._client:
                return False
            self._unacked = max(0, self._unacked + delta)
            return True

    async def run(self) -> None:
        """Run until cancelled: start the network thread, and replace it when it
        stops beating (a hung socket, a crashed loop)."""
        self._start_thread()
        try:
            while True:
                await asyncio.sleep(min(1.0, self.settings.watchdog_s / 4))
                thread = self._thread
                stale = time.monotonic() - self._beat > self.settings.watchdog_s
                if thread is None or not thread.is_alive() or stale:
                    self.stats.watchdog_restarts += 1
                    log.warning(
                        "mqtt %s: network loop %s; restarting it",
                        self.settings.client_id,
                        "stalled" if stale else "died",
                    )
                    self._start_thread()
        finally:
            await asyncio.to_thread(self.stop)

    def stop(self, drain_s: float = 5.0) -> None:
        """Disconnect cleanly: paho writes what was published before, then
        DISCONNECT, so that the last will is not sent; then end the thread.

        Everything here shares one deadline, ``drain_s`` plus half a second for
        the thread to leave, so that a stuck network thread cannot stretch a
        shutdown past what a service manager's stop timeout allows."""
        self._draining.set()
        deadline = time.monotonic() + drain_s
        leave_by = deadline + 0.5  # for the network thread to write DISCONNECT and end
        with self._lock:
            client, thread = self._client, self._thread
        here = threading.current_thread()
        if client is not None and self.connected.is_set():
            # Closing a socket with unread PUBACKs in it makes the kernel send
            # RST, and the broker then drops what it had not read yet: wait for
            # the broker to acknowledge everything before saying goodbye.
            while self._unacked > 0 and self.connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            if self._unacked > 0 and self.connected.is_set():
                log.warning("mqtt %s: %d messages not acknowledged by the broker after %.1f s; disconnecting",
                            self.settings.client_id, self._unacked, drain_s)
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001 - shutting down, nothing to save
                pass
            if thread is not None and thread is not here:
                # The network thread writes the DISCONNECT and leaves by itself.
                thread.join(timeout=max(0.0, leave_by - time.monotonic()))
        self._stop.set()
        with self._lock:
            self._generation += 1
        if thread is not None and thread is not here:
            thread.join(timeout=max(0.0, leave_by - time.monotonic()))
            if thread.is_alive():
                # A daemon thread: it cannot keep the process alive, but say so.
                log.warning("mqtt %s: network thread did not stop within %.1f s", self.settings.client_id, drain_s)
        self.connected.clear()
        self.subscribed.clear()

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self.connected.wait(timeout)

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until connected with every subscription granted."""
        return self.subscribed.wait(timeout)

    # ------------------------------------------------------------------ network thread

    def _start_thread(self) -> None:
        with self._lock:
            self._generation += 1
            generation = self._generation
            old = self._client
            self._beat = time.monotonic()
            self._thread = threading.Thread(
                target=self._network_loop,
                args=(generation,),
                name=f"mqtt-{self.settings.client_id}-{generation}",
                daemon=True,
            )
        if old is not None:
            # The old thread sees the generation change and leaves; closing its
            # socket unblocks it if it is stuck in a read.
            try:
                old.disconnect()
            except Exception:  # noqa: BLE001
                pass
        self.connected.clear()
        self.subscribed.clear()
        self._thread.start()

    def _make_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            clean_session=s.clean_session if s.protocol != paho.MQTTv5 else None,
            protocol=s.protocol,
        )
        client.max_inflight_messages_set(s.max_inflight)
        client.max_queued_messages_set(0)
        username = s.username if s.username is not None else self.address.username
        password = s.password if s.username is not None else self.address.password
        if username:
            client.username_pw_set(username, password)
        if self.address.tls:
            client.tls_set_context(s.tls_files.context() if s.tls_files is not None else ssl.create_default_context())
        if s.will is not None:
            client.will_set(s.will.topic, s.will.payload, qos=s.will.qos, retain=s.will.retain)
        # paho writes to the socket on the publishing thread when it runs no
        # thread of its own (our case). Registering a write hook makes it only
        # queue the packet and wake the network thread through its socketpair,
        # so all socket writes happen on one thread.
        client.on_socket_register_write = _no_op_socket_hook
        # paho leaves Nagle's algorithm on: small QoS 1 packets then wait for
        # the peer's delayed ACK, about 40 ms per hop at light load.
        client.on_socket_open = _set_nodelay
        client.on_publish = self._handle_publish
        client.on_connect = self._handle_connect
        client.on_subscribe = self._handle_subscribe
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        return client

    def _running(self, generation: int) -> bool:
        return not self._stop.is_set() and generation == self._generation

    def _network_loop(self, generation: int) -> None:
        delays = backoff_delays(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        while self._running(generation) and not self._draining.is_set():
            client = self._make_client()
            with self._lock:
                if generation != self._generation:
                    return
                with self._count_lock:
                    self._client = client
                    self._unacked = 0  # a new session starts from nothing; owners resend
            try:
                client.connect(self.address.host, self.address.port, keepalive=self.settings.keepalive_s)
            except (OSError, ValueError) as exc:
                self.stats.last_error = f"connect: {exc}"
                log.info("mqtt %s: cannot connect to %s:%s: %s", self.settings.client_id,
                         self.address.host, self.address.port, exc)
                self._next_address()
                self._sleep(next(delays), generation)
                continue
            backoff_reset = False
            connects_before = self.stats.connects
            # While draining this loop goes on until paho has written the
            # DISCONNECT that stop() queued and closed the socket.
            while self._running(generation):
                self._beat = time.monotonic()
                try:
                    rc = client.loop(timeout=0.2)
                except Exception as exc:  # noqa: BLE001 - a callback bug must not kill the link
                    self.stats.callback_errors += 1
                    self.stats.last_error = repr(exc)
                    log.exception("mqtt %s: error in network loop", self.settings.client_id)
                    rc = paho.MQTT_ERR_UNKNOWN
                if rc != paho.MQTT_ERR_SUCCESS:
                    break
                if self._resubscribe and not self._draining.is_set():
                    self._subscribe_again(client)
                if not backoff_reset and self.connected.is_set():
                    delays = backoff_delays(self.settings.backoff_initial_s, self.settings.backoff_max_s)
                    backoff_reset = True
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001
                pass
            # A thread the watchdog replaced must not mark the new thread's
            # live connection down (it ends only after its last callback).
            if generation == self._generation:
                self._mark_down("network loop ended")
            if self.stats.connects == connects_before:
                # Refused, or closed before a CONNACK (a cluster node that
                # is starting): the next node. A connection that worked and
                # dropped is tried again where it was first.
                self._next_address()
            if self._running(generation) and not self._draining.is_set():
                self._sleep(next(delays), generation)

    def _next_address(self) -> None:
        self._address_index = (self._address_index + 1) % len(self.addresses)
        self.address = self.addresses[self._address_index]

    def _sleep(self, seconds: float, generation: int) -> None:
        deadline = time.monotonic() + seconds
        while self._running(generation) and not self._draining.is_set():
            self._beat = time.monotonic()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.5))

    # ------------------------------------------------------------------ paho callbacks

    def _handle_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if client is not self._client:
            return  # a replaced thread's client, closing
        if reason.is_failure:
            self.stats.last_error = f"connack: {reason}"
            log.warning("mqtt %s: broker refused connection: %s", self.settings.client_id, reason)
            return
        self._suback_due.clear()
        self._resubscribe.clear()
        self.subscribed.clear()
        for topic, qos in self.settings.subscriptions:
            self._subscribe(client, topic, qos, self.settings.backoff_initial_s)
        self.stats.connects += 1
        self.stats.connected_since = time.time()
        self.connected.set()
        log.info("mqtt %s: connected to %s:%s", self.settings.client_id, self.address.host, self.address.port)
        self._fire(self._on_connect)
        self._check_subscribed()

    def _subscribe(self, client: paho.Client, topic: str, qos: int, retry_s: float) -> None:
        rc, mid = client.subscribe(topic, qos)
        if rc == paho.MQTT_ERR_SUCCESS and mid is not None:
            self._suback_due[mid] = (topic, qos, retry_s)
        else:  # not even sent: asked again like a refused one, never dropped
            self._ask_again(topic, qos, retry_s)

    def _handle_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        """A broker may refuse a subscription in its SUBACK while the
        connection stays up: an ACL, or a NATS node whose JetStream cannot
        make the subscription's consumer yet (seen after a cluster node was
        lost, docs/clustering.md). A gateway without its ack subscription
        would never hear an acknowledgement again: ask again, backing off."""
        if client is not self._client:
            return  # a replaced client's mids are not this connection's
        entry = self._suback_due.pop(mid, None)
        if entry is None or not any(getattr(r, "is_failure", False) for r in reasons):
            self._check_subscribed()
            return
        topic, qos, retry_s = entry
        self.stats.last_error = f"subscription refused: {topic}"
        self.stats.refused_subscription = topic
        log.warning("mqtt %s: the broker refused the subscription to %s; asking again in %.1f s",
                    self.settings.client_id, topic, retry_s)
        self._ask_again(topic, qos, retry_s)

    def _ask_again(self, topic: str, qos: int, retry_s: float) -> None:
        """Subscribe to ``topic`` again in ``retry_s``, backing off after that."""
        self._resubscribe.append((time.monotonic() + retry_s, topic, qos,
                                  min(retry_s * 2, self.settings.backoff_max_s)))

    def _check_subscribed(self) -> None:
        """Once per connection, when the last subscription is granted; not
        while stopping (its owner may have said goodbye already)."""
        if (self._suback_due or self._resubscribe or self.subscribed.is_set() or not self.connected.is_set()
                or self._draining.is_set() or self._stop.is_set()):
            return
        self.stats.refused_subscription = None
        self.subscribed.set()
        self._fire(self._on_subscribed)

    def _subscribe_again(self, client: paho.Client) -> None:
        now = time.monotonic()
        due = [r for r in self._resubscribe if r[0] <= now]
        self._resubscribe = [r for r in self._resubscribe if r[0] > now]
        for _, topic, qos, retry_s in due:
            self._subscribe(client, topic, qos, retry_s)

    def _handle_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._count(client, -1)

    def _handle_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if client is not self._client:
            return  # a replaced thread's client: the live connection is another
        self._mark_down(str(reason))

    def _mark_down(self, why: str) -> None:
        """Once per lost connection: count it and tell the owner."""
        with self._lock:
            was_up = self.connected.is_set()
            self.connected.clear()
            self.subscribed.clear()
        with self._count_lock:
            self._unacked = 0  # nothing more will be acknowledged on this connection
        if was_up:
            self.stats.disconnects += 1
            log.info("mqtt %s: disconnected: %s", self.settings.client_id, why)
            self._fire(self._on_disconnect)

    def _handle_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if self._on_message is None:
            return
        try:
            self._on_message(msg.topic, bytes(msg.payload))
        except Exception:  # noqa: BLE001
            self.stats.callback_errors += 1
            log.exception("mqtt %s: message handler failed on %s", self.settings.client_id, msg.topic)

    def _fire(self, cb: Callable[[], None] | None) -> None:
        if cb is None:
            return
        try:
            cb()
        except Exception:  # noqa: BLE001
            self.stats.callback_errors += 1
            log.exception("mqtt %s: callback failed", self.settings.client_id)
