"""A server's side of an enrolment, made with the real gateway CA and
allowlist signing (server/fleet/ca.py, rentgate/signing.py), for the tests
that do not need the whole server; and a small aiohttp fake of the
enrolment route in a thread of its own, for the CLI's HTTP paths."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from rentgate import signing, wire
from server.fleet.ca import GatewayCa

GW = "gw-enrol-1"
CODE = "ABCD-EFGH-JKMN"
KEY_ID = "k1"
PASSWORD = "p" * 32


class FakeServerSide:
    """Answers an EnrolRequest as the server would (tests may spoil a field)."""

    def __init__(self, folder: Path, *, gw: str = GW) -> None:
        self.ca = GatewayCa.create(folder / "ca")
        self.signing_key = signing.generate_private_key()
        self.gw = gw
        self.requests: list[wire.EnrolRequest] = []

    def signed_config(self, *, gw: str | None = None, settings: dict[str, object] | None = None,
                      key: signing.Ed25519PrivateKey | None = None) -> wire.SignedConfig:
        config = wire.RemoteConfig(gw=gw or self.gw, version=1, issued_at=dt.datetime.now(dt.UTC),
                                   settings=settings if settings is not None else {"heartbeat_s": 10})
        payload = wire.config_payload(config)
        signature = signing.sign(payload.encode(), key or self.signing_key)
        return wire.SignedConfig(key_id=KEY_ID, signature=signature, payload=payload)

    def answer(self, request: wire.EnrolRequest, **changes: object) -> wire.EnrolResponse:
        self.requests.append(request)
        cert, _serial = self.ca.sign_csr(request.csr, self.gw)
        fields: dict[str, object] = {
            "gw": self.gw, "building": "越秀 12 号楼", "mqtt_url": "mqtts://broker.example.cn:8883",
            "mqtt_username": self.gw, "mqtt_password": PASSWORD, "ca_pem": self.ca.ca_pem, "certificate_pem": cert,
            "allowlist_keys": {KEY_ID: signing.public_key_b64(self.signing_key.public_key())},
            "server_url": "https://rentgate.example.cn", "config": self.signed_config(),
        }
        fields.update(changes)
        return wire.EnrolResponse.model_validate(fields)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextmanager
def http_fake(handler: Handler, *, ssl_context: object = None) -> Iterator[str]:
    """``POST /api/v1/enrol`` answered by ``handler`` on 127.0.0.1; yields the base URL."""
    app = web.Application()
    app.router.add_post("/api/v1/enrol", handler)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)  # type: ignore[arg-type]
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def enrolling(side: FakeServerSide) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        enrol = wire.decode_enrol_request(await request.read())
        if wire.normalise_enrol_code(enrol.code) != wire.normalise_enrol_code(CODE):
            return web.json_response({"error": "not_found", "detail": "no such enrolment code"}, status=404)
        return web.Response(body=side.answer(enrol).model_dump_json(), content_type="application/json")
    return handler


def answering(status: int, body: object, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        if isinstance(body, str):
            return web.Response(text=body, status=status, headers=headers)
        return web.Response(text=json.dumps(body), status=status, headers=headers, content_type="application/json")
    return handler
