"""How the demo stops (rentgate/demo_stop.py): parts are ended even when
their Popen is in the state an interrupt at the wrong moment leaves it in,
a part that ignores SIGTERM is aborted and killed, and a stop request that
an ignored exception swallowed still stops the demo's waiting loops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from rentgate import demo_stop

# Says it is ready once its SIGTERM handler is in place, then waits.
IGNORES_SIGTERM = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('ready', flush=True); time.sleep(60)")


@pytest.fixture(autouse=True)
def no_request_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(demo_stop, "_requests", 0)
    yield


def spawn(code: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def test_a_part_is_ended_although_its_popen_lock_was_left_taken() -> None:
    """A KeyboardInterrupt raised inside Popen.poll, just after it took its
    waitpid lock, leaves that lock taken: Popen.wait(timeout) then always
    times out and Popen.wait() never returns. That is how the demo once
    hung on stop. The demo's own reaping does not go through the lock."""
    proc = spawn("import time; print('ready', flush=True); time.sleep(60)")
    try:
        assert proc._waitpid_lock.acquire(False)  # type: ignore[attr-defined]  # as the interrupt left it
        os.kill(proc.pid, signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1)  # what the demo used to wait with: it never sees the exit
        started = time.monotonic()
        assert demo_stop.exited(proc, 5) is True
        assert time.monotonic() - started < 5
        assert proc.returncode == -signal.SIGTERM
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()


def test_a_part_that_ignores_sigterm_is_aborted_after_its_time() -> None:
    proc = spawn(IGNORES_SIGTERM)
    told: list[str] = []
    started = time.monotonic()
    assert demo_stop.end(proc, 0.5, late=lambda: told.append("late")) is False
    assert told == ["late"]
    assert proc.returncode == -signal.SIGABRT
    assert time.monotonic() - started < 5


def test_an_ended_part_is_not_signalled_again() -> None:
    proc = spawn("print('ready', flush=True)")
    assert demo_stop.exited(proc, 5) and proc.returncode == 0
    assert demo_stop.end(proc, 1) is True  # nothing sent to a pid that may belong to someone else now


def test_a_request_swallowed_by_an_ignored_exception_still_stops_a_waiting_loop() -> None:
    """The handler raised inside a __del__ (Python prints such exceptions and
    goes on): the next pause of the loop raises it again."""
    try:
        demo_stop._on_signal(signal.SIGTERM, None)
    except KeyboardInterrupt:
        pass  # what Python does with an exception raised in __del__
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        demo_stop.pause(30)
    assert time.monotonic() - started < 1


def test_at_a_safe_point_the_request_is_only_recorded() -> None:
    with demo_stop.safe_points():
        demo_stop._on_signal(signal.SIGTERM, None)  # does not raise here
        assert demo_stop.requested()
    with pytest.raises(KeyboardInterrupt):
        demo_stop.check()
    # Outside, the handler raises at once (a phase blocked in a library call).
    with pytest.raises(KeyboardInterrupt):
        demo_stop._on_signal(signal.SIGINT, None)


def test_asked_again_while_stopping_a_part_that_hangs_is_killed_at_once() -> None:
    """A second Ctrl-C during the stop does not cut the stop short (that
    would leave the other parts running): it hurries it."""
    proc = spawn(IGNORES_SIGTERM)
    told: list[str] = []
    asked_again_at = time.monotonic() + 0.3
    started = time.monotonic()
    assert demo_stop.end(proc, 30, late=lambda: told.append("late"),
                         hurry=lambda: time.monotonic() >= asked_again_at) is False
    assert time.monotonic() - started < 5  # not the 30 s it was given
    assert proc.returncode == -signal.SIGKILL and told == []


def test_a_part_reaped_by_something_else_counts_as_ended() -> None:
    proc = spawn("print('ready', flush=True)")
    os.waitpid(proc.pid, 0)  # not through the Popen, not through demo_stop
    assert demo_stop.exited(proc, 1) is True
    assert proc.returncode == 0  # unknown, recorded as Popen records it: never signalled again
