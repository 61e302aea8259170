"""How ``rentgate demo`` is asked to stop (Ctrl-C, SIGTERM), and how it ends
the processes it started.

The demo used to raise KeyboardInterrupt straight from its SIGTERM handler,
wherever the main thread happened to be. Two places made that unsafe, both
seen as a demo that did not stop (tests/test_demo.py):

- inside ``Popen.poll``, between taking the Popen's private waitpid lock and
  the ``try`` that releases it: the lock stays taken, so every later
  ``wait(timeout)`` of that process times out although it has exited, and
  ``wait()`` without a timeout never returns;
- inside a ``__del__`` or another callback whose exceptions Python only
  prints: the interrupt is lost and the demo runs on.

So the demo looks at its parts with ``os.waitpid`` (``exited``), never
through their Popen, and ends them the same way (``end``): a Popen left in
a bad state cannot keep a part running. The handler records every request;
the demo's waiting loops sleep through ``pause``, which raises a request
that an ignored exception swallowed, within a tenth of a second. Outside the
few ``safe_points`` (reaping a part, stopping them all) the handler still
raises at once, so that a phase blocked in a library call (the district
simulation's output, a write to a full pipe) is cut short as before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

# Plain values, not a threading.Event: the handler runs in the main thread,
# possibly while that thread holds the Event's own lock.
_requests = 0  # how many times asked: asked again while stopping, it hurries
_safe_depth = 0
_STEP_S = 0.1


def install() -> None:
    """Handle Ctrl-C and SIGTERM the same way (a service manager or a test
    sends SIGTERM; the parts run in their own sessions and hear neither)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)


def _on_signal(signum: int, frame: Any) -> None:
    global _requests
    _requests += 1
    if _safe_depth == 0:
        raise KeyboardInterrupt


def requested() -> bool:
    return _requests > 0


def requests() -> int:
    return _requests


@contextlib.contextmanager
def safe_points() -> Iterator[None]:
    """Within this block a stop request is raised only by ``check`` and
    ``pause``, never in the middle of something else."""
    global _safe_depth
    _safe_depth += 1
    try:
        yield
    finally:
        _safe_depth -= 1


def check() -> None:
    """Raise KeyboardInterrupt if a stop was asked for."""
    if _requests:
        raise KeyboardInterrupt


def pause(seconds: float) -> None:
    """Sleep, cut short by a stop request (raised as KeyboardInterrupt)."""
    deadline = time.monotonic() + seconds
    while True:
        check()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, _STEP_S))


def exited(proc: subprocess.Popen[bytes], timeout: float, *, hurry: Callable[[], bool] | None = None) -> bool:
    """Whether ``proc`` has ended, waiting up to ``timeout`` seconds (less
    once ``hurry`` says so); reaps it with os.waitpid and records its exit
    code on the Popen."""
    with safe_points():  # reaped but not yet recorded must not happen
        return _exited(proc, timeout, hurry)


def _exited(proc: subprocess.Popen[bytes], timeout: float, hurry: Callable[[], bool] | None) -> bool:
    deadline = time.monotonic() + timeout
    while proc.returncode is None:
        try:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
        except ChildProcessError:
            # Reaped already, by something else than this module: its code is
            # unknown, as Popen itself records it then.
            proc.returncode = 0
            break
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() >= deadline or (hurry is not None and hurry()):
            return False
        time.sleep(0.02)
    return True


def send(proc: subprocess.Popen[bytes], signum: int) -> None:
    """Signal ``proc`` unless it is known to have ended (its pid is not
    reused before it is reaped, and only ``exited`` reaps it)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signum)


def end(proc: subprocess.Popen[bytes], within: float, *, late: Callable[[], None] | None = None,
        hurry: Callable[[], bool] | None = None) -> bool:
    """Ask ``proc`` to stop (SIGTERM) and give it ``within`` seconds. If it
    does not, call ``late``, abort it (SIGABRT: with faulthandler on, it
    writes where each of its threads was before it dies), give it three
    seconds, then kill it. Once ``hurry`` says so (asked to stop again), no
    more waiting: it is killed. False if it did not stop when asked."""
    if exited(proc, 0):
        return True
    hurried = hurry is not None and hurry()
    if not hurried:
        send(proc, signal.SIGTERM)
        if exited(proc, within, hurry=hurry):
            return True
        hurried = hurry is not None and hurry()
    if not hurried:
        if late is not None:
            late()
        send(proc, signal.SIGABRT)
        if exited(proc, 3, hurry=hurry):
            return False
    send(proc, signal.SIGKILL)
    exited(proc, 5)
    return False
