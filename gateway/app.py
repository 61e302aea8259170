"""The running gateway: the outbox, the MQTT link, the sender, the heartbeat,
the outbox bounds and one task per device, in one TaskGroup.

Threads meet the loop only through ``call_soon_threadsafe``: serial readers
and paho's network thread hand their callbacks over and return at once.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from gateway.access.doors import DoorEvent
from gateway.access.runtime import AccessRuntime
from gateway.config import GatewayConfig
from gateway.devices import DeviceConfigBase, make_adapter
from gateway.devices.base import DoorStateName, Respond, TerminalOrigin
from gateway.errors import GatewayError
from gateway.health import ConfigReport, DeviceTracker, resources
from gateway.outbox import DropReport, EventMaker, Sourced, new_outbox_first_seq
from gateway.sender import Sender
from gateway.terminals.clock import Stamp, event_time
from gateway.writer import AsyncOutbox
from rentgate import __version__, wire
from rentgate.aio import wait_event
from rentgate.mqtt import LinkSettings, MqttLink, TlsFiles, Will

if TYPE_CHECKING:
    from devices.camera.crossing import Crossing
    from devices.hikvision_isapi import AcsEventRecord
    from gateway.camera.events import CameraEvents
    from gateway.camera.spool import SnapshotSpool
    from gateway.camera.uploads import SnapshotUploader
    from gateway.terminals import TerminalHealth, TerminalSync
    from gateway.terminals.zkteco_sync import ZkUserSync

log = logging.getLogger(__name__)

_STOP_REPORT_AFTER_S = 10.0
# A terminal's read stamped this long before it arrived is a past passage (a
# re-post after a network cut): reported with the terminal's verdict, not
# decided again (that would open the door's unlock window now).
_LIVE_WITHIN_S = 60.0
_CLOCK_WARNING_EVERY_S = 3600.0
_BOUNDS_INTERVAL_MAX_S = 60.0
# After a connect, how long publishing waits for the retained server status
# (it normally comes within milliseconds); past it, with no status at all
# (a broker that keeps none, a server that never connected), it sends.
SERVER_STATUS_WAIT_S = 1.0


class RemoteChannel(Protocol):
    """The runner's side of remote configuration (gateway/remote/runner.py):
    it judges what arrives on the config topic and says where things stand."""

    def received(self, payload: bytes) -> None:
        """A message on the config topic (on the loop; returns at once)."""

    def report(self) -> ConfigReport: ...


class GatewayApp:
    def __init__(self, config: GatewayConfig, *, remote: RemoteChannel | None = None) -> None:
        self.config = config
        self.remote = remote
        self.gateway_id = config.gateway_id
        self.boot_id = str(uuid.uuid4())
        self.outbox: AsyncOutbox | None = None
        self.sender: Sender | None = None
        self.link: MqttLink | None = None
        self.access: AccessRuntime | None = None  # local decisions, when the config enables them
        # Door cameras, when a device of type "camera" is configured.
        self.cameras: CameraEvents | None = None
        self.snapshot_uploads: SnapshotUploader | None = None
        self._spool: SnapshotSpool | None = None
        self.devices_online: dict[str, bool] = {d.id: False for d in config.devices}
        self.devices = DeviceTracker([(d.id, d.type) for d in config.devices])  # states and details
        # The server's retained status arrived over this app's link: the broker
        # lets us read and relays (the remote configuration's health gate).
        self.server_seen = False
        self.ready = asyncio.Event()  # outbox open, tasks started
        self._stop = asyncio.Event()
        self._status_now = asyncio.Event()
        # Each server status topic's latest word: the single server's, or one
        # per ingest worker (rentgate/wire.py); online while any says online.
        self._server_statuses: dict[str, wire.ServerStatus] = {}
        # The instance last seen online on each of those topics.
        self._server_instances: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Future[Any]] = set()  # keeps allowlist applies referenced
        # Terminals whose own user lists follow the allowlist ([[terminals]]).
        self.terminals: list[TerminalSync] = []
        self.zk_syncs: list[ZkUserSync] = []
        self._clock_warned: dict[str, float] = {}

    def stop(self) -> None:
        """Ask :meth:`run` to shut down cleanly (from the loop)."""
        self._stop.set()

    async def run(self, *, install_signal_handlers: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self.stop)
        cfg = self.config.outbox
        self.outbox = await AsyncOutbox.open(
            str(self.config.outbox_path), gateway_id=self.gateway_id, max_events=cfg.max_events,
            max_age_s=cfg.max_age_s, synchronous=cfg.synchronous, first_seq=new_outbox_first_seq(),
        )
        if self.config.access.public_keys:
            self.access = AccessRuntime(self.gateway_id, self.config.access,
                                        str(self.config.data_dir / "allowlist.sqlite3"), self._publish_now)
            self._open_terminals(self.access)
        try:
            await self._open_cameras(self.outbox)
            await self._run_tasks(self.outbox)
        finally:
            await self.outbox.close()
            if self._spool is not None:
                await asyncio.to_thread(self._spool.close)
            if self.access is not None:
                await asyncio.to_thread(self.access.close)
            faulthandler.cancel_dump_traceback_later()
            log.info("gateway %s stopped", self.gateway_id)

    async def _run_tasks(self, outbox: AsyncOutbox) -> None:
        cfg = self.config.outbox
        pending = outbox.depth()
        await outbox.append([self._started_event(outbox.outbox.outbox_id, outbox.outbox.first_seq, pending)])
        log.info("gateway %s starting: outbox %s, %d events pending", self.gateway_id, self.config.outbox_path, pending)
        self.link = link = self._make_link()
        self.sender = sender = Sender(
            outbox, lambda topic, payload, qos: link.publish(topic, payload, qos=qos), gateway_id=self.gateway_id,
            batch_max=cfg.batch_max, inflight_max=cfg.inflight_max, ack_timeout_s=cfg.ack_timeout_s,
            await_status=True,
        )
        outbox.on_commit(lambda seqs: sender.wake())
        outbox.on_drop(self._dropped)
        async with asyncio.TaskGroup() as tg:
            services = [
                tg.create_task(link.run(), name="mqtt-link"),
                tg.create_task(sender.run(), name="sender"),
                tg.create_task(self._heartbeat(), name="heartbeat"),
                tg.create_task(self._enforce_bounds(), name="outbox-bounds"),
            ]
            if self.access is not None:
                services.append(tg.create_task(self.access.watch_doors(self._door_event), name="door-alarms"))
            if self.cameras is not None:
                services.append(tg.create_task(self.cameras.run(), name="camera-correlator"))
            if self.snapshot_uploads is not None:
                services.append(tg.create_task(self.snapshot_uploads.run(), name="snapshot-uploads"))
            if self.terminals:
                from gateway.terminals import supervise

                services.extend(tg.create_task(supervise(t), name=f"terminal-sync-{t.config.id}")
                                for t in self.terminals)
            devices = []
            for d in self.config.devices:
                adapter = make_adapter(d, _DeviceSink(self, d))
                devices.append(tg.create_task(adapter.run(), name=f"device-{d.id}"))
                services.extend(tg.create_task(sync.supervise(), name=sync.task_name)
                                for sync in self._user_syncs(d, adapter))
            self.ready.set()
            await self._stop.wait()
            log.info("gateway %s shutting down", self.gateway_id)
            # Every step below is bounded; if one still hangs, where each
            # thread is goes to stderr (the service's log) after 10 s.
            faulthandler.dump_traceback_later(_STOP_REPORT_AFTER_S)
            # Devices first, so that their last reads reach the outbox before it closes.
            await _cancel(devices)
            await asyncio.sleep(0)  # let their final call_soon_threadsafe callbacks run
            self._publish_offline()
            await _cancel(services)

    def _open_terminals(self, access: AccessRuntime) -> None:
        if not self.config.terminals:
            return
        # Imported only here: a gateway without such terminals loads no HTTP client.
        from gateway.terminals import TerminalSync

        folder = self.config.data_dir / "terminals"
        for cfg in self.config.terminals:
            sync = TerminalSync(cfg, access.store, folder, deliver=self._caught_up(cfg.id, cfg.door),
                                on_health=self._terminal_health(cfg.id))
            self.terminals.append(sync)
        terminals = list(self.terminals)

        def changed(_version: int | None) -> None:
            for terminal in terminals:
                terminal.changed()

        access.on_change(changed)

    def _user_syncs(self, config: DeviceConfigBase, adapter: object) -> list[ZkUserSync]:
        """ZKTeco terminals whose users the gateway keeps (``sync_users``):
        the push server's adapter carries their commands."""
        if config.type != "zkteco_adms" or self.access is None or not getattr(config, "sync_users", False):
            return []
        from gateway.devices.zkteco import ZktecoAdapter
        from gateway.terminals.zkteco_sync import user_syncs

        assert isinstance(adapter, ZktecoAdapter)
        syncs = user_syncs(adapter, self.access.store, self.config.data_dir / "terminals",
                           lambda device, health: self._terminal_health(device, "zkteco_adms")(health))
        self.zk_syncs.extend(syncs)

        def changed(_version: int | None) -> None:
            for sync in syncs:
                sync.changed()

        self.access.on_change(changed)
        return syncs

    def _terminal(self, device: str) -> TerminalSync | None:
        return next((t for t in self.terminals if t.config.id == device), None)

    def terminal_read(self, device: str, door: str | None, credential: wire.Credential, verdict: bool | None,
                      origin: TerminalOrigin) -> None:
        """A read a terminal pushed or streamed (on the loop): stored once
        under its identity, noted for the catch-up once stored, at the
        terminal's time where its clock is believed."""
        arrived = wire.utcnow()
        terminal = self._terminal(device)
        stamp = self._terminal_stamp(device, terminal, origin.stamped, arrived)
        source = _source_key(device, origin.identity, origin.keep_s)
        if stamp.at >= arrived - timedelta(seconds=_clock_tolerance_s(terminal) + _LIVE_WITHIN_S):
            # Happening now: the cameras match people with the grant at its
            # arrival, whatever the terminal's clock says.
            future: asyncio.Future[list[int]] | None = self.card_read(
                device, door, stamp.at, credential, None, verdict, source=source, seen_at=arrived)
        else:
            future = self._past_read(device, door, stamp.at, credential, verdict, source)
        self._heard_once_stored(terminal, origin, future)

    def terminal_door(self, device: str, door: str, state: DoorStateName, origin: TerminalOrigin) -> None:
        terminal = self._terminal(device)
        stamp = self._terminal_stamp(device, terminal, origin.stamped, wire.utcnow())
        future = self.record_door(device, door, state, at=stamp.at,
                                  source=_source_key(device, origin.identity, origin.keep_s))
        self._heard_once_stored(terminal, origin, future)

    def terminal_heard(self, device: str, origin: TerminalOrigin) -> None:
        if (terminal := self._terminal(device)) is not None and origin.serial is not None:
            terminal.heard(origin.serial)

    @staticmethod
    def _heard_once_stored(terminal: TerminalSync | None, origin: TerminalOrigin,
                           future: asyncio.Future[list[int]] | None) -> None:
        # The catch-up may move past a serial only once its event is on disk:
        # an event lost to a failed write is fetched again.
        if terminal is None or origin.serial is None or future is None:
            return
        serial = origin.serial
        future.add_done_callback(
            lambda f: terminal.heard(serial) if not f.cancelled() and f.exception() is None else None)

    def _terminal_stamp(self, device: str, terminal: TerminalSync | None, stamped: datetime | None,
                        arrived: datetime) -> Stamp:
        """The time to report a terminal's event at (gateway/terminals/clock.py)."""
        stamp = event_time(stamped, arrived, offset_s=terminal.clock_offset_s if terminal else None,
                           tolerance_s=_clock_tolerance_s(terminal), max_age_s=self.config.outbox.max_age_s)
        if stamp.source == "arrival" and stamped is not None:
            self._clock_doubted(device, stamped)
        return stamp

    def _clock_doubted(self, device: str, stamped: datetime) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._clock_warned.get(device, -_CLOCK_WARNING_EVERY_S) >= _CLOCK_WARNING_EVERY_S:
            self._clock_warned[device] = now
            log.warning("terminal %s stamps its events %s: they are reported at when they reached the gateway "
                        "until its clock is set (warned once an hour)", device, stamped.isoformat())

    def _past_read(self, device: str, door: str | None, ts: datetime, credential: wire.Credential,
                   verdict: bool | None, source: Source | None) -> asyncio.Future[list[int]] | None:
        # The terminal decided back then; deciding now would open the door's
        # unlock window (and anti-passback) for a past passage.
        outcome: Literal["granted", "denied"] | None = None if verdict is None else "granted" if verdict else "denied"
        gw = self.gateway_id

        def make(seq: int) -> wire.Event:
            return wire.CardRead(gw=gw, seq=seq, device=device, door=door, ts=ts, credential=credential,
                                 decision=outcome)

        return self.record([_sourced(make, source)])

    def _terminal_health(self, terminal: str, device_type: str = "hikvision_isapi"
                         ) -> Callable[[TerminalHealth], None]:
        def report(health: TerminalHealth) -> None:
            if health.trusted and not health.pending and health.last_error is None:
                detail = f"holds allowlist version {health.version_held}"
            else:
                detail = health.last_error or f"{health.pending} changes pending"
            # A terminal that cannot be written to is not "ok": it may open for someone revoked.
            self.device_online(terminal, health.trusted, detail[:300], device_type)
            self._status_now.set()

        return report

    def _caught_up(self, terminal: str, door: str) -> Callable[[AcsEventRecord], asyncio.Future[list[int]] | None]:
        from gateway.terminals.events import as_terminal_event, door_state

        def deliver(record: AcsEventRecord) -> asyncio.Future[list[int]] | None:
            event = as_terminal_event(record)
            if event is None or event.identity is None:
                return None
            # The same identity as the push would have had: the outbox keeps
            # one of the two.
            source = _source_key(terminal, event.identity)
            ts = self._terminal_stamp(terminal, self._terminal(terminal), event.time, wire.utcnow()).at
            credential = event.credential
            if event.kind == "access" and credential is not None:
                return self._past_read(terminal, door, ts, credential, event.verified, source)
            if (state := door_state(event)) is not None:
                return self.record_door(terminal, door, state, at=ts, source=source)
            return None

        return deliver

    async def _open_cameras(self, outbox: AsyncOutbox) -> None:
        if not any(d.type == "camera" for d in self.config.devices):
            return
        # Imported only here: a gateway without cameras does not load scipy.
        from gateway.camera.correlate import Correlator
        from gateway.camera.events import CameraEvents
        from gateway.camera.spool import SnapshotSpool
        from gateway.camera.uploads import SnapshotUploader

        cfg = self.config.cameras
        self._spool = spool = await asyncio.to_thread(
            SnapshotSpool, self.config.data_dir / "snapshots", keep_days=cfg.snapshot_keep_days,
            max_files=cfg.snapshot_max_files)
        # Without a server it still keeps the spool within its age and count.
        password = self.config.mqtt_password() if self.config.mqtt_username is not None else None
        self.snapshot_uploads = uploads = SnapshotUploader(
            spool, cfg.server_url, timeout_s=cfg.upload_timeout_s, retry_max_s=cfg.upload_retry_max_s,
            login=(self.config.mqtt_username, password) if self.config.mqtt_username and password else None)
        if cfg.server_url is None:
            log.warning("gateway %s: [cameras] server_url is not set: door snapshots are kept in %s and not "
                        "uploaded", self.gateway_id, spool.folder)
        self.cameras = CameraEvents(
            self.gateway_id, outbox.submit,
            Correlator(grant_before_s=cfg.grant_before_s, grant_after_s=cfg.grant_after_s, follow_s=cfg.follow_s), spool,
            on_snapshot=uploads.wake)

    # ------------------------------------------------------------------ events

    def record(self, makers: list[EventMaker]) -> asyncio.Future[list[int]] | None:
        """Queue events for the outbox (on the loop); failures are logged. The
        future resolves once they are on disk (None: the outbox is closing)."""
        if self.outbox is None:
            raise GatewayError("gateway not running")
        try:
            future = self.outbox.submit(makers)
        except GatewayError as exc:
            log.error("gateway %s: %d events lost at shutdown: %s", self.gateway_id, len(makers), exc)
            return None
        future.add_done_callback(_log_failure)
        return future

    def _started_event(self, outbox_id: str, first_seq: int, pending: int) -> EventMaker:
        gw, ts = self.gateway_id, wire.utcnow()
        return lambda seq: wire.GatewayStarted(
            gw=gw, seq=seq, device=gw, ts=ts, version=__version__, outbox_id=outbox_id,
            outbox_first_seq=first_seq, pending=pending,
        )

    def _dropped(self, report: DropReport) -> None:
        if self.sender is not None:
            self.sender.forget(report.first_seq, report.last_seq)

    # ------------------------------------------------------------------ MQTT

    def _make_link(self) -> MqttLink:
        will = wire.GatewayStatus(gw=self.gateway_id, state="offline")
        cfg = self.config
        tls = None
        if cfg.mqtt_ca_file is not None or cfg.mqtt_cert_file is not None:
            tls = TlsFiles(ca_file=_str(cfg.mqtt_ca_file), cert_file=_str(cfg.mqtt_cert_file),
                           key_file=_str(cfg.mqtt_key_file))
        settings = LinkSettings(
            url=self.config.mqtt_url,
            fallback_urls=cfg.mqtt_fallback_urls,
            username=cfg.mqtt_username,
            password=cfg.mqtt_password() if cfg.mqtt_username is not None else None,
            tls_files=tls,
            client_id=f"rentgate-gw-{self.gateway_id}",
            # A broker role made before per-worker statuses refuses the second
            # filter; the first still works then (docs/scaling.md).
            subscriptions=[(wire.ack_topic(self.gateway_id), 1), (wire.SERVER_STATUS_TOPIC, 1),
                           (wire.SERVER_WORKER_STATUS_SUBSCRIPTION, 1),
                           *(self.access.subscriptions() if self.access is not None else []),
                           *([(wire.config_topic(self.gateway_id), 1)] if self.remote is not None else [])],
            will=Will(wire.status_topic(self.gateway_id), will.model_dump_json(exclude_none=True).encode()),
        )
        return MqttLink(
            settings,
            on_message=self._from_network(self._on_message),
            on_connect=self._from_network(self._on_connect),
            on_disconnect=self._from_network(self._on_disconnect),
        )

    def _from_network(self, handler: Callable[..., None]) -> Callable[..., None]:
        def hand_over(*args: object) -> None:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(handler, *args)

        return hand_over

    def _on_connect(self) -> None:
        if self.sender is not None:
            # The broker hands the retained server statuses over right after
            # this connect: hold the replay until they say whether anyone
            # listens (a gateway restarted while the server is down must not
            # pour its backlog into the broker).
            self.sender.expect_server_status(SERVER_STATUS_WAIT_S)
            self.sender.replay("reconnected")
        self._status_now.set()

    def _on_disconnect(self) -> None:
        if self.sender is not None:
            self.sender.forget_server_status()

    def _on_message(self, topic: str, payload: bytes) -> None:
        if self.sender is None:
            return
        if wire.is_server_status_topic(topic):
            self._on_server_status(topic, payload)
            return
        if topic == wire.config_topic(self.gateway_id):
            if self.remote is not None and payload:  # empty: the retained copy was cleared
                self.remote.received(payload)
            return
        if self.access is not None and self.access.handles(topic):
            task = asyncio.ensure_future(self.access.on_allowlist(payload))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            task.add_done_callback(lambda _t: self._status_now.set())  # show the new version at once
            return
        try:
            ack = wire.decode_ack(payload)
        except wire.WireError as exc:
            log.warning("gateway %s: ignoring a malformed ack: %s", self.gateway_id, exc.reason)
            return
        self.sender.handle_ack(ack)

    def _on_server_status(self, topic: str, payload: bytes) -> None:
        assert self.sender is not None
        if not payload:
            # A retained status cleared: that server or worker is gone for good.
            self._server_statuses.pop(topic, None)
            self._server_instances.pop(topic, None)
            if self._server_statuses:
                self.sender.set_server_online(self.server_online)
            return
        try:
            status = wire.decode_server_status(payload)
        except wire.WireError as exc:
            log.warning("gateway %s: ignoring a malformed server status: %s", self.gateway_id, exc.reason)
            return
        self.server_seen = True
        before = self._server_statuses.get(topic)
        self._server_statuses[topic] = status
        self.sender.set_server_online(self.server_online)
        if (status.state == "offline" and before is not None and before.state == "online"
                and topic != wire.SERVER_STATUS_TOPIC and self.server_online):
            # One ingest worker of several died (its last will): the broker
            # does not hand what it had in flight to the others (Mosquitto
            # issue 2662). Send again what is unacknowledged, to those left.
            self.sender.replay(f"server worker {status.instance} offline")
        if status.state == "online" and status.instance != self._server_instances.get(topic):
            self._server_instances[topic] = status.instance
            # A new server instance (or worker) may have lost what the old one
            # had not acked: a killed worker's in-flight messages are gone.
            self.sender.replay(f"server {status.instance} online")

    @property
    def server_online(self) -> bool:
        """Whether the server or any of its ingest workers says it is online."""
        return any(s.state == "online" for s in self._server_statuses.values())

    # ------------------------------------------------------------------ status

    async def _heartbeat(self) -> None:
        while True:
            self._status_now.clear()
            await self._publish_status()
            await wait_event(self._status_now, self.config.heartbeat_s)

    async def status(self) -> wire.GatewayStatus:
        assert self.outbox is not None and self.sender is not None
        stats = await self.outbox.stats()
        box = resources(self.config.data_dir)
        remote = self.remote.report() if self.remote is not None else ConfigReport()
        return wire.GatewayStatus(
            gw=self.gateway_id, state="online", ts=wire.utcnow(), version=__version__, boot_id=self.boot_id,
            outbox_depth=stats.depth, oldest_unsent_age_s=stats.oldest_age_s, dropped_total=stats.dropped_total,
            rejected_total=stats.rejected_total, devices_online=sum(self.devices_online.values()),
            devices_total=len(self.devices_online),
            allowlist_version=self.access.store.version if self.access is not None else None,
            devices=self.devices.health(), disk_free_bytes=box.disk_free_bytes, disk_total_bytes=box.disk_total_bytes,
            mem_rss_bytes=box.mem_rss_bytes, mem_available_bytes=box.mem_available_bytes,
            config_version=remote.version, config_attempted=remote.attempted, config_state=remote.state,
            config_error=remote.error, terminals=self._terminal_statuses(),
        )

    def _terminal_statuses(self) -> list[wire.TerminalSyncHealth] | None:
        kept = [(t.config.id, t.health) for t in self.terminals] + [(z.id, z.health) for z in self.zk_syncs]
        if not kept:
            return None
        return [wire.TerminalSyncHealth(
            id=device, reachable=h.reachable, version_held=h.version_held, pending=h.pending,
            writes_refused=h.writes_refused, last_error=h.last_error, last_full_sync=h.last_full_at,
            foreign_users=h.foreign_users, skipped_credentials=h.skipped,
            clock_offset_s=None if h.clock_offset_s is None else round(h.clock_offset_s, 1))
            for device, h in kept[:wire.MAX_STATUS_DEVICES]]

    def status_changed(self) -> None:
        """Publish the status now rather than at the next heartbeat."""
        self._status_now.set()

    async def _publish_status(self) -> None:
        assert self.link is not None
        status = await self.status()
        self.link.publish(wire.status_topic(self.gateway_id), status.model_dump_json(exclude_none=True), qos=1,
                          retain=True)

    def _publish_offline(self) -> None:
        # A clean disconnect does not fire the last will; say it ourselves.
        if self.link is not None:
            offline = wire.GatewayStatus(gw=self.gateway_id, state="offline", ts=wire.utcnow(), boot_id=self.boot_id)
            self.link.publish(wire.status_topic(self.gateway_id), offline.model_dump_json(exclude_none=True), qos=1,
                              retain=True)

    async def _enforce_bounds(self) -> None:
        assert self.outbox is not None
        interval = min(_BOUNDS_INTERVAL_MAX_S, self.config.outbox.max_age_s / 10)
        while True:
            try:
                await self.outbox.enforce_age()
            except GatewayError:
                log.exception("gateway %s: enforcing the outbox age bound failed", self.gateway_id)
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ devices (on the loop)

    def device_event(self, config: DeviceConfigBase, make: Callable[[str, int], wire.Event]) -> None:
        gw = self.gateway_id
        self.record([lambda seq: make(gw, seq)])

    def card_read(self, device: str, door: str | None, ts: datetime, credential: wire.Credential,
                  respond: Respond | None, verdict: bool | None = None, *, source: Source | None = None,
                  seen_at: datetime | None = None) -> asyncio.Future[list[int]]:
        """Decide (when access control is on), make the read durable with its
        decision, then let the adapter signal the reader and open the lock.
        Without local decisions, a terminal's own verdict is the decision.
        ``source``: the read's identity at its terminal (stored once);
        ``seen_at``: when the gateway got it (the cameras' grant time), if
        ``ts`` is the terminal's."""
        decision = self.access.decide(device, door, credential) if self.access is not None else None
        outcome = decision.outcome if decision is not None else None
        if outcome is None and verdict is not None:
            outcome = "granted" if verdict else "denied"
        reason = decision.reason if decision is not None and not decision.granted else None
        gw = self.gateway_id

        def make(seq: int) -> wire.Event:
            return wire.CardRead(gw=gw, seq=seq, device=device, door=door, ts=ts, credential=credential,
                                 decision=outcome, reason=reason)

        if self.outbox is None:
            raise GatewayError("gateway not running")
        future = self.outbox.submit([_sourced(make, source)])
        future.add_done_callback(_log_failure)
        if outcome == "granted" and door is not None and self.cameras is not None:
            cameras, grant_at = self.cameras, seen_at or ts
            # The grant is known to the cameras with its seq, once on disk
            # (a read its terminal had delivered before has none: not again).
            future.add_done_callback(
                lambda f: cameras.grant(door, grant_at, f.result()[0])
                if not f.cancelled() and f.exception() is None and f.result() else None)
        if decision is not None and respond is not None:
            granted, unlock_s = decision.granted, self.access.unlock_pulse_s if self.access else 0.0
            # The door opens once the decision is on disk; if the disk failed the
            # tenant still gets in (the failure is logged): a door is no place
            # to stop at a full SD card.
            future.add_done_callback(lambda _f: _respond_safely(respond, granted, unlock_s, device))
        return future

    def person_crossed(self, device: str, door: str | None, crossing: Crossing, at: datetime) -> None:
        if self.cameras is None or door is None:
            log.warning("device %s reported a person crossing but is not a camera of a door", device)
            return
        self.cameras.crossed(device, door, crossing, at)

    def door_contact(self, device: str, door: str | None, is_open: bool) -> None:
        if door is None:
            log.warning("device %s reported a door contact but has no door configured", device)
            return
        if self.access is not None:
            for event in self.access.contact(door, is_open):
                self._door_event(event, device)
        else:
            self.record_door(device, door, "open" if is_open else "closed")

    def _door_event(self, event: DoorEvent, device: str | None = None) -> None:
        self.record_door(device or event.door, event.door, event.kind)

    def record_door(self, device: str, door: str, state: DoorStateName, *, at: datetime | None = None,
                    source: Source | None = None) -> asyncio.Future[list[int]] | None:
        gw, ts = self.gateway_id, at or wire.utcnow()

        def make(seq: int) -> wire.Event:
            return wire.DoorState(gw=gw, seq=seq, device=device, door=door, ts=ts, state=state)

        return self.record([_sourced(make, source)])

    def _publish_now(self, topic: str, payload: bytes) -> bool:
        return self.link is not None and self.link.publish(topic, payload, qos=1)

    def device_online(self, device_id: str, online: bool, detail: str | None = None,
                      device_type: str | None = None) -> None:
        previous = self.devices.state_of(device_id)
        self.devices.update(device_id, device_type or "device", online, detail)
        if self.devices.state_of(device_id)[0] != previous[0]:
            self._status_now.set()  # e.g. a camera going from dark to frozen
        if self.devices_online.get(device_id) != online:
            self.devices_online[device_id] = online
            self._status_now.set()


class _DeviceSink:
    """Thread-safe: takes the time of the read on the reader's thread, builds
    the event on the loop once the outbox assigns its seq."""

    def __init__(self, app: GatewayApp, config: DeviceConfigBase, device: str | None = None,
                 door: str | None = None) -> None:
        self._app = app
        self._config = config
        # An adapter serving several readers reports each under its own id and door.
        self._device = device or config.id
        self._door = door if device is not None else config.door
        assert app._loop is not None
        self._loop = app._loop

    def for_device(self, device: str, door: str | None) -> _DeviceSink:
        return _DeviceSink(self._app, self._config, device, door)

    def card_read(self, credential: wire.Credential, respond: Respond | None = None,
                  verdict: bool | None = None) -> None:
        self._hand_over(self._app.card_read, self._device, self._door, wire.utcnow(), credential, respond, verdict)

    def person_crossed(self, crossing: Crossing, at: datetime) -> None:
        self._hand_over(self._app.person_crossed, self._device, self._door, crossing, at)

    def door_contact(self, is_open: bool) -> None:
        self._hand_over(self._app.door_contact, self._device, self._door, is_open)

    def door_state(self, state: DoorStateName) -> None:
        if self._door is None:
            log.warning("device %s reported door state %s but has no door configured", self._device, state)
            return
        self._hand_over(self._app.record_door, self._device, self._door, state)

    # A terminal's own events (gateway.devices.base.TerminalSink).

    def terminal_read(self, credential: wire.Credential, verdict: bool | None, origin: TerminalOrigin) -> None:
        self._hand_over(self._app.terminal_read, self._device, self._door, credential, verdict, origin)

    def terminal_door(self, state: DoorStateName, origin: TerminalOrigin) -> None:
        if self._door is None:
            log.warning("device %s reported door state %s but has no door configured", self._device, state)
            self._hand_over(self._app.terminal_heard, self._device, origin)
            return
        self._hand_over(self._app.terminal_door, self._device, self._door, state, origin)

    def terminal_heard(self, origin: TerminalOrigin) -> None:
        self._hand_over(self._app.terminal_heard, self._device, origin)

    def device_status(self, online: bool, detail: str | None = None, bad_frames: int | None = None) -> None:
        ts, device, door = wire.utcnow(), self._device, self._door

        def make(gw: str, seq: int) -> wire.Event:
            return wire.DeviceStatus(gw=gw, seq=seq, device=device, door=door, ts=ts, online=online,
                                     detail=detail[:500] if detail else None, bad_frames=bad_frames)

        self._hand_over(self._app.device_online, device, online, detail, self._config.type)
        self._hand_over(self._app.device_event, self._config, make)

    def _hand_over(self, fn: Callable[..., object], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            # The loop is gone: only the reader's own "stopped" report can land here.
            log.debug("device %s: event after shutdown dropped", self._device)


Source = tuple[str, float | None]  # an event's identity at its device, how long the outbox keeps it


def _clock_tolerance_s(terminal: TerminalSync | None) -> float:
    # A push listener without a [[terminals]] table: the table's default.
    if terminal is not None:
        return terminal.config.clock_tolerance_s
    from gateway.terminals.config import TerminalSyncConfig

    return float(TerminalSyncConfig.model_fields["clock_tolerance_s"].default)


def _source_key(device: str, identity: str, keep_s: float | None = None) -> Source:
    # Per device: two terminals count their serials each from one.
    return f"{device}#{identity}", keep_s


def _sourced(make: EventMaker, source: Source | None) -> EventMaker:
    return make if source is None else Sourced(make, source[0], keep_s=source[1])


def _respond_safely(respond: Respond, granted: bool, unlock_s: float, device: str) -> None:
    try:
        respond(granted, unlock_s)
    except Exception:  # noqa: BLE001 - a reader's feedback must not take the gateway down
        log.exception("device %s: signalling the decision failed", device)


def _log_failure(future: asyncio.Future[list[int]]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("events were not stored: %s", future.exception())


def _str(path: object) -> str | None:
    return None if path is None else str(path)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


