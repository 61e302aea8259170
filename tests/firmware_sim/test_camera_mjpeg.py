"""The live camera over HTTP: OpenCV and a raw client read it, clients come
and go, a client that reads nothing costs dropped frames and nothing else,
the faults do what they say, and it stops at once."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from firmware_sim.camera.live import LiveScene
from firmware_sim.camera.mjpeg import BOUNDARY, MjpegServer


@pytest.fixture
def camera() -> Iterator[MjpegServer]:
    server = MjpegServer(LiveScene(width=320, height=240, noise_sigma=3.0), fps=20, send_timeout_s=1.0,
                         max_clients=4)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _parts(port: int, n: int, timeout: float = 5.0) -> list[bytes]:
    """Read ``n`` JPEG parts with a plain socket, checking the framing."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, data = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
        assert f"multipart/x-mixed-replace; boundary={BOUNDARY}".encode() in head
        parts: list[bytes] = []
        while len(parts) < n:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                assert chunk, "the stream ended"
                data += chunk
            part_head, data = data.split(b"\r\n\r\n", 1)
            lines = part_head.split(b"\r\n")
            assert lines[0] == f"--{BOUNDARY}".encode() and b"Content-Type: image/jpeg" in lines
            length = int(next(x for x in lines if x.startswith(b"Content-Length:")).split(b":")[1])
            while len(data) < length + 2:
                chunk = sock.recv(65536)
                assert chunk, "the stream ended"
                data += chunk
            parts.append(data[:length])
            assert data[length:length + 2] == b"\r\n"
            data = data[length + 2:]
        return parts


def _decode(jpeg: bytes) -> Any:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def _post(port: int, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _stats(port: int) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
        return json.loads(resp.read())


def _until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_opencv_reads_the_stream(camera: MjpegServer) -> None:
    cap = cv2.VideoCapture(camera.url)
    try:
        assert cap.isOpened()
        frames = [cap.read() for _ in range(10)]
    finally:
        cap.release()
    assert all(ok for ok, _ in frames)
    assert frames[-1][1].shape == (240, 320, 3)


def test_a_raw_client_reads_well_formed_parts_and_a_snapshot(camera: MjpegServer) -> None:
    parts = _parts(camera.port, 5)
    assert all(_decode(p) is not None for p in parts)
    with urllib.request.urlopen(f"http://127.0.0.1:{camera.port}/snapshot.jpg", timeout=5) as resp:
        assert resp.headers["Content-Type"] == "image/jpeg"
        assert _decode(resp.read()).shape == (240, 320, 3)


def test_people_enqueued_over_http_cross_the_line_and_are_counted(camera: MjpegServer) -> None:
    status, body = _post(camera.port, "/enqueue?n=2&direction=in&granted=1")
    assert status == 200
    assert [c["outcome"] for c in body["crossings"]] == ["matched", "tailgating"]
    _until(lambda: _stats(camera.port)["scene"]["crossed"]["in"] == 2, 15)
    crossed = _stats(camera.port)["scene"]["crossed"]
    assert crossed == {"in": 2, "out": 0, "matched": 1, "tailgating": 1, "unidentified": 0}
    for query in ("n=9", "n=x", "direction=sideways", "n=1&direction=out&granted=1"):
        status, body = _post(camera.port, f"/enqueue?{query}")
        assert status == 400 and body["error"]


def test_clients_that_come_and_go_leave_nothing_behind(camera: MjpegServer) -> None:
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", camera.port), timeout=5) as sock:
            sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(100)
    _until(lambda: _stats(camera.port)["clients"] == 0)
    assert len(_parts(camera.port, 3)) == 3


def test_a_client_that_reads_nothing_misses_frames_without_holding_up_others(camera: MjpegServer) -> None:
    stuck = socket.create_connection(("127.0.0.1", camera.port), timeout=5)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        started = time.monotonic()
        assert len(_parts(camera.port, 20)) == 20  # 20 fps: about a second
        assert time.monotonic() - started < 3
        # The stuck client is dropped after its send timeout (1 s here).
        _until(lambda: _stats(camera.port)["clients"] == 0, 10)
    finally:
        stuck.close()


def test_too_many_clients_are_told_to_come_back_later(camera: MjpegServer) -> None:
    socks = []
    try:
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", camera.port), timeout=5)
            s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(100)
            socks.append(s)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{camera.port}/stream.mjpg", timeout=5)
        assert refused.value.code == 503
    finally:
        for s in socks:
            s.close()


def test_freeze_repeats_one_picture_and_ends(camera: MjpegServer) -> None:
    assert _post(camera.port, "/fault?kind=freeze&seconds=1")[0] == 200
    parts = _parts(camera.port, 4)
    assert len(set(parts)) == 1
    time.sleep(1.1)  # the fault's own length
    assert len(set(_parts(camera.port, 4))) > 1


def test_black_covers_the_picture(camera: MjpegServer) -> None:
    assert _decode(_parts(camera.port, 1)[0]).mean() > 60
    camera.fault("black", 5)
    _until(lambda: _decode(camera.latest() or b"").mean() < 15)
    assert "black" in _stats(camera.port)["faults_active"]


def test_shift_moves_the_view(camera: MjpegServer) -> None:
    before = _decode(_parts(camera.port, 1)[0])
    camera.fault("shift", 5)
    time.sleep(0.2)
    after = _decode(_parts(camera.port, 1)[0])
    assert before is not None and after is not None
    assert np.abs(before.astype(int) - after.astype(int)).mean() > 10
    # The same view, moved: shifting the old picture back explains the new one.
    grey = [cv2.cvtColor(x, cv2.COLOR_BGR2GRAY).astype(np.float32) for x in (before, after)]
    (dx, dy), _ = cv2.phaseCorrelate(grey[0], grey[1])
    assert abs(dx) > 10 or abs(dy) > 8


def test_a_corrupt_part_does_not_decode_and_the_stream_goes_on(camera: MjpegServer) -> None:
    camera.fault("corrupt", 0)
    parts = _parts(camera.port, 3)
    assert _decode(parts[0]) is None
    assert parts[0].startswith(b"\xff\xd8") and parts[0].endswith(b"\xff\xd9")
    assert all(_decode(p) is not None for p in parts[1:])
    assert _stats(camera.port)["corrupt_parts"] == 1


def test_the_camera_vanishes_and_comes_back_on_its_port(camera: MjpegServer) -> None:
    port = camera.port
    cap = cv2.VideoCapture(camera.url)
    assert cap.read()[0]
    assert _post(port, "/fault?kind=vanish&seconds=1")[0] == 200
    started = time.monotonic()

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return False
        except OSError:
            return True

    _until(refused, 2)
    # Frames already in the socket's buffer still decode; the open stream
    # must end once they are used up.
    assert any(not cap.read()[0] for _ in range(100)), "the open stream went on after the camera vanished"
    cap.release()
    _until(lambda: not refused(), 5)
    assert time.monotonic() - started >= 0.9
    assert len(_parts(port, 2)) == 2 and camera.stats()["vanished"] == 1


def test_unknown_faults_and_paths_are_refused(camera: MjpegServer) -> None:
    assert _post(camera.port, "/fault?kind=explode")[0] == 400
    assert _post(camera.port, "/fault?kind=freeze&seconds=-1")[0] == 400
    assert _post(camera.port, "/fault?kind=freeze&seconds=nan")[0] == 400
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{camera.port}/admin", timeout=5)
    assert missing.value.code == 404


def test_it_stops_at_once_with_clients_reading_and_not_reading() -> None:
    server = MjpegServer(LiveScene(width=320, height=240), fps=20, send_timeout_s=30.0)
    server.start()
    stuck = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    stuck.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    reader_done = threading.Event()

    def read() -> None:
        cap = cv2.VideoCapture(server.url)
        while cap.read()[0]:
            pass
        cap.release()
        reader_done.set()

    threading.Thread(target=read, daemon=True).start()
    _until(lambda: server.stats()["clients"] == 2)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.5
    assert reader_done.wait(10)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1)
    stuck.close()
