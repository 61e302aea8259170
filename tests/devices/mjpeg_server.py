"""A minimal MJPEG-over-HTTP camera for tests, on a free port, with faults:
``hang`` (keep the connection, send nothing), ``corrupt`` (parts that are
not JPEG), and :meth:`MjpegServer.stop`/``start`` to vanish and come back."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

BOUNDARY = "frameboundary"


def jpeg_frames(count: int = 10, width: int = 320, height: int = 240) -> list[bytes]:
    """Distinct pictures: a bright square moving across a dark grey room."""
    frames = []
    for i in range(count):
        image = np.full((height, width, 3), 60, np.uint8)
        x = 10 + (i * 17) % (width - 60)
        image[80:140, x:x + 40] = (200, 220, 240)
        ok, data = cv2.imencode(".jpg", image)
        assert ok
        frames.append(data.tobytes())
    return frames


class MjpegServer:
    def __init__(self, fps: float = 25.0, port: int = 0) -> None:
        self.fps = fps
        self.mode = "ok"  # "ok", "hang", "corrupt"
        self.port = port
        self.connections = 0
        self._frames = jpeg_frames()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._alive = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                i = 0
                try:
                    while owner._alive.is_set():
                        if owner.mode == "hang":
                            time.sleep(0.05)
                            continue
                        part = owner._frames[i % len(owner._frames)]
                        if owner.mode == "corrupt":
                            part = b"\xff\xd8\xff\xe0" + bytes((i * 7 + k) % 251 for k in range(3000)) + b"\xff\xd9"
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(part)}\r\n\r\n".encode())
                        self.wfile.write(part + b"\r\n")
                        self.wfile.flush()
                        i += 1
                        time.sleep(1 / owner.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._alive.set()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket and end every stream."""
        self._alive.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> MjpegServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_video(path: str, seconds: float = 2.0, fps: float = 25.0, width: int = 320, height: int = 240) -> None:
    """A small MJPG AVI file with a moving square."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for i in range(int(seconds * fps)):
        image = np.full((height, width, 3), 60, np.uint8)
        x = 10 + (i * 5) % (width - 60)
        image[80:140, x:x + 40] = (200, 220, 240)
        writer.write(image)
    writer.release()
