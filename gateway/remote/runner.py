"""The gateway process: runs the GatewayApp on the local settings plus the last
good remote configuration, and switches to a newer version behind a health
gate, going back to the last good one when the gate fails
(docs/config-rollback.md).

One app runs at a time. A switch stops the running app cleanly (devices
first, then the outbox closes with every event on disk) and starts the next
one on the same outbox, so events recorded before, during or after a failed
attempt all reach the server once a good link is back.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.health import ConfigReport
from gateway.remote.gate import describe_error, run_gate
from gateway.remote.local import LocalSettings
from gateway.remote.store import RemoteStore, State, Version, remote_folder
from gateway.remote.verify import Refused, check_message, check_settings
from rentgate import wire

log = logging.getLogger(__name__)

RESTARTED_IN_GATE = "restarted during the health gate"


@dataclass(frozen=True)
class _Accepted:
    remote: wire.RemoteConfig
    config: GatewayConfig
    message: str
    from_file: bool = False  # enrolment's received.json, removed once the candidate is on disk


class _NotReady(Exception):
    pass


class Runner:
    """Owns the running GatewayApp; the app hands it what arrives on the
    config topic (``received``) and asks it for the status's config fields
    (``report``)."""

    def __init__(self, local: LocalSettings) -> None:
        self.local = local
        self.gateway_id = local.config.gateway_id
        self._keys = local.config.access.loaded_public_keys()
        self.store = RemoteStore(remote_folder(local.config.data_dir))
        self.app: GatewayApp | None = None
        self._task: asyncio.Task[None] | None = None
        self._good: Version | None = None
        self._state = State(ConfigReport())
        self._trying: int | None = None  # the version in its health gate
        self._pending: _Accepted | None = None  # accepted, waiting for its turn
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # State files are written in order, off the loop (each write is fsynced).
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remote-config")
        self._writes: set[asyncio.Future[None]] = set()
        self.apps_started = 0

    # ------------------------------------------------------------------ the app's side (RemoteChannel)

    def report(self) -> ConfigReport:
        return self._state.report

    def received(self, payload: bytes) -> None:
        """A message on the config topic, on the loop: judged at once; an
        accepted version is applied by :meth:`run`."""
        try:
            accepted = self._judge(payload)
        except Refused as exc:
            self._refuse(exc)
            return
        if accepted is not None:
            self._pending = accepted
            self._wake.set()

    # ------------------------------------------------------------------ running

    @property
    def settled(self) -> bool:
        """An app runs and is ready, with no version in its gate or waiting (for tests and benchmarks)."""
        return (self.app is not None and self.app.ready.is_set() and self._trying is None
                and self._pending is None)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self, *, install_signal_handlers: bool = False) -> None:
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        try:
            self._recover()
            while not self._stopping.is_set():
                self._wake.clear()
                if self._pending is not None:
                    accepted, self._pending = self._pending, None
                    await self._apply(accepted)
                elif self._task is None:
                    await self._start(self._good_config())
                else:
                    await self._idle()
        finally:
            await self._stop_app()
            if self._writes:
                await asyncio.gather(*self._writes, return_exceptions=True)
            self._io.shutdown(wait=True)

    async def _idle(self) -> None:
        """Until a version is accepted, a stop is asked, or the app ends by itself."""
        assert self._task is not None
        task = self._task
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(self._stopping.wait())]
        try:
            await asyncio.wait([task, *waits], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        if task.done() and not self._stopping.is_set():
            # A running gateway that fails ends the process, as it did before
            # remote configuration: the service manager restarts it.
            self.app = self._task = None
            task.result()
            self._stopping.set()

    async def _start(self, config: GatewayConfig, *, deadline: float | None = None) -> None:
        """Start an app on ``config`` and wait until it runs; its failure to
        start is raised (the app is then gone), _NotReady past ``deadline``
        (the app is left for _stop_app)."""
        app = GatewayApp(config, remote=self)
        task = asyncio.create_task(app.run(), name=f"gateway-{self.gateway_id}")
        self.app, self._task = app, task
        self.apps_started += 1
        ready = asyncio.ensure_future(app.ready.wait())
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait([task, ready], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if task.done():
            self.app = self._task = None
            task.result()  # raises why it could not start
            raise _NotReady("it ended at once")
        if not app.ready.is_set():
            raise _NotReady("not ready in time")

    async def _stop_app(self) -> None:
        app, task = self.app, self._task
        self.app = self._task = None
        if app is None or task is None:
            return
        app.stop()
        try:
            await task
        except Exception:  # noqa: BLE001 - a failed candidate: its reason is already in the status
            log.info("gateway %s: the stopped app had failed", self.gateway_id, exc_info=True)

    # ------------------------------------------------------------------ applying

    async def _apply(self, accepted: _Accepted) -> None:
        try:
            await self._switch(accepted)
        finally:
            self._trying = None

    async def _switch(self, accepted: _Accepted) -> None:
        remote = accepted.remote
        version, gate_s = remote.version, remote.gate_s
        self._trying = version
        record = Version(version, gate_s, remote.settings, accepted.message)
        # On disk before the switch: a power cut from here on is caught at the next start.
        await self._io_call(self.store.set_candidate, record)
        await self._io_call(self.store.mark_applying, version)
        if accepted.from_file:
            await self._io_call(self.store.clear_received)
        self._set_state(State(ConfigReport(self._running_version(), version, "applying"), self._state.failed_version))
        log.info("gateway %s: applying configuration version %d (health gate %g s)", self.gateway_id, version, gate_s)
        await self._stop_app()
        deadline = time.monotonic() + gate_s
        reason: str | None
        try:
            await self._start(accepted.config, deadline=deadline)
        except _NotReady:
            reason = f"the gateway did not start within {gate_s:g} s"
        except Exception as exc:  # noqa: BLE001 - whatever the new settings break, go back
            log.warning("gateway %s: configuration version %d cannot start", self.gateway_id, version, exc_info=True)
            reason = f"the gateway could not start: {describe_error(exc)}"
        else:
            assert self.app is not None and self._task is not None
            reason = await run_gate(self.app, self._task, gate_s=gate_s, deadline=deadline, stopping=self._stopping)
        if reason is None:
            await self._io_call(self.store.set_good, record)
            self._good = record
            await self._save_state(State(ConfigReport(version, version, "applied"), self._state.failed_version))
            await self._io_call(self.store.clear_applying)
            await self._io_call(self.store.clear_candidate)
            log.info("gateway %s: configuration version %d applied and healthy", self.gateway_id, version)
            return
        log.warning("gateway %s: configuration version %d rolled back: %s", self.gateway_id, version, reason)
        # The reason is durable before the marker goes, so a power cut now keeps it.
        await self._save_state(State(ConfigReport(self._running_version(), version, "rolled_back", reason), version))
        await self._io_call(self.store.clear_applying)
        await self._io_call(self.store.clear_candidate)
        await self._stop_app()
        if not self._stopping.is_set():
            # The heartbeat publishes the status (retained) on connect: the
            # server learns of the rollback as soon as the link is back.
            await self._start(self._good_config())

    def _good_config(self) -> GatewayConfig:
        if self._good is None:
            return self.local.config
        try:
            return self.local.with_remote(self._good.settings)
        except ConfigError as exc:
            # The local file changed under a version that was fine with the old one.
            log.error("gateway %s: the last good configuration (version %d) does not fit the settings file any "
                      "more; running the file alone: %s", self.gateway_id, self._good.version, exc)
            return self.local.config

    def _running_version(self) -> int | None:
        return self._good.version if self._good is not None else None

    # ------------------------------------------------------------------ judging

    def _judge(self, payload: bytes, *, from_file: bool = False) -> _Accepted | None:
        """The version to apply, None to ignore silently, or Refused."""
        remote = check_message(payload, self.gateway_id, self._keys)
        version = remote.version
        running, failed = self._running_version(), self._state.failed_version
        pending = self._pending.remote.version if self._pending is not None else None
        if version in (running, self._trying, pending):
            return None  # the retained copy of what runs or is on its way
        if running is not None and version < running:
            raise Refused(f"replayed version {version}: version {running} runs", version)
        if version == failed:
            return None  # the retained copy of the version that failed: not retried
        for newer, what in ((failed, "failed"), (self._trying, "is being applied"), (pending, "is waiting")):
            if newer is not None and version < newer:
                raise Refused(f"replayed version {version}: version {newer} {what}", version)
        config = check_settings(self.local, remote)
        return _Accepted(remote, config, payload.decode("utf-8", "replace"), from_file)

    def _refuse(self, exc: Refused) -> None:
        log.warning("gateway %s: configuration refused: %s", self.gateway_id, exc.reason)
        report = ConfigReport(self._running_version(), exc.version, "refused", exc.reason)
        self._set_state(State(report, self._state.failed_version))

    # ------------------------------------------------------------------ state

    def _recover(self) -> None:
        """At start: what the files say, and the power-cut rule."""
        self._good = self.store.good()
        state = self.store.state()
        running = self._running_version()
        marker = self.store.applying()
        if marker is not None:
            if marker == running:
                state = State(ConfigReport(running, marker, "applied"), state.failed_version)  # kept, marker not cleared
            elif not (state.report.state == "rolled_back" and state.report.attempted == marker):
                log.warning("gateway %s: configuration version %d was in its health gate when the gateway stopped; "
                            "starting on the last good one", self.gateway_id, marker)
                state = State(ConfigReport(running, marker, "rolled_back", RESTARTED_IN_GATE), marker)
            self.store.save_state(state)
            self.store.clear_applying()
            self.store.clear_candidate()
        if state.report.version != running:
            state = State(replace(state.report, version=running), state.failed_version)
        self._state = state
        received = self.store.received()
        if received is None:
            return
        try:
            accepted = self._judge(received, from_file=True)
        except Refused as exc:
            self._refuse(exc)
            accepted = None
        if accepted is None:
            self.store.clear_received()
        else:
            self._pending = accepted

    def _set_state(self, state: State) -> None:
        """Now for the status; on disk in order, without waiting."""
        self._state = state
        future = asyncio.get_running_loop().run_in_executor(self._io, self.store.save_state, state)
        self._writes.add(future)
        future.add_done_callback(self._written)
        if self.app is not None:
            self.app.status_changed()

    async def _save_state(self, state: State) -> None:
        self._state = state
        await self._io_call(self.store.save_state, state)
        if self.app is not None:
            self.app.status_changed()

    def _written(self, future: asyncio.Future[None]) -> None:
        self._writes.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("gateway %s: cannot save the configuration state: %s", self.gateway_id, future.exception())

    async def _io_call(self, fn: Callable[..., None], *args: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)
