"""The live scene as an IP camera: MJPEG over HTTP.

``GET /stream.mjpg`` is ``multipart/x-mixed-replace`` with one JPEG part per
frame (what OpenCV's ``VideoCapture("http://...")`` and browsers read),
``GET /snapshot.jpg`` the newest frame. For tests and demos, ``GET /stats``
says what the scene did, ``POST /enqueue?n=2&direction=in&granted=1`` walks
people through and ``POST /fault?kind=freeze&seconds=5`` switches a fault on
(see :mod:`.faults`). Bind it to 127.0.0.1 (the default): the control routes
have no login, as no camera simulator needs one.

Each client has its own thread that always sends the newest frame: a slow
client misses frames instead of making anything queue up, and a client that
takes no data for ``send_timeout_s`` is dropped."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2

from firmware_sim.camera.errors import CameraSimError
from firmware_sim.camera.faults import Faults, covered, knocked
from firmware_sim.camera.live import LiveScene
from firmware_sim.camera.render import Frame, check_fps

log = logging.getLogger(__name__)

BOUNDARY = "rentgateframe"
MAX_CLIENTS = 16
_SEND_BUFFER = 128 * 1024


class _Http(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    camera: MjpegServer


class _Handler(BaseHTTPRequestHandler):
    server: _Http
    server_version = "rentgate-camera-sim"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = urlsplit(self.path).path
        cam = self.server.camera
        if path == "/stream.mjpg":
            cam._stream(self)
        elif path == "/snapshot.jpg":
            jpeg = cam.latest()
            if jpeg is None:
                self._reply(503, b"no frame yet\n", "text/plain")
            else:
                self._reply(200, jpeg, "image/jpeg")
        elif path == "/stats":
            self._json(200, cam.stats())
        else:
            self._reply(404, b"not found: /stream.mjpg, /snapshot.jpg, /stats\n", "text/plain")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, max_num_fields=8).items()}
        cam = self.server.camera
        try:
            if url.path == "/enqueue":
                direction = query.get("direction", "in")
                if direction not in ("in", "out"):
                    raise CameraSimError('the direction is "in" or "out"')
                planned = cam.scene.enqueue(int(query.get("n", "1")), "out" if direction == "out" else "in",
                                            granted=int(query.get("granted", "0")))
                self._json(200, {"crossings": [c.to_json() for c in planned]})
            elif url.path == "/fault":
                kind, seconds = query.get("kind", ""), float(query.get("seconds", "5"))
                cam.fault(kind, seconds)
                self._json(200, {"fault": kind, "seconds": seconds})
            else:
                self._reply(404, b"not found: /enqueue, /fault\n", "text/plain")
        except (CameraSimError, ValueError) as exc:
            self._json(400, {"error": str(exc)[:200]})

    def _reply(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, body: dict[str, Any]) -> None:
        self._reply(code, json.dumps(body, ensure_ascii=False).encode(), "application/json")


class MjpegServer:
    """Renders ``scene`` at ``fps`` and serves it on ``host:port`` (0: a
    free port; :attr:`port` tells which). :meth:`start`, then :meth:`stop`
    (within about a second, clients or not)."""

    def __init__(self, scene: LiveScene, *, host: str = "127.0.0.1", port: int = 0, fps: float = 10.0,
                 jpeg_quality: int = 80, send_timeout_s: float = 5.0, max_clients: int = MAX_CLIENTS) -> None:
        check_fps(fps)
        if not 5 <= jpeg_quality <= 100:
            raise CameraSimError("the JPEG quality must be 5 to 100")
        self.scene = scene
        self.host = host
        self.fps = fps
        self.jpeg_quality = jpeg_quality
        self.send_timeout_s = send_timeout_s
        self.max_clients = max_clients
        self.faults = Faults()
        self._requested_port = port
        self.port = 0
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._seq = 0
        self._jpeg: bytes | None = None
        self._frozen: bytes | None = None
        self._httpd: _Http | None = None
        self._serving: threading.Thread | None = None
        self._producer: threading.Thread | None = None
        self._clients: set[socket.socket] = set()
        self._generation = 0  # bumped when the camera vanishes: streams of an older one end
        self._stats = {"frames": 0, "parts_sent": 0, "parts_dropped": 0, "corrupt_parts": 0, "clients_total": 0,
                       "clients_refused": 0, "vanished": 0}
        self._vanisher: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/stream.mjpg"

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._producer is not None:
            raise RuntimeError("camera already started")
        self._listen(self._requested_port)
        self._producer = threading.Thread(target=self.scene.run, args=(self.fps, self._stop, self._publish),
                                          name="camera-frames", daemon=True)
        self._producer.start()

    def stop(self) -> None:
        """Stop serving and rendering; open streams end at once."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._close_listener()
        for thread in (self._producer, self._vanisher):
            if thread is not None and thread is not threading.current_thread():
                thread.join(2.0)

    def __enter__(self) -> MjpegServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self, port: int) -> None:
        httpd = _Http((self.host, port), _Handler)
        httpd.camera = self
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._serving = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                         name="camera-http", daemon=True)
        self._serving.start()

    def _close_listener(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        with self._cond:
            self._generation += 1
            clients = list(self._clients)
            self._cond.notify_all()
        for sock in clients:  # unblock a send to a client that reads nothing
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def fault(self, kind: str, seconds: float) -> None:
        """Switch a fault on for ``seconds`` (see :mod:`.faults`); ``vanish``
        takes the camera off the network (after the current request is
        answered) and brings it back on the same port."""
        self.faults.switch_on(kind, seconds)
        if kind == "vanish":
            self._vanish_soon()

    def _vanish_soon(self) -> None:
        if self._vanisher is not None and self._vanisher.is_alive():
            return
        self._vanisher = threading.Thread(target=self._vanish, name="camera-vanish", daemon=True)
        self._vanisher.start()

    def _vanish(self) -> None:
        time.sleep(0.05)  # let the request that asked for it have its answer
        self._stats["vanished"] += 1
        self._close_listener()
        while not self._stop.is_set():
            self._stop.wait(max(0.0, self.faults.until("vanish") - time.monotonic()))
            if self._stop.is_set():
                return
            try:
                self._listen(self.port)
                return
            except OSError as exc:  # someone took the port meanwhile: keep trying, as a camera would
                log.warning("camera cannot listen on port %d again: %s", self.port, exc)
                self._stop.wait(0.5)

    # ------------------------------------------------------------ frames

    def _publish(self, wall: float, frame: Frame) -> None:
        if self.faults.on("black"):
            frame = covered(frame)
        elif self.faults.on("shift"):
            frame = knocked(frame)
        if self.faults.on("freeze") and self._frozen is not None:
            jpeg = self._frozen
        else:
            ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                return
            jpeg = data.tobytes()
            self._frozen = jpeg
        with self._cond:
            self._jpeg = jpeg
            self._seq += 1
            self._stats["frames"] += 1
            self._cond.notify_all()

    def latest(self) -> bytes | None:
        with self._cond:
            return self._jpeg

    def stats(self) -> dict[str, Any]:
        with self._cond:
            server = {**self._stats, "clients": len(self._clients)}
        return {"url": self.url, "fps": self.fps, "faults_active": self.faults.active(),
                "faults_switched_on": dict(self.faults.counts), **server, "scene": self.scene.stats()}

    def _stream(self, handler: _Handler) -> None:
        sock = handler.connection
        with self._cond:
            if len(self._clients) >= self.max_clients:
                self._stats["clients_refused"] += 1
                refuse = True
            else:
                self._clients.add(sock)
                self._stats["clients_total"] += 1
                refuse = False
            generation = self._generation
        if refuse:
            handler.send_response(503)
            handler.send_header("Retry-After", "5")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        try:
            sock.settimeout(self.send_timeout_s)
            # A small send buffer: a client that stops reading is noticed
            # (and dropped) within seconds instead of megabytes later.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
            handler.send_response(200)
            handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            handler.send_header("Cache-Control", "no-cache, no-store")
            handler.send_header("Pragma", "no-cache")
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.close_connection = True
            sent = 0
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._seq > sent or self._stop.is_set()
                                        or self._generation != generation, timeout=1.0)
                    if self._stop.is_set() or self._generation != generation:
                        return
                    if self._seq <= sent or self._jpeg is None:
                        continue
                    if sent:
                        self._stats["parts_dropped"] += self._seq - sent - 1
                    sent, jpeg = self._seq, self._jpeg
                if self.faults.take_corrupt():
                    jpeg = self.faults.garbage(jpeg)
                    with self._cond:
                        self._stats["corrupt_parts"] += 1
                head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n").encode()
                handler.wfile.write(head + jpeg + b"\r\n")
                handler.wfile.flush()
                with self._cond:
                    self._stats["parts_sent"] += 1
        except OSError:
            return  # the client went away, or read nothing for send_timeout_s
        finally:
            with self._cond:
                self._clients.discard(sock)
